//! A refusal: the error code and message a client is sent when the server will not do what it asked.

use codecollab_protocol::wire::ErrorCode;

use crate::store::StoreError;

/// A refusal to send back to the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }

    /// The store failed: logged here with its cause; the client is told only that it could not be stored.
    pub fn storage(error: StoreError) -> Self {
        tracing::error!(%error, "store request failed");
        Refusal::new(ErrorCode::StorageFailure, "the server could not store the change")
    }
}
