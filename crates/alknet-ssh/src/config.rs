//! `[ssh]`: whether SSH is served, the optional plain listener, the shell,
//! and the bounds on what one connection may hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[ssh]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSection {
    /// Serve `alknet/ssh` on the node's port. Unset: served when the vault
    /// can derive the host key (every data directory `alknet init` made;
    /// not one from before the vault, which then serves without SSH and
    /// says so).
    pub enabled: Option<bool>,
    /// Also accept SSH without TLS on this address (for `ssh -p` and
    /// `ssh-keyscan`, which cannot use a proxy command).
    pub listen: Option<SocketAddr>,
    /// The shell for `shell` and `exec` requests; unset: the node user's
    /// login shell, else `/bin/sh`.
    pub shell: Option<PathBuf>,
    /// Remote forwards (`ssh -R`) may bind other addresses than loopback.
    pub gateway_ports: bool,
    /// Channels one connection may hold open at once.
    pub max_channels: usize,
    /// Remote forwards (`ssh -R`) one connection may hold.
    pub max_remote_forwards: usize,
    /// Public-key attempts one connection may make.
    pub max_auth_attempts: usize,
    /// Failed logins one source address may make per minute before its new
    /// connections are refused for the rest of that minute.
    pub max_failed_logins_per_minute: u32,
    /// Time from connect to a successful login.
    #[serde(with = "humantime_serde")]
    pub login_grace_time: Duration,
    /// A connection silent this long (no data on any channel, no keepalive
    /// answer) is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Certificate authorities whose OpenSSH user certificates log in.
    pub user_ca: Vec<UserCa>,
}

/// `[[ssh.user_ca]]`: a CA whose user certificates log in. The requested
/// user name must be one of the certificate's principals; it becomes the
/// identity's id, with this entry's scopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCa {
    /// The CA's public key, as `ssh-keygen` writes it (`ssh-ed25519 AAAA…`).
    pub key: String,
    /// Scopes granted to every principal it certifies.
    pub scopes: Vec<String>,
    /// If not empty, only these principals may log in with its
    /// certificates.
    #[serde(default)]
    pub principals: Vec<String>,
}

impl Default for SshSection {
    fn default() -> Self {
        Self {
            enabled: None,
            listen: None,
            shell: None,
            gateway_ports: false,
            max_channels: 32,
            max_remote_forwards: 8,
            max_auth_attempts: 6,
            max_failed_logins_per_minute: 30,
            login_grace_time: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            user_ca: Vec::new(),
        }
    }
}

impl SshSection {
    /// Whether SSH is served, given whether the vault can derive its host
    /// key: as configured, else when it can.
    pub fn served(&self, has_vault: bool) -> bool {
        self.enabled.unwrap_or(has_vault)
    }
}

impl ConfigSection for SshSection {
    const KEY: &'static str = "ssh";
    const TEMPLATE: &'static str = r#"[ssh]
# Serve SSH (ALPN alknet/ssh) on the node's port, for stock OpenSSH clients
# through `alknet proxy` or `openssl s_client` as a ProxyCommand. Logins are
# by public key only, for peers added with `alknet peer add`; scopes decide
# what each may do (docs/ssh.md). Unset: on, unless the data directory
# predates the vault (no mnemonic to derive the host key from).
# enabled = true
# Also accept SSH without TLS on this address, e.g. "127.0.0.1:2222", for
# `ssh -p` and `ssh-keyscan`. Unset: no plain listener.
# listen = "127.0.0.1:2222"
# The shell that runs `ssh host` and `ssh host command`. Unset: the login
# shell of the user the node runs as.
# shell = "/bin/bash"
# Whether `ssh -R` may bind addresses other than loopback.
gateway_ports = false
# Channels (shells, commands, forwards) one connection may hold open.
max_channels = 32
# Remote forwards (`ssh -R`) one connection may hold.
max_remote_forwards = 8
# Public keys one connection may try.
max_auth_attempts = 6
# Failed logins from one address per minute before it is refused for the
# rest of that minute.
max_failed_logins_per_minute = 30
# Time allowed from connecting to a successful login.
login_grace_time = "30s"
# A connection with no traffic this long is closed.
idle_timeout = "10m"
# OpenSSH user certificates signed by a CA listed here log in as the
# principal the client asks for (which must be in the certificate), with
# the scopes of the CA's entry:
# [[ssh.user_ca]]
# key = "ssh-ed25519 AAAA… ca@example.org"
# scopes = ["ssh:shell"]
# principals = ["alice", "bob"]   # optional: only these
"#;

    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey> {
        if self
            .listen
            .is_some_and(|listen| node.is_the_node_address(listen))
        {
            return Err(InvalidKey::new(
                "ssh.listen",
                "an address other than the node's own `listen` (SSH is served there already, inside TLS)",
            ));
        }
        if let Some(shell) = &self.shell
            && !shell.is_absolute()
        {
            return Err(InvalidKey::new("ssh.shell", "an absolute path"));
        }
        let counts = [
            ("ssh.max_channels", self.max_channels, 1..=1024),
            ("ssh.max_remote_forwards", self.max_remote_forwards, 0..=256),
            ("ssh.max_auth_attempts", self.max_auth_attempts, 1..=64),
        ];
        for (key, value, range) in counts {
            if !range.contains(&value) {
                return Err(InvalidKey::new(
                    key,
                    format!("a number from {} to {}", range.start(), range.end()),
                ));
            }
        }
        if self.max_failed_logins_per_minute == 0 {
            return Err(InvalidKey::new(
                "ssh.max_failed_logins_per_minute",
                "at least 1",
            ));
        }
        for (index, ca) in self.user_ca.iter().enumerate() {
            if crate::keys::parse_public_key(&ca.key).is_err() {
                return Err(InvalidKey::new(
                    format!("ssh.user_ca[{index}].key"),
                    "an OpenSSH public key line (`ssh-ed25519 AAAA… comment`)",
                ));
            }
            if ca.scopes.is_empty() {
                return Err(InvalidKey::new(
                    format!("ssh.user_ca[{index}].scopes"),
                    "at least one scope (e.g. \"ssh:shell\")",
                ));
            }
        }
        let times = [
            ("ssh.login_grace_time", self.login_grace_time),
            ("ssh.idle_timeout", self.idle_timeout),
        ];
        for (key, value) in times {
            if value < Duration::from_secs(1) || value > Duration::from_secs(86_400) {
                return Err(InvalidKey::new(key, "a duration from 1s to 24h"));
            }
        }
        Ok(())
    }
}
