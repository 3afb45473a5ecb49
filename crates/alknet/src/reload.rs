//! `SIGHUP`: apply what can change while the node runs, and say what cannot.
//!
//! Like nginx or sshd, a reload re-reads the configuration file and keeps
//! every open connection. Applied live: the web and operator certificates
//! (re-read from their files even when the configuration did not change, so
//! a renewed certificate is picked up), the log filter, the connection caps
//! (for connections admitted from then on), and the per-connection and
//! per-session `[limits]` ([`SESSION_LIMITS`], [`HTTP_LIMITS`]), which a
//! connection reads once when it starts: open connections keep the limits
//! their buffers, windows and timers were sized by. Every other key that
//! changed is named in one warning and applies at the next start. A
//! configuration that no longer validates changes nothing.
//!
//! Changed `[[import.openapi]]` and `[[import.jsonschema]]` entries are
//! resolved again (documents read or fetched) and swapped in at once: added
//! imports serve, removed ones stop, changed ones are replaced; an import
//! that fails leaves the previous set serving. Credentials are those the node
//! unsealed at start (the vault's seed is gone by then): an import naming one
//! added since needs a restart. `[[import.mcp]]` and `[import.client]` wait
//! for a restart too (the MCP imports run as background tasks the node does
//! not restart).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use alknet_adapters::outbound::Outbound;
use alknet_call::{LiveSessionLimits, Registry};
use alknet_core::NodeId;
use alknet_core::config::{Config, Limits};
use alknet_core::tls::ServerIdentity;
use alknet_http::LiveHttpLimits;
use alknet_http::config::HttpSection;
use alknet_supervisors::NodeHandle;
use anyhow::Context;

use crate::credentials::Credentials;
use crate::data_dir::DataDir;
use crate::imports::{self, CredentialSource};
use crate::sections::{self, Imports};

/// Keys a reload applies; changes to any other key wait for a restart.
const APPLIED_LIVE: &[&str] = &[
    "tls.cert",
    "tls.key",
    "log",
    "limits.max_connections",
    "limits.max_connections_per_protocol",
];

/// `[limits]` keys every call session (native, or WebSocket) reads when it
/// starts. `max_overlay_bytes_total` is not one: it sizes the budget all
/// sessions share, which open sessions hold shares of.
const SESSION_LIMITS: &[&str] = &[
    "limits.max_frame",
    "limits.max_in_flight",
    "limits.call_timeout",
    "limits.write_stall",
    "limits.first_request_timeout",
    "limits.max_overlay_operations",
    "limits.max_overlay_bytes",
];

/// `[limits]` keys an HTTP connection reads when it starts (besides
/// [`SESSION_LIMITS`], for its WebSockets and gateway calls).
const HTTP_LIMITS: &[&str] = &[
    "limits.max_batch",
    "limits.header_read_timeout",
    "limits.http_idle_timeout",
    "limits.http2_ping_interval",
    "limits.http2_ping_timeout",
    "limits.min_body_rate",
    "limits.http_body_budget",
    "limits.http2_max_streams",
    "limits.http2_send_buffer",
    "limits.http_max_subscriptions",
];

/// Keys `/mcp` reads once, when the node builds it: a reload applies them to
/// the call protocol and the HTTP gateway, not to MCP.
const BUILT_INTO_MCP: &[&str] = &["limits.call_timeout", "limits.max_batch"];

fn applied_live(key: &str) -> bool {
    APPLIED_LIVE.contains(&key)
        || ["import.openapi", "import.jsonschema"]
            .iter()
            .any(|table| key == *table || key.starts_with(&format!("{table}.")))
        || SESSION_LIMITS.contains(&key)
        || HTTP_LIMITS.contains(&key)
        || (key.starts_with("protocols.") && key.ends_with(".max_connections"))
}

/// Replaces the running log filter.
pub type SetLogFilter = Box<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// What a reload needs from the running node.
pub struct Reloader {
    pub dir: DataDir,
    pub config_path: Option<PathBuf>,
    pub node_id: NodeId,
    pub identity: ServerIdentity,
    /// The running node, for its connection caps.
    pub node: NodeHandle,
    /// The log filter the node runs with (the last one applied).
    pub log: String,
    /// The configuration file as the node started with it: keys that differ
    /// from it and are not applied live are named at every reload until a
    /// restart applies them.
    pub started_text: toml::Table,
    /// Applies a log filter; `None` when logging cannot be changed live.
    pub set_log_filter: Option<SetLogFilter>,
    /// The `[limits]` applied last (at start, or by a reload).
    pub limits: Limits,
    /// The limits new call sessions start with.
    pub call_limits: LiveSessionLimits,
    /// The HTTP handler's limits, when it is served.
    pub http_limits: Option<LiveHttpLimits>,
    /// Whether `/mcp` is served (it keeps some limits until a restart).
    pub serves_mcp: bool,
    /// The HTTP imports being served.
    pub imports: ImportState,
}

