//! Compact serialization of operations, as in ot.js: a sequence where a positive integer retains, a negative
//! integer deletes and a string inserts. Deserializing validates and normalizes, so a peer cannot smuggle in an
//! operation that breaks the normal form or overflows a length.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::operation::{char_len, Component, TextOperation};

/// The largest length, in chars, an operation may consume or produce: far above any document size a server
/// accepts, and small enough that no sum of lengths can overflow (2^40 where `usize` has 64 bits; a quarter of the
/// range on 32-bit targets, such as the browser's WebAssembly).
pub const MAX_OPERATION_LEN: usize = if usize::BITS > 32 { 1 << (usize::BITS - 24) } else { 1 << 30 };

impl Serialize for TextOperation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.components.len()))?;
        for component in &self.components {
            match component {
                Component::Retain(n) => seq.serialize_element(&(*n as i64))?,
                Component::Delete(n) => seq.serialize_element(&-(*n as i64))?,
                Component::Insert(s) => seq.serialize_element(s.as_str())?,
            }
        }
        seq.end()
    }
}

/// One element of the serialized form, before validation.
enum RawComponent {
    Count(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawComponent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl Visitor<'_> for RawVisitor {
            type Value = RawComponent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawComponent, E> {
                Ok(RawComponent::Count(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawComponent, E> {
                i64::try_from(v).map(RawComponent::Count).map_err(|_| E::custom("component length out of range"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawComponent, E> {
                Ok(RawComponent::Text(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<RawComponent, E> {
                Ok(RawComponent::Text(v))
            }
        }

        deserializer.deserialize_any(RawVisitor)
    }
}

impl<'de> Deserialize<'de> for TextOperation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OperationVisitor;

        impl<'de> Visitor<'de> for OperationVisitor {
            type Value = TextOperation;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of non-zero integers (retain > 0, delete < 0) and non-empty strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOperation, A::Error> {
                let mut op = TextOperation::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(raw) = seq.next_element::<RawComponent>()? {
                    let (consumed, produced) = match &raw {
                        RawComponent::Count(0) => return Err(de::Error::custom("zero-length component")),
                        RawComponent::Count(n) if *n > 0 => (*n as u64, *n as u64),
                        RawComponent::Count(n) => (n.unsigned_abs(), 0),
                        RawComponent::Text(s) if s.is_empty() => return Err(de::Error::custom("empty insert")),
                        RawComponent::Text(s) => (0, char_len(s) as u64),
                    };
                    let limit = MAX_OPERATION_LEN as u64;
                    if op.base_len as u64 + consumed > limit || op.target_len as u64 + produced > limit {
                        return Err(de::Error::custom("operation longer than the maximum document length"));
                    }
                    match raw {
                        RawComponent::Count(n) if n > 0 => op.retain(n as usize),
                        RawComponent::Count(n) => op.delete(n.unsigned_abs() as usize),
                        RawComponent::Text(s) => op.insert(&s),
                    };
                }
                Ok(op)
            }
        }

        deserializer.deserialize_seq(OperationVisitor)
    }
}
