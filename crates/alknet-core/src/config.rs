//! Node configuration: one TOML file, every key with an embedded default.
//!
//! `alknet serve` with no file at all runs a working local node, so every field
//! has a default, and [`DEFAULT_CONFIG_TOML`] (the file `alknet init` writes)
//! spells out each key with its default and a comment. Unknown keys are errors:
//! a typo must never silently fall back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole node configuration (`alknet.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address for both listeners: QUIC on UDP and TLS on TCP, same port number.
    pub listen: SocketAddr,
    /// Log filter (tracing `EnvFilter` syntax); `ALKNET_LOG` overrides it.
    pub log: String,
    /// Operator-supplied certificate for browser-facing TLS.
    pub tls: TlsSettings,
    /// Admission and handshake limits.
    pub limits: Limits,
    /// Restart policy and shutdown.
    pub supervision: Supervision,
    /// Per-protocol overrides, keyed by ALPN (e.g. `[protocols."alknet/echo"]`).
    pub protocols: BTreeMap<String, ProtocolSettings>,
    /// Diagnostic handlers.
    pub diagnostics: Diagnostics,
    /// The HTTP handler (`h2`, `http/1.1`).
    pub http: HttpSettings,
    /// Nodes whose operations this node imports (`[[upstreams]]`, `from_call`).
    pub upstreams: Vec<Upstream>,
    /// HTTP APIs and MCP servers imported as operations (`[import]`).
    pub import: Imports,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            log: "info".to_owned(),
            tls: TlsSettings::default(),
            limits: Limits::default(),
            supervision: Supervision::default(),
            protocols: BTreeMap::new(),
            diagnostics: Diagnostics::default(),
            http: HttpSettings::default(),
            upstreams: Vec::new(),
            import: Imports::default(),
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Serve `h2` and `http/1.1`: the gateway, `/healthz`, `/openapi.json`.
    pub enabled: bool,
    /// What every other path gets.
    pub decoy: DecoyKind,
    /// `static_site`: the site's directory (relative to the data directory).
    pub decoy_root: Option<PathBuf>,
    /// `redirect`: where to send visitors.
    pub decoy_redirect: Option<String>,
    /// Serve the operator console at `/console`; when off, the path gets the
    /// decoy.
    pub console: bool,
    /// Serve MCP at `/mcp` (PROTOCOL.md §14.1).
    pub mcp: bool,
    /// `Host` values `/mcp` accepts (`name` or `name:port`); loopback by
    /// default, against DNS rebinding. A public node lists its host names.
    pub mcp_allowed_hosts: Vec<String>,
    /// Answer every anonymous request outside `/healthz` and `public_paths`
    /// with the nginx 404, and keep the node id out of the browser-facing
    /// certificate.
    pub stealth: bool,
    /// With `stealth`: further paths anonymous requests may reach (exact
    /// paths, e.g. `/console`).
    pub public_paths: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            decoy: DecoyKind::NotFound,
            decoy_root: None,
            decoy_redirect: None,
            console: true,
            mcp: true,
            mcp_allowed_hosts: default_mcp_allowed_hosts(),
            stealth: false,
            public_paths: Vec::new(),
        }
    }
}

fn default_mcp_allowed_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .to_vec()
}

/// `[import]`: HTTP APIs and MCP servers whose operations this node imports
/// (PROTOCOL.md §14.2). Imports are internal unless `external = true`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Imports {
    /// The outbound HTTP client every import shares.
    pub client: ImportClient,
    /// `[[import.openapi]]`.
    pub openapi: Vec<OpenApiImport>,
    /// `[[import.mcp]]`.
    pub mcp: Vec<McpImport>,
    /// `[[import.jsonschema]]`.
    pub jsonschema: Vec<JsonSchemaImport>,
}