/// The HTTP imports a reload may replace, and what it needs to.
pub struct ImportState {
    pub registry: Arc<Registry>,
    pub outbound: Arc<Outbound>,
    /// The credentials unsealed at start.
    pub credentials: Arc<Credentials>,
    /// The `[import]` section the served imports were resolved from.
    pub applied: Imports,
    /// The names of the operations they registered.
    pub names: Vec<String>,
}

impl Reloader {
    /// Runs one reload and logs its outcome.
    pub fn reload(&mut self) {
        tracing::info!("SIGHUP received: reloading");
        let next = match read(self.config_path.as_deref()) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(
                    "reload refused, nothing changed: {error}; the node keeps running with the \
                     configuration it started with"
                );
                return;
            }
        };
        let (next, next_text) = next;
        match self.reload_certificates(&next) {
            Ok(served) => tracing::info!("certificates reloaded: {served}"),
            Err(error) => tracing::error!(
                "certificates not reloaded, the previous ones are still served: {error:#}"
            ),
        }
        if self.node.set_connection_caps(&next.node) {
            tracing::info!(
                max_connections = next.node.limits.max_connections,
                max_connections_per_protocol = next.node.limits.max_connections_per_protocol,
                "connection caps reloaded (open connections stay)"
            );
        }
        if next.node.log != self.log {
            match self.set_log_filter.as_ref().map(|set| set(&next.node.log)) {
                Some(Ok(())) => tracing::info!(filter = %next.node.log, "log filter reloaded"),
                Some(Err(error)) => tracing::error!("log filter not reloaded: {error:#}"),
                None => tracing::warn!("log filter not reloaded: ALKNET_LOG overrides it"),
            }
        }
        let changed = changed_keys(&self.started_text, &next_text);
        self.reload_limits(&next);
        self.reload_imports(&next);
        let pending: Vec<String> = changed
            .into_iter()
            .filter(|key| !applied_live(key))
            .collect();
        if !pending.is_empty() {
            tracing::warn!(
                keys = ?pending,
                "changed in the configuration but not applied until the node restarts"
            );
        }
        self.log = next.node.log;
        tracing::info!("reload finished");
    }

    /// Hands the new per-connection limits to the handlers; logs the keys
    /// that differ from what the running node applies.
    fn reload_limits(&mut self, next: &Config) {
        let limits = &next.node.limits;
        // The overlay's node-wide budget is kept: open sessions hold shares
        // of it.
        let mut sessions = self.call_limits.get();
        sessions.max_frame = limits.max_frame;
        sessions.max_in_flight = limits.max_in_flight;
        sessions.call_timeout = limits.call_timeout;
        sessions.write_stall = limits.write_stall;
        sessions.first_frame_timeout = limits.first_request_timeout;
        sessions.overlay.max_operations = limits.max_overlay_operations;
        sessions.overlay.max_bytes = limits.max_overlay_bytes;
        let http = alknet_http::HttpLimits {
            call_timeout: limits.call_timeout,
            max_batch: limits.max_batch,
            session: sessions.clone(),
            connection: crate::serve::connection_limits(limits),
        };
        // Compared with the values applied last, not with the file the node
        // started with: a reload that changes nothing says nothing.
        let keys: Vec<&str> = SESSION_LIMITS
            .iter()
            .chain(HTTP_LIMITS)
            .copied()
            .filter(|key| limit_differs(&self.limits, limits, key))
            .collect();
        if keys.is_empty() {
            return;
        }
        self.limits = limits.clone();
        self.call_limits.set(sessions);
        if let Some(live) = &self.http_limits {
            live.set(http);
        }
        tracing::info!(
            keys = ?keys,
            "limits reloaded: connections and sessions started from now on use them, open ones keep theirs"
        );
        let mcp_keeps: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|key| self.serves_mcp && BUILT_INTO_MCP.contains(key))
            .collect();
        if !mcp_keeps.is_empty() {
            tracing::warn!(
                keys = ?mcp_keeps,
                "/mcp keeps the values it started with until the node restarts"
            );
        }
    }

    /// Resolves the HTTP imports again when their entries changed, and
    /// swaps their operations in one step; on any failure the served ones
    /// stay.
    fn reload_imports(&mut self, next: &Config) {
        let wanted: &Imports = next.section();
        let state = &mut self.imports;
        if wanted.openapi == state.applied.openapi && wanted.jsonschema == state.applied.jsonschema
        {
            return;
        }
        let source = CredentialSource::Decrypted(&state.credentials);
        // `reload` runs in `block_in_place` on the node's runtime: fetching a
        // document may block this thread, not the node's other tasks.
        let resolved = tokio::runtime::Handle::current().block_on(imports::resolve_http(
            wanted,
            &self.dir,
            &source,
            &state.outbound,
        ));
        match resolved
            .and_then(|resolved| imports::replace(&state.registry, &state.names, resolved))
        {
            Ok(names) => {
                let removed: Vec<&String> =
                    state.names.iter().filter(|n| !names.contains(n)).collect();
                tracing::info!(
                    operations = ?names,
                    removed = ?removed,
                    "imports reloaded"
                );
                state.names = names;
                state.applied.openapi = wanted.openapi.clone();
                state.applied.jsonschema = wanted.jsonschema.clone();
            }
            Err(error) => {
                let error = format!("{error:#}");
                let hint = if error.contains("no credential") {
                    " (credentials are unsealed at start: one added to credentials.toml since \
                     needs a restart)"
                } else {
                    ""
                };
                tracing::error!(
                    "imports not reloaded, the previous ones are still served: {error}{hint}"
                );
            }
        }
    }

    fn reload_certificates(&self, next: &Config) -> anyhow::Result<String> {
        let stealth = next.section::<HttpSection>().stealth;
        let certificates = self
            .dir
            .browser_certificates(self.node_id, &next.node.tls, stealth)?;
        self.identity
            .replace_certificates(certificates.web, certificates.operator)?;
        Ok(certificates.described)
    }
}

