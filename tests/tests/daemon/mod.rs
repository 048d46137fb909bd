//! The daemon through its real binary over stdio, driven by scripted editors that follow the editor protocol,
//! against a real server.

mod approval;
mod chaos;
mod editing;
mod faults;
mod files;
mod hostile;
mod lifecycle;
mod presence;
mod resync;
mod undo;
