//! `[dns]`: which transports answer, the zones, and the bounds.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

/// `[dns]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Answer DNS: DoQ (ALPN `doq`) and DoT (ALPN `dot`) on the node's
    /// port, and DoH at `/dns-query` when the HTTP handler runs.
    pub enabled: bool,
    /// Also answer plain DNS on UDP and TCP at this address. Off unless set.
    pub listen: Option<SocketAddr>,
    /// Also answer DNS over TLS at this address, to every TLS client (on the
    /// node's port DoT needs the ALPN `dot`, which stub resolvers such as
    /// systemd-resolved and dnsperf do not send). Off unless set; 853 is
    /// DoT's port.
    pub dot_listen: Option<SocketAddr>,
    /// Serve DNS over HTTPS at `/dns-query`.
    pub doh: bool,
    /// Responses per second one source (an IPv4 /24, an IPv6 /56) gets over
    /// plain UDP; past it, every second response is a truncated one (the
    /// client retries over TCP) and the rest are dropped. 0: no limit.
    pub response_rate_limit: u32,
    /// Queries one DoT or TCP connection, or one DoQ connection, may have
    /// in progress at once; the rest wait.
    pub max_in_flight: usize,
    /// Seconds a DoT or TCP connection may stay without a query.
    pub idle_timeout_secs: u64,
    /// The zones answered with authority (`[[dns.zones]]`).
    pub zones: Vec<ZoneSettings>,
}

/// `[[dns.zones]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    /// The zone's apex, e.g. `example.net`.
    pub name: String,
}

impl Default for DnsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            dot_listen: None,
            doh: true,
            response_rate_limit: 100,
            max_in_flight: 64,
            idle_timeout_secs: 30,
            zones: Vec::new(),
        }
    }
}

impl DnsSection {
    /// The configured zone apexes, fully qualified, lower case.
    pub fn origins(&self) -> Vec<Name> {
        self.zones
            .iter()
            .filter_map(|zone| zone_origin(&zone.name).ok())
            .collect()
    }

    /// [`Self::idle_timeout_secs`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// Parses a zone apex: a host name of letters, digits, `-` and `_` labels
/// (it names the zone's file too), not the root.
pub fn zone_origin(text: &str) -> Result<Name, String> {
    let trimmed = text.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("the root zone is not served".into());
    }
    let plain = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !trimmed.split('.').all(plain) || trimmed.len() > 253 {
        return Err("labels of letters, digits, `-` and `_`, at most 253 characters".into());
    }
    let mut name = Name::from_str(&format!("{trimmed}.")).map_err(|error| error.to_string())?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

impl ConfigSection for DnsSection {
    const KEY: &'static str = "dns";
    const TEMPLATE: &'static str = r#"[dns]
# Answer DNS for the zones below: DNS over QUIC (ALPN doq) and over TLS
# (ALPN dot) on the node's port, and DNS over HTTPS at /dns-query. Records
# are managed with `alknet dns set|delete|list`; see docs/dns.md.
enabled = true
# Also answer plain DNS on UDP and TCP at this address (off unless set):
# listen = "127.0.0.1:5353"
# Also answer DNS over TLS at this address, to any TLS client (stub resolvers
# send no ALPN, which on the node's port is HTTP's; off unless set):
# dot_listen = "0.0.0.0:853"
# Serve DNS over HTTPS at https://<node>/dns-query.
doh = true
# Plain UDP responses per second to one source network (/24, /56); past it
# every second response is truncated (the client retries over TCP) and the
# others dropped, so the node cannot be used as an amplifier. 0: no limit.
response_rate_limit = 100
# Queries one connection may have in progress at once.
max_in_flight = 64
# Seconds a DoT or TCP connection may stay without a query.
idle_timeout_secs = 30
# A zone the node answers with authority (repeat the table for more):
# [[dns.zones]]
# name = "example.net"
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        if !(1..=4096).contains(&self.max_in_flight) {
            return Err(InvalidKey::new(
                "dns.max_in_flight",
                "a number from 1 to 4096",
            ));
        }
        if !(1..=3600).contains(&self.idle_timeout_secs) {
            return Err(InvalidKey::new(
                "dns.idle_timeout_secs",
                "a number of seconds from 1 to 3600",
            ));
        }
        let mut seen = Vec::new();
        for (index, zone) in self.zones.iter().enumerate() {
            let origin = zone_origin(&zone.name).map_err(|reason| {
                InvalidKey::new(
                    format!("dns.zones[{index}].name"),
                    format!("a zone name ({reason})"),
                )
            })?;
            if seen.contains(&origin) {
                return Err(InvalidKey::new(
                    format!("dns.zones[{index}].name"),
                    format!("a zone not listed before ({origin} is)"),
                ));
            }
            seen.push(origin);
        }
        Ok(())
    }
}

