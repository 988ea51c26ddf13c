//! Sign-in attempts per client address: a token bucket each, so guessing keys through
//! the sign-in form is slow, and a bounded number of buckets, so many addresses cannot
//! grow memory without limit.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use parking_lot::Mutex;
use std::time::Instant;

/// A connection's client address, for the per-client sign-in limit. Serve the router
/// with `into_make_service_with_connect_info::<ClientAddr>()`, over an
/// [`ApiListener`](crate::ApiListener) or a plain `TcpListener`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, crate::ApiListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, crate::ApiListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// How many attempts a client may make at once, and how fast it earns more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignInRate {
    /// Attempts allowed in a burst.
    pub burst: u32,
    /// Attempts regained per minute.
    pub per_minute: u32,
    /// Clients tracked at most; past it the longest-quiet client's bucket is dropped.
    pub max_clients: usize,
}

impl Default for SignInRate {
    fn default() -> Self {
        Self {
            burst: 10,
            per_minute: 10,
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per client address.
#[derive(Debug)]
pub struct SignInLimiter {
    rate: SignInRate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self::new(SignInRate::default())
    }
}

impl SignInLimiter {
    /// Buckets of `rate`, none yet.
    #[must_use]
    pub fn new(rate: SignInRate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(b.at).as_secs_f64()
            * f64::from(self.rate.per_minute)
            / 60.0;
        (b.tokens + earned).min(f64::from(self.rate.burst))
    }

    /// Takes one attempt for `client`.
    ///
    /// # Errors
    /// The client has no attempt left: the error says when the next one is earned.
    pub fn attempt(&self, client: IpAddr) -> Result<(), Duration> {
        self.attempt_at(client, Instant::now())
    }

    fn attempt_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= self.rate.max_clients && !buckets.contains_key(&client) {
            let burst = f64::from(self.rate.burst);
            buckets.retain(|_, b| self.refilled(*b, now) < burst);
            while buckets.len() >= self.rate.max_clients.max(1) {
                let Some(quietest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
                else {
                    break;
                };
                buckets.remove(&quietest);
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: f64::from(self.rate.burst),
            at: now,
        });
        let tokens = self.refilled(*bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            let per_sec = f64::from(self.rate.per_minute.max(1)) / 60.0;
            Err(Duration::from_secs_f64((1.0 - tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_attempt_per_six_seconds() {
        let limiter = SignInLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.attempt_at(a, t0).is_ok());
        }
        let wait = limiter.attempt_at(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        assert!(
            limiter.attempt_at(b, t0).is_ok(),
            "another client has its own bucket"
        );
        let later = t0 + Duration::from_secs(6);
        assert!(limiter.attempt_at(a, later).is_ok());
        assert!(limiter.attempt_at(a, later).is_err());
    }

    #[test]
    fn the_number_of_clients_is_bounded() {
        let limiter = SignInLimiter::new(SignInRate {
            max_clients: 2,
            ..SignInRate::default()
        });
        let t0 = Instant::now();
        for i in 0..50u8 {
            let _ = limiter.attempt_at(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_millis(10 * u64::from(i)),
            );
        }
        assert!(limiter.buckets.lock().len() <= 2);
    }
}
