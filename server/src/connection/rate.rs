//! The token bucket that bounds one connection's operations and cursor updates per second.

use std::time::Instant;

/// Up to `burst` at once, refilled at `rate` per second.
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    updated: Instant,
}

impl RateLimit {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimit { tokens: f64::from(burst), rate: f64::from(rate), burst: f64::from(burst), updated: Instant::now() }
    }

    /// Takes one token; false if none is left.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn a_burst_then_refusals() {
        let mut rate = RateLimit::new(1, 3);
        assert!((0..3).all(|_| rate.take()));
        assert!(!rate.take());
    }
}
