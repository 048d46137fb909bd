//! The binary codec for wire messages: MessagePack (`rmp-serde`, maps with field names) in an envelope that
//! carries the protocol version, `[version, message]`. A server frame may carry several messages in order,
//! `[version, message, message, ...]`: the server batches what one commit produces for one client.
//!
//! Decoding is bounded (the caller passes the largest frame it accepts) and total: any byte string decodes to a
//! message or a [`DecodeError`], never a panic.
//!
//! The messages sent for every keystroke and cursor move (`op`, `ack`, `cursor`, `presence`) have a fast path.
//! serde decodes an internally tagged enum by first copying the whole map into a buffer of generic values, since
//! the tag may come last; that was a tenth of a client's CPU time under load. Our encoders always write `type`
//! first, so the fast path reads the fields in place. Any message it does not recognize exactly (another tag,
//! `type` not first, a field missing or repeated, a value of another type) takes the general path, which gives the
//! same message or a precise error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ot::{Selection, TextOperation};
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

/// A message type with a fast path for its common messages.
trait Message: DeserializeOwned {
    /// The message in `body` (one MessagePack value), if the fast path recognizes it exactly.
    fn fast(body: &[u8]) -> Option<Self>;
}

impl Message for ClientMsg {
    fn fast(body: &[u8]) -> Option<Self> {
        let (tag, mut fields) = Fields::tagged(body)?;
        match tag {
            "op" => {
                let (mut doc, mut seq, mut base_revision, mut op) = (None, None, None, None);
                while let Some(key) = fields.next_key()? {
                    match key {
                        "doc" => once(&mut doc, fields.uint()?)?,
                        "seq" => once(&mut seq, fields.uint()?)?,
                        "base_revision" => once(&mut base_revision, fields.uint()?)?,
                        "op" => once(&mut op, fields.value::<TextOperation>()?)?,
                        _ => fields.skip()?,
                    }
                }
                fields.finish(ClientMsg::Op { doc: doc?, seq: seq?, base_revision: base_revision?, op: op? })
            }
            "cursor" => {
                let (mut doc, mut revision, mut selections) = (None, None, None);
                while let Some(key) = fields.next_key()? {
                    match key {
                        "doc" => once(&mut doc, fields.uint()?)?,
                        "revision" => once(&mut revision, fields.uint()?)?,
                        "selections" => once(&mut selections, fields.value::<Vec<Selection>>()?)?,
                        _ => fields.skip()?,
                    }
                }
                fields.finish(ClientMsg::Cursor { doc: doc?, revision: revision?, selections: selections? })
            }
            _ => None,
        }
    }
}

impl Message for ServerMsg {
    fn fast(body: &[u8]) -> Option<Self> {
        let (tag, mut fields) = Fields::tagged(body)?;
        match tag {
            "op" => {
                let (mut doc, mut revision, mut peer, mut op) = (None, None, None, None);
                while let Some(key) = fields.next_key()? {
                    match key {
                        "doc" => once(&mut doc, fields.uint()?)?,
                        "revision" => once(&mut revision, fields.uint()?)?,
                        "peer" => once(&mut peer, fields.uint()?)?,
                        "op" => once(&mut op, fields.value::<TextOperation>()?)?,
                        _ => fields.skip()?,
                    }
                }
                fields.finish(ServerMsg::Op { doc: doc?, revision: revision?, peer: peer?, op: op? })
            }
            "ack" => {
                let (mut doc, mut seq, mut revision) = (None, None, None);
                while let Some(key) = fields.next_key()? {
                    match key {
                        "doc" => once(&mut doc, fields.uint()?)?,
                        "seq" => once(&mut seq, fields.uint()?)?,
                        "revision" => once(&mut revision, fields.uint()?)?,
                        _ => fields.skip()?,
                    }
                }
                fields.finish(ServerMsg::Ack { doc: doc?, seq: seq?, revision: revision? })
            }
            "presence" => {
                let (mut doc, mut peer, mut revision, mut selections) = (None, None, None, None);
                while let Some(key) = fields.next_key()? {
                    match key {
                        "doc" => once(&mut doc, fields.uint()?)?,
                        "peer" => once(&mut peer, fields.uint()?)?,
                        "revision" => once(&mut revision, fields.uint()?)?,
                        "selections" => once(&mut selections, fields.value::<Vec<Selection>>()?)?,
                        _ => fields.skip()?,
                    }
                }
                fields.finish(ServerMsg::Presence {
                    doc: doc?,
                    peer: peer?,
                    revision: revision?,
                    selections: selections?,
                })
            }
            _ => None,
        }
    }
}

