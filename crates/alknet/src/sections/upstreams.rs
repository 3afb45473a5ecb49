//! `[[upstreams]]`: nodes whose operations this node imports over a call
//! session (`from_call`).
//!
//! The binary owns this section: only `crate::upstreams` reads it, turning
//! each table into `alknet_call`'s `UpstreamOptions`.

use std::net::SocketAddr;
use std::time::Duration;

use alknet_core::NodeId;
use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// Every `[[upstreams]]` table, in file order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Upstreams(pub Vec<Upstream>);

impl ConfigSection for Upstreams {
    const KEY: &'static str = "upstreams";
    const TEMPLATE: &'static str = r#"# Upstream nodes whose operations this node imports (from_call), one
# [[upstreams]] table each. Imports are internal (only this node's own
# operations can call them) unless external = true, keep the upstream's access
# control, and are named <prefix>/<name> when a prefix is set. An upstream that
# is unreachable at start is retried in the background.
# [[upstreams]]
# address = "192.0.2.10:4433"       # omit to find it by the pin's pkarr record
# pin = "ed25519:<64 hex digits>"   # or: insecure = true
# transport = "quic"                # or "tcp"
# token = "alk_..."                 # without it, this node's key identifies it
# prefix = "spoke"
# external = false
# idle_timeout = "30s"
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        for (index, upstream) in self.0.iter().enumerate() {
            let key = |field: &str| format!("upstreams[{index}].{field}");
            match (&upstream.pin, upstream.insecure) {
                (Some(_), true) | (None, false) => {
                    return Err(InvalidKey::new(
                        key("pin"),
                        "either `pin = \"ed25519:<hex>\"` or `insecure = true`",
                    ));
                }
                (Some(pin), false) if pin.parse::<NodeId>().is_err() => {
                    return Err(InvalidKey::new(
                        key("pin"),
                        "a node id `ed25519:<64 hex digits>`",
                    ));
                }
                _ => {}
            }
            if upstream.address.is_none() && upstream.pin.is_none() {
                return Err(InvalidKey::new(
                    key("address"),
                    "an address, or a pin to find the upstream by its pkarr record",
                ));
            }
            if upstream.idle_timeout < Duration::from_millis(100) {
                return Err(InvalidKey::new(key("idle_timeout"), "at least \"100ms\""));
            }
        }
        Ok(())
    }
}

/// `[[upstreams]]`: one node whose operations this node imports over a call
/// session (`from_call`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Its address. Omitted: found before each dial from the pkarr record
    /// of the node `pin` names (docs/dns.md).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Its node id (`ed25519:<hex>`); required unless `insecure`.
    #[serde(default)]
    pub pin: Option<String>,
    /// Accept any certificate instead of pinning.
    #[serde(default)]
    pub insecure: bool,
    /// `quic` or `tcp`.
    #[serde(default)]
    pub transport: UpstreamTransport,
    /// A bearer token to present; without it, the node key's certificate
    /// identifies this node (the upstream maps it with `alknet peer add`).
    #[serde(default)]
    pub token: Option<String>,
    /// Imported names become `<prefix>/<name>`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Make the imports reachable from outside this node.
    #[serde(default)]
    pub external: bool,
    /// QUIC: silence after which the upstream is presumed gone.
    #[serde(default = "default_upstream_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_upstream_idle() -> Duration {
    Duration::from_secs(30)
}

/// How to dial an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTransport {
    /// QUIC over UDP.
    #[default]
    Quic,
    /// TLS over TCP.
    Tcp,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use alknet_core::config::{Config, ConfigError, SectionRegistry};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        SectionRegistry::new()
            .with::<Upstreams>()
            .parse(text, Path::new("alknet.toml"))
    }

    #[test]
    fn the_written_template_is_exactly_the_defaults() {
        let config = parse(Upstreams::TEMPLATE).unwrap();
        assert_eq!(config.section::<Upstreams>(), &Upstreams::default());
    }

    #[test]
    fn upstreams_need_a_pin_or_an_explicit_insecure() {
        let base = "[[upstreams]]\naddress = \"127.0.0.1:4433\"\n";
        let err = parse(base).unwrap_err().to_string();
        assert!(err.contains("upstreams[0].pin"), "{err}");
        let err = parse(&format!("{base}pin = \"ed25519:00\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ed25519:<64 hex digits>"), "{err}");
        let pin = format!("ed25519:{}", "ab".repeat(32));
        let config = parse(&format!(
            "{base}pin = \"{pin}\"\ntransport = \"tcp\"\nprefix = \"spoke\"\n"
        ))
        .unwrap();
        let upstream = &config.section::<Upstreams>().0[0];
        assert_eq!(upstream.transport, UpstreamTransport::Tcp);
        assert_eq!(upstream.prefix.as_deref(), Some("spoke"));
        assert!(!upstream.external);
        assert_eq!(upstream.idle_timeout, Duration::from_secs(30));
        let err = parse(&format!("{base}insecure = true\ntoken = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
    }
}
