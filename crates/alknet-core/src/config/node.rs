//! The node-wide keys: where the node listens, what it logs, its certificate,
//! its limits, its supervision, and per-protocol overrides of those.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::Limits;

/// The node-wide keys of `alknet.toml`; every other top-level table is a
/// [`ConfigSection`](super::ConfigSection) of the crate it configures.
///
/// Unknown keys inside these tables are refused by serde; unknown top-level
/// keys by the [`SectionRegistry`](super::SectionRegistry), which alone knows
/// every table the file may hold. So deserialize a file through the registry,
/// never directly into this type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// Address for both listeners: QUIC on UDP and TLS on TCP, same port number.
    pub listen: SocketAddr,
    /// Log filter (tracing `EnvFilter` syntax); `ALKNET_LOG` overrides it.
    pub log: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Threads that run the node's tasks; `None` is one per CPU core.
    pub workers: Option<usize>,
    /// Operator-supplied certificate for browser-facing TLS.
    pub tls: TlsSettings,
    /// Admission and handshake limits.
    pub limits: Limits,
    /// Restart policy and shutdown.
    pub supervision: Supervision,
    /// Per-protocol overrides, keyed by ALPN (e.g. `[protocols."alknet/echo"]`).
    pub protocols: BTreeMap<String, ProtocolSettings>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            workers: None,
            tls: TlsSettings::default(),
            limits: Limits::default(),
            supervision: Supervision::default(),
            protocols: BTreeMap::new(),
        }
    }
}

impl NodeConfig {
    /// The top-level keys this type owns, in the order the template shows them.
    pub const KEYS: &[&str] = &[
        "listen",
        "log",
        "log_format",
        "workers",
        "tls",
        "limits",
        "supervision",
        "protocols",
    ];

    /// Whether a listener on `addr` would take the node's own port (the
    /// same port on the same or an overlapping address). Port 0 never does.
    pub fn is_the_node_address(&self, addr: std::net::SocketAddr) -> bool {
        addr.port() != 0
            && addr.port() == self.listen.port()
            && (addr.ip() == self.listen.ip() || self.listen.ip().is_unspecified())
    }

    /// The connection cap for one protocol.
    pub fn max_connections_for(&self, alpn: &str) -> usize {
        self.protocols
            .get(alpn)
            .and_then(|p| p.max_connections)
            .unwrap_or(self.limits.max_connections_per_protocol)
    }

    /// The restart intensity (restarts, window) for one protocol's supervisor.
    pub fn restart_intensity_for(&self, alpn: &str) -> (u32, Duration) {
        let overrides = self.protocols.get(alpn);
        (
            overrides
                .and_then(|p| p.max_restarts)
                .unwrap_or(self.supervision.max_restarts),
            overrides
                .and_then(|p| p.restart_window)
                .unwrap_or(self.supervision.restart_window),
        )
    }
}

/// `log_format`: how log lines are written on standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[tls]`: an operator certificate, used for clients that offer no `alknet/*`
/// ALPN (browsers). Relative paths are relative to the data directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `[supervision]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervision {
    /// Restarts of one permanent actor allowed within `restart_window` before
    /// the failure escalates and the node shuts down.
    pub max_restarts: u32,
    /// The window `max_restarts` is counted in.
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// On shutdown, how long connections get to finish before they are closed.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            restart_window: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// `[protocols."<alpn>"]`: overrides for one protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolSettings {
    /// Connection cap for this protocol.
    pub max_connections: Option<usize>,
    /// Restart intensity: restarts allowed...
    pub max_restarts: Option<u32>,
    /// ...within this window.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub restart_window: Option<Duration>,
}
