//! The browser client's files, embedded at build time (see `build.rs`): `GET /` the home page, `GET /s/{session}`
//! the session page, `GET /assets/...` what they load, gzipped for browsers that take it.

use crate::http::RequestHead;

/// One file of `web/dist`.
#[derive(Debug)]
pub struct WebFile {
    /// Its path under `web/dist`, `/`-separated.
    pub name: &'static str,
    pub body: &'static [u8],
    /// The same, gzipped at build time.
    pub gzip: &'static [u8],
}

static FILES: &[WebFile] = include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// What the HTML pages may do: scripts and WebAssembly from this server only, WebSockets to it, no framing.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
    connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// A response to a plain HTTP request.
#[derive(Debug)]
pub struct Page {
    pub status: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static [u8],
}

/// The page or asset `head` asks for, if it is one of the web client's.
pub fn page(head: &RequestHead) -> Option<Page> {
    if head.method != "GET" && head.method != "HEAD" {
        return None;
    }
    // The fragment never reaches the server; a query string may (ignored).
    let path = head.path.split('?').next().unwrap_or_default();
    let name = match path {
        "/" | "/index.html" => "index.html",
        _ if path.strip_prefix("/s/").is_some_and(is_session_id) => "session.html",
        _ => path.strip_prefix("/")?,
    };
    if !(name.ends_with(".html") && !name.contains('/') || name.starts_with("assets/")) {
        return None;
    }
    let file = FILES.iter().find(|f| f.name == name)?;
    let mut headers = vec![
        ("Content-Type", content_type(name)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ];
    if name.ends_with(".html") {
        headers.push(("Content-Security-Policy", CSP));
    }
    let gzip = head.header("accept-encoding").is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let body = if gzip {
        headers.push(("Content-Encoding", "gzip"));
        file.gzip
    } else {
        file.body
    };
    headers.push(("Vary", "Accept-Encoding"));
    Some(Page { status: "200 OK", headers, body })
}

/// A session id as the server makes them (hex), so that `/s/...` does not serve the page for arbitrary paths.
fn is_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, gzip: bool) -> Option<Page> {
        let mut headers = vec![];
        if gzip {
            headers.push(("accept-encoding".to_owned(), "gzip, deflate".to_owned()));
        }
        page(&RequestHead { method: "GET".into(), path: path.into(), headers, raw: vec![] })
    }

    #[test]
    fn the_pages_and_their_assets_are_served_and_nothing_else() {
        let home = get("/", false).expect("home");
        assert!(std::str::from_utf8(home.body).expect("utf-8").contains("<html"));
        assert!(home.headers.iter().any(|(n, v)| *n == "Content-Security-Policy" && v.contains("frame-ancestors")));
        let session = get("/s/4cdb15eca9118f670042caedaddccc3d", true).expect("session page");
        assert!(session.headers.contains(&("Content-Encoding", "gzip")));
        assert!(get("/assets/app.js", false).is_some());
        assert!(get("/assets/codecollab_web_bg.wasm", false).is_some());
        for path in ["/s/", "/s/a/b", "/s/..", "/../Cargo.toml", "/assets/../index.html", "/assets/missing.js", "/x.js"]
        {
            assert!(get(path, false).is_none(), "{path}");
        }
    }
}