/// `[import.client]`: the outbound HTTP client. Paths are relative to the
/// data directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportClient {
    /// Deadline of one request/response exchange (not of an SSE stream).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline of establishing a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retries of a transient failure (connect error, 408, 429, 5xx).
    pub retries: u32,
    /// First retry delay, doubled for each further retry.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Extra trust anchors (PEM).
    pub ca_bundle: Option<PathBuf>,
    /// A client certificate chain to present (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl Default for ImportClient {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(100),
            ca_bundle: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// How an import presents its credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// No credential.
    #[default]
    None,
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// `<auth_header>: <credential>`.
    ApiKey,
    /// `Authorization: Basic …` of a `user:password` credential.
    Basic,
}

/// The credential of an import: where it is and how it is sent. Never an
/// environment variable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportAuth {
    /// The scheme.
    pub auth: AuthScheme,
    /// `api_key`: the header's name.
    pub auth_header: Option<String>,
    /// A credential name in `credentials.toml`.
    pub credential: Option<String>,
    /// A file holding the credential in clear.
    pub credential_file: Option<PathBuf>,
}

macro_rules! import_auth {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The import's credential settings.
            pub fn auth(&self) -> ImportAuth {
                ImportAuth {
                    auth: self.auth,
                    auth_header: self.auth_header.clone(),
                    credential: self.credential.clone(),
                    credential_file: self.credential_file.clone(),
                }
            }
        }
    )*};
}

import_auth!(OpenApiImport, McpImport, JsonSchemaImport);

/// `[[import.openapi]]`: an OpenAPI 3.0/3.1 document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiImport {
    /// Imported names are `<namespace>/<operation>`.
    pub namespace: String,
    /// The document: a path (relative to the data directory) or an
    /// `http(s)://` URL.
    pub source: String,
    /// The API's base URL [default: the document's first absolute server].
    #[serde(default)]
    pub base_url: Option<String>,
    /// How the credential is sent.
    #[serde(default)]
    pub auth: AuthScheme,
    /// `api_key`: the header's name, e.g. `X-API-Key`.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// A credential sealed with the vault, by its name in `credentials.toml`.
    #[serde(default)]
    pub credential: Option<String>,
    /// A file holding the credential in clear (relative to the data
    /// directory; one trailing newline ignored; keep it mode 0600).
    #[serde(default)]
    pub credential_file: Option<PathBuf>,
    /// Reachable from outside this node.
    #[serde(default)]
    pub external: bool,
    /// Accept any server certificate (labs only).
    #[serde(default)]
    pub insecure: bool,
}

/// `[[import.mcp]]`: a remote streamable-HTTP MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpImport {
    /// Imported names are `<namespace>/<tool>`.
    pub namespace: String,
    /// The MCP endpoint, e.g. `https://host/mcp`.
    pub url: String,
    /// How the credential is sent.
    #[serde(default)]
    pub auth: AuthScheme,
    /// `api_key`: the header's name, e.g. `X-API-Key`.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// A credential sealed with the vault, by its name in `credentials.toml`.
    #[serde(default)]
    pub credential: Option<String>,
    /// A file holding the credential in clear (relative to the data
    /// directory; one trailing newline ignored; keep it mode 0600).
    #[serde(default)]
    pub credential_file: Option<PathBuf>,
    /// Reachable from outside this node.
    #[serde(default)]
    pub external: bool,
    /// Accept any server certificate (labs only).
    #[serde(default)]
    pub insecure: bool,
}

/// `[[import.jsonschema]]`: one HTTP endpoint from an OperationSpec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaImport {
    /// The operation is `<namespace>/<spec name>`.
    pub namespace: String,
    /// The OperationSpec JSON file (relative to the data directory).
    pub spec: PathBuf,
    /// The HTTP method.
    pub method: String,
    /// The path template, e.g. `/widgets/{id}`.
    pub path: String,
    /// The API's base URL.
    pub base_url: String,
    /// How the credential is sent.
    #[serde(default)]
    pub auth: AuthScheme,
    /// `api_key`: the header's name, e.g. `X-API-Key`.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// A credential sealed with the vault, by its name in `credentials.toml`.
    #[serde(default)]
    pub credential: Option<String>,
    /// A file holding the credential in clear (relative to the data
    /// directory; one trailing newline ignored; keep it mode 0600).
    #[serde(default)]
    pub credential_file: Option<PathBuf>,
    /// Reachable from outside this node.
    #[serde(default)]
    pub external: bool,
    /// Accept any server certificate (labs only).
    #[serde(default)]
    pub insecure: bool,
}

