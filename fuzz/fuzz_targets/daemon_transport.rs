//! Fuzz target: the daemon as an editor drives it over stdio (LSP framing, JSON-RPC, the `collab/*` params), from
//! the fuzzer's bytes; the run is `codecollab_daemon::fuzzing::editor_input`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| codecollab_daemon::fuzzing::editor_input(input));
