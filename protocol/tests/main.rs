//! Integration tests of the protocol crate: laws, simulation, undo, traces and codec, in one test binary.

mod codec;
mod fuzz_corpus;
mod laws;
mod merge;
mod simulation;
mod undo;
use codecollab_testgen as support;
mod traces;