/// Whether `key` of [`SESSION_LIMITS`] or [`HTTP_LIMITS`] differs between
/// `a` and `b`.
fn limit_differs(a: &Limits, b: &Limits, key: &str) -> bool {
    match key.strip_prefix("limits.").unwrap_or(key) {
        "max_frame" => a.max_frame != b.max_frame,
        "max_in_flight" => a.max_in_flight != b.max_in_flight,
        "call_timeout" => a.call_timeout != b.call_timeout,
        "write_stall" => a.write_stall != b.write_stall,
        "first_request_timeout" => a.first_request_timeout != b.first_request_timeout,
        "max_overlay_operations" => a.max_overlay_operations != b.max_overlay_operations,
        "max_overlay_bytes" => a.max_overlay_bytes != b.max_overlay_bytes,
        "max_batch" => a.max_batch != b.max_batch,
        "header_read_timeout" => a.header_read_timeout != b.header_read_timeout,
        "http_idle_timeout" => a.http_idle_timeout != b.http_idle_timeout,
        "http2_ping_interval" => a.http2_ping_interval != b.http2_ping_interval,
        "http2_ping_timeout" => a.http2_ping_timeout != b.http2_ping_timeout,
        "min_body_rate" => a.min_body_rate != b.min_body_rate,
        "http_body_budget" => a.http_body_budget != b.http_body_budget,
        "http2_max_streams" => a.http2_max_streams != b.http2_max_streams,
        "http2_send_buffer" => a.http2_send_buffer != b.http2_send_buffer,
        "http_max_subscriptions" => a.http_max_subscriptions != b.http_max_subscriptions,
        _ => false,
    }
}

/// The configuration at `path` (every default without a file) and the
/// file's TOML, parsed once so that both describe the same text.
pub fn read(path: Option<&Path>) -> anyhow::Result<(Config, toml::Table)> {
    let Some(path) = path else {
        return Ok((sections::load(None)?, toml::Table::new()));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = sections::registry().parse(&text, path)?;
    // It parsed as a configuration, so it is TOML.
    let table = text.parse::<toml::Table>().unwrap_or_default();
    Ok((config, table))
}

/// The dotted keys written differently in two versions of the file
/// (`limits.max_frame`, `http.console`, …); a key written in one and left to
/// its default in the other counts as changed.
fn changed_keys(before: &toml::Table, after: &toml::Table) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    diff(
        "",
        &toml::Value::Table(before.clone()),
        &toml::Value::Table(after.clone()),
        &mut changed,
    );
    changed
}

fn diff(prefix: &str, before: &toml::Value, after: &toml::Value, changed: &mut BTreeSet<String>) {
    match (before, after) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let empty = toml::Value::Table(toml::Table::new());
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(&path, x, y, changed),
                    // A table added or removed: name the keys inside it.
                    (Some(x @ toml::Value::Table(_)), None) => diff(&path, x, &empty, changed),
                    (None, Some(y @ toml::Value::Table(_))) => diff(&path, &empty, y, changed),
                    _ => {
                        changed.insert(path);
                    }
                }
            }
        }
        (a, b) if a != b => {
            changed.insert(prefix.to_owned());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(before: &str, after: &str) -> Vec<String> {
        changed_keys(&before.parse().unwrap(), &after.parse().unwrap())
            .into_iter()
            .collect()
    }

    #[test]
    fn changed_keys_are_named_by_their_dotted_path() {
        assert_eq!(
            changed(
                "log = \"info\"\n[limits]\nmax_frame = 1\nmax_batch = 2\n",
                "log = \"debug\"\n[limits]\nmax_frame = 1\nmax_batch = 3\n[tls]\ncert = \"a\"\nkey = \"b\"\n"
            ),
            ["limits.max_batch", "log", "tls.cert", "tls.key"]
        );
        assert!(changed("[http]\nconsole = true\n", "[http]\nconsole = true\n").is_empty());
        assert_eq!(changed("[http]\nconsole = true\n", ""), ["http.console"]);
    }
}
