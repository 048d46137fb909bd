// The session page: CodeMirror 6 editors around the protocol crate's client (WebAssembly), one WebSocket, the file tree, tabs, people and connection state.
//
// Everything about convergence happens in the WebAssembly client (web/src/session.rs): this file hands it what the
// socket and the editor do, sends the frames it makes, and carries out the events it returns.

import init, { WebClient } from "../pkg/codecollab_web.js";
import { Annotation, Compartment, EditorState, StateEffect, StateField, Transaction } from "@codemirror/state";
import {
  Decoration,
  EditorView,
  WidgetType,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history as undoHistory, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { languageFor } from "./languages.js";

const $ = (id) => document.getElementById(id);

/** A transaction that carries a peer's (or the server's) change: not ours to send, not ours to undo. */
const remote = Annotation.define();

// ---- the invite: the token is in the fragment, which never reaches the server in a URL ----

const sessionId = decodeURIComponent(location.pathname.replace(/^\/s\//, ""));
const storageKey = `codecollab:${sessionId}`;
let token = location.hash.slice(1) || sessionStorage.getItem(`${storageKey}:token`) || "";
if (location.hash) {
  // Kept for this tab only (a reload reconnects), and out of the address bar, where it would be shared by accident.
  sessionStorage.setItem(`${storageKey}:token`, token);
  history.replaceState(null, "", location.pathname);
}

// ---- state ----

const client = { wasm: null, ws: null, attempt: 0, timer: null, ended: false, welcomed: false };
const session = {
  me: null, // {peer, name, role}
  peers: new Map(), // peer id -> {peer, name, role, color}
  docs: new Map(), // doc id -> path
  unshared: [],
  open: new Map(), // doc id -> {state, synced, deleted}
  tabs: [], // doc ids, in order
  active: null,
  following: null, // peer id
  where: new Map(), // peer id -> {doc, head}
};
let view = null;
const readOnly = new Compartment();
const language = new Compartment();

// ---- remote cursors: a field of decorations, mapped through every change and replaced by presence ----

const setPresence = StateEffect.define();

class CaretWidget extends WidgetType {
  constructor(name, color) {
    super();
    this.name = name;
    this.color = color;
  }
  eq(other) {
    return other.name === this.name && other.color === this.color;
  }
  toDOM() {
    const caret = document.createElement("span");
    caret.className = "cc-caret";
    caret.style.borderColor = this.color;
    const label = document.createElement("span");
    label.className = "cc-caret-name";
    label.style.background = this.color;
    label.textContent = this.name;
    caret.appendChild(label);
    return caret;
  }
  ignoreEvent() {
    return true;
  }
}

/** Per peer, its selections in this document: `{peer: [{anchor, head}]}`, kept in the field's value. */
const presenceField = StateField.define({
  create() {
    return { cursors: new Map(), decorations: Decoration.none };
  },
  update(value, tr) {
    let cursors = value.cursors;
    if (tr.docChanged) {
      cursors = new Map(
        [...cursors].map(([peer, ranges]) => [
          peer,
          ranges.map((r) => ({ anchor: tr.changes.mapPos(r.anchor, 1), head: tr.changes.mapPos(r.head, 1) })),
        ]),
      );
    }
    let changed = tr.docChanged;
    for (const effect of tr.effects) {
      if (effect.is(setPresence)) {
        cursors = new Map(cursors);
        const { peer, selections } = effect.value;
        if (peer === null) cursors.clear();
        else if (selections.length === 0) cursors.delete(peer);
        else cursors.set(peer, selections);
        changed = true;
      }
    }
    if (!changed) return value;
    return { cursors, decorations: decorate(cursors, tr.state.doc.length) };
  },
  provide: (field) => EditorView.decorations.from(field, (value) => value.decorations),
});

function decorate(cursors, length) {
  const ranges = [];
  for (const [peer, selections] of cursors) {
    const info = session.peers.get(peer);
    const name = info ? info.name : `peer ${peer}`;
    const color = info ? info.color : "#888888";
    for (const s of selections) {
      const anchor = Math.min(s.anchor, length);
      const head = Math.min(s.head, length);
      const from = Math.min(anchor, head);
      const to = Math.max(anchor, head);
      if (from < to) {
        ranges.push(
          Decoration.mark({ class: "cc-remote-selection", attributes: { style: `background: ${color}33` } }).range(
            from,
            to,
          ),
        );
      }
      ranges.push(Decoration.widget({ widget: new CaretWidget(name, color), side: 1 }).range(head));
    }
  }
  return Decoration.set(ranges, true);
}

// ---- the editor ----

/** Opens CodeMirror's search panel, loading it the first time. */
function openSearch(target) {
  import("@codemirror/search").then((search) => search.openSearchPanel(target));
  return true;
}

function extensions(doc, path) {
  const viewOnly = session.me && session.me.role === "view";
  return [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    undoHistory(),
    drawSelection(),
    indentOnInput(),
    bracketMatching(),
    highlightActiveLine(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    // The search panel loads on first use (its own keys, Enter and Escape, come with it).
    keymap.of([{ key: "Mod-f", run: openSearch, preventDefault: true }]),
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
    readOnly.of([EditorState.readOnly.of(viewOnly), EditorView.editable.of(!viewOnly)]),
    language.of([]),
    presenceField,
    EditorView.updateListener.of((update) => onUpdate(doc, update)),
  ];
}

/** What the user did in the editor: each of our transactions goes to the client, in order, then our selection. */
function onUpdate(doc, update) {
  if (doc !== session.active) return;
  let ours = false;
  for (const tr of update.transactions) {
    if (!tr.docChanged || tr.annotation(remote)) continue;
    const ranges = [];
    const inserts = [];
    tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
      ranges.push(fromA, toA);
      inserts.push(inserted.toString());
    });
    client.wasm.edit(doc, Uint32Array.from(ranges), inserts);
    ours = true;
  }
  if (ours && session.following !== null) follow(null);
  if (update.selectionSet || ours) {
    const main = update.state.selection.main;
    client.wasm.cursor(doc, main.anchor, main.head);
  }
  const entry = session.open.get(doc);
  if (entry) entry.state = update.state;
  pump();
}

/** When the first document became editable, in ms since navigation (for the benchmark). */
let readyAt = null;

function show(doc) {
  const entry = session.open.get(doc);
  if (!entry || !entry.state) return;
  session.active = doc;
  if (readyAt === null) readyAt = performance.now();
  if (!view) {
    view = new EditorView({ state: entry.state, parent: $("editor") });
  } else {
    view.setState(entry.state);
  }
  $("placeholder").hidden = true;
  $("editor").hidden = false;
  renderTabs();
  renderFiles();
  renderStatus();
  const path = session.docs.get(doc) || "";
  languageFor(path).then((support) => {
    if (session.active === doc && view) view.dispatch({ effects: language.reconfigure(support || []) });
  });
}

function openDoc(doc) {
  if (!session.tabs.includes(doc)) session.tabs.push(doc);
  if (session.open.has(doc) && session.open.get(doc).state) {
    show(doc);
    return;
  }
  if (!session.open.has(doc)) session.open.set(doc, { state: null, synced: true, deleted: false });
  session.active = doc;
  client.wasm.open(doc);
  renderTabs();
  pump();
}

function closeTab(doc) {
  session.tabs = session.tabs.filter((d) => d !== doc);
  const entry = session.open.get(doc);
  if (entry && entry.deleted) session.open.delete(doc);
  if (session.active === doc) {
    const next = session.tabs[session.tabs.length - 1];
    if (next !== undefined) show(next);
    else {
      session.active = null;
      $("editor").hidden = true;
      $("placeholder").hidden = false;
      renderTabs();
      renderFiles();
    }
  } else renderTabs();
}

/** Applies changes the client made (a peer's edit, an undone refusal) to a document's editor, shown or not. */
function applyChanges(doc, changes) {
  const entry = session.open.get(doc);
  if (!entry || !entry.state) return;
  const spec = {
    changes: changes.map((c) => ({ from: c.from, to: c.to, insert: c.insert })),
    annotations: [remote.of(true), Transaction.addToHistory.of(false)],
  };
  if (session.active === doc && view) {
    view.dispatch(spec);
    entry.state = view.state;
  } else {
    entry.state = entry.state.update(spec).state;
  }
}

function presence(doc, peer, selections) {
  const entry = session.open.get(doc);
  if (selections.length > 0) session.where.set(peer, { doc, head: selections[0].head });
  if (entry && entry.state) {
    const effects = setPresence.of({ peer, selections });
    if (session.active === doc && view) {
      view.dispatch({ effects });
      entry.state = view.state;
    } else {
      entry.state = entry.state.update({ effects }).state;
    }
  }
  if (session.following === peer && selections.length > 0) goTo(doc, selections[0].head);
  renderPeople();
}

function clearPresence() {
  session.where.clear();
  for (const [doc, entry] of session.open) {
    if (!entry.state) continue;
    const effects = setPresence.of({ peer: null, selections: [] });
    if (session.active === doc && view) {
      view.dispatch({ effects });
      entry.state = view.state;
    } else entry.state = entry.state.update({ effects }).state;
  }
}

/** Shows `doc` with `pos` in view (following a peer). */
function goTo(doc, pos) {
  const entry = session.open.get(doc);
  if (!entry || !entry.state) {
    openDoc(doc);
    return;
  }
  if (!session.tabs.includes(doc)) session.tabs.push(doc);
  if (session.active !== doc) show(doc);
  const at = Math.min(pos, view.state.doc.length);
  view.dispatch({ effects: EditorView.scrollIntoView(at, { y: "center" }) });
}

/** Subscribes to `doc` without showing it: its presence and changes arrive, no tab opens. */
function openInBackground(doc) {
  if (session.open.has(doc)) return;
  session.open.set(doc, { state: null, synced: true, deleted: false });
  client.wasm.open(doc);
}

function follow(peer) {
  session.following = peer;
  if (peer !== null) {
    // A peer's cursor is only heard in documents this page has open: open them all, in the background.
    for (const doc of session.docs.keys()) openInBackground(doc);
    pump();
    const where = session.where.get(peer);
    if (where) goTo(where.doc, where.head);
  }
  renderPeople();
}

// ---- the client's output ----

/** Sends every frame the client made and carries out every event, until neither is left. */
function pump() {
  for (;;) {
    let busy = false;
    let frame;
    while ((frame = client.wasm.next_frame()) !== undefined) {
      busy = true;
      if (client.ws && client.ws.readyState === WebSocket.OPEN) client.ws.send(frame);
    }
    const events = JSON.parse(client.wasm.events());
    for (const event of events) handle(event);
    busy = busy || events.length > 0;
    if (!busy) break;
  }
  renderStatus();
}

function handle(event) {
  switch (event.type) {
    case "welcome": {
      client.welcomed = true;
      client.attempt = 0;
      session.me = { peer: event.peer, name: event.name, role: event.role };
      token = event.token;
      sessionStorage.setItem(`${storageKey}:token`, token);
      session.peers = new Map(event.peers.map((p) => [p.peer, p]));
      session.docs = new Map(event.docs.map((d) => [d.doc, d.path]));
      session.unshared = event.unshared;
      session.where.clear();
      $("session-name").textContent = `session ${event.session.slice(0, 8)}`;
      $("view-only").hidden = event.role !== "view";
      if (view) {
        const viewOnly = event.role === "view";
        view.dispatch({
          effects: readOnly.reconfigure([EditorState.readOnly.of(viewOnly), EditorView.editable.of(!viewOnly)]),
        });
      }
      setConnection("connected");
      if (!event.resumed) {
        const first = [...session.docs.keys()].sort((a, b) =>
          session.docs.get(a).localeCompare(session.docs.get(b)),
        )[0];
        if (first !== undefined && session.tabs.length === 0) openDoc(first);
      }
      renderFiles();
      renderPeople();
      break;
    }
    case "loaded": {
      const entry = session.open.get(event.doc) || { synced: true, deleted: false };
      entry.state = EditorState.create({ doc: event.text, extensions: extensions(event.doc, event.path) });
      entry.path = event.path;
      session.open.set(event.doc, entry);
      if (session.active === event.doc) show(event.doc);
      const where = session.following !== null && session.where.get(session.following);
      if (where && where.doc === event.doc) goTo(where.doc, where.head);
      break;
    }
    case "changes":
      applyChanges(event.doc, event.changes);
      break;
    case "synced": {
      const entry = session.open.get(event.doc);
      if (entry) entry.synced = event.synced;
      break;
    }
    case "presence":
      presence(event.doc, event.peer, event.selections);
      break;
    case "presence_cleared":
      clearPresence();
      renderPeople();
      break;
    case "peer_joined":
      session.peers.set(event.peer.peer, event.peer);
      renderPeople();
      break;
    case "peer_left": {
      session.peers.delete(event.peer);
      session.where.delete(event.peer);
      if (session.following === event.peer) session.following = null;
      for (const doc of session.open.keys()) presence(doc, event.peer, []);
      renderPeople();
      break;
    }
    case "created":
      session.docs.set(event.doc.doc, event.doc.path);
      if (session.following !== null) openInBackground(event.doc.doc);
      renderFiles();
      break;
    case "deleted": {
      const path = session.docs.get(event.doc);
      session.docs.delete(event.doc);
      const entry = session.open.get(event.doc);
      if (entry) {
        entry.deleted = true;
        entry.path = path || entry.path;
        notify("warning", `${entry.path || "a file"} was deleted by a peer; its tab keeps the text`);
        // Read-only from now on: the text stays to read and copy.
        const effects = readOnly.reconfigure([EditorState.readOnly.of(true), EditorView.editable.of(false)]);
        if (session.active === event.doc && view) {
          view.dispatch({ effects });
          entry.state = view.state;
        } else if (entry.state) {
          entry.state = entry.state.update({ effects }).state;
        }
      }
      renderFiles();
      renderTabs();
      break;
    }
    case "renamed":
      session.docs.set(event.doc, event.path);
      if (session.open.has(event.doc)) session.open.get(event.doc).path = event.path;
      renderFiles();
      renderTabs();
      break;
    case "unshared":
      session.unshared = event.files;
      renderFiles();
      break;
    case "retry_later":
      setTimeout(() => {
        client.wasm.retry();
        pump();
      }, 1000);
      break;
    case "message":
      notify(event.level, event.text);
      if (event.fatal) end(event.text);
      break;
    default:
      console.warn("unknown event", event);
  }
}

// ---- the connection ----

function connect() {
  if (client.ended) return;
  setConnection(client.welcomed ? "reconnecting" : "connecting");
  // The server's WebSocket is where the page's /s/ID hangs from (the root, or a reverse proxy's prefix).
  const url = new URL("../", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  let ws;
  try {
    ws = new WebSocket(url.href, ["codecollab.v1", `codecollab.bearer.${token}`]);
  } catch (error) {
    end(`cannot connect: ${error.message}`);
    return;
  }
  ws.binaryType = "arraybuffer";
  client.ws = ws;
  ws.onopen = () => {
    client.wasm.connected();
    pump();
  };
  ws.onmessage = (message) => {
    if (!(message.data instanceof ArrayBuffer)) return;
    client.wasm.receive(new Uint8Array(message.data));
    pump();
  };
  ws.onclose = (close) => {
    if (client.ws !== ws) return;
    client.ws = null;
    client.wasm.disconnected();
    pump();
    const reason = close.reason || "";
    switch (close.code) {
      case 4001:
        end(
          client.welcomed
            ? `the server no longer accepts this session's token: ${reason}`
            : `this invite does not work: ${reason}. Ask the host for a new one.`,
        );
        return;
      case 4002:
        end(`this page and the server speak different protocol versions: ${reason}. Reload the page.`);
        return;
      case 4003:
        end("the host removed you from the session");
        return;
      default:
        break;
    }
    // Dropped, the server restarting, moved to another node, too slow: try again, what was typed is kept.
    client.attempt += 1;
    const delay = Math.min(250 * 2 ** Math.min(client.attempt - 1, 5), 8000);
    setConnection("reconnecting", delay, reason);
    client.timer = setTimeout(connect, delay);
  };
}

function end(why) {
  if (client.ended) return;
  client.ended = true;
  clearTimeout(client.timer);
  if (client.ws) {
    const ws = client.ws;
    client.ws = null;
    ws.close();
  }
  setConnection("ended", 0, why);
  $("ended").hidden = false;
  $("ended-reason").textContent = why;
}

// ---- the page around the editor ----

let connection = { state: "connecting", detail: "" };

function setConnection(state, delay = 0, detail = "") {
  connection = { state, detail, until: delay ? Date.now() + delay : 0 };
  renderStatus();
}

function renderStatus() {
  const pending = [...session.open.values()].some((e) => !e.synced);
  const badge = $("connection");
  let text = connection.state;
  if (connection.state === "reconnecting" && connection.until) {
    text = `reconnecting in ${Math.max(0, Math.ceil((connection.until - Date.now()) / 1000))} s`;
  }
  if (pending && connection.state !== "ended") {
    text += connection.state === "connected" ? " · sending" : " · your edits are kept and will be sent";
  }
  badge.textContent = text;
  badge.dataset.state = connection.state;
  badge.dataset.pending = String(pending);
}
setInterval(() => {
  if (connection.state === "reconnecting") renderStatus();
}, 1000);

function renderFiles() {
  const list = $("files");
  list.replaceChildren();
  const paths = [...session.docs].sort((a, b) => a[1].localeCompare(b[1]));
  for (const [doc, path] of paths) {
    const item = document.createElement("li");
    const depth = path.split("/").length - 1;
    item.style.paddingLeft = `${0.6 + depth * 0.9}em`;
    item.textContent = path.split("/").pop();
    item.title = path;
    item.dataset.path = path;
    item.className = "file" + (doc === session.active ? " active" : "");
    item.onclick = () => openDoc(doc);
    // Folders, once, above their first file.
    const parts = path.split("/");
    for (let i = 0; i < parts.length - 1; i++) {
      const folder = parts.slice(0, i + 1).join("/");
      if (!list.querySelector(`[data-folder="${CSS.escape(folder)}"]`)) {
        const row = document.createElement("li");
        row.className = "folder";
        row.dataset.folder = folder;
        row.style.paddingLeft = `${0.6 + i * 0.9}em`;
        row.textContent = `${parts[i]}/`;
        list.appendChild(row);
      }
    }
    list.appendChild(item);
  }
  for (const file of session.unshared) {
    const item = document.createElement("li");
    item.className = "unshared";
    item.textContent = file.path;
    item.title = `not shared: ${file.reason}`;
    list.appendChild(item);
  }
}

function renderTabs() {
  const tabs = $("tabs");
  tabs.replaceChildren();
  for (const doc of session.tabs) {
    const entry = session.open.get(doc);
    const tab = document.createElement("span");
    const path = session.docs.get(doc) || (entry && entry.path) || "(deleted)";
    tab.className = "tab" + (doc === session.active ? " active" : "") + (entry && entry.deleted ? " deleted" : "");
    tab.title = path;
    tab.dataset.path = path;
    tab.textContent = path.split("/").pop() + (entry && entry.deleted ? " (deleted)" : "");
    tab.onclick = () => openDoc(doc);
    const close = document.createElement("button");
    close.className = "close";
    close.textContent = "×";
    close.title = "close";
    close.onclick = (event) => {
      event.stopPropagation();
      closeTab(doc);
    };
    tab.appendChild(close);
    tabs.appendChild(tab);
  }
}

function renderPeople() {
  const list = $("people");
  list.replaceChildren();
  const everyone = [...session.peers.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const peer of everyone) {
    const me = session.me && peer.peer === session.me.peer;
    const item = document.createElement("li");
    item.className = "person";
    item.dataset.name = peer.name;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = peer.color;
    item.appendChild(dot);
    const name = document.createElement("span");
    const where = session.where.get(peer.peer);
    const file = where ? session.docs.get(where.doc) : null;
    name.textContent = `${peer.name}${me ? " (you)" : ""}${peer.role === "view" ? " · viewing" : ""}`;
    name.title = file ? `in ${file}` : "";
    item.appendChild(name);
    if (!me) {
      const button = document.createElement("button");
      const following = session.following === peer.peer;
      button.textContent = following ? "unfollow" : "follow";
      button.className = "follow";
      button.onclick = () => follow(following ? null : peer.peer);
      item.appendChild(button);
    }
    list.appendChild(item);
  }
}

function notify(level, text) {
  const item = document.createElement("div");
  item.className = `message ${level}`;
  item.textContent = text;
  $("messages").appendChild(item);
  if (level !== "error") setTimeout(() => item.remove(), 8000);
  else item.onclick = () => item.remove();
}

// Leaving with edits the server has not stored would lose them: ask first.
window.addEventListener("beforeunload", (event) => {
  if (client.wasm && !client.wasm.synced()) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// For tests and support: what this page holds, read-only.
window.codecollab = {
  text: (path) => {
    for (const [doc, p] of session.docs) {
      if (p !== path) continue;
      const entry = session.open.get(doc);
      if (entry && entry.state) return entry.state.doc.toString();
    }
    return null;
  },
  active: () => (session.active === null ? null : session.docs.get(session.active)),
  shownText: () => (view && session.active !== null ? view.state.doc.toString() : null),
  connection: () => connection.state,
  synced: () => client.wasm !== null && client.wasm.synced(),
  role: () => (session.me ? session.me.role : null),
  readyAt: () => readyAt,
  cursors: () => {
    if (!view) return [];
    const out = [];
    for (const [peer, selections] of view.state.field(presenceField).cursors) {
      const info = session.peers.get(peer);
      out.push({ name: info ? info.name : String(peer), selections });
    }
    return out;
  },
};

async function main() {
  if (!token) {
    end("this link has no token: open the whole invite link (the part after # included)");
    return;
  }
  await init({ module_or_path: new URL("codecollab_web_bg.wasm", import.meta.url) });
  const stored = localStorage.getItem("codecollab:name");
  if (stored) {
    start(stored);
    return;
  }
  // The first time: how the others will see us.
  $("join").hidden = false;
  $("name").focus();
  $("join").onsubmit = (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!name) return;
    localStorage.setItem("codecollab:name", name);
    $("join").hidden = true;
    start(name);
  };
}

function start(name) {
  const id = new Uint32Array(2);
  crypto.getRandomValues(id);
  const hex = [...id].map((n) => n.toString(16).padStart(8, "0")).join("");
  client.wasm = new WebClient(hex, name);
  connect();
}

main().catch((error) => end(`the page could not start: ${error.message}`));
