//! The page's events as JSON, written by hand: serde_json and the serializers it would generate were a tenth of
//! the WebAssembly the page downloads, for a handful of flat shapes.

use std::fmt::Write as _;

use codecollab_protocol::wire::{DocInfo, PeerInfo, Role, UnsharedFile};

use crate::session::{Change, Event, Level, Range};

/// `events` as a JSON array of objects, each with its `type` (see [`Event`]; field names as the page reads them).
pub fn events(events: &[Event]) -> String {
    let mut out = String::with_capacity(64 * events.len() + 2);
    out.push('[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        event_object(&mut out, event);
    }
    out.push(']');
    out
}

fn event_object(out: &mut String, event: &Event) {
    let mut o = Object::new(out);
    match event {
        Event::Welcome { session, peer, name, role, token, peers, docs, unshared, resumed } => {
            o.str("type", "welcome");
            o.str("session", session);
            o.num("peer", *peer);
            o.str("name", name);
            o.str("role", role_name(*role));
            o.str("token", token);
            o.array("peers", peers, peer_object);
            o.array("docs", docs, doc_object);
            o.array("unshared", unshared, unshared_object);
            o.bool("resumed", *resumed);
        }
        Event::Loaded { doc, path, text } => {
            o.str("type", "loaded");
            o.num("doc", *doc);
            o.str("path", path);
            o.str("text", text);
        }
        Event::Changes { doc, changes } => {
            o.str("type", "changes");
            o.num("doc", *doc);
            o.array("changes", changes, change_object);
        }
        Event::Synced { doc, synced } => {
            o.str("type", "synced");
            o.num("doc", *doc);
            o.bool("synced", *synced);
        }
        Event::Presence { doc, peer, selections } => {
            o.str("type", "presence");
            o.num("doc", *doc);
            o.num("peer", *peer);
            o.array("selections", selections, range_object);
        }
        Event::PresenceCleared => o.str("type", "presence_cleared"),
        Event::PeerJoined { peer } => {
            o.str("type", "peer_joined");
            o.key("peer");
            peer_object(o.out, peer);
        }
        Event::PeerLeft { peer } => {
            o.str("type", "peer_left");
            o.num("peer", *peer);
        }
        Event::Created { doc } => {
            o.str("type", "created");
            o.key("doc");
            doc_object(o.out, doc);
        }
        Event::Deleted { doc } => {
            o.str("type", "deleted");
            o.num("doc", *doc);
        }
        Event::Renamed { doc, path } => {
            o.str("type", "renamed");
            o.num("doc", *doc);
            o.str("path", path);
        }
        Event::Unshared { files } => {
            o.str("type", "unshared");
            o.array("files", files, unshared_object);
        }
        Event::RetryLater => o.str("type", "retry_later"),
        Event::Message { level, text, fatal } => {
            o.str("type", "message");
            o.str("level", level_name(*level));
            o.str("text", text);
            o.bool("fatal", *fatal);
        }
    }
    o.end();
}

fn peer_object(out: &mut String, peer: &PeerInfo) {
    let mut o = Object::new(out);
    o.num("peer", peer.peer);
    o.str("name", &peer.name);
    o.str("role", role_name(peer.role));
    o.str("color", &peer.color);
    o.end();
}

fn doc_object(out: &mut String, doc: &DocInfo) {
    let mut o = Object::new(out);
    o.num("doc", doc.doc);
    o.str("path", &doc.path);
    o.end();
}

fn unshared_object(out: &mut String, file: &UnsharedFile) {
    let mut o = Object::new(out);
    o.str("path", &file.path);
    o.str("reason", &file.reason);
    o.end();
}

fn change_object(out: &mut String, change: &Change) {
    let mut o = Object::new(out);
    o.num("from", change.from as u64);
    o.num("to", change.to as u64);
    o.str("insert", &change.insert);
    o.end();
}

fn range_object(out: &mut String, range: &Range) {
    let mut o = Object::new(out);
    o.num("anchor", range.anchor as u64);
    o.num("head", range.head as u64);
    o.end();
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Edit => "edit",
        Role::View => "view",
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Warning => "warning",
        Level::Error => "error",
    }
}

/// A JSON object being written: `{`, then `"key":value` pairs separated by commas, then `}`.
struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        string(self.out, key);
        self.out.push(':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    /// A number: document and peer ids stay below 2^53, where JavaScript's numbers are exact.
    fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn array<T>(&mut self, key: &str, items: &[T], write: fn(&mut String, &T)) {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write(self.out, item);
        }
        self.out.push(']');
    }

    fn end(self) {
        self.out.push('}');
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped; everything else as it is (UTF-8).
fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escaped);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn every_event_is_valid_json_with_every_kind_of_text_escaped() {
        let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 日本 😀 👩\u{200d}💻 \u{2028}";
        let peer = PeerInfo { peer: (1 << 53) - 1, name: tricky.into(), role: Role::View, color: "#ff0000".into() };
        let doc = DocInfo { doc: 7, path: "src/ä.rs".into() };
        let file = UnsharedFile { path: "logo.png".into(), reason: "binary".into() };
        let all = vec![
            Event::Welcome {
                session: "s".into(),
                peer: 3,
                name: "bea".into(),
                role: Role::Edit,
                token: "cc1.a-b_c.d".into(),
                peers: vec![peer.clone()],
                docs: vec![doc.clone()],
                unshared: vec![file.clone()],
                resumed: true,
            },
            Event::Loaded { doc: 7, path: "a".into(), text: tricky.into() },
            Event::Changes { doc: 7, changes: vec![Change { from: 1, to: 2, insert: tricky.into() }] },
            Event::Synced { doc: 7, synced: false },
            Event::Presence { doc: 7, peer: 3, selections: vec![Range { anchor: 4, head: 5 }] },
            Event::PresenceCleared,
            Event::PeerJoined { peer },
            Event::PeerLeft { peer: 3 },
            Event::Created { doc },
            Event::Deleted { doc: 7 },
            Event::Renamed { doc: 7, path: "b".into() },
            Event::Unshared { files: vec![file] },
            Event::RetryLater,
            Event::Message { level: Level::Warning, text: tricky.into(), fatal: true },
        ];
        let parsed: Vec<Value> = serde_json::from_str(&events(&all)).expect("valid JSON");
        assert_eq!(parsed.len(), all.len());
        assert_eq!(
            parsed[0],
            json!({
                "type": "welcome", "session": "s", "peer": 3, "name": "bea", "role": "edit", "token": "cc1.a-b_c.d",
                "peers": [{"peer": 9007199254740991u64, "name": tricky, "role": "view", "color": "#ff0000"}],
                "docs": [{"doc": 7, "path": "src/ä.rs"}],
                "unshared": [{"path": "logo.png", "reason": "binary"}],
                "resumed": true,
            })
        );
        assert_eq!(parsed[1]["text"], json!(tricky));
        assert_eq!(parsed[2]["changes"], json!([{"from": 1, "to": 2, "insert": tricky}]));
        assert_eq!(parsed[4]["selections"], json!([{"anchor": 4, "head": 5}]));
        assert_eq!(parsed[5], json!({"type": "presence_cleared"}));
        assert_eq!(parsed[6]["peer"]["role"], json!("view"));
        assert_eq!(parsed[8]["doc"], json!({"doc": 7, "path": "src/ä.rs"}));
        assert_eq!(parsed[12], json!({"type": "retry_later"}));
        assert_eq!(parsed[13], json!({"type": "message", "level": "warning", "text": tricky, "fatal": true}));
        assert_eq!(events(&[]), "[]");
    }
}
