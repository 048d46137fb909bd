//! The browser client's WebAssembly interface: a [`WebClient`] wraps one [`session::Session`]; the page passes it
//! what the WebSocket and the editor do, and takes frames to send and events ([`json`]) to act on.
//!
//! Document ids cross as JavaScript numbers (the server's ids stay far below 2^53); positions are the editor's
//! UTF-16 code units.

pub mod json;
pub mod session;

use codecollab_protocol::wire::DocId;
use session::{Change, Session};
use wasm_bindgen::prelude::*;

/// One browser tab's client of one session.
#[wasm_bindgen]
#[derive(Debug)]
pub struct WebClient {
    session: Session,
}

#[wasm_bindgen]
impl WebClient {
    /// `client_id`: 16 hex digits, random per page (the same across its reconnects); `name`: how others see us.
    #[wasm_bindgen(constructor)]
    pub fn new(client_id: &str, name: &str) -> Result<WebClient, JsError> {
        let id = u64::from_str_radix(client_id, 16).map_err(|_| JsError::new("a client id is 16 hex digits"))?;
        Ok(WebClient { session: Session::new(id, name) })
    }

    /// The WebSocket opened.
    pub fn connected(&mut self) {
        self.session.connected();
    }

    /// The WebSocket closed.
    pub fn disconnected(&mut self) {
        self.session.disconnected();
    }

    /// A binary frame from the server.
    pub fn receive(&mut self, frame: &[u8]) {
        self.session.receive(frame);
    }

    /// The page opens a document of the session.
    pub fn open(&mut self, doc: f64) -> Result<(), JsError> {
        self.session.open(doc_id(doc)?);
        Ok(())
    }

    /// The editor changed `doc`: replacement `i` takes `ranges[2i]..ranges[2i + 1]` of the text before them to
    /// `inserts[i]`.
    pub fn edit(&mut self, doc: f64, ranges: &[u32], inserts: Vec<String>) -> Result<(), JsError> {
        if ranges.len() != 2 * inserts.len() {
            return Err(JsError::new("an edit is two positions per inserted text"));
        }
        let changes: Vec<Change> = ranges
            .chunks_exact(2)
            .zip(inserts)
            .map(|(range, insert)| Change { from: range[0] as usize, to: range[1] as usize, insert })
            .collect();
        self.session.edit(doc_id(doc)?, &changes);
        Ok(())
    }

    /// The editor's selection in `doc`.
    pub fn cursor(&mut self, doc: f64, anchor: u32, head: u32) -> Result<(), JsError> {
        self.session.cursor(doc_id(doc)?, anchor as usize, head as usize);
        Ok(())
    }

    /// Sends again what the server could not take (after [`session::Event::RetryLater`]).
    pub fn retry(&mut self) {
        self.session.retry();
    }

    /// The next frame to send, if any.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.session.next_frame()
    }

    /// The events since the last call, as a JSON array.
    pub fn events(&mut self) -> String {
        json::events(&self.session.take_events())
    }

    /// A document's text as this client has it (`undefined` if it is not open).
    pub fn text(&self, doc: f64) -> Option<String> {
        self.session.text(doc_id(doc).ok()?)
    }

    /// Whether every edit of ours is stored by the server.
    pub fn synced(&self) -> bool {
        self.session.all_synced()
    }
}

fn doc_id(doc: f64) -> Result<DocId, JsError> {
    if doc.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&doc) {
        Ok(doc as DocId)
    } else {
        Err(JsError::new("a document id is a whole number"))
    }
}
