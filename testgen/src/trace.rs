//! Loads the editing traces in `shared/traces` (gzipped JSON, CC BY 4.0, see that folder's README).

use std::io::Read;
use std::path::PathBuf;

use codecollab_protocol::{EditText, Replacement, TextOperation};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Debug, Deserialize)]
pub struct Txn {
    /// `(position, deleted chars, inserted text)`, positions in chars, applied in order.
    pub patches: Vec<(usize, usize, String)>,
}

impl Txn {
    /// The transaction as one operation on a text of `len` chars: its patches applied in order.
    pub fn operation(&self, len: usize) -> TextOperation {
        let replacements: Vec<Replacement> =
            self.patches.iter().map(|(at, deleted, text)| Replacement::new(*at, at + deleted, text.as_str())).collect();
        TextOperation::from_replacements(len, &replacements).expect("trace patches are in bounds")
    }
}

/// `text` after every transaction of `trace`.
pub fn replay<T: EditText>(mut text: T, trace: &Trace) -> T {
    for txn in &trace.txns {
        txn.operation(text.len_chars()).apply_to(&mut text).expect("lengths match");
    }
    text
}

/// The folder holding the traces: `CODECOLLAB_TRACES`, else `../shared/traces` beside the repository.
pub fn traces_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CODECOLLAB_TRACES") {
        return PathBuf::from(dir);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    workspace.join("../shared/traces")
}

pub fn load(name: &str) -> Trace {
    let path = traces_dir().join(format!("{name}.json.gz"));
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open trace {} ({e}); set CODECOLLAB_TRACES", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json).expect("trace is valid gzip");
    serde_json::from_str(&json).expect("trace is valid JSON")
}

/// Names of every sequential trace in the folder.
pub fn sequential_traces() -> Vec<String> {
    let dir = traces_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the traces folder {} ({e}); set CODECOLLAB_TRACES", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json.gz")).map(str::to_owned))
        .filter(|name| load(name).kind.as_deref() != Some("concurrent"))
        .collect();
    names.sort();
    names
}
