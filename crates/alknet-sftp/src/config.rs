//! `[sftp]`: where files live and the bounds on one session.

use std::path::PathBuf;

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[sftp]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftpSection {
    /// Serve SFTP: the SSH subsystem `sftp` and the ALPN `alknet/sftp`.
    pub enabled: bool,
    /// The directory SFTP clients see as `/`. Unset: `<data-dir>/files`.
    /// Relative paths are relative to the data directory.
    pub root: Option<PathBuf>,
    /// Give each identity its own directory under the root, named after
    /// the identity, instead of one shared tree.
    pub per_identity: bool,
    /// The largest SFTP packet a client may send, in bytes.
    pub max_packet: u32,
    /// Files and directories one session may hold open.
    pub max_open_handles: usize,
    /// Requests of one session that may run at once; the session stops
    /// reading while this many are unanswered.
    pub max_in_flight: usize,
}

impl Default for SftpSection {
    fn default() -> Self {
        Self {
            enabled: true,
            root: None,
            per_identity: false,
            // OpenSSH's own limit (SFTP_MAX_MSG_LENGTH).
            max_packet: 256 * 1024,
            max_open_handles: 256,
            max_in_flight: 64,
        }
    }
}

impl ConfigSection for SftpSection {
    const KEY: &'static str = "sftp";
    const TEMPLATE: &'static str = r#"[sftp]
# Serve SFTP: the SSH subsystem `sftp` (stock `sftp`, `scp`, `sshfs`) and the
# ALPN alknet/sftp (SFTP on a QUIC or TLS stream, no SSH layer). Access is by
# the scopes sftp:read and sftp:write, optionally limited to a path
# (sftp:write:/incoming); see docs/sftp.md.
enabled = true
# The directory clients see as `/`; nothing outside it is reachable. Unset:
# <data-dir>/files. A relative path is relative to the data directory.
# root = "/srv/alknet/files"
# One directory per identity under the root instead of one shared tree.
per_identity = false
# The largest packet a client may send, in bytes.
max_packet = 262144
# Files and directories one session may hold open.
max_open_handles = 256
# Requests of one session that may run at once.
max_in_flight = 64
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        if !(34_000..=16 * 1024 * 1024).contains(&self.max_packet) {
            // A client writes 32 KiB per packet: smaller would refuse it.
            return Err(InvalidKey::new(
                "sftp.max_packet",
                "a number of bytes from 34000 to 16777216",
            ));
        }
        let counts = [
            ("sftp.max_open_handles", self.max_open_handles, 1..=65_536),
            ("sftp.max_in_flight", self.max_in_flight, 1..=1024),
        ];
        for (key, value, range) in counts {
            if !range.contains(&value) {
                return Err(InvalidKey::new(
                    key,
                    format!("a number from {} to {}", range.start(), range.end()),
                ));
            }
        }
        Ok(())
    }
}