impl Imports {
    fn validate(&self, invalid: &dyn Fn(&str, &str) -> ConfigError) -> Result<(), ConfigError> {
        let is_url = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        let check_auth = |key: &str, auth: &ImportAuth| -> Result<(), ConfigError> {
            let has_credential = auth.credential.is_some() || auth.credential_file.is_some();
            if auth.credential.is_some() && auth.credential_file.is_some() {
                return Err(invalid(
                    &format!("{key}.credential"),
                    "either `credential` or `credential_file`, not both",
                ));
            }
            if auth.auth == AuthScheme::None && has_credential {
                return Err(invalid(
                    &format!("{key}.auth"),
                    "\"bearer\", \"api_key\" or \"basic\" when a credential is given",
                ));
            }
            if auth.auth != AuthScheme::None && !has_credential {
                return Err(invalid(
                    &format!("{key}.credential"),
                    "a credential name from credentials.toml (or `credential_file`)",
                ));
            }
            if (auth.auth == AuthScheme::ApiKey) != auth.auth_header.is_some() {
                return Err(invalid(
                    &format!("{key}.auth_header"),
                    "a header name with auth = \"api_key\" (and only then)",
                ));
            }
            Ok(())
        };
        let check_namespace = |key: &str, namespace: &str| -> Result<(), ConfigError> {
            let valid = !namespace.is_empty()
                && namespace
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if valid {
                Ok(())
            } else {
                Err(invalid(
                    &format!("{key}.namespace"),
                    "one name segment of [A-Za-z0-9._-]",
                ))
            }
        };
        for (index, import) in self.openapi.iter().enumerate() {
            let key = format!("import.openapi[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if import.base_url.as_deref().is_some_and(|url| !is_url(url)) {
                return Err(invalid(
                    &format!("{key}.base_url"),
                    "an http:// or https:// URL",
                ));
            }
        }
        for (index, import) in self.mcp.iter().enumerate() {
            let key = format!("import.mcp[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if !is_url(&import.url) {
                return Err(invalid(&format!("{key}.url"), "an http:// or https:// URL"));
            }
        }
        for (index, import) in self.jsonschema.iter().enumerate() {
            let key = format!("import.jsonschema[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if !is_url(&import.base_url) {
                return Err(invalid(
                    &format!("{key}.base_url"),
                    "an http:// or https:// URL",
                ));
            }
            if !import.path.starts_with('/') {
                return Err(invalid(
                    &format!("{key}.path"),
                    "a path template starting with /",
                ));
            }
        }
        if self.client.client_cert.is_some() != self.client.client_key.is_some() {
            return Err(invalid(
                "import.client",
                "both `client_cert` and `client_key`, or neither",
            ));
        }
        if self.client.timeout.is_zero() || self.client.connect_timeout.is_zero() {
            return Err(invalid(
                "import.client.timeout",
                "positive durations for `timeout` and `connect_timeout`",
            ));
        }
        Ok(())
    }
}

/// The stealth decoy's variant (PROTOCOL.md §11.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoyKind {
    /// nginx's default 404 page.
    #[default]
    NotFound,
    /// Files from `decoy_root`.
    StaticSite,
    /// `302` to `decoy_redirect`.
    Redirect,
}

/// `[[upstreams]]`: one node whose operations this node imports over a call
/// session (`from_call`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Its address.
    pub address: SocketAddr,
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

