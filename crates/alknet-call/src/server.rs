//! The `alknet/call` protocol handler: one [`CallSession`] actor per
//! connection.
//!
//! The session actor owns the session's bookkeeping ([`SessionBook`]) and
//! nothing that blocks: per-stream reader tasks decode frames and hand each
//! envelope to the actor (waiting for it to be taken, which is the
//! backpressure on a peer that writes faster than the session can decide);
//! every request runs in its own task, which writes its replies through the
//! stream's bounded writer queue (waiting when the peer reads slowly — output
//! is never dropped) and tells the actor when it is done. The transport is
//! whatever [`Connection`] offers: many streams over QUIC, one over TCP+TLS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::connection::{RecvHalf, SendHalf};
use alknet_core::{
    Alpn, Connection, HandlerFuture, IdentityProvider, ProtocolHandler, TransportKind,
};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::codec::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
use crate::dispatch::{self, Expect, Origin, Reply};
use crate::envelope::{CallRequest, EventEnvelope};
use crate::error::CallError;
use crate::registry::Registry;
use crate::session::{Action, SessionBook, StreamKey};

/// Per-session limits (PROTOCOL.md §15).
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Largest frame read or written.
    pub max_frame: usize,
    /// The peer's requests in flight at once.
    pub max_in_flight: usize,
    /// Deadline of a query or mutation.
    pub call_timeout: Duration,
    /// Frames queued per stream before writers wait.
    pub outgoing_queue: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            outgoing_queue: 1024,
        }
    }
}

/// Serves `alknet/call` connections against a registry.
pub struct CallHandler {
    registry: Arc<Registry>,
    identities: Arc<dyn IdentityProvider>,
    limits: SessionLimits,
}

impl CallHandler {
    /// A handler serving `registry`, resolving tokens through `identities`.
    pub fn new(
        registry: Arc<Registry>,
        identities: Arc<dyn IdentityProvider>,
        limits: SessionLimits,
    ) -> Self {
        Self {
            registry,
            identities,
            limits,
        }
    }
}

impl ProtocolHandler for CallHandler {
    fn alpns(&self) -> Vec<Alpn> {
        vec![Alpn::new(Alpn::CALL)]
    }

    fn connection_actor_name(&self) -> String {
        "session".to_owned()
    }

    fn handle(self: Arc<Self>, connection: Connection) -> HandlerFuture {
        Box::pin(async move { run_session(self, connection).await })
    }
}

async fn run_session(
    handler: Arc<CallHandler>,
    connection: Connection,
) -> Result<(), alknet_core::HandlerError> {
    let args = SessionArgs {
        registry: handler.registry.clone(),
        identities: handler.identities.clone(),
        limits: handler.limits.clone(),
        connection: connection.clone(),
        span: tracing::Span::current(),
    };
    let (session, mut ended) = Actor::spawn(None, CallSession, args).await?;
    // However this future ends (the connection actor may be killed), the
    // session actor ends with it.
    let _stop = StopOnDrop(session.clone());
    let mut streams = JoinSet::new();
    let mut next_key: StreamKey = 0;
    let mut accepting = true;
    let mut drain_sent = false;
    loop {
        tokio::select! {
            () = connection.draining(), if !drain_sent => {
                drain_sent = true;
                let _ = session.cast(SessionMsg::Drain);
            }
            next = connection.accept_bi(), if accepting => match next {
                Ok(Some(stream)) => {
                    let key = next_key;
                    next_key += 1;
                    let (tx, rx) = mpsc::channel(handler.limits.outgoing_queue);
                    let reset = CancellationToken::new();
                    if session.cast(SessionMsg::Stream(key, tx, reset.clone())).is_err() {
                        break;
                    }
                    streams.spawn(write_stream(stream.send, rx, reset));
                    streams.spawn(read_stream(key, stream.recv, session.clone(), handler.limits.max_frame));
                }
                // Over TCP+TLS the one stream was handed out; the session
                // ends with it. Over QUIC the connection is gone (§9.3).
                Ok(None) | Err(_) => {
                    if connection.info().transport() == TransportKind::Quic {
                        break;
                    }
                    accepting = false;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = &mut ended => return Ok(()),
        }
        if !accepting && streams.is_empty() {
            break;
        }
    }
    session.stop(None);
    let _ = ended.await;
    Ok(())
}

struct StopOnDrop(ActorRef<SessionMsg>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop(None);
    }
}

async fn read_stream(
    key: StreamKey,
    mut recv: RecvHalf,
    session: ActorRef<SessionMsg>,
    max_frame: usize,
) {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match recv.read(&mut buffer).await {
            Ok(0) => {
                let ending = match decoder.finish() {
                    Ok(()) => StreamEnding::Finished,
                    Err(error) => {
                        recv.stop(crate::PROTOCOL_ERROR);
                        StreamEnding::ProtocolError(error.to_string())
                    }
                };
                let _ = session.cast(SessionMsg::StreamEnded(key, ending));
                return;
            }
            Ok(read) => read,
            Err(error) => {
                let ending = StreamEnding::Lost(error.to_string());
                let _ = session.cast(SessionMsg::StreamEnded(key, ending));
                return;
            }
        };
        decoder.push(&buffer[..read]);
        loop {
            match decoder.next_envelope() {
                Ok(Some(envelope)) => {
                    if ractor::call!(session, SessionMsg::Inbound, key, envelope).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    recv.stop(crate::PROTOCOL_ERROR);
                    let _ = session.cast(SessionMsg::StreamEnded(
                        key,
                        StreamEnding::ProtocolError(error.to_string()),
                    ));
                    return;
                }
            }
        }
    }
}

