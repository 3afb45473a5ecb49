//! An SSH client session (russh) over an `alknet/ssh` stream.
//!
//! The host key is accepted as shown: the stream runs inside TLS whose
//! certificate was pinned, so the node is already authenticated; the key is
//! kept for `ssh-config` to print and logged at debug.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};

use super::NodeStream;

/// Records the server's host key.
pub struct HostKeySeen(Arc<Mutex<Option<PublicKey>>>);

impl client::Handler for HostKeySeen {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        shown: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // The node shows a plain Ed25519 host key; a certificate is not its.
        let PublicKeyOrCertificate::PublicKey { key, .. } = shown else {
            return Ok(false);
        };
        tracing::debug!(
            host_key = %alknet_ssh::keys::openssh_line(key),
            "SSH host key shown by the TLS-pinned node"
        );
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.clone());
        Ok(true)
    }
}

/// The client configuration: no inactivity timeout (a SOCKS server idles),
/// keep-alives so that a dead node is noticed.
pub fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Runs the SSH key exchange over `node`'s stream; returns the session and
/// the host key the node showed.
pub async fn start(node: NodeStream) -> anyhow::Result<(Handle<HostKeySeen>, PublicKey, Keep)> {
    let NodeStream {
        stream,
        connection,
        endpoint,
    } = node;
    let (handle, key) = start_on(stream.into_duplex()).await?;
    Ok((
        handle,
        key,
        Keep {
            connection,
            endpoint,
        },
    ))
}

/// [`start`] over any byte stream.
pub async fn start_on(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
) -> anyhow::Result<(Handle<HostKeySeen>, PublicKey)> {
    let seen = Arc::new(Mutex::new(None));
    let handle = client::connect_stream(config(), stream, HostKeySeen(seen.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("SSH key exchange with the node failed: {e}"))?;
    let key = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| anyhow::anyhow!("the node showed no SSH host key"))?;
    Ok((handle, key))
}

/// What must live as long as the session: the connection (and, over QUIC,
/// its endpoint).
pub struct Keep {
    connection: alknet_core::Connection,
    endpoint: Option<quinn::Endpoint>,
}

impl Keep {
    /// Closes the connection; see [`NodeStream::close`].
    pub async fn close(self) {
        self.connection.close(0, "done");
        if let Some(endpoint) = self.endpoint {
            let _ = tokio::time::timeout(super::CLOSE_WAIT, endpoint.wait_idle()).await;
        }
    }
}
