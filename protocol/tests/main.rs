//! Integration tests of the protocol crate: laws, simulation, traces and codec, in one test binary.

mod codec;
mod fuzz_corpus;
mod laws;
mod merge;
mod simulation;
use codecollab_testgen as support;
mod traces;
