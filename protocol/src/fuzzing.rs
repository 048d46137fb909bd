//! The checks the fuzz targets (`fuzz/`) run on each input, here so that the test suite replays the kept corpus and
//! every regression through the very same code on the stable toolchain: any input may be refused, none may panic,
//! and what is accepted must obey the codec's round trip and the operation algebra.

use crate::ot::transform;
use crate::wire::{ClientMsg, ServerMsg};
use crate::{Document, DocumentLimits, TextOperation};

const LIMIT: usize = 1 << 20;

/// The wire codec: any bytes decode to messages or to a typed error, and what decodes encodes and decodes again
/// to the same messages.
pub fn frame(frame: &[u8]) {
    if let Ok(msg) = ClientMsg::decode(frame, LIMIT) {
        let again = msg.encode().expect("a decoded message encodes");
        assert_eq!(ClientMsg::decode(&again, LIMIT).expect("and decodes again"), msg);
    }
    if let Ok(messages) = ServerMsg::decode_all(frame, LIMIT) {
        for msg in messages {
            let again = msg.encode().expect("a decoded message encodes");
            assert_eq!(ServerMsg::decode(&again, LIMIT).expect("and decodes again"), msg);
        }
    }
}

/// Operations as they arrive from the network, applied to and transformed against documents. The input is a
/// MessagePack array `[text, op_a, op_b, base_revision]`; other bytes only go through the operation decoder.
pub fn operations(input: &[u8]) {
    let Ok((text, a, b, base)) = rmp_serde::from_slice::<(String, TextOperation, TextOperation, u64)>(input) else {
        let _ = rmp_serde::from_slice::<TextOperation>(input);
        return;
    };
    let len = text.chars().count();
    match a.apply(&text) {
        Ok(after) => {
            let inverse = a.invert(&text).expect("an operation that applies inverts");
            assert_eq!(inverse.apply(&after).expect("the inverse applies"), text);
            let mut rope = ropey::Rope::from_str(&text);
            a.apply_to(&mut rope).expect("applies to a rope as to a string");
            assert_eq!(rope.to_string(), after);
            if let Ok(after_b) = b.apply(&after) {
                let composed = a.compose(&b).expect("consecutive operations compose");
                assert_eq!(composed.apply(&text).expect("the composition applies"), after_b);
            }
        }
        Err(_) => assert_ne!(a.base_len(), len, "an operation of the right length applies"),
    }
    if a.base_len() == len && b.base_len() == len {
        let (a2, b2) = transform(&a, &b).expect("operations on one document transform");
        let left = b2.apply(&a.apply(&text).expect("applies")).expect("b' applies after a");
        let right = a2.apply(&b.apply(&text).expect("applies")).expect("a' applies after b");
        assert_eq!(left, right, "transform converges");
    }
    // The server's document: two clients' operations at a base revision that may be anything.
    let mut doc = Document::new(&text, 3, DocumentLimits { history: 4, max_chars: 1 << 16 });
    let before = doc.text().to_string();
    if doc.receive(1, 1, base, &a).is_err() {
        assert_eq!(doc.text().to_string(), before, "a refused operation changes nothing");
    }
    let _ = doc.receive(2, 1, base.saturating_sub(1), &b);
    let _ = doc.receive(1, 1, base, &a);
}
