//! Fuzz target: the wire codec the server decodes every client frame with (and the daemon every server frame);
//! the checks are `codecollab_protocol::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|frame: &[u8]| codecollab_protocol::fuzzing::frame(frame));
