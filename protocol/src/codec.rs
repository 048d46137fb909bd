//! The binary codec for wire messages: MessagePack (`rmp-serde`, maps with field names) in an envelope that
//! carries the protocol version, `[version, message]`. A server frame may carry several messages in order,
//! `[version, message, message, ...]`: the server batches what one commit produces for one client.
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

/// Encodes one message without the envelope, to be put in a frame with [`frame_of_bodies`].
fn encode_body<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(48);
    message.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())?;
    Ok(out)
}

/// A frame holding already-encoded message bodies, in order.
pub fn frame_of_bodies<'a, I>(bodies: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let bodies = bodies.into_iter();
    let mut out = Vec::with_capacity(64);
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_array_len(&mut out, bodies.len() as u32 + 1);
    let _ = rmp::encode::write_uint(&mut out, u64::from(PROTOCOL_VERSION));
    for body in bodies {
        out.extend_from_slice(body);
    }
    out
}

/// Decodes the envelope and its `1..=max_messages` messages.
fn decode_frame<T: DeserializeOwned>(frame: &[u8], limit: usize, max_messages: u32) -> Result<Vec<T>, DecodeError> {
    if frame.len() > limit {
        return Err(DecodeError::TooLarge { len: frame.len(), limit });
    }
    let mut rest = frame;
    let len = rmp::decode::read_array_len(&mut rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if len < 2 || len - 1 > max_messages {
        return Err(DecodeError::Malformed(format!("envelope has {len} elements")));
    }
    let version: u64 = rmp::decode::read_int(&mut rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // Every message takes at least one byte, so `len` is bounded by the frame size already.
    let mut messages = Vec::with_capacity((len as usize - 1).min(frame.len()));
    for _ in 1..len {
        let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
        messages.push(T::deserialize(&mut deserializer).map_err(|e| DecodeError::Malformed(e.to_string()))?);
    }
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(messages)
}

fn decode<T: DeserializeOwned>(frame: &[u8], limit: usize) -> Result<T, DecodeError> {
    let mut messages = decode_frame(frame, limit, 1)?;
    messages.pop().ok_or_else(|| DecodeError::Malformed("empty frame".into()))
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

    /// The message without the envelope, for [`frame_of_bodies`].
    pub fn encode_body(&self) -> Result<Vec<u8>, EncodeError> {
        encode_body(self)
    }

    /// Decodes a frame of at most `limit` bytes holding exactly one message.
    pub fn decode(frame: &[u8], limit: usize) -> Result<Self, DecodeError> {
        decode(frame, limit)
    }

    /// Decodes a frame of at most `limit` bytes holding one or more messages, in order.
    pub fn decode_all(frame: &[u8], limit: usize) -> Result<Vec<Self>, DecodeError> {
        decode_frame(frame, limit, u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_several_server_messages() {
        let a = ServerMsg::Ack { doc: 1, seq: 2, revision: 3 };
        let b = ServerMsg::PeerLeft { peer: 4 };
        let bodies = [a.encode_body().expect("encodes"), b.encode_body().expect("encodes")];
        let frame = frame_of_bodies(bodies.iter().map(Vec::as_slice));
        assert_eq!(ServerMsg::decode_all(&frame, 1024), Ok(vec![a.clone(), b]));
        assert!(ServerMsg::decode(&frame, 1024).is_err(), "one message expected");
        assert_eq!(ServerMsg::decode_all(&a.encode().expect("encodes"), 1024), Ok(vec![a]));
        for cut in 0..frame.len() {
            assert!(ServerMsg::decode_all(&frame[..cut], 1024).is_err());
        }
    }

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