/// `[limits]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections the node holds at once, over all protocols.
    pub max_connections: usize,
    /// Connections one protocol holds at once (override per protocol).
    pub max_connections_per_protocol: usize,
    /// Time a client has to complete its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once, per listener. When full, a new
    /// connection evicts the oldest handshake whose peer has sent nothing yet
    /// (QUIC: whose address is not validated), else the oldest; past half of
    /// it, QUIC answers Initials from unvalidated addresses with a stateless
    /// Retry.
    pub max_pending_handshakes: usize,
    /// Largest call-protocol frame (and WebSocket message), in bytes; at most
    /// 64 MiB.
    pub max_frame: usize,
    /// Requests a call session serves at once from its remote end.
    pub max_in_flight: usize,
    /// Deadline of a query or mutation.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// A call session whose peer reads nothing for this long while output
    /// waits is closed.
    #[serde(with = "humantime_serde")]
    pub write_stall: Duration,
    /// Items one gateway `/batch` may hold.
    pub max_batch: usize,
    /// A connection that has sent no complete request (HTTP) or frame (call
    /// protocol) this long after its TLS handshake is closed.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// HTTP/1.1: time a client has to send a request's headers, counted from
    /// when the connection waits for the next request.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// An HTTP connection with no request in flight this long is closed.
    #[serde(with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// HTTP/2: a connection that has received nothing this long is pinged.
    #[serde(with = "humantime_serde")]
    pub http2_ping_interval: Duration,
    /// HTTP/2: a ping unanswered this long closes the connection.
    #[serde(with = "humantime_serde")]
    pub http2_ping_timeout: Duration,
    /// Slowest average rate a request body may arrive at, in bytes per
    /// second; a body may fall behind it by `header_read_timeout`.
    pub min_body_rate: u64,
    /// Request- and response-body bytes one HTTP connection may hold at
    /// once, over all its requests.
    pub http_body_budget: usize,
    /// HTTP/2: requests (streams) one connection may have open at once.
    pub http2_max_streams: u32,
    /// HTTP/2: bytes of response data queued per stream for a peer that is
    /// not reading.
    pub http2_send_buffer: usize,
    /// `/subscribe` streams one HTTP connection may hold at once.
    pub http_max_subscriptions: usize,
    /// Operations one call session may register with `session/register`.
    pub max_overlay_operations: usize,
    /// JSON bytes of the operations one call session may register.
    pub max_overlay_bytes: usize,
    /// JSON bytes of registered operations over all sessions of the node;
    /// sessions without an identity share at most half of it.
    pub max_overlay_bytes_total: usize,
}

/// The largest `limits.max_frame` any configuration may set (64 MiB).
pub const ABSOLUTE_MAX_FRAME: usize = 67_108_864;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_protocol: 4_096,
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 1_024,
            max_frame: 16_777_216,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            write_stall: Duration::from_secs(30),
            max_batch: 100,
            first_request_timeout: Duration::from_secs(30),
            max_overlay_operations: 256,
            max_overlay_bytes: 262_144,
            max_overlay_bytes_total: 16_777_216,
            header_read_timeout: Duration::from_secs(30),
            http_idle_timeout: Duration::from_secs(60),
            http2_ping_interval: Duration::from_secs(20),
            http2_ping_timeout: Duration::from_secs(20),
            min_body_rate: 1024,
            http_body_budget: 32 * 1024 * 1024,
            http2_max_streams: 100,
            http2_send_buffer: 16 * 1024,
            http_max_subscriptions: 16,
        }
    }
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

/// `[diagnostics]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diagnostics {
    /// Serve `alknet/echo` (each stream echoes its bytes).
    pub echo: bool,
    /// Register the call-protocol operations `diag/echo`, `diag/sleep`,
    /// `diag/count` and `diag/callback`.
    pub call_ops: bool,
    /// Serve `alknet/fault` (test builds only: panics on command).
    #[cfg(feature = "fault-injection")]
    pub fault: bool,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema; the message
    /// names the line, the key and what was expected.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's description, with line, column and key.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: key `{key}`: expected {expected}")]
    Invalid {
        /// The file (or `<defaults>`).
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What a valid value looks like.
        expected: String,
    },
}

