//! Response-rate limiting for plain UDP (no I/O here).
//!
//! A UDP query's source address can be forged, so a server that answers
//! every datagram lends its bandwidth to whoever forges the victim's
//! address. Each source network (an IPv4 /24, an IPv6 /56: one attacker
//! rarely holds more, and one victim's resolvers sit together) gets
//! `per_second` responses in each one-second window. Past that, every
//! second query gets a truncated response — as small as the query, so no
//! amplification, and a real client retries over TCP, where forging is
//! impossible — and the others get nothing (BIND's "slip 2"). The table of
//! sources is bounded: once a window has seen `max_sources` networks, new
//! ones are treated as over their limit.

use std::collections::HashMap;
use std::net::IpAddr;

/// What to send a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The full response.
    Send,
    /// A truncated response (TC set, no records).
    Truncate,
    /// Nothing.
    Drop,
}

/// Counts responses per source network in one-second windows.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    max_sources: usize,
    window: u64,
    counts: HashMap<u128, u32>,
    /// Over-limit queries from networks the table had no room for.
    untracked: u32,
}

impl RateLimiter {
    /// `per_second` responses per network (0: unlimited), at most
    /// `max_sources` networks tracked per window.
    pub fn new(per_second: u32, max_sources: usize) -> Self {
        Self {
            per_second,
            max_sources,
            window: 0,
            counts: HashMap::new(),
            untracked: 0,
        }
    }

    /// The verdict for a query from `source` in second `now` (any
    /// monotonic count of seconds).
    pub fn check(&mut self, source: IpAddr, now: u64) -> Verdict {
        if self.per_second == 0 {
            return Verdict::Send;
        }
        if now != self.window {
            self.window = now;
            self.counts.clear();
            self.untracked = 0;
        }
        let network = network_of(source);
        let table_full = self.counts.len() >= self.max_sources;
        let count = match self.counts.get_mut(&network) {
            Some(count) => count,
            None if table_full => {
                self.untracked = self.untracked.wrapping_add(1);
                return slip(self.untracked);
            }
            None => self.counts.entry(network).or_insert(0),
        };
        *count = count.saturating_add(1);
        if *count <= self.per_second {
            Verdict::Send
        } else {
            slip(*count - self.per_second)
        }
    }
}

/// Every second over-limit query is truncated, the others dropped.
fn slip(over: u32) -> Verdict {
    if over % 2 == 1 {
        Verdict::Truncate
    } else {
        Verdict::Drop
    }
}

/// The source network: IPv4 /24 (IPv4-mapped IPv6 too), IPv6 /56.
fn network_of(address: IpAddr) -> u128 {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xffff_ff00),
        // The low bit (always 0 in an IPv4 network) keeps IPv6 apart.
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_gets_its_rate_then_slips() {
        let mut limiter = RateLimiter::new(3, 100);
        let verdicts: Vec<Verdict> = (0..7)
            .map(|i| limiter.check(ip(&format!("192.0.2.{i}")), 1))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Send, Send, Truncate, Drop, Truncate, Drop]);
        // Another network is counted apart, and a new window starts afresh.
        assert_eq!(limiter.check(ip("198.51.100.1"), 1), Send);
        assert_eq!(limiter.check(ip("192.0.2.1"), 2), Send);
        // IPv4-mapped IPv6 is the IPv4 network.
        let mut limiter = RateLimiter::new(1, 100);
        assert_eq!(limiter.check(ip("192.0.2.1"), 1), Send);
        assert_eq!(limiter.check(ip("::ffff:192.0.2.9"), 1), Truncate);
        // An IPv6 /56 is one network; the next /56 is another.
        assert_eq!(limiter.check(ip("2001:db8:0:ff::1"), 1), Send);
        assert_eq!(limiter.check(ip("2001:db8:0:1::2"), 1), Truncate);
        assert_eq!(limiter.check(ip("2001:db8:0:100::1"), 1), Send);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut limiter = RateLimiter::new(10, 2);
        assert_eq!(limiter.check(ip("10.0.0.1"), 1), Verdict::Send);
        assert_eq!(limiter.check(ip("10.0.1.1"), 1), Verdict::Send);
        assert_eq!(limiter.check(ip("10.0.2.1"), 1), Verdict::Truncate);
        assert_eq!(limiter.check(ip("10.0.3.1"), 1), Verdict::Drop);
        assert_eq!(limiter.counts.len(), 2);
        assert_eq!(
            RateLimiter::new(0, 0).check(ip("10.0.0.1"), 1),
            Verdict::Send
        );
    }
}
