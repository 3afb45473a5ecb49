//! DNS over TLS (RFC 7858: ALPN `dot` on the node's port, and any TLS
//! client on `[dns] dot_listen`) and plain DNS over TCP (RFC 7766, `[dns]
//! listen`): the same framing on one stream, a 2-byte length before each
//! message.
//!
//! Queries may be pipelined: the reader keeps taking them while earlier
//! answers are still being written, up to `[dns] max_in_flight` waiting
//! answers, and a connection with no query for `[dns] idle_timeout_secs` is
//! closed. A message that is not a query, or a zero length, closes the
//! connection (RFC 7766 §6.2.4 leaves that to the server).

use std::time::Duration;

use alknet_core::{Connection, HandlerError, Protocol, ProtocolHandler, Transports};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::answer::{Reply, Transport};
use crate::{DOT_ALPN, Dns};

/// How long a closing connection's last answers may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves DNS over TLS, and plain DNS over TCP.
#[derive(Clone, Debug)]
pub struct DotHandler {
    dns: Dns,
}

impl DotHandler {
    /// A handler answering from `dns`.
    pub fn new(dns: Dns) -> Self {
        Self { dns }
    }
}

impl ProtocolHandler for DotHandler {
    const PROTOCOL: Protocol = Protocol::new(&[DOT_ALPN])
        .on(Transports::TcpOnly)
        .web_certificate()
        .named("dot");

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let Some(stream) = connection.accept_bi().await? else {
            return Ok(());
        };
        let mut recv = stream.recv;
        let mut send = BufWriter::new(stream.send);
        let section = self.dns.section();
        let (answers, mut outgoing) = mpsc::channel::<Vec<u8>>(section.max_in_flight);
        let writer = tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                send.write_all(&frame).await?;
                // Answers still queued go out in the same write.
                if outgoing.is_empty() {
                    send.flush().await?;
                }
            }
            send.shutdown().await
        });
        let idle = section.idle_timeout();
        let mut violation = None;
        loop {
            let message = tokio::select! {
                read = tokio::time::timeout(idle, read_message(&mut recv)) => read,
                () = connection.draining() => break,
            };
            let message = match message {
                Ok(Ok(Some(message))) => message,
                // End of stream, a broken stream, or idle too long.
                Ok(Ok(None) | Err(_)) | Err(_) => break,
            };
            connection.info().stats().record_request();
            let Some(message) = message else {
                violation = Some("a zero-length message");
                break;
            };
            // A pkarr name not at hand holds the queries behind it for at
            // most one relay timeout.
            match self
                .dns
                .answerer()
                .answer_resolving(&message, Transport::Stream)
                .await
            {
                Reply::Send(answered) => {
                    let mut frame = Vec::with_capacity(answered.bytes.len() + 2);
                    frame.extend_from_slice(&(answered.bytes.len() as u16).to_be_bytes());
                    frame.extend_from_slice(&answered.bytes);
                    if answers.send(frame).await.is_err() {
                        break;
                    }
                }
                Reply::Drop | Reply::Resolve(_) => {
                    violation = Some("a message that is not a DNS query");
                    break;
                }
            }
        }
        drop(answers);
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
        match violation {
            Some(what) => Err(HandlerError::PeerViolation(what.to_owned())),
            None => Ok(()),
        }
    }
}

/// Reads one length-prefixed message: `None` at a clean end of stream,
/// `Some(None)` for a zero length.
async fn read_message(
    reader: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<Option<Vec<u8>>>> {
    let mut length = [0u8; 2];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = usize::from(u16::from_be_bytes(length));
    if length == 0 {
        return Ok(Some(None));
    }
    let mut message = vec![0u8; length];
    reader.read_exact(&mut message).await?;
    Ok(Some(Some(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_are_length_prefixed() {
        let mut input: &[u8] = &[0, 3, b'a', b'b', b'c', 0, 0, 0, 5, b'x'];
        assert_eq!(
            read_message(&mut input).await.unwrap(),
            Some(Some(b"abc".to_vec()))
        );
        assert_eq!(read_message(&mut input).await.unwrap(), Some(None));
        assert!(read_message(&mut input).await.is_err());
        let mut empty: &[u8] = &[];
        assert_eq!(read_message(&mut empty).await.unwrap(), None);
    }
}