/// Sets a field seen for the first time; `None` (decline) for a repeated one.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// The rest of a message map after its `type` entry, read in place.
struct Fields<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Fields<'a> {
    /// The tag of a map whose first entry is `type`, and the entries after it.
    fn tagged(body: &'a [u8]) -> Option<(&'a str, Fields<'a>)> {
        let mut rest = body;
        let len = rmp::decode::read_map_len(&mut rest).ok()?;
        let mut fields = Fields { rest, remaining: len };
        if fields.next_key()? != Some("type") {
            return None;
        }
        let tag = fields.str()?;
        Some((tag, fields))
    }

    /// The next key; `Some(None)` after the last entry.
    fn next_key(&mut self) -> Option<Option<&'a str>> {
        if self.remaining == 0 {
            return Some(None);
        }
        self.remaining -= 1;
        self.str().map(Some)
    }

    fn str(&mut self) -> Option<&'a str> {
        let (s, rest) = rmp::decode::read_str_from_slice(self.rest).ok()?;
        self.rest = rest;
        Some(s)
    }

    fn uint(&mut self) -> Option<u64> {
        rmp::decode::read_int(&mut self.rest).ok()
    }

    fn value<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let value = split_value(&mut self.rest).ok()?;
        T::deserialize(&mut rmp_serde::Deserializer::from_read_ref(value)).ok()
    }

    fn skip(&mut self) -> Option<()> {
        split_value(&mut self.rest).ok().map(|_| ())
    }

    /// `message`, if the map held nothing after its entries.
    fn finish<T>(self, message: T) -> Option<T> {
        self.rest.is_empty().then_some(message)
    }
}

fn truncated() -> DecodeError {
    DecodeError::Malformed("truncated MessagePack value".into())
}

/// Splits the first MessagePack value off `input` without decoding it. Iterative (a count of values still to
/// skip), so hostile nesting costs no stack; a count beyond the bytes left fails at once.
pub(crate) fn split_value<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let bytes = *input;
    let mut at = 0;
    let mut pending: usize = 1;
    // A big-endian length of `n` bytes at `at`.
    let length = |at: usize, n: usize| -> Result<usize, DecodeError> {
        let field = bytes.get(at..at + n).ok_or_else(truncated)?;
        Ok(field.iter().fold(0, |len, &b| (len << 8) | usize::from(b)))
    };
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(at).ok_or_else(truncated)?;
        at += 1;
        // (bytes of a length field, bytes after it, values inside) per marker, from the MessagePack spec.
        let (skip, children) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (1 + length(at, 1)?, 0),
            0xc5 | 0xda => (2 + length(at, 2)?, 0),
            0xc6 | 0xdb => (4 + length(at, 4)?, 0),
            0xc7 => (1 + 1 + length(at, 1)?, 0),
            0xc8 => (2 + 1 + length(at, 2)?, 0),
            0xc9 => (4 + 1 + length(at, 4)?, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, length(at, 2)?),
            0xdd => (4, length(at, 4)?),
            0xde => (2, 2 * length(at, 2)?),
            0xdf => (4, 2 * length(at, 4)?),
            0xc1 => return Err(DecodeError::Malformed("reserved MessagePack marker 0xc1".into())),
        };
        at = at.checked_add(skip).filter(|&end| end <= bytes.len()).ok_or_else(truncated)?;
        pending += children;
        // Every value takes at least a byte.
        if pending > bytes.len() - at {
            return Err(truncated());
        }
    }
    let (value, rest) = bytes.split_at(at);
    *input = rest;
    Ok(value)
}

/// Decodes the envelope and its `1..=max_messages` messages.
fn decode_frame<T: Message>(frame: &[u8], limit: usize, max_messages: u32) -> Result<Vec<T>, DecodeError> {
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
        let body = split_value(&mut rest)?;
        let message = match T::fast(body) {
            Some(message) => message,
            None => T::deserialize(&mut rmp_serde::Deserializer::from_read_ref(body))
                .map_err(|e| DecodeError::Malformed(e.to_string()))?,
        };
        messages.push(message);
    }
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(messages)
}

