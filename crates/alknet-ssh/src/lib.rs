//! `alknet/ssh`: an SSH-2 server for stock OpenSSH clients behind the node's
//! one port.
//!
//! A QUIC connection's first bidirectional stream, a TCP+TLS connection's
//! stream, or a plain TCP connection from the optional `[ssh] listen`
//! address carries one SSH connection, which [russh] runs. Logins are by
//! public key only: a key is named as a peer entry names it
//! ([`keys::fingerprint`]), so `alknet peer add` grants SSH access the way it
//! grants a client certificate access, and the identity's scopes decide
//! what the connection may do ([`access`]).
//!
//! Each connection is an `ssh-conn` actor; each of its channels (a shell, a
//! command, a forward) is an `ssh-channel` actor linked under it, listed by
//! `admin/tree` with what it runs and its bytes, and stopped by
//! `admin/kill`. A channel's processes die with it.

#![warn(missing_docs)]

pub mod access;
mod auth;
mod channel;
pub mod command;
pub mod config;
mod connection;
mod forward;
pub mod keys;
mod process;
mod session_channel;
pub mod subsystem;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::protocol_keys::ProtocolKey;
use alknet_core::{Connection, HandlerError, IdentityProvider, Protocol, ProtocolHandler, close};
use russh::MethodKind;

pub use command::{Command, CommandRequest};
pub use config::SshSection;
pub use subsystem::{Subsystem, SubsystemIo};

/// The SSH protocol's ALPN.
pub const ALPN: &str = "alknet/ssh";

/// The exec command that panics the connection's handler in fault-injection
/// builds with `[diagnostics] fault` on: tests prove one SSH connection's
/// panic leaves the rest of the node serving.
pub const FAULT_PANIC_COMMAND: &str = "alknet-fault:panic";

/// Serves `alknet/ssh`.
#[derive(Clone)]
pub struct SshHandler {
    shared: Arc<Shared>,
}

/// What every connection of the handler shares.
pub(crate) struct Shared {
    pub(crate) russh: Arc<russh::server::Config>,
    pub(crate) settings: SshSection,
    /// The shell `shell` and `exec` requests run.
    pub(crate) shell: PathBuf,
    pub(crate) identities: Arc<dyn IdentityProvider>,
    pub(crate) logins: auth::FailedLogins,
    pub(crate) user_cas: auth::UserCas,
    pub(crate) fault_injection: bool,
    /// Subsystems by name (`sftp`).
    pub(crate) subsystems: HashMap<String, Arc<dyn Subsystem>>,
    /// Commands served in place of a process, by name (`git-upload-pack`).
    pub(crate) commands: HashMap<String, Arc<dyn Command>>,
    /// The host key's public half, `ssh-ed25519 AAAA…`.
    host_key: String,
}

impl SshHandler {
    /// A handler presenting `host_key` (derived from [`keys::HOST_KEY`]),
    /// resolving client keys through `identities`.
    pub fn new(
        settings: SshSection,
        host_key: &ProtocolKey,
        identities: Arc<dyn IdentityProvider>,
    ) -> Self {
        let keepalive = (settings.idle_timeout / 4).min(Duration::from_secs(60));
        let russh = russh::server::Config {
            server_id: russh::SshId::Standard(
                concat!("SSH-2.0-alknet_", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: russh::MethodSet::from(&[MethodKind::PublicKey][..]),
            // The offered-key probe already tells a client whether a key is
            // known, so a long constant rejection time hides nothing; the
            // per-address limit on failed logins is what slows guessing.
            auth_rejection_time: Duration::from_millis(50),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![keys::host_private_key(host_key)],
            max_auth_attempts: settings.max_auth_attempts,
            inactivity_timeout: Some(settings.idle_timeout),
            keepalive_interval: Some(keepalive),
            keepalive_max: 3,
            // A channel's unread messages: with 32 KiB packets, at most
            // 1 MiB queued per channel before the connection stops reading.
            channel_buffer_size: 32,
            // A channel's window, as OpenSSH offers its own. At 8 MiB, `ssh`
            // kept what a ProxyCommand could not yet take in its own buffers
            // and copied it around: uploads over QUIC halved
            // (docs/benchmarks.md, ssh, ninth look).
            window_size: 2 << 20,
            nodelay: true,
            ..Default::default()
        };
        let host_key_line = keys::openssh_line(russh.keys[0].public_key());
        let shell = settings.shell.clone().unwrap_or_else(process::login_shell);
        let logins = auth::FailedLogins::new(settings.max_failed_logins_per_minute);
        let user_cas = auth::UserCas::of(&settings.user_ca);
        Self {
            shared: Arc::new(Shared {
                russh: Arc::new(russh),
                settings,
                shell,
                identities,
                logins,
                user_cas,
                fault_injection: false,
                subsystems: HashMap::new(),
                commands: HashMap::new(),
                host_key: host_key_line,
            }),
        }
    }

    /// The host key clients see, as a `known_hosts` entry writes it
    /// (`ssh-ed25519 AAAA…`).
    pub fn host_key(&self) -> &str {
        &self.shared.host_key
    }

    /// Serves `subsystem` to clients that request `name` (`sftp` for
    /// stock `sftp`, `scp` and `sshfs`). Call before the handler is
    /// registered.
    pub fn with_subsystem(mut self, name: &str, subsystem: impl Subsystem) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared
                .subsystems
                .insert(name.to_owned(), Arc::new(subsystem));
        }
        self
    }

    /// Serves `command` for `exec` requests whose first word is `name`
    /// (`git-upload-pack`), instead of running a process. Call before the
    /// handler is registered.
    pub fn with_command(mut self, name: &str, command: impl Command) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.commands.insert(name.to_owned(), Arc::new(command));
        }
        self
    }

    /// Turns on [`FAULT_PANIC_COMMAND`] (only fault-injection test builds
    /// should).
    pub fn with_fault_injection(mut self, on: bool) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.fault_injection = on;
        }
        self
    }
}

impl std::fmt::Debug for SshHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHandler")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl ProtocolHandler for SshHandler {
    const PROTOCOL: Protocol = Protocol::new(&[ALPN]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let remote = connection.remote();
        if self.shared.logins.is_blocked(remote.ip()) {
            auth::refused_while_blocked(remote);
            connection.close(close::REFUSED, "too many failed logins");
            return Ok(());
        }
        // One SSH connection per alknet connection: its first stream.
        let Some(stream) = connection.accept_bi().await? else {
            return Ok(());
        };
        connection::run(self.shared.clone(), connection, stream.into_duplex()).await
    }
}
