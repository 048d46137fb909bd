// The home page: paste an invite (a web link or an editor's ws:// invite) and open its session.

const form = document.getElementById("open");
const input = document.getElementById("invite");
const error = document.getElementById("error");

/** The session page for an invite: `http(s)://host/s/ID#TOKEN`, or an editor's `ws(s)://host/?session=ID#TOKEN`. */
function sessionPage(invite) {
  const text = invite.trim();
  const hash = text.indexOf("#");
  if (hash < 0) return null;
  const token = text.slice(hash + 1);
  let url;
  try {
    url = new URL(text.slice(0, hash));
  } catch {
    return null;
  }
  const session = url.pathname.startsWith("/s/") ? url.pathname.slice(3) : url.searchParams.get("session");
  if (!session || !token) return null;
  const scheme = url.protocol === "wss:" || url.protocol === "https:" ? "https:" : "http:";
  return `${scheme}//${url.host}/s/${encodeURIComponent(session)}#${token}`;
}

form.onsubmit = (event) => {
  event.preventDefault();
  const page = sessionPage(input.value);
  if (!page) {
    error.textContent = "That is not an invite: it looks like http://host:port/s/SESSION#TOKEN or ws://host:port/?session=SESSION#TOKEN.";
    return;
  }
  location.assign(page);
};
