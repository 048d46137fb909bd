//! Failed authentications per address: an address that fails too often within a minute is refused (HTTP 429)
//! until the minute is over, whatever token it brings, so guessing tokens costs a minute per handful of guesses.
//! The table is bounded: expired entries go first, and past [`MAX_ADDRESSES`] the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which failures are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; a flood from many addresses cannot grow the table past this.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct AuthThrottle {
    /// Failures allowed per address within [`WINDOW`]; 0 turns the throttle off.
    limit: u32,
    /// Per address: failures in the current window, and when that window started. A std mutex: held for a lookup,
    /// never across an await.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    pub fn new(limit: u32) -> AuthThrottle {
        AuthThrottle { limit, failures: Mutex::new(HashMap::new()) }
    }

    /// If `address` has failed too often, how long until it may try again.
    pub fn blocked(&self, address: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let &(count, started) = failures.get(&address)?;
        let left = WINDOW.checked_sub(started.elapsed())?;
        (count >= self.limit).then_some(left)
    }

    /// Counts a failed authentication from `address`.
    pub fn failed(&self, address: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (_, started)| started.elapsed() < WINDOW);
            if failures.len() >= MAX_ADDRESSES {
                let oldest = failures.iter().min_by_key(|(_, (_, started))| *started).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_the_limit_and_others_are_not() {
        let throttle = AuthThrottle::new(3);
        let (guesser, other) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..2 {
            throttle.failed(guesser);
        }
        assert_eq!(throttle.blocked(guesser), None);
        throttle.failed(guesser);
        assert!(throttle.blocked(guesser).is_some_and(|left| left <= WINDOW));
        assert_eq!(throttle.blocked(other), None);
        assert_eq!(AuthThrottle::new(0).blocked(guesser), None, "0 turns it off");
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = AuthThrottle::new(1);
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            throttle.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(throttle.failures.lock().expect("not poisoned").len() <= MAX_ADDRESSES);
    }
}