async fn write_stream(
    mut send: SendHalf,
    mut frames: mpsc::Receiver<Vec<u8>>,
    reset: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            biased;
            () = reset.cancelled() => {
                // A framing violation on this stream: RESET_STREAM 0x1 (§3.1).
                send.reset(crate::PROTOCOL_ERROR);
                return;
            }
            frame = frames.recv() => frame,
        };
        let Some(frame) = frame else { break };
        if send.write_all(&frame).await.is_err() || send.flush().await.is_err() {
            return;
        }
    }
    // Every sender is gone: the peer's half ended and every request on this
    // stream is terminal (§5.3 rule 3).
    let _ = send.shutdown().await;
}

/// What the session actor takes.
pub enum SessionMsg {
    /// A new stream, the queue of its writer, and the switch that resets it.
    Stream(StreamKey, mpsc::Sender<Vec<u8>>, CancellationToken),
    /// An envelope read from a stream; the reply says it was taken.
    Inbound(StreamKey, EventEnvelope, RpcReplyPort<()>),
    /// A stream's reading half ended.
    StreamEnded(StreamKey, StreamEnding),
    /// A request's task sent its terminal envelope.
    Served(String, u64),
    /// Refuse new requests; stop once nothing is in flight.
    Drain,
}

/// How a stream's reading half ended.
#[derive(Debug)]
pub enum StreamEnding {
    /// The peer finished it at a frame boundary: not an abort (§5.3 rule 3).
    Finished,
    /// A framing violation (§3.1): logged, and the stream (TCP+TLS: the
    /// connection) is closed.
    ProtocolError(String),
    /// Reset by the peer or lost with the connection: its requests are aborted.
    Lost(String),
}

/// One call session.
pub struct CallSession;

/// What a session starts with.
pub struct SessionArgs {
    registry: Arc<Registry>,
    identities: Arc<dyn IdentityProvider>,
    limits: SessionLimits,
    connection: Connection,
    span: tracing::Span,
}

struct Running {
    abort: AbortHandle,
    seq: u64,
}

/// The session actor's state.
pub struct SessionState {
    args: SessionArgs,
    book: SessionBook<Running, ()>,
    writers: HashMap<StreamKey, mpsc::Sender<Vec<u8>>>,
    resets: HashMap<StreamKey, CancellationToken>,
    next_seq: u64,
    draining: bool,
}

