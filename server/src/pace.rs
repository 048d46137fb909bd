//! Adaptive group commit for one document: which clients answer each acknowledgement at once, so the document
//! task can wait for their next operations and serve a whole round with one commit and one frame per subscriber.
//!
//! A client is *prompt* when its last operation arrived within [`PROMPT`] of the acknowledgement of the one
//! before: a replaying tool, a bot, a load test. People typing take tens of milliseconds between keystrokes and
//! are never prompt, so for them nothing waits. When the task holds a batch while a prompt client has been
//! acknowledged and has not sent again, it waits up to [`LINGER`] for that client (an operation is at most one
//! round trip away); one that does not come in time stops being prompt until it proves prompt again.
//!
//! Without this, operations from clients in a closed loop arrive spread over a round trip, the task commits
//! whatever has arrived, and the clients fall into several smaller groups, each paying its own commit and its own
//! frame to every subscriber (PostgreSQL's `commit_delay` and MySQL's group-commit delay answer the same problem
//! with a fixed delay; this one waits only for operations that are known to be coming).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codecollab_protocol::ClientId;

/// Longest time between an acknowledgement and the client's next operation for the client to count as prompt.
pub const PROMPT: Duration = Duration::from_millis(2);
/// Longest wait for prompt clients' operations (tokio's timer adds up to a millisecond).
pub const LINGER: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
struct ClientPace {
    /// When its last operation was acknowledged, while no newer one has arrived.
    acked_at: Option<Instant>,
    prompt: bool,
}

#[derive(Debug, Default)]
pub struct Pace {
    clients: HashMap<ClientId, ClientPace>,
}

impl Pace {
    /// An operation from `client` arrived at `now`.
    pub fn arrived(&mut self, client: ClientId, now: Instant) {
        let pace = self.clients.entry(client).or_default();
        if let Some(acked) = pace.acked_at.take() {
            pace.prompt = now.saturating_duration_since(acked) <= PROMPT;
        }
    }

    /// `client`'s operation was acknowledged at `now`.
    pub fn acknowledged(&mut self, client: ClientId, now: Instant) {
        self.clients.entry(client).or_default().acked_at = Some(now);
    }

    /// Prompt clients that were acknowledged and have not sent again (an operation that has arrived, in the batch
    /// or not, clears its client's acknowledgement).
    pub fn awaited(&self) -> Vec<ClientId> {
        self.clients
            .iter()
            .filter(|(_, pace)| pace.prompt && pace.acked_at.is_some())
            .map(|(client, _)| *client)
            .collect()
    }

    /// The wait ran out: these awaited clients did not come and are no longer prompt.
    pub fn expired(&mut self, missing: &[ClientId]) {
        for client in missing {
            if let Some(pace) = self.clients.get_mut(client) {
                pace.prompt = false;
            }
        }
    }

    /// The client left the document.
    pub fn forget(&mut self, client: ClientId) {
        self.clients.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clients_that_answer_at_once_are_awaited() {
        let start = Instant::now();
        let mut pace = Pace::default();
        // Client 1 answers each acknowledgement within microseconds; client 2 like a person typing.
        for (client, think) in [(1, Duration::from_micros(200)), (2, Duration::from_millis(80))] {
            pace.arrived(client, start);
            pace.acknowledged(client, start);
            pace.arrived(client, start + think);
            pace.acknowledged(client, start + think);
        }
        assert_eq!(pace.awaited(), [1], "only the prompt client is awaited");
        pace.expired(&[1]);
        assert!(pace.awaited().is_empty(), "a prompt client that did not come is no longer awaited");
        pace.arrived(1, start + Duration::from_millis(100));
        pace.acknowledged(1, start + Duration::from_millis(100));
        pace.arrived(1, start + Duration::from_micros(100_300));
        pace.acknowledged(1, start + Duration::from_micros(100_300));
        assert_eq!(pace.awaited(), [1], "until it proves prompt again");
        pace.arrived(1, start + Duration::from_micros(100_400));
        assert!(pace.awaited().is_empty(), "not once its next operation has arrived");
        pace.acknowledged(1, start + Duration::from_micros(100_400));
        pace.forget(1);
        assert!(pace.awaited().is_empty(), "nor once it has left");
    }
}
