//! Fuzz target: operations as they arrive from the network, applied to and transformed against documents; the
//! checks are `codecollab_protocol::fuzzing::operations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| codecollab_protocol::fuzzing::operations(input));
