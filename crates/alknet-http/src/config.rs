//! `[http]`: the HTTP handler's section of `alknet.toml`.
//!
//! The connection limits HTTP obeys (`http_*`, `header_read_timeout`, …) stay
//! under core's `[limits]`, where the file has always had them.

use std::path::PathBuf;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[http]`: whether the node serves HTTP, and what it shows strangers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
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
    /// Serve MCP at `/mcp` (docs/protocol.md §14.1).
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

impl Default for HttpSection {
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

impl ConfigSection for HttpSection {
    const KEY: &'static str = "http";
    const TEMPLATE: &'static str = r#"[http]
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
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        match self.decoy {
            DecoyKind::StaticSite if self.decoy_root.is_none() => {
                return Err(InvalidKey::new(
                    "http.decoy_root",
                    "the site's directory, with decoy = \"static_site\"",
                ));
            }
            DecoyKind::Redirect
                if !self
                    .decoy_redirect
                    .as_deref()
                    .is_some_and(|to| to.starts_with("http://") || to.starts_with("https://")) =>
            {
                return Err(InvalidKey::new(
                    "http.decoy_redirect",
                    "an http:// or https:// URL, with decoy = \"redirect\"",
                ));
            }
            _ => {}
        }
        if let Some(path) = self.public_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(InvalidKey::new(
                "http.public_paths",
                format!("paths starting with / (not \"{path}\")"),
            ));
        }
        Ok(())
    }
}

/// The stealth decoy's variant (docs/protocol.md §11.7).
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use alknet_core::config::{Config, ConfigError, SectionRegistry};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        SectionRegistry::new()
            .with::<HttpSection>()
            .parse(text, Path::new("alknet.toml"))
    }

    #[test]
    fn the_written_template_is_exactly_the_defaults() {
        let config = parse(HttpSection::TEMPLATE).unwrap();
        assert_eq!(config.section::<HttpSection>(), &HttpSection::default());
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
        assert_eq!(config.section::<HttpSection>().decoy, DecoyKind::Redirect);
        assert!(parse("[http]\ndecoy = \"teapot\"\n").is_err());
    }

    #[test]
    fn public_paths_are_absolute() {
        let err = parse("[http]\npublic_paths = [\"console\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.public_paths"), "{err}");
    }

    #[test]
    fn an_unknown_key_names_the_file_and_the_key() {
        let err = parse("[http]\nenabled = true\nstelth = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("alknet.toml:"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `stelth`"), "{err}");
    }
}
