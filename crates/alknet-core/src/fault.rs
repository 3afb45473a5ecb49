//! `alknet/fault`: a test-only handler that misbehaves on command.
//!
//! Compiled only with the `fault-injection` cargo feature, which only tests
//! enable. Each stream's first byte is a command:
//! - `p`: panic inside the connection's handler;
//! - `h`: hang, ignoring drain requests (exercises the drain deadline);
//! - anything else: echo the rest of the stream like `alknet/echo`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connection::Connection;
use crate::handler::{HandlerError, Protocol, ProtocolHandler};

/// The fault-injection ALPN.
pub const FAULT_ALPN: &str = "alknet/fault";

/// The fault-injection handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultHandler;

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
