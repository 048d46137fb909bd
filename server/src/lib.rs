//! `codecollab-server`, the relay: it orders every edit per document, stores it durably before acknowledging
//! it, and relays edits and presence to everyone else in the session.
//!
//! - [`server`]: the accept loop and shutdown; [`shared`]: what every connection shares, with the registry of
//!   live sessions; [`connection`]: one task per connection (upgrade and authentication, the WebSocket loop, the
//!   message handler, the rate limit); [`http`]: the request head, `/healthz`, `/metrics`; [`refusal`]: the
//!   error a client is sent.
//! - [`session`]: one task per session (peers, documents by path, invites, removal);
//!   [`document`]: one task per document (sequencing, group commit, broadcast, presence); [`pace`]: which of
//!   its clients answer at once, for adaptive group commit.
//! - [`store`]: the storage interface, its SQLite implementation and the group-commit thread.
//! - [`auth`]: signed tokens and the server secret; [`throttle`]: failed authentications per address; [`tls`]:
//!   rustls; [`config`]: flags, env and TOML;
//!   [`metrics`]: Prometheus counters; [`outbox`]: the bounded queue toward each connection.

pub mod auth;
pub mod config;
pub mod connection;
pub mod document;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod pace;
pub mod refusal;
pub mod server;
pub mod session;
pub mod shared;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::run;
