//! Subsystems: services another crate provides on a session channel's
//! data (`sftp`, `ssh -s NAME`), added with
//! [`crate::SshHandler::with_subsystem`]. The SSH handler checks nothing
//! about them but [`Subsystem::admit`]; the channel's actor, tree entry,
//! byte counts and `admin/kill` work as for any channel.

use std::pin::Pin;
use std::sync::Arc;

use alknet_core::{ConnectionInfo, Identity};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A service run on a session channel's data.
pub trait Subsystem: Send + Sync + 'static {
    /// Whether `identity` may start it; a one-line reason for the client
    /// if not.
    fn admit(&self, identity: Option<&Identity>) -> Result<(), String>;

    /// Serves the channel until the client or the service ends it.
    fn serve<'a>(&'a self, io: SubsystemIo<'a>) -> BoxFuture<'a, ()>;
}

/// A subsystem's side of its channel.
pub struct SubsystemIo<'a> {
    /// What the client sends; ends when it sends EOF.
    pub reader: Pin<Box<dyn AsyncRead + Send + 'a>>,
    /// What the client receives.
    pub writer: Pin<Box<dyn AsyncWrite + Send + 'a>>,
    /// The channel's entry in the tree (identity, detail); its bytes are
    /// counted already.
    pub info: Arc<ConnectionInfo>,
}