impl Actor for CallSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SessionState {
            book: SessionBook::new(args.limits.max_in_flight),
            args,
            writers: HashMap::new(),
            resets: HashMap::new(),
            next_seq: 0,
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Stream(key, writer, reset) => {
                state.writers.insert(key, writer);
                state.resets.insert(key, reset);
            }
            SessionMsg::Inbound(key, envelope, taken) => {
                let _ = taken.send(());
                state.receive(&myself, key, envelope);
            }
            SessionMsg::StreamEnded(key, ending) => {
                let reset = state.resets.remove(&key);
                if let (Some(reset), StreamEnding::ProtocolError(_)) = (&reset, &ending) {
                    // Before the writer's queue closes, so it resets rather
                    // than finishes.
                    reset.cancel();
                }
                state.writers.remove(&key);
                let info = state.args.connection.info().clone();
                let reason = match ending {
                    StreamEnding::Finished => return Ok(()),
                    StreamEnding::ProtocolError(reason) => {
                        tracing::warn!(
                            parent: &state.args.span,
                            remote = %info.remote(),
                            alpn = %info.alpn(),
                            "closing stream after a protocol error: {reason}"
                        );
                        reason
                    }
                    StreamEnding::Lost(reason) => {
                        tracing::debug!(parent: &state.args.span, "stream lost: {reason}");
                        reason
                    }
                };
                for running in state.book.stream_reset(key) {
                    running.abort.abort();
                }
                if info.transport() == TransportKind::Tls {
                    // One stream is the whole connection (§3.1 rule 2, §9.3).
                    state
                        .args
                        .connection
                        .close(crate::PROTOCOL_ERROR, "protocol error");
                    myself.stop(Some(reason));
                }
            }
            SessionMsg::Served(id, seq) => {
                state.book.served_if(&id, |running| running.seq == seq);
                if state.draining && state.book.in_flight() == 0 {
                    myself.stop(None);
                }
            }
            SessionMsg::Drain => {
                state.draining = true;
                state.book.drain();
                if state.book.in_flight() == 0 {
                    myself.stop(None);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // §9.3: abort everything served for this session.
        let (aborts, _) = state.book.close();
        for running in aborts {
            running.abort.abort();
        }
        Ok(())
    }
}

impl SessionState {
    fn receive(&mut self, myself: &ActorRef<SessionMsg>, key: StreamKey, envelope: EventEnvelope) {
        match self.book.receive(key, envelope) {
            Action::Ignore | Action::Deliver(..) => {}
            Action::Reply(stream, envelope) => {
                if let Some(writer) = self.writers.get(&stream).cloned() {
                    let max_frame = self.args.limits.max_frame;
                    tokio::spawn(async move { send(&writer, envelope, max_frame).await });
                }
            }
            Action::Abort(running) => running.abort.abort(),
            Action::Dispatch {
                stream,
                id,
                request,
            } => self.start(myself, stream, id, request),
        }
    }

    fn start(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        stream: StreamKey,
        id: String,
        request: CallRequest,
    ) {
        let info = self.args.connection.info().clone();
        info.stats().record_request();
        let Some(writer) = self.writers.get(&stream).cloned() else {
            self.book.served(&id);
            return;
        };
        let span = tracing::info_span!(
            parent: &self.args.span,
            "request",
            request_id = %id,
            operation = %request.operation_name(),
        );
        let reply = dispatch::dispatch(
            &self.args.registry,
            &*self.args.identities,
            dispatch::Request {
                id: id.clone(),
                operation: request.operation_id,
                input: request.input,
                session_identity: info.identity(),
                auth_token: request.auth_token,
                forwarded_for: request.forwarded_for,
                origin: Origin::Remote,
                expect: Expect::ByOpType,
            },
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        let limits = self.args.limits.clone();
        let myself = myself.clone();
        let task_id = id.clone();
        let task = tokio::spawn(
            async move {
                respond(&writer, &task_id, reply, &limits).await;
                let _ = myself.cast(SessionMsg::Served(task_id, seq));
            }
            .instrument(span),
        );
        if let Err(running) = self.book.serving(
            &id,
            stream,
            Running {
                abort: task.abort_handle(),
                seq,
            },
        ) {
            running.abort.abort();
        }
    }
}

async fn respond(
    writer: &mpsc::Sender<Vec<u8>>,
    id: &str,
    reply: Result<Reply, CallError>,
    limits: &SessionLimits,
) {
    match reply {
        Err(error) => send(writer, EventEnvelope::error(id, &error), limits.max_frame).await,
        Ok(Reply::One(output)) => {
            let envelope = match tokio::time::timeout(limits.call_timeout, output).await {
                Ok(Ok(output)) => EventEnvelope::responded(id, output),
                Ok(Err(error)) => EventEnvelope::error(id, &error),
                Err(_) => EventEnvelope::error(id, &CallError::timeout()),
            };
            send(writer, envelope, limits.max_frame).await;
        }
        Ok(Reply::Stream(mut items)) => {
            while let Some(item) = items.next().await {
                match item {
                    Ok(output) => {
                        send(
                            writer,
                            EventEnvelope::responded(id, output),
                            limits.max_frame,
                        )
                        .await
                    }
                    Err(error) => {
                        send(writer, EventEnvelope::error(id, &error), limits.max_frame).await;
                        return;
                    }
                }
            }
            send(writer, EventEnvelope::completed(id), limits.max_frame).await;
        }
    }
}

/// Queues one envelope on a stream, waiting while the queue is full. A reply
/// above the frame limit is replaced by `INTERNAL` `response too large`.
async fn send(writer: &mpsc::Sender<Vec<u8>>, envelope: EventEnvelope, max_frame: usize) {
    let frame = match encode_frame(&envelope, max_frame) {
        Ok(frame) => frame,
        Err(_) => {
            let error = CallError::internal("response too large");
            encode_frame(&EventEnvelope::error(envelope.id, &error), max_frame)
                .expect("an error envelope fits any frame limit a session allows")
        }
    };
    let _ = writer.send(frame).await;
}
