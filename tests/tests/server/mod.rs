//! The relay server through its real WebSocket endpoint (in-process on 127.0.0.1:0, or the real binary where
//! process death matters).

mod bad_input;
mod cluster;
mod convergence;
mod durability;
mod operations;
mod resume;
mod tls;
