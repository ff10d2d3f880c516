//! Per-IP rate limits on writes: a token bucket per address, in a bounded map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most addresses tracked at once. Past this, buckets that are full again are dropped first;
/// if none are, new addresses are refused until some refill (a flood from many addresses
/// cannot grow the map).
const MAX_TRACKED: usize = 100_000;

pub(crate) struct RateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `per_minute` writes per address per minute, in bursts of up to `burst`. Zero
    /// `per_minute` turns the limit off.
    pub(crate) fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter { per_minute, burst: burst.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `ip`; on refusal, the seconds until the next token.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_TRACKED {
                return Err(60);
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: burst, updated: now });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil() as u64)
        }
    }

    /// Forgets addresses whose buckets are full again.
    pub(crate) fn prune(&self, now: Instant) {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let limiter = RateLimiter::new(60, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip, t0), Ok(()));
        }
        assert_eq!(limiter.check(ip, t0), Err(1));
        assert_eq!(limiter.check("192.0.2.2".parse().unwrap(), t0), Ok(()), "per address");
        assert_eq!(limiter.check(ip, t0 + Duration::from_secs(1)), Ok(()));
        limiter.prune(t0 + Duration::from_secs(10));
        assert!(limiter.buckets.lock().unwrap().is_empty());
        assert_eq!(RateLimiter::new(0, 1).check(ip, t0), Ok(()));
    }
}
