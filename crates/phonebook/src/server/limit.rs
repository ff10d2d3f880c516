//! Per-IP rate limits on writes: a token bucket per address, in a bounded map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most addresses tracked at once. Past this, buckets that are full again are dropped first;
/// if none are, a sample of others is (a flood from many addresses cannot grow the map, nor
/// fill it so that new addresses are refused).
const MAX_TRACKED: usize = 100_000;
/// How many buckets go when the map is full of busy ones.
const EVICT: usize = 1_000;

/// The key an address is limited under: IPv4 addresses one by one, IPv6 by /64, the smallest
/// block one customer usually gets (and the size of a SLAAC subnet).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

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
        let ip = client_key(ip);
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_TRACKED {
                // Every tracked address is busy: forget some (the hash map's order is random
                // per process) rather than refuse every new address.
                let evict: Vec<IpAddr> = buckets.keys().take(EVICT).copied().collect();
                for key in evict {
                    buckets.remove(&key);
                }
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

    #[test]
    fn issue_10_ipv6_is_limited_per_64() {
        let limiter = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        assert_eq!(limiter.check("2001:db8:1:2::1".parse().unwrap(), t0), Ok(()));
        assert_eq!(limiter.check("2001:db8:1:2:ffff::9".parse().unwrap(), t0), Ok(()));
        assert!(limiter.check("2001:db8:1:2:abcd::1".parse().unwrap(), t0).is_err(), "same /64");
        assert_eq!(limiter.check("2001:db8:1:3::1".parse().unwrap(), t0), Ok(()), "another /64");
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn issue_10_a_full_map_does_not_refuse_new_addresses() {
        let limiter = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        // Fill the map with busy buckets (each spent its one token).
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(limiter.check(ip, t0), Ok(()));
        }
        assert_eq!(limiter.buckets.lock().unwrap().len(), MAX_TRACKED);
        let newcomer: IpAddr = "192.0.2.200".parse().unwrap();
        assert_eq!(limiter.check(newcomer, t0), Ok(()), "a new address still gets its writes");
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }
}
