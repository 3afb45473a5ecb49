//! `[import]`: HTTP APIs and MCP servers whose operations this node imports.
//!
//! The binary owns this section rather than `alknet-adapters`: the adapters
//! take their own runtime types (`OutboundSettings`, `HttpImport`,
//! `from_mcp::McpImport`), and only `crate::imports` turns these operator-
//! facing settings into them.

use std::path::PathBuf;
use std::time::Duration;

use alknet_adapters::outbound::OutboundSettings;
use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[import]`: HTTP APIs and MCP servers whose operations this node imports
/// (docs/protocol.md §14.2). Imports are internal unless `external = true`.
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
    /// The outbound client's own defaults, so that a node without
    /// `[import.client]` and a client built without configuration agree.
    fn default() -> Self {
        let outbound = OutboundSettings::default();
        Self {
            timeout: outbound.timeout,
            connect_timeout: outbound.connect_timeout,
            retries: outbound.retries,
            backoff: outbound.backoff,
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

impl ConfigSection for Imports {
    const KEY: &'static str = "import";
    const TEMPLATE: &'static str = r#"# HTTP APIs and MCP servers imported as operations (see docs/adapters.md).
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

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        let is_url = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        let check_auth = |key: &str, auth: &ImportAuth| -> Result<(), InvalidKey> {
            let has_credential = auth.credential.is_some() || auth.credential_file.is_some();
            if auth.credential.is_some() && auth.credential_file.is_some() {
                return Err(InvalidKey::new(
                    format!("{key}.credential"),
                    "either `credential` or `credential_file`, not both",
                ));
            }
            if auth.auth == AuthScheme::None && has_credential {
                return Err(InvalidKey::new(
                    format!("{key}.auth"),
                    "\"bearer\", \"api_key\" or \"basic\" when a credential is given",
                ));
            }
            if auth.auth != AuthScheme::None && !has_credential {
                return Err(InvalidKey::new(
                    format!("{key}.credential"),
                    "a credential name from credentials.toml (or `credential_file`)",
                ));
            }
            if (auth.auth == AuthScheme::ApiKey) != auth.auth_header.is_some() {
                return Err(InvalidKey::new(
                    format!("{key}.auth_header"),
                    "a header name with auth = \"api_key\" (and only then)",
                ));
            }
            Ok(())
        };
        let check_namespace = |key: &str, namespace: &str| -> Result<(), InvalidKey> {
            let valid = !namespace.is_empty()
                && namespace
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if valid {
                Ok(())
            } else {
                Err(InvalidKey::new(
                    format!("{key}.namespace"),
                    "one name segment of [A-Za-z0-9._-]",
                ))
            }
        };
        for (index, import) in self.openapi.iter().enumerate() {
            let key = format!("import.openapi[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if import.base_url.as_deref().is_some_and(|url| !is_url(url)) {
                return Err(InvalidKey::new(
                    format!("{key}.base_url"),
                    "an http:// or https:// URL",
                ));
            }
        }
        for (index, import) in self.mcp.iter().enumerate() {
            let key = format!("import.mcp[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if !is_url(&import.url) {
                return Err(InvalidKey::new(
                    format!("{key}.url"),
                    "an http:// or https:// URL",
                ));
            }
        }
        for (index, import) in self.jsonschema.iter().enumerate() {
            let key = format!("import.jsonschema[{index}]");
            check_namespace(&key, &import.namespace)?;
            check_auth(&key, &import.auth())?;
            if !is_url(&import.base_url) {
                return Err(InvalidKey::new(
                    format!("{key}.base_url"),
                    "an http:// or https:// URL",
                ));
            }
            if !import.path.starts_with('/') {
                return Err(InvalidKey::new(
                    format!("{key}.path"),
                    "a path template starting with /",
                ));
            }
        }
        if self.client.client_cert.is_some() != self.client.client_key.is_some() {
            return Err(InvalidKey::new(
                "import.client",
                "both `client_cert` and `client_key`, or neither",
            ));
        }
        if self.client.timeout.is_zero() || self.client.connect_timeout.is_zero() {
            return Err(InvalidKey::new(
                "import.client.timeout",
                "positive durations for `timeout` and `connect_timeout`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use alknet_core::config::{Config, ConfigError, SectionRegistry};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        SectionRegistry::new()
            .with::<Imports>()
            .parse(text, Path::new("alknet.toml"))
    }

    #[test]
    fn the_written_template_is_exactly_the_defaults() {
        let config = parse(Imports::TEMPLATE).unwrap();
        assert_eq!(config.section::<Imports>(), &Imports::default());
    }

    #[test]
    fn an_unknown_key_in_an_import_names_the_file_and_the_key() {
        let err = parse("[[import.mcp]]\nnamespace = \"a\"\nurl = \"https://x/mcp\"\ntoken = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("alknet.toml:"), "{err}");
        assert!(err.contains("unknown field `token`"), "{err}");
    }

    #[test]
    fn a_credential_needs_a_scheme() {
        let err = parse(
            "[[import.mcp]]\nnamespace = \"a\"\nurl = \"https://x/mcp\"\ncredential = \"c\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key `import.mcp[0].auth`"), "{err}");
    }
}
