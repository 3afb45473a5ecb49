//! A raw call-protocol client: frames written and read by hand over a quinn
//! stream or a tokio-rustls session, so tests see exactly what is on the wire.

use std::time::Duration;

use alknet_call::codec::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
use alknet_call::envelope::{CallRequest, Event, EventEnvelope};
use alknet_core::Identity;
use alknet_supervisors::NodeHandle;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::{quic_connect, quic_endpoint, tls_connect};

const CALL: &str = "alknet/call";
const WAIT: Duration = Duration::from_secs(5);

/// Which transport a raw client uses.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// A QUIC bidirectional stream.
    Quic,
    /// The one TCP+TLS stream.
    Tcp,
}

/// Both transports, for tests that must hold over each.
pub fn both() -> [Transport; 2] {
    [Transport::Quic, Transport::Tcp]
}

/// A raw framed stream: QUIC bidirectional stream or the TCP+TLS session.
pub struct Raw {
    send: Box<dyn AsyncWrite + Unpin + Send>,
    recv: Box<dyn AsyncRead + Unpin + Send>,
    decoder: FrameDecoder,
    _keep: Option<(quinn::Endpoint, quinn::Connection)>,
}

/// Opens a session on `node` over `transport`.
pub async fn open(node: &NodeHandle, transport: Transport) -> Raw {
    open_at(node.local_addr(), transport).await
}

/// Opens a session with the node at `addr` (e.g. an `alknet serve` process).
pub async fn open_at(addr: std::net::SocketAddr, transport: Transport) -> Raw {
    match transport {
        Transport::Quic => {
            let endpoint = quic_endpoint();
            let conn = quic_connect(&endpoint, addr, &[CALL])
                .await
                .expect("QUIC handshake");
            let (send, recv) = conn.open_bi().await.expect("stream");
            Raw {
                send: Box::new(send),
                recv: Box::new(recv),
                decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
                _keep: Some((endpoint, conn)),
            }
        }
        Transport::Tcp => {
            let tls = tls_connect(addr, &[CALL]).await.expect("TLS handshake");
            let (recv, send) = tokio::io::split(tls);
            Raw {
                send: Box::new(send),
                recv: Box::new(recv),
                decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
                _keep: None,
            }
        }
    }
}

impl Raw {
    /// Opens another stream of the same QUIC connection; `None` over TCP+TLS,
    /// which has one stream.
    pub async fn open_stream(&self) -> Option<Raw> {
        let (_, conn) = self._keep.as_ref()?;
        let (send, recv) = conn.open_bi().await.expect("stream");
        self.sibling(send, recv)
    }

    fn sibling(&self, send: quinn::SendStream, recv: quinn::RecvStream) -> Option<Raw> {
        let (endpoint, conn) = self._keep.as_ref()?;
        Some(Raw {
            send: Box::new(send),
            recv: Box::new(recv),
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
            _keep: Some((endpoint.clone(), conn.clone())),
        })
    }

    /// Closes the session: QUIC `CONNECTION_CLOSE` 0x0; over TCP+TLS the
    /// socket closes without `close_notify` (a TLS `close_notify` is only the
    /// end of the client's half, which §5.3 says is not an abort).
    pub fn close(self) {
        if let Some((_, conn)) = &self._keep {
            conn.close(0u32.into(), b"done");
        }
    }

    /// Writes bytes as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write");
        self.send.flush().await.expect("flush");
    }

    /// Writes one envelope as a frame.
    pub async fn send(&mut self, envelope: EventEnvelope) {
        let frame = encode_frame(&envelope, DEFAULT_MAX_FRAME).unwrap();
        self.write_raw(&frame).await;
    }

    /// Sends `call.requested`.
    pub async fn call(&mut self, id: &str, operation: &str, input: Value) {
        self.send(EventEnvelope::requested(
            id,
            &CallRequest::new(operation, input),
        ))
        .await;
    }

    /// Sends `call.requested` with a per-request token and/or `forwarded_for`.
    pub async fn call_as(
        &mut self,
        id: &str,
        operation: &str,
        input: Value,
        auth_token: Option<&str>,
        forwarded_for: Option<Identity>,
    ) {
        let mut request = CallRequest::new(operation, input);
        request.auth_token = auth_token.map(str::to_owned);
        request.forwarded_for = forwarded_for;
        self.send(EventEnvelope::requested(id, &request)).await;
    }

    /// The next envelope; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<EventEnvelope> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(envelope) = self
                .decoder
                .next_envelope()
                .expect("server frames are valid")
            {
                return Some(envelope);
            }
            let read = tokio::time::timeout(WAIT, self.recv.read(&mut buffer))
                .await
                .expect("the server answered in time")
                .unwrap_or(0);
            if read == 0 {
                return None;
            }
            self.decoder.push(&buffer[..read]);
        }
    }

    /// The next frame's body as raw JSON, exactly as the node wrote it.
    pub async fn next_json(&mut self) -> Option<Value> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(body) = self.decoder.next_frame().expect("server frames are valid") {
                return Some(serde_json::from_slice(body).expect("a frame holds JSON"));
            }
            let read = tokio::time::timeout(WAIT, self.recv.read(&mut buffer))
                .await
                .expect("the server answered in time")
                .unwrap_or(0);
            if read == 0 {
                return None;
            }
            self.decoder.push(&buffer[..read]);
        }
    }

    /// The next envelope's id and event.
    pub async fn expect(&mut self) -> (String, Event) {
        let envelope = self.next().await.expect("an envelope");
        let event = envelope.event().expect("well-formed payload");
        (envelope.id, event)
    }

    /// Calls and returns the one reply's event.
    pub async fn round_trip(&mut self, id: &str, operation: &str, input: Value) -> Event {
        self.call(id, operation, input).await;
        let (got, event) = self.expect().await;
        assert_eq!(got, id);
        event
    }
}