fn decode<T: Message>(frame: &[u8], limit: usize) -> Result<T, DecodeError> {
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
    use crate::wire::ErrorCode;

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

    /// The general path alone, for comparison.
    fn general<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
        T::deserialize(&mut rmp_serde::Deserializer::from_read_ref(body)).map_err(|e| e.to_string())
    }

    fn op(text: &str) -> TextOperation {
        TextOperation::replace(3, 1, 2, text).expect("valid")
    }

    fn selections() -> Vec<Selection> {
        vec![Selection { anchor: 1, head: 3 }, Selection::caret(0)]
    }

    #[test]
    fn the_fast_path_decodes_exactly_what_the_general_path_does() {
        let hot_client = [
            ClientMsg::Op { doc: 1, seq: 2, base_revision: 3, op: op("日本😀") },
            ClientMsg::Cursor { doc: u64::MAX, revision: 0, selections: selections() },
        ];
        for msg in hot_client {
            let body = rmp_serde::to_vec_named(&msg).expect("encodes");
            assert_eq!(ClientMsg::fast(&body).as_ref(), Some(&msg));
            assert_eq!(general::<ClientMsg>(&body), Ok(msg));
        }
        let hot_server = [
            ServerMsg::Op { doc: 1, revision: 300, peer: 2, op: op("é") },
            ServerMsg::Ack { doc: 1, seq: 70_000, revision: 1 << 40 },
            ServerMsg::Presence { doc: 1, peer: 2, revision: 3, selections: selections() },
        ];
        for msg in hot_server {
            let body = msg.encode_body().expect("encodes");
            assert_eq!(ServerMsg::fast(&body).as_ref(), Some(&msg));
            assert_eq!(general::<ServerMsg>(&body), Ok(msg));
        }
        let others = [ServerMsg::Subscribed { doc: 1, revision: 2 }, ServerMsg::PeerLeft { peer: 3 }];
        for msg in others {
            assert_eq!(ServerMsg::fast(&msg.encode_body().expect("encodes")), None, "left to the general path");
        }
    }

    /// A map of `entries`, each value already encoded.
    fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_map_len(&mut out, entries.len() as u32).expect("vec");
        for (key, value) in entries {
            rmp::encode::write_str(&mut out, key).expect("vec");
            out.extend_from_slice(value);
        }
        out
    }

    fn uint(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_uint(&mut out, n).expect("vec");
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_str(&mut out, s).expect("vec");
        out
    }

    #[test]
    fn unusual_maps_get_the_general_paths_answer() {
        let ack = |entries: &[(&str, Vec<u8>)]| map(entries);
        let cases = [
            // `type` last, an unknown field, a repeated field, a missing field, a negative number, a string number.
            ack(&[("doc", uint(1)), ("seq", uint(2)), ("revision", uint(3)), ("type", string("ack"))]),
            ack(&[
                ("type", string("ack")),
                ("doc", uint(1)),
                ("x", string("?")),
                ("seq", uint(2)),
                ("revision", uint(3)),
            ]),
            ack(&[
                ("type", string("ack")),
                ("doc", uint(1)),
                ("doc", uint(1)),
                ("seq", uint(2)),
                ("revision", uint(3)),
            ]),
            ack(&[("type", string("ack")), ("doc", uint(1)), ("seq", uint(2))]),
            ack(&[("type", string("ack")), ("doc", vec![0xff]), ("seq", uint(2)), ("revision", uint(3))]),
            ack(&[("type", string("ack")), ("doc", string("1")), ("seq", uint(2)), ("revision", uint(3))]),
            ack(&[("type", string("nope"))]),
            ack(&[]),
        ];
        for body in cases {
            let general = general::<ServerMsg>(&body);
            if let Some(msg) = ServerMsg::fast(&body) {
                assert_eq!(Ok(msg), general, "{body:x?}");
            }
            let frame = frame_of_bodies([body.as_slice()]);
            assert_eq!(ServerMsg::decode(&frame, 1024).map_err(|_| ()), general.map_err(|_| ()), "{body:x?}");
        }
    }

    #[test]
    fn values_split_where_messagepack_says_they_end() {
        let msgs = [
            ServerMsg::Op { doc: 1, revision: 300, peer: 2, op: op(&"x".repeat(70_000)) },
            ServerMsg::Error { code: ErrorCode::Malformed, message: "m".repeat(300), doc: None },
            ServerMsg::Presence { doc: 1, peer: 2, revision: 3, selections: vec![Selection::caret(7); 20] },
        ];
        for msg in msgs {
            let body = msg.encode_body().expect("encodes");
            let joined = [body.as_slice(), &[0x01]].concat();
            let mut two = joined.as_slice();
            assert_eq!(split_value(&mut two), Ok(body.as_slice()));
            assert_eq!(two, [0x01]);
            for cut in 0..body.len() {
                assert!(split_value(&mut &body[..cut]).is_err(), "cut at {cut}");
            }
        }
        // Every kind of scalar, and hostile counts: an array claiming 2^32 - 1 elements in six bytes.
        let scalars: [&[u8]; 9] = [
            &[0xc0],
            &[0xca, 0, 0, 0, 0],
            &[0xd3, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xd8; 18],
            &[0xc7, 1, 9, 9],
            &[0xc4, 2, 0, 0],
            &[0xdb, 0, 0, 0, 1, b'a'],
            &[0x92, 0xe0, 0x7f],
            &[0x81, 0xa1, b'k', 0xc3],
        ];
        for value in scalars {
            assert_eq!(split_value(&mut &value[..]), Ok(value), "{value:x?}");
        }
        assert!(split_value(&mut &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x00][..]).is_err());
        assert!(split_value(&mut &[0xc1][..]).is_err());
    }
}
