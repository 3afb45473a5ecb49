//! `alknet/fault`: a test-only handler that misbehaves on command.
//!
//! The handler is compiled only with the `fault-injection` cargo feature,
//! which only tests (and test builds of the binary) enable; [`available`] and
//! [`handler`] answer in every build, so callers need no feature gate of their
//! own. Each stream's first byte is a command:
//! - `p`: panic inside the connection's handler;
//! - `h`: hang, ignoring drain requests (exercises the drain deadline);
//! - anything else: echo the rest of the stream like `alknet/echo`.

#[cfg(feature = "fault-injection")]
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[cfg(feature = "fault-injection")]
use crate::connection::Connection;
use crate::handler::ErasedHandler;
#[cfg(feature = "fault-injection")]
use crate::handler::{HandlerError, Protocol, ProtocolHandler};

/// The fault-injection ALPN.
pub const FAULT_ALPN: &str = "alknet/fault";

/// Whether this build has fault injection: only then may `[diagnostics]
/// fault` turn on [`FAULT_ALPN`] and the fault operations.
pub const fn available() -> bool {
    cfg!(feature = "fault-injection")
}

/// The fault handler, in builds that have it.
pub fn handler() -> Option<ErasedHandler> {
    #[cfg(feature = "fault-injection")]
    return Some(FaultHandler.into());
    #[cfg(not(feature = "fault-injection"))]
    None
}

/// The fault-injection handler.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultHandler;

#[cfg(feature = "fault-injection")]
impl ProtocolHandler for FaultHandler {
    const PROTOCOL: Protocol = Protocol::new(&[FAULT_ALPN]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let Some(mut stream) = connection.accept_bi().await? else {
            return Ok(());
        };
        let mut command = [0u8; 1];
        if stream.recv.read_exact(&mut command).await.is_err() {
            return Ok(());
        }
        match command[0] {
            b'p' => panic!("injected connection panic"),
            b'h' => std::future::pending::<()>().await,
            _ => {
                tokio::io::copy(&mut stream.recv, &mut stream.send).await?;
                stream.send.shutdown().await?;
            }
        }
        // Keep the connection until the peer closes it, so the client reads
        // everything we wrote.
        let _ = connection.accept_bi().await;
        Ok(())
    }
}
