//! SFTP (version 3, with the extensions OpenSSH uses) for stock `sftp`,
//! `scp` and `sshfs`, confined to one directory.
//!
//! Reached two ways with the same [`Sftp`] service: as the SSH subsystem
//! `sftp` (the SSH handler runs it on a session channel), and on the ALPN
//! `alknet/sftp` ([`SftpHandler`]), where a QUIC connection's first stream
//! or a TLS connection carries SFTP with no SSH layer and the client's
//! certificate names the identity.
//!
//! russh-sftp provides the packet types and their codec. The session loop
//! is ours ([`session`]): OpenSSH's client keeps 64 reads or writes in
//! flight, and a loop that answers one request before reading the next
//! would serialise them. Files live behind the [`Storage`] seam;
//! [`Directory`] keeps every path inside its root with the kernel's
//! `openat2(RESOLVE_IN_ROOT)`. The identity's scopes decide what a session
//! may do ([`access`]).

#![warn(missing_docs)]

pub mod access;
pub mod config;
mod directory;
mod handles;
mod longname;
pub mod path;
mod requests;
mod session;
mod status;
pub mod storage;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alknet_core::{
    Connection, ConnectionInfo, HandlerError, Identity, Protocol, ProtocolHandler, close,
};
use tokio::io::{AsyncRead, AsyncWrite};

pub use access::Access;
pub use config::SftpSection;
pub use directory::{Directory, DirectoryFile};
pub use session::SessionError;
pub use storage::{Storage, StorageFile};

use crate::session::{Limits, Session};

/// The ALPN that carries SFTP without SSH.
pub const ALPN: &str = "alknet/sftp";

/// The SFTP service: its root, its bounds, and sessions over any stream.
#[derive(Clone)]
pub struct Sftp {
    inner: Arc<Inner>,
}

struct Inner {
    root: Directory,
    per_identity: bool,
    limits: Limits,
    names: Arc<longname::Names>,
}

impl std::fmt::Debug for Sftp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sftp")
            .field("root", &self.inner.root.host_path())
            .field("per_identity", &self.inner.per_identity)
            .finish_non_exhaustive()
    }
}

impl Sftp {
    /// The service `section` describes; a relative or unset root is under
    /// `data_dir`. The root is created (mode 0700) if missing.
    pub fn new(section: &SftpSection, data_dir: &Path) -> io::Result<Self> {
        let root = Self::root_of(section, data_dir);
        let root = Directory::open_or_create(&root)
            .map_err(|e| io::Error::new(e.kind(), format!("sftp.root {}: {e}", root.display())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                per_identity: section.per_identity,
                limits: Limits {
                    max_packet: section.max_packet,
                    max_open_handles: section.max_open_handles,
                    max_in_flight: section.max_in_flight,
                },
                names: Arc::default(),
            }),
        })
    }

    /// Where `section` puts the root.
    pub fn root_of(section: &SftpSection, data_dir: &Path) -> PathBuf {
        match &section.root {
            Some(root) => data_dir.join(root),
            None => data_dir.join("files"),
        }
    }

    /// The root directory on the host.
    pub fn root(&self) -> &Path {
        self.inner.root.host_path()
    }

    /// Whether `identity` may start a session; why not, if it may not.
    pub fn admits(&self, identity: Option<&Identity>) -> Result<(), String> {
        match identity {
            None => Err("SFTP needs a known identity".to_owned()),
            Some(identity) if Access::of(identity).is_empty() => Err(format!(
                "the identity {} has no sftp:read or sftp:write scope",
                identity.id
            )),
            Some(_) => Ok(()),
        }
    }

    /// Serves one SFTP session to the identity in `info` until the client
    /// closes it. `info` is where the session shows itself (`admin/tree`)
    /// and counts its requests.
    pub async fn serve(
        &self,
        reader: impl AsyncRead + Unpin + Send,
        writer: impl AsyncWrite + Unpin + Send,
        info: Arc<ConnectionInfo>,
    ) -> Result<(), SessionError> {
        let identity = info.identity().ok_or_else(|| {
            SessionError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "SFTP needs a known identity",
            ))
        })?;
        let storage = self.storage_for(&identity)?;
        let session = Arc::new(Session {
            root: storage.host_path().display().to_string(),
            storage,
            access: Access::of(&identity),
            handles: handles::Handles::new(self.inner.limits.max_open_handles),
            limits: self.inner.limits,
            names: self.inner.names.clone(),
            info,
        });
        session::run(session, reader, writer).await
    }

    /// The root, or the identity's own directory under it.
    fn storage_for(&self, identity: &Identity) -> io::Result<Directory> {
        if !self.inner.per_identity {
            return Ok(self.inner.root.clone());
        }
        let own = format!("/{}", directory_name(&identity.id));
        match self.inner.root.create_dir(&own, 0o700) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        self.inner.root.within(&own)
    }
}

/// An identity's directory name: its id with anything but letters,
/// digits, `.`, `_`, `-`, `@` and `+` replaced by `_` (`ed25519:ab…` →
/// `ed25519_ab…`), and never `.` or `..`.
fn directory_name(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') || name.is_empty() {
        name.insert(0, '_');
    }
    name
}

/// Serves `alknet/sftp`: SFTP on a connection's first stream, as the
/// identity of the client's certificate.
#[derive(Clone, Debug)]
pub struct SftpHandler {
    sftp: Sftp,
}

impl SftpHandler {
    /// A handler serving `sftp`.
    pub fn new(sftp: Sftp) -> Self {
        Self { sftp }
    }
}

impl ProtocolHandler for SftpHandler {
    const PROTOCOL: Protocol = Protocol::new(&[ALPN]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let info = connection.info().clone();
        if let Err(reason) = self.sftp.admits(info.identity().as_ref()) {
            tracing::info!(remote = %connection.remote(), "SFTP refused: {reason}");
            connection.close(close::REFUSED, &reason);
            return Ok(());
        }
        let Some(stream) = connection.accept_bi().await? else {
            return Ok(());
        };
        let served = tokio::select! {
            served = self.sftp.serve(stream.recv, stream.send, info) => served,
            // Nothing an SFTP client sends is worth more than a drain.
            () = connection.draining() => Ok(()),
        };
        match served {
            Ok(()) => Ok(()),
            Err(SessionError::Io(e)) => Err(e.into()),
            Err(violation) => Err(HandlerError::PeerViolation(violation.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_directories_are_single_plain_names() {
        assert_eq!(directory_name("alice"), "alice");
        assert_eq!(directory_name("ed25519:ab12"), "ed25519_ab12");
        assert_eq!(directory_name("../x"), "_.._x");
        assert_eq!(directory_name(".."), "_..");
        assert_eq!(directory_name(""), "_");
    }
}
