//! The binary codec for wire messages: MessagePack (`rmp-serde`, maps with field names) in an envelope that
//! carries the protocol version, `[version, message]`.
//!
//! Decoding is bounded (the caller passes the largest frame it accepts) and total: any byte string decodes to a
//! message or a [`DecodeError`], never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{ClientMsg, ServerMsg, PROTOCOL_VERSION};

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u64),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encoding only fails for types serde cannot represent, which none of the wire types are.
#[derive(Debug, thiserror::Error)]
#[error("could not encode message: {0}")]
pub struct EncodeError(#[from] rmp_serde::encode::Error);

fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    // Writing to a Vec cannot fail.
    rmp::encode::write_array_len(&mut out, 2).map_err(|e| EncodeError(e.into()))?;
    rmp::encode::write_uint(&mut out, u64::from(PROTOCOL_VERSION)).map_err(|e| EncodeError(e.into()))?;
    message.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())?;
    Ok(out)
}

fn decode<T: DeserializeOwned>(frame: &[u8], limit: usize) -> Result<T, DecodeError> {
    if frame.len() > limit {
        return Err(DecodeError::TooLarge { len: frame.len(), limit });
    }
    let mut rest = frame;
    let len = rmp::decode::read_array_len(&mut rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if len != 2 {
        return Err(DecodeError::Malformed(format!("envelope has {len} elements, expected 2")));
    }
    let version: u64 = rmp::decode::read_int(&mut rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
    let message = T::deserialize(&mut deserializer).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(message)
}

impl ClientMsg {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self)
    }

    /// Decodes a frame of at most `limit` bytes.
    pub fn decode(frame: &[u8], limit: usize) -> Result<Self, DecodeError> {
        decode(frame, limit)
    }
}

impl ServerMsg {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self)
    }

    /// Decodes a frame of at most `limit` bytes.
    pub fn decode(frame: &[u8], limit: usize) -> Result<Self, DecodeError> {
        decode(frame, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_checked_before_the_body() {
        let join = ClientMsg::Join { client_id: 7, name: None };
        let mut frame = join.encode().expect("encodes");
        assert_eq!(ClientMsg::decode(&frame, 1024), Ok(join));
        frame[1] = 9;
        assert_eq!(ClientMsg::decode(&frame, 1024), Err(DecodeError::UnsupportedVersion(9)));
        assert!(matches!(ClientMsg::decode(&frame, 3), Err(DecodeError::TooLarge { .. })));
    }
}