impl NodeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks ranges and combinations serde cannot express.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: &str| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            expected: expected.to_owned(),
        };
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "a positive number"));
        }
        if self.limits.max_connections_per_protocol == 0 {
            return Err(invalid(
                "limits.max_connections_per_protocol",
                "a positive number",
            ));
        }
        if self.limits.max_pending_handshakes == 0 {
            return Err(invalid(
                "limits.max_pending_handshakes",
                "a positive number",
            ));
        }
        if self.limits.max_frame == 0 || self.limits.max_frame > ABSOLUTE_MAX_FRAME {
            return Err(invalid("limits.max_frame", "1 to 67108864 bytes"));
        }
        if self.limits.max_in_flight == 0 {
            return Err(invalid("limits.max_in_flight", "a positive number"));
        }
        if self.limits.call_timeout.is_zero() {
            return Err(invalid(
                "limits.call_timeout",
                "a positive duration such as \"30s\"",
            ));
        }
        match self.http.decoy {
            DecoyKind::StaticSite if self.http.decoy_root.is_none() => {
                return Err(invalid(
                    "http.decoy_root",
                    "the site's directory, with decoy = \"static_site\"",
                ));
            }
            DecoyKind::Redirect
                if !self
                    .http
                    .decoy_redirect
                    .as_deref()
                    .is_some_and(|to| to.starts_with("http://") || to.starts_with("https://")) =>
            {
                return Err(invalid(
                    "http.decoy_redirect",
                    "an http:// or https:// URL, with decoy = \"redirect\"",
                ));
            }
            _ => {}
        }
        if self.limits.max_batch == 0 {
            return Err(invalid("limits.max_batch", "a positive number"));
        }
        if self.limits.write_stall.is_zero() {
            return Err(invalid(
                "limits.write_stall",
                "a positive duration such as \"30s\"",
            ));
        }
        self.validate_connection_limits(&invalid)?;
        if let Some(path) = self.http.public_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid(
                "http.public_paths",
                &format!("paths starting with / (not \"{path}\")"),
            ));
        }
        if self.limits.max_overlay_bytes > self.limits.max_overlay_bytes_total {
            return Err(invalid(
                "limits.max_overlay_bytes",
                "at most limits.max_overlay_bytes_total",
            ));
        }
        for (index, upstream) in self.upstreams.iter().enumerate() {
            let key = |field: &str| format!("upstreams[{index}].{field}");
            match (&upstream.pin, upstream.insecure) {
                (Some(_), true) | (None, false) => {
                    return Err(invalid(
                        &key("pin"),
                        "either `pin = \"ed25519:<hex>\"` or `insecure = true`",
                    ));
                }
                (Some(pin), false) if pin.parse::<crate::NodeId>().is_err() => {
                    return Err(invalid(&key("pin"), "a node id `ed25519:<64 hex digits>`"));
                }
                _ => {}
            }
            if upstream.idle_timeout < Duration::from_millis(100) {
                return Err(invalid(&key("idle_timeout"), "at least \"100ms\""));
            }
        }
        self.import.validate(&invalid)?;
        if self.limits.handshake_timeout.is_zero() {
            return Err(invalid(
                "limits.handshake_timeout",
                "a positive duration such as \"10s\"",
            ));
        }
        if self.supervision.restart_window.is_zero() {
            return Err(invalid(
                "supervision.restart_window",
                "a positive duration such as \"10s\"",
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid("tls", "both `cert` and `key`, or neither"));
        }
        for (alpn, settings) in &self.protocols {
            if settings.max_connections == Some(0) {
                return Err(invalid(
                    &format!("protocols.\"{alpn}\".max_connections"),
                    "a positive number",
                ));
            }
            if settings.restart_window.is_some_and(|w| w.is_zero()) {
                return Err(invalid(
                    &format!("protocols.\"{alpn}\".restart_window"),
                    "a positive duration such as \"10s\"",
                ));
            }
        }
        Ok(())
    }

    /// The timeouts and caps that bound one connection after its handshake.
    fn validate_connection_limits(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let limits = &self.limits;
        for (key, value) in [
            ("first_request_timeout", limits.first_request_timeout),
            ("header_read_timeout", limits.header_read_timeout),
            ("http_idle_timeout", limits.http_idle_timeout),
            ("http2_ping_interval", limits.http2_ping_interval),
            ("http2_ping_timeout", limits.http2_ping_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    &format!("limits.{key}"),
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
                return Err(invalid(&format!("limits.{key}"), "a positive number"));
            }
        }
        Ok(())
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

/// The file `alknet init` writes: every key, its default, and what it does.
pub const DEFAULT_CONFIG_TOML: &str = r#"# alknet node configuration.
# Every key below is shown with its default; delete a line to keep the default.
# Unknown keys are errors. Durations are written like "500ms", "10s", "2m".

# QUIC (UDP) and TLS (TCP) listen on this address, the same port number for both.
listen = "127.0.0.1:4433"

# Log filter (tracing EnvFilter syntax, e.g. "info,alknet_supervisors=debug").
# The ALKNET_LOG environment variable overrides it.
log = "info"

[tls]
# An operator certificate (PEM chain and key) for browser-facing TLS: used for
# clients that offer no alknet/* ALPN. Relative paths are relative to the data
# directory. Without it, peers get the node's Ed25519 certificate and browsers a
# self-signed ECDSA certificate from the data directory.
# cert = "fullchain.pem"
# key = "privkey.pem"

[limits]
# Connections the node holds at once, over all protocols. Excess connections
# are refused: QUIC application error 0x2 "connection limit reached"; TCP+TLS
# closed right after the handshake.
max_connections = 10000
# Connections one protocol holds at once (override under [protocols."<alpn>"]).
max_connections_per_protocol = 4096
# Time a client has to complete its TLS handshake.
handshake_timeout = "10s"
# Handshakes in progress at once, per listener. When full, a new connection
# evicts the oldest handshake whose peer has sent nothing yet (QUIC: whose
# address is not validated), else the oldest, so idle sockets cannot lock real
# clients out. Past half of it, QUIC answers Initials from unvalidated
# addresses with a stateless Retry.
max_pending_handshakes = 1024
# Largest call-protocol frame, in bytes (at most 67108864 = 64 MiB).
max_frame = 16777216
# Requests one call session serves at once; beyond it: UNAVAILABLE.
max_in_flight = 256
# Deadline of a query or mutation; beyond it: TIMEOUT.
call_timeout = "30s"
# A call session whose peer reads nothing for this long while output waits is
# closed.
write_stall = "30s"
# Calls one HTTP gateway /batch may hold; beyond it: 413.
max_batch = 100
# A connection that has sent no complete request (HTTP) or frame (alknet/call)
# this long after its TLS handshake is closed.
first_request_timeout = "30s"
# HTTP/1.1: time a client has to send a request's headers, counted from when the
# connection starts waiting for the next request; beyond it the connection is
# closed.
header_read_timeout = "30s"
# An HTTP connection with no request in flight this long is closed.
http_idle_timeout = "60s"
# HTTP/2: a connection that has received nothing this long is pinged, and closed
# if the ping goes unanswered for http2_ping_timeout.
http2_ping_interval = "20s"
http2_ping_timeout = "20s"
# Slowest average rate (bytes per second) a request body may arrive at; a body
# may fall behind it by header_read_timeout. Slower: 408, and the body is dropped.
min_body_rate = 1024
# Request- and response-body bytes one HTTP connection may hold at once, over
# all its requests (a reply counts until its peer has read it); beyond it: 503.
http_body_budget = 33554432
# HTTP/2: requests (streams) one connection may have open at once.
http2_max_streams = 100
# HTTP/2: response bytes queued per stream while the peer is not reading.
http2_send_buffer = 16384
# /subscribe streams one HTTP connection may hold at once; beyond it: 503. A
# subscription whose events the peer does not read for write_stall is ended.
http_max_subscriptions = 16
# What one call session may register with session/register (operations, and
# bytes of their JSON), and what all sessions may hold together; sessions
# without an identity share at most half of the total. Beyond: INVALID_INPUT.
max_overlay_operations = 256
max_overlay_bytes = 262144
max_overlay_bytes_total = 16777216

[supervision]
# A crashed protocol supervisor, listener or router is restarted; more than
# max_restarts restarts within restart_window escalate: the node logs one line
# and shuts down in order (exit status 1), for the service manager to act on.
max_restarts = 5
restart_window = "10s"
# On SIGINT/SIGTERM, connections get this long to finish before they are closed.
drain_timeout = "5s"

# Per-protocol overrides, keyed by ALPN:
# [protocols."alknet/echo"]
# max_connections = 1000
# max_restarts = 3
# restart_window = "30s"

[diagnostics]
# Serve alknet/echo: every stream echoes its bytes. For tests and benchmarks.
echo = false
# Register the call operations diag/echo (returns its input), diag/sleep
# ({"ms": n}, at most 60000), diag/count (a subscription: {"n": items,
# "interval_ms": gap}) and diag/callback (calls an operation the caller
# registered on its own session). For tests and benchmarks.
call_ops = false

[http]
# Serve HTTP (h2 and http/1.1) on the same port: /healthz, the operation
# gateway (/search, /schema, /call, /batch, /subscribe) and /openapi.json.
# Every other path gets the decoy, which never mentions alknet: "not_found"
# (nginx's default 404 page), "static_site" (files from decoy_root, relative to
# the data directory) or "redirect" (302 to decoy_redirect).
enabled = true
decoy = "not_found"
# decoy_root = "www"
# decoy_redirect = "https://example.com/"
# The operator console at /console: a page that talks to the node only through
# the WebSocket session at /alknet/call, with a token the operator types.
# When off, /console gets the decoy.
console = true
# MCP for AI agents at /mcp (four tools: search, schema, call, batch; the
# bearer token decides what they reach). Requests whose Host is not listed are
# refused (DNS rebinding): a public node adds its own host names.
mcp = true
mcp_allowed_hosts = ["localhost", "127.0.0.1", "::1"]
# Stealth: every request without a valid bearer token gets nginx's 404 (byte
# for byte), except /healthz and the paths listed in public_paths (e.g.
# "/console", "/alknet/call" for browsers); the browser-facing certificate
# does not name the node. Anonymous requests get that 404 whatever decoy says.
stealth = false
public_paths = []

# Upstream nodes whose operations this node imports (from_call), one
# [[upstreams]] table each. Imports are internal (only this node's own
# operations can call them) unless external = true, keep the upstream's access
# control, and are named <prefix>/<name> when a prefix is set. An upstream that
# is unreachable at start is retried in the background.
# [[upstreams]]
# address = "192.0.2.10:4433"
# pin = "ed25519:<64 hex digits>"   # or: insecure = true
# transport = "quic"                # or "tcp"
# token = "alk_..."                 # without it, this node's key identifies it
# prefix = "spoke"
# external = false
# idle_timeout = "30s"

# HTTP APIs and MCP servers imported as operations (see docs/adapters.md).
# Imports are internal unless external = true. Credentials come from
# credentials.toml (sealed with the vault) or a file, never the environment.
[import.client]
timeout = "30s"
connect_timeout = "10s"
retries = 3
backoff = "100ms"
# ca_bundle = "ca.pem"
# client_cert = "client.pem"
# client_key = "client.key"
# [[import.openapi]]
# namespace = "pets"
# source = "petstore.yaml"          # or an https:// URL
# base_url = "https://api.example/v3"
# auth = "api_key"                  # "none", "bearer", "api_key" or "basic"
# auth_header = "X-API-Key"
# credential = "petstore"           # a name in credentials.toml
# [[import.mcp]]
# namespace = "tools"
# url = "https://mcp.example/mcp"
# auth = "bearer"
# credential_file = "secrets/mcp-token"
# [[import.jsonschema]]
# namespace = "widgets"
# spec = "widget-get.json"          # an OperationSpec
# method = "GET"
# path = "/widgets/{id}"
# base_url = "https://api.example"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("alknet.toml"))
    }

    #[test]
    fn the_written_template_is_exactly_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG_TOML).unwrap(), NodeConfig::default());
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
        let upstream = &config.upstreams[0];
        assert_eq!(upstream.transport, UpstreamTransport::Tcp);
        assert_eq!(upstream.prefix.as_deref(), Some("spoke"));
        assert!(!upstream.external);
        assert_eq!(upstream.idle_timeout, Duration::from_secs(30));
        let err = parse(&format!("{base}insecure = true\ntoken = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
    }

    #[test]
    fn a_decoy_variant_needs_its_setting() {
        let err = parse("[http]\ndecoy = \"static_site\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.decoy_root"), "{err}");
        let err = parse("[http]\ndecoy = \"redirect\"\ndecoy_redirect = \"ftp://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.decoy_redirect"), "{err}");
        let config =
            parse("[http]\ndecoy = \"redirect\"\ndecoy_redirect = \"https://example.com/\"\n")
                .unwrap();
        assert_eq!(config.http.decoy, DecoyKind::Redirect);
        assert!(parse("[http]\ndecoy = \"teapot\"\n").is_err());
    }

    #[test]
    fn a_silent_connection_is_closed_after_30_s_by_default() {
        let limits = parse("").unwrap().limits;
        assert_eq!(limits.first_request_timeout, Duration::from_secs(30));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.http_idle_timeout, Duration::from_secs(60));
        let err = parse("[limits]\nfirst_request_timeout = \"0s\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.first_request_timeout"), "{err}");
        let err = parse("[limits]\nhttp_max_subscriptions = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.http_max_subscriptions"), "{err}");
        let err = parse("[http]\npublic_paths = [\"console\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.public_paths"), "{err}");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let err = parse("lisen = \"127.0.0.1:1\"").unwrap_err().to_string();
        assert!(err.starts_with("alknet.toml:"), "{err}");
        assert!(err.contains("lisen"), "{err}");
        let err = parse("[limits]\nmax_conections = 3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_conections") && err.contains("max_connections"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let err = parse("listen = 4433").unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = parse("[supervision]\ndrain_timeout = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("drain_timeout"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_key() {
        let err = parse("[limits]\nmax_connections = 0")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "alknet.toml: key `limits.max_connections`: expected a positive number"
        );
        let err = parse("[tls]\ncert = \"a.pem\"").unwrap_err().to_string();
        assert!(err.contains("key `tls`"), "{err}");
    }

    #[test]
    fn protocol_overrides_apply_to_their_protocol_only() {
        let config = parse(
            "[protocols.\"alknet/echo\"]\nmax_connections = 7\nmax_restarts = 2\nrestart_window = \"1s\"",
        )
        .unwrap();
        assert_eq!(config.max_connections_for("alknet/echo"), 7);
        assert_eq!(config.max_connections_for("alknet/call"), 4096);
        assert_eq!(
            config.restart_intensity_for("alknet/echo"),
            (2, Duration::from_secs(1))
        );
        assert_eq!(
            config.restart_intensity_for("h2"),
            (5, Duration::from_secs(10))
        );
    }
}
