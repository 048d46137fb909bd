//! Integration tests of the protocol crate.
