//! Subsystems: services another crate provides on a session channel's
//! data (`sftp`, `ssh -s NAME`), added with
//! [`crate::SshHandler::with_subsystem`]. The SSH handler checks nothing
//! about them but [`Subsystem::admit`]; the channel's actor, tree entry,
//! byte counts and `admin/kill` work as for any channel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use alknet_core::{ConnectionInfo, Identity};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// Counts a channel's bytes into its tree entry as they pass.
pub(crate) struct Counted<T> {
    pub(crate) inner: T,
    pub(crate) info: Arc<ConnectionInfo>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.info.stats().record_in(buf.filled().len() - before);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            self.info.stats().record_out(written);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
