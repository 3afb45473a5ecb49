//! DNS over QUIC (RFC 9250): ALPN `doq`, QUIC only.
//!
//! Each query is its own client-initiated bidirectional stream: a 2-byte
//! length, the message (id 0), then the client's FIN; the answer goes back
//! the same way and the stream is finished. Streams are served concurrently,
//! at most `[dns] max_in_flight` at once per connection. A client that
//! breaks the framing — a length that does not match, a non-zero message
//! id, the `edns-tcp-keepalive` option, a message that is not a query — has
//! its connection closed with `DOQ_PROTOCOL_ERROR` (§4.3).

use std::sync::Arc;
use std::time::Duration;

use alknet_core::log_limit::LogLimit;
use alknet_core::{BiStream, Connection, HandlerError, Protocol, ProtocolHandler, Transports};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::EdnsCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::answer::{Reply, Transport};
use crate::{DOQ_ALPN, Dns};

/// RFC 9250 §8.4 error codes.
pub mod code {
    /// No error: the connection closes normally.
    pub const NO_ERROR: u32 = 0x0;
    /// The peer broke the DoQ framing.
    pub const PROTOCOL_ERROR: u32 = 0x2;
    /// The request was abandoned (here: not sent in time).
    pub const REQUEST_CANCELLED: u32 = 0x3;
    /// The server is closing the connection under load (here: the
    /// connection cap, `[protocols."doq"] max_connections`).
    pub const EXCESSIVE_LOAD: u32 = 0x4;
}

/// How long a client has to send a whole query and its FIN on a stream.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A DoQ client broke the framing: logged a few lines a window.
static VIOLATION: LogLimit = LogLimit::info("DoQ protocol error: connection closed");

/// Serves DNS over QUIC.
#[derive(Clone, Debug)]
pub struct DoqHandler {
    dns: Dns,
}

impl DoqHandler {
    /// A handler answering from `dns`.
    pub fn new(dns: Dns) -> Self {
        Self { dns }
    }
}

impl ProtocolHandler for DoqHandler {
    const PROTOCOL: Protocol = Protocol::new(&[DOQ_ALPN])
        .on(Transports::QuicOnly)
        .web_certificate()
        .named("doq")
        .refusing_with(code::EXCESSIVE_LOAD);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let slots = Arc::new(Semaphore::new(self.dns.section().max_in_flight));
        let mut streams = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.map_err(HandlerError::other)?,
                () = connection.draining() => break,
            };
            let stream = tokio::select! {
                stream = connection.accept_bi() => stream?,
                () = connection.draining() => break,
            };
            let Some(stream) = stream else { break };
            connection.info().stats().record_request();
            streams.spawn(serve_stream(
                self.dns.clone(),
                connection.clone(),
                stream,
                permit,
            ));
            while streams.try_join_next().is_some() {}
        }
        while streams.join_next().await.is_some() {}
        if connection.is_draining() {
            connection.close(code::NO_ERROR, "shutting down");
        }
        Ok(())
    }
}

/// Why a stream's content breaks RFC 9250.
#[derive(Debug, thiserror::Error)]
enum Violation {
    #[error("the length prefix does not match the stream's data")]
    Length,
    #[error("a query's message id must be 0 (RFC 9250 §4.2.1)")]
    MessageId,
    #[error("edns-tcp-keepalive is not allowed over DoQ (RFC 9250 §5.5.2)")]
    Keepalive,
    #[error("not a DNS query")]
    NotAQuery,
}

async fn serve_stream(
    dns: Dns,
    connection: Connection,
    mut stream: BiStream,
    _permit: OwnedSemaphorePermit,
) {
    let frame = match tokio::time::timeout(QUERY_TIMEOUT, read_frame(&mut stream)).await {
        Ok(Ok(frame)) => frame,
        // The client reset its stream or lost the connection.
        Ok(Err(_)) => return,
        Err(_) => {
            stream.recv.stop(code::REQUEST_CANCELLED);
            stream.send.reset(code::REQUEST_CANCELLED);
            return;
        }
    };
    let outcome = match check(&frame) {
        Ok(message) => match dns
            .answerer()
            .answer_resolving(message, Transport::Stream)
            .await
        {
            Reply::Send(answered) => Ok(answered.bytes),
            Reply::Drop | Reply::Resolve(_) => Err(Violation::NotAQuery),
        },
        Err(violation) => Err(violation),
    };
    let response = match outcome {
        Ok(response) => response,
        Err(violation) => {
            if VIOLATION.admit() {
                tracing::info!(remote = %connection.remote(), "DoQ protocol error: {violation}");
            }
            connection.close(code::PROTOCOL_ERROR, &violation.to_string());
            return;
        }
    };
    let mut framed = Vec::with_capacity(response.len() + 2);
    framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
    framed.extend_from_slice(&response);
    if stream.send.write_all(&framed).await.is_ok() {
        let _ = stream.send.shutdown().await;
    }
}

/// Reads the stream to its FIN (at most one byte more than the largest
/// frame, so that an overlong stream fails [`check`]).
async fn read_frame(stream: &mut BiStream) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(514);
    // One byte past the largest frame tells an overlong stream apart.
    (&mut stream.recv)
        .take(2 + u64::from(u16::MAX) + 1)
        .read_to_end(&mut data)
        .await?;
    Ok(data)
}

/// Checks the framing and the DoQ rules; returns the message.
fn check(frame: &[u8]) -> Result<&[u8], Violation> {
    let (length, message) = frame.split_at_checked(2).ok_or(Violation::Length)?;
    if usize::from(u16::from_be_bytes([length[0], length[1]])) != message.len() {
        return Err(Violation::Length);
    }
    if message.len() < 12 {
        return Err(Violation::NotAQuery);
    }
    if message[..2] != [0, 0] {
        return Err(Violation::MessageId);
    }
    // Only a message with additional records can carry EDNS options.
    if message[10..12] != [0, 0]
        && let Ok(parsed) = Message::from_vec(message)
        && parsed
            .edns
            .as_ref()
            .is_some_and(|edns| edns.option(EdnsCode::Keepalive).is_some())
    {
        return Err(Violation::Keepalive);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_rules() {
        let mut query = vec![0u8, 12];
        query.extend([0u8; 12]);
        assert!(check(&query).is_ok());
        assert!(matches!(check(&[0]), Err(Violation::Length)));
        assert!(matches!(check(&[0, 13, 0]), Err(Violation::Length)));
        let mut extra = query.clone();
        extra.push(0);
        assert!(matches!(check(&extra), Err(Violation::Length)));
        let mut id = query.clone();
        id[3] = 1;
        assert!(matches!(check(&id), Err(Violation::MessageId)));
        assert!(matches!(check(&[0, 2, 0, 0]), Err(Violation::NotAQuery)));
    }
}
