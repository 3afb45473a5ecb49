//! `alknet/echo`: the diagnostic protocol. Every stream echoes its bytes.
//!
//! Off by default (`[diagnostics] echo = true` turns it on). It exists so that
//! the listeners, the router and the supervision tree can be tested and
//! benchmarked end to end independently of any real protocol, and as the
//! smallest complete protocol crate: `examples/echo_node.rs` runs it.

#![warn(missing_docs)]

use tokio::task::JoinSet;

use alknet_core::{BiStream, Connection, HandlerError, Protocol, ProtocolHandler};

/// The echo protocol's ALPN.
pub const ALPN: &str = "alknet/echo";

/// The echo handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler;

impl ProtocolHandler for EchoHandler {
    const PROTOCOL: Protocol = Protocol::new(&[ALPN]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let mut streams = JoinSet::new();
        let mut accepting = true;
        while accepting || !streams.is_empty() {
            tokio::select! {
                // Echo has no unit of work worth finishing: a drain ends it.
                () = connection.draining() => return Ok(()),
                next = connection.accept_bi(), if accepting => match next? {
                    Some(stream) => { streams.spawn(echo_stream(stream)); }
                    None => accepting = false,
                },
                Some(done) = streams.join_next(), if !streams.is_empty() => log_stream_end(done),
            }
        }
        Ok(())
    }
}

async fn echo_stream(mut stream: BiStream) -> std::io::Result<u64> {
    use tokio::io::AsyncWriteExt;
    let copied = tokio::io::copy(&mut stream.recv, &mut stream.send).await?;
    stream.send.shutdown().await?;
    Ok(copied)
}

fn log_stream_end(done: Result<std::io::Result<u64>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(bytes)) => tracing::trace!(bytes, "echo stream finished"),
        Ok(Err(e)) => tracing::debug!(error = %e, "echo stream ended with an error"),
        Err(e) => tracing::debug!(error = %e, "echo stream task ended abnormally"),
    }
}