/// `[pkarr]`: the node's signed packet, its relay, and the relays it uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkarrSection {
    /// Sign and publish the node's packet (its addresses and `_alknet`
    /// dialing details under its z-base-32 name).
    pub publish: bool,
    /// Serve the pkarr relay API at `/pkarr/<z32>` (needs `[http]`).
    pub relay: bool,
    /// Relays to publish the node's packet to and resolve other keys from:
    /// base URLs, the key is appended (`https://relay.example/pkarr`).
    /// Their certificates are checked against the system's roots and
    /// `[import.client] ca_bundle`.
    pub relays: Vec<String>,
    /// Join the Mainline DHT: publish the node's packet there and resolve
    /// keys no relay knows from it.
    pub dht: bool,
    /// DHT nodes to join through, `host:port`. Empty: mainline's public
    /// bootstrap nodes.
    pub dht_bootstrap: Vec<String>,
    /// The DHT's UDP socket (IPv4). None: port 6881, else any.
    pub dht_listen: Option<SocketAddrV4>,
    /// The addresses to publish. Empty: the listen address, unless it is
    /// unspecified (`0.0.0.0`, `::`), in which case none.
    pub addresses: Vec<IpAddr>,
    /// TTL of the published records, in seconds.
    pub ttl: u32,
    /// Seconds between publications.
    pub republish_secs: u64,
    /// Packets the relay keeps (one per key).
    pub max_stored: usize,
    /// Other keys' packets kept in memory.
    pub cache_size: usize,
}

impl Default for PkarrSection {
    fn default() -> Self {
        Self {
            publish: true,
            relay: true,
            relays: Vec::new(),
            dht: false,
            dht_bootstrap: Vec::new(),
            dht_listen: None,
            addresses: Vec::new(),
            ttl: 3600,
            republish_secs: 3000,
            max_stored: 10_000,
            cache_size: 10_000,
        }
    }
}

impl ConfigSection for PkarrSection {
    const KEY: &'static str = "pkarr";
    const TEMPLATE: &'static str = r#"[pkarr]
# Sign the node's pkarr packet with the node key and answer its name
# (<z32>.) over DNS: its addresses and an _alknet TXT (node id, port,
# ALPNs). See docs/dns.md.
publish = true
# Serve the pkarr relay API at https://<node>/pkarr/<z32>, so stock pkarr
# clients can publish to and resolve from this node.
relay = true
# Relays to publish to and to resolve other keys from (base URLs):
# relays = ["https://relay.example/pkarr"]
relays = []
# Join the Mainline DHT: publish there, resolve unknown keys from there.
dht = false
# DHT nodes to join through (host:port); empty: mainline's public ones.
# dht_bootstrap = ["router.bittorrent.com:6881"]
dht_bootstrap = []
# The DHT's UDP socket (IPv4); unset: port 6881, else any free port.
# dht_listen = "0.0.0.0:6881"
# Addresses to publish; empty: the listen address unless it is 0.0.0.0 or ::.
addresses = []
# TTL of the published records, in seconds.
ttl = 3600
# Seconds between publications (before the records expire).
republish_secs = 3000
# Packets the relay keeps, one per key.
max_stored = 10000
# Other keys' packets kept in memory.
cache_size = 10000
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        for (index, relay) in self.relays.iter().enumerate() {
            if !(relay.starts_with("https://") || relay.starts_with("http://")) {
                return Err(InvalidKey::new(
                    format!("pkarr.relays[{index}]"),
                    "an http:// or https:// URL",
                ));
            }
        }
        for (index, node) in self.dht_bootstrap.iter().enumerate() {
            let port = node
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if port.is_none_or(|port| port == 0) {
                return Err(InvalidKey::new(
                    format!("pkarr.dht_bootstrap[{index}]"),
                    "host:port",
                ));
            }
        }
        if !(60..=86_400).contains(&self.ttl) {
            return Err(InvalidKey::new("pkarr.ttl", "seconds from 60 to 86400"));
        }
        if !(60..=86_400).contains(&self.republish_secs) {
            return Err(InvalidKey::new(
                "pkarr.republish_secs",
                "seconds from 60 to 86400",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_stored) {
            return Err(InvalidKey::new(
                "pkarr.max_stored",
                "a number from 1 to 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&self.cache_size) {
            return Err(InvalidKey::new(
                "pkarr.cache_size",
                "a number from 1 to 1000000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_plain_host_names() {
        assert_eq!(
            zone_origin("Example.NET").unwrap().to_string(),
            "example.net."
        );
        assert_eq!(
            zone_origin("example.net.").unwrap().to_string(),
            "example.net."
        );
        assert!(zone_origin(".").is_err());
        assert!(zone_origin("").is_err());
        assert!(zone_origin("../etc").is_err());
        assert!(zone_origin("a/b.net").is_err());
        assert!(zone_origin("a..net").is_err());
        assert!(zone_origin(&"a".repeat(64)).is_err());
    }
}
