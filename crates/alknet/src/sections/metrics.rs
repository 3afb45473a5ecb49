//! `[metrics]`: the Prometheus endpoint, on a listener of its own.
//!
//! Metrics are served as plain HTTP on a separate address, off by default:
//! the node's port speaks only TLS, and what the metrics show (operations,
//! peers' traffic, refusals) is for the operator, so the endpoint belongs on
//! loopback or a management network that Prometheus reaches.

use std::net::SocketAddr;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[metrics]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Where to serve `GET /metrics` (Prometheus text exposition); `None`
    /// serves no metrics.
    pub listen: Option<SocketAddr>,
}

impl ConfigSection for Metrics {
    const KEY: &'static str = "metrics";
    const TEMPLATE: &'static str = r#"[metrics]
# Serve Prometheus metrics (text exposition, GET /metrics) as plain HTTP on
# this address, e.g. "127.0.0.1:9464". Unset: no metrics endpoint. Anyone who
# reaches the address reads the metrics: keep it on loopback or a management
# network. The series are listed in docs/operations.md.
# listen = "127.0.0.1:9464"
"#;

    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey> {
        if self
            .listen
            .is_some_and(|listen| node.is_the_node_address(listen))
        {
            return Err(InvalidKey::new(
                "metrics.listen",
                "an address other than the node's own `listen` (the node's port speaks TLS only)",
            ));
        }
        Ok(())
    }
}
