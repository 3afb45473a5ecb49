//! The node-wide rules serde cannot express: ranges and combinations.

use super::error::InvalidKey;
use super::limits::ABSOLUTE_MAX_FRAME;
use super::log::check_log_filter;
use super::node::NodeConfig;

/// The most `workers` the node starts: far more threads than cores only
/// adds switching between them.
const MAX_WORKERS: usize = 1024;

impl NodeConfig {
    /// Checks ranges and combinations serde cannot express. A section's own
    /// rules are its [`ConfigSection::validate`](super::ConfigSection::validate).
    pub fn validate(&self) -> Result<(), InvalidKey> {
        check_log_filter(&self.log).map_err(|expected| InvalidKey::new("log", expected))?;
        if self
            .workers
            .is_some_and(|workers| workers == 0 || workers > MAX_WORKERS)
        {
            return Err(InvalidKey::new("workers", "1 to 1024 threads"));
        }
        if self.limits.max_connections == 0 {
            return Err(InvalidKey::new(
                "limits.max_connections",
                "a positive number",
            ));
        }
        if self.limits.max_connections_per_protocol == 0 {
            return Err(InvalidKey::new(
                "limits.max_connections_per_protocol",
                "a positive number",
            ));
        }
        if self.limits.max_pending_handshakes == 0 {
            return Err(InvalidKey::new(
                "limits.max_pending_handshakes",
                "a positive number",
            ));
        }
        if self.limits.max_frame == 0 || self.limits.max_frame > ABSOLUTE_MAX_FRAME {
            return Err(InvalidKey::new("limits.max_frame", "1 to 67108864 bytes"));
        }
        if self.limits.max_in_flight == 0 {
            return Err(InvalidKey::new("limits.max_in_flight", "a positive number"));
        }
        if self.limits.call_timeout.is_zero() {
            return Err(InvalidKey::new(
                "limits.call_timeout",
                "a positive duration such as \"30s\"",
            ));
        }
        if self.limits.max_batch == 0 {
            return Err(InvalidKey::new("limits.max_batch", "a positive number"));
        }
        if self.limits.write_stall.is_zero() {
            return Err(InvalidKey::new(
                "limits.write_stall",
                "a positive duration such as \"30s\"",
            ));
        }
        self.validate_connection_limits()?;
        if self.limits.max_overlay_bytes > self.limits.max_overlay_bytes_total {
            return Err(InvalidKey::new(
                "limits.max_overlay_bytes",
                "at most limits.max_overlay_bytes_total",
            ));
        }
        if self.limits.handshake_timeout.is_zero() {
            return Err(InvalidKey::new(
                "limits.handshake_timeout",
                "a positive duration such as \"10s\"",
            ));
        }
        if self.supervision.restart_window.is_zero() {
            return Err(InvalidKey::new(
                "supervision.restart_window",
                "a positive duration such as \"10s\"",
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(InvalidKey::new("tls", "both `cert` and `key`, or neither"));
        }
        for (alpn, settings) in &self.protocols {
            if settings.max_connections == Some(0) {
                return Err(InvalidKey::new(
                    format!("protocols.\"{alpn}\".max_connections"),
                    "a positive number",
                ));
            }
            if settings.restart_window.is_some_and(|w| w.is_zero()) {
                return Err(InvalidKey::new(
                    format!("protocols.\"{alpn}\".restart_window"),
                    "a positive duration such as \"10s\"",
                ));
            }
        }
        Ok(())
    }

    /// The timeouts and caps that bound one connection after its handshake.
    fn validate_connection_limits(&self) -> Result<(), InvalidKey> {
        let limits = &self.limits;
        for (key, value) in [
            ("first_request_timeout", limits.first_request_timeout),
            ("header_read_timeout", limits.header_read_timeout),
            ("http_idle_timeout", limits.http_idle_timeout),
            ("http2_ping_interval", limits.http2_ping_interval),
            ("http2_ping_timeout", limits.http2_ping_timeout),
        ] {
            if value.is_zero() {
                return Err(InvalidKey::new(
                    format!("limits.{key}"),
                    "a positive duration such as \"30s\"",
                ));
            }
        }
        for (key, value) in [
            ("min_body_rate", limits.min_body_rate as usize),
            ("http_body_budget", limits.http_body_budget),
            ("http2_max_streams", limits.http2_max_streams as usize),
            ("http2_send_buffer", limits.http2_send_buffer),
            ("http_max_subscriptions", limits.http_max_subscriptions),
        ] {
            if value == 0 {
                return Err(InvalidKey::new(
                    format!("limits.{key}"),
                    "a positive number",
                ));
            }
        }
        Ok(())
    }
}
