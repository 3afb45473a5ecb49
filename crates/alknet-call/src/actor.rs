//! The `CallSession` actor: one per session, whichever end dialled (§5.1).
//!
//! The actor decides what every incoming envelope means, against the
//! session's bookkeeping ([`SessionBook`]), and does nothing that blocks.
//! Per-stream reader tasks hand it each decoded envelope; every request it
//! accepts runs in its own task, which writes its replies through the stream's
//! bounded writer queue (waiting when the peer reads slowly — output is never
//! dropped) and reports back when done.
//!
//! The book and the stream writers sit behind a mutex the actor shares with
//! the session's handles and reader tasks: a call this end makes is registered
//! there by the caller itself before its `call.requested` is queued, and the
//! reader that decodes a reply to it hands it over directly, so replies from any
//! stream find their caller without an actor round trip on the caller's path
//! (measured: those hops doubled a call's latency over TCP+TLS). Requests and
//! aborts, which start and stop work, go through the actor. The lock is held
//! for map operations only, never across an await.

use std::collections::HashMap;
use std::sync::Arc;

use alknet_core::{Connection, ConnectionInfo, TransportKind};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::codec::encode_frame;
use crate::dispatch::{self, Expect, Origin, PresentedToken, Reply};
use crate::envelope::{CallRequest, EventEnvelope, Incoming, Outgoing};
use crate::error::CallError;
use crate::handle::SessionHandle;
pub use crate::mailbox::{SessionMsg, StreamEnding};
use crate::session::{Action, StreamKey};
use crate::session_config::{SessionConfig, SessionLimits};
use crate::streams::Streams;
use crate::switchboard::{Running, SharedSwitchboard, lock};

/// One call session.
pub struct CallSession;

/// What a session starts with.
pub struct SessionArgs {
    pub(crate) config: SessionConfig,
    pub(crate) carrier: Carrier,
    pub(crate) handle_parts: crate::handle::HandleParts,
    pub(crate) shared: SharedSwitchboard,
    pub(crate) span: tracing::Span,
}

/// What a session runs over.
pub(crate) enum Carrier {
    /// An `alknet/call` connection: its streams, each length-framed (§3.1).
    Streams {
        connection: Connection,
        // Boxed: a stream carrier is several times the size of a message one.
        streams: Box<Streams>,
    },
    /// One channel of whole envelopes inside another connection (a WebSocket,
    /// §3.2), owned by whoever feeds it: the session only describes itself
    /// with its info, and its end closes the channel.
    Messages(Arc<ConnectionInfo>),
}

impl Carrier {
    fn info(&self) -> &Arc<ConnectionInfo> {
        match self {
            Self::Streams { connection, .. } => connection.info(),
            Self::Messages(info) => info,
        }
    }

    /// Whether the session has exactly one channel, whose loss ends it.
    fn is_one_channel(&self) -> bool {
        match self {
            Self::Streams { connection, .. } => connection.info().transport() == TransportKind::Tls,
            Self::Messages(_) => true,
        }
    }

    /// Closes a connection; a message channel closes when the session ends.
    fn close(&self, code: u32, reason: &str) {
        if let Self::Streams { connection, .. } = self {
            connection.close(code, reason);
        }
    }
}

/// The session actor's state.
pub struct SessionState {
    carrier: Carrier,
    shared: SharedSwitchboard,
    resets: HashMap<StreamKey, CancellationToken>,
    requests: Requests,
    draining: bool,
}

impl Actor for CallSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let requests = Requests {
            config: args.config,
            info: args.carrier.info().clone(),
            handle: SessionHandle::new(myself.clone(), args.handle_parts),
            shared: args.shared.clone(),
            actor: myself,
            span: args.span,
        };
        Ok(SessionState {
            shared: args.shared,
            carrier: args.carrier,
            resets: HashMap::new(),
            requests,
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
                lock(&state.shared).writers.insert(key, writer);
                state.resets.insert(key, reset);
            }
            SessionMsg::Inbound(key, envelope, permit) => {
                state.receive(key, envelope);
                drop(permit);
            }
            SessionMsg::StreamEnded(key, ending) => state.stream_ended(&myself, key, ending),
            SessionMsg::Served(id, seq) => {
                let mut shared = lock(&state.shared);
                shared.book.served_if(&id, |running| running.seq == seq);
                if state.draining && shared.book.in_flight() == 0 {
                    myself.stop(None);
                }
            }
            SessionMsg::Drain => {
                state.draining = true;
                let mut shared = lock(&state.shared);
                shared.book.drain();
                if shared.book.in_flight() == 0 {
                    myself.stop(None);
                }
            }
            SessionMsg::OpenStream(opened) => state.open_stream(&myself, opened),
            SessionMsg::Opened(attached, opened) => {
                let _ = opened.send(attached);
            }
            SessionMsg::Abort(id) => {
                let mut shared = lock(&state.shared);
                if let Some(waiter) = shared.book.forget(&id) {
                    let writer = shared
                        .writers
                        .get(&waiter.stream)
                        .or_else(|| shared.writers.values().next())
                        .cloned();
                    if let Some(writer) = writer {
                        let max_frame = state.requests.config.limits.max_frame;
                        tokio::spawn(async move {
                            let _ = send(&writer, EventEnvelope::aborted(id), max_frame).await;
                        });
                    }
                }
            }
            SessionMsg::WriteStalled(key) => {
                let info = state.carrier.info().clone();
                if WRITE_STALL_LOG.admit() {
                    tracing::warn!(
                        parent: &state.requests.span,
                        remote = %info.remote(),
                        alpn = %info.alpn(),
                        stream = key,
                        "closing the session: the peer read nothing for {:?} while its queue was full",
                        state.requests.config.limits.write_stall
                    );
                }
                state.carrier.close(crate::NO_ERROR, "write stall");
                myself.stop(Some("write stall".to_owned()));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // §9.3: abort everything served, fail everything awaited, drop the
        // overlay.
        let (aborts, failures) = {
            let mut shared = lock(&state.shared);
            // Dropping the queues lets each writer finish its stream.
            shared.writers.clear();
            shared.book.close()
        };
        if let Carrier::Streams { streams, .. } = &state.carrier {
            streams.end();
        }
        for running in aborts {
            running.abort.abort();
        }
        for (waiter, delivery) in failures {
            let _ = waiter.replies.send(delivery);
        }
        state.requests.handle.clear_overlay();
        Ok(())
    }
}

// Anyone can send a malformed frame or stop reading: a few lines a window.
static PROTOCOL_ERROR_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::warn("closing stream after a protocol error");
static WRITE_STALL_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::warn("closing the session: the peer read nothing");

impl SessionState {
    fn receive(&mut self, key: StreamKey, envelope: Incoming) {
        let Some(frame) = self.requests.receive(key, envelope) else {
            return;
        };
        let Some(writer) = lock(&self.shared).writers.get(&key).cloned() else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(frame)) = writer.try_send(frame) {
            // The peer reads slowly: wait for room, as a request task would.
            tokio::spawn(async move {
                let _ = writer.send(frame).await;
            });
        }
    }

    fn stream_ended(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        key: StreamKey,
        ending: StreamEnding,
    ) {
        let reset = self.resets.remove(&key);
        if let (Some(reset), StreamEnding::ProtocolError(_)) = (&reset, &ending) {
            // Before the writer's queue closes, so it resets rather than
            // finishes.
            reset.cancel();
        }
        lock(&self.shared).writers.remove(&key);
        let info = self.carrier.info().clone();
        let reason = match ending {
            StreamEnding::Finished => return,
            StreamEnding::ProtocolError(reason) => {
                if PROTOCOL_ERROR_LOG.admit() {
                    tracing::warn!(
                        parent: &self.requests.span,
                        remote = %info.remote(),
                        alpn = %info.alpn(),
                        "closing stream after a protocol error: {reason}"
                    );
                }
                reason
            }
            StreamEnding::Lost(reason) => {
                tracing::debug!(parent: &self.requests.span, "stream lost: {reason}");
                reason
            }
        };
        let reset = lock(&self.shared).book.stream_reset(key);
        for running in reset {
            running.abort.abort();
        }
        if self.carrier.is_one_channel() {
            // One stream is the whole session (§3.1 rule 2, §9.3).
            self.carrier.close(crate::PROTOCOL_ERROR, "protocol error");
            myself.stop(Some(reason));
        }
    }

    fn open_stream(&mut self, myself: &ActorRef<SessionMsg>, opened: RpcReplyPort<bool>) {
        if !lock(&self.shared).writers.is_empty() {
            let _ = opened.send(true);
            return;
        }
        let Carrier::Streams {
            connection,
            streams,
        } = &self.carrier
        else {
            let _ = opened.send(false);
            return;
        };
        if connection.info().transport() != TransportKind::Quic {
            let _ = opened.send(false);
            return;
        }
        // Not in the actor's turn: opening waits for stream credit. The stream
        // is attached (a `Stream` message) before `Opened` arrives.
        let streams = streams.clone();
        let session = myself.clone();
        tokio::spawn(async move {
            let attached = streams.open(&session).await.is_ok();
            let _ = session.cast(SessionMsg::Opened(attached, opened));
        });
    }
}

/// What the peer's envelopes do, wherever they are read: the session actor
/// applies those a stream's reader hands it, and a message channel's owner
/// (a WebSocket's task) applies its own directly. Either way the decisions are
/// the shared book's, taken under its lock, so both orders of arrival give the
/// same result; what runs for longer than a first poll gets a task of its own
/// and reports to the actor when done.
#[derive(Clone)]
pub(crate) struct Requests {
    config: SessionConfig,
    info: Arc<ConnectionInfo>,
    handle: SessionHandle,
    shared: SharedSwitchboard,
    actor: ActorRef<SessionMsg>,
    span: tracing::Span,
}

impl Requests {
    /// A message channel's view of its session (see [`Requests`]).
    pub(crate) fn new(
        config: SessionConfig,
        info: Arc<ConnectionInfo>,
        handle: SessionHandle,
        shared: SharedSwitchboard,
        actor: ActorRef<SessionMsg>,
        span: tracing::Span,
    ) -> Self {
        Self {
            config,
            info,
            handle,
            shared,
            actor,
            span,
        }
    }

    /// Applies one envelope read on `stream`; returns the frame to send back
    /// on that stream at once, if there is one (a refusal, or the reply of a
    /// handler that finished on its first poll).
    pub(crate) fn receive(&self, stream: StreamKey, envelope: Incoming) -> Option<Vec<u8>> {
        let action = {
            let mut shared = lock(&self.shared);
            match shared.book.receive(stream, envelope) {
                // The stream ended meanwhile: nobody to answer.
                Action::Dispatch { id, .. } if !shared.writers.contains_key(&stream) => {
                    drop(shared);
                    self.served(&id);
                    return None;
                }
                action => action,
            }
        };
        match action {
            Action::Ignore => None,
            Action::Deliver(waiter, delivery) => {
                let _ = waiter.replies.send(delivery);
                None
            }
            Action::Reply(_, envelope) => Some(encode(envelope, self.config.limits.max_frame)),
            Action::Abort(running) => {
                running.abort.abort();
                None
            }
            Action::Dispatch {
                stream,
                id,
                request,
            } => self.start(stream, id, request),
        }
    }

    fn start(&self, stream: StreamKey, id: String, request: CallRequest) -> Option<Vec<u8>> {
        let info = &self.info;
        info.stats().record_request();
        let span = tracing::info_span!(
            parent: &self.span,
            "request",
            request_id = %id,
            operation = %request.operation_name(),
        );
        let token = PresentedToken::resolve_from(
            &*self.config.identities,
            request.auth_token,
            info.remote(),
            "alknet/call",
        );
        if let PresentedToken::Identity(identity) = &token {
            // For operators (`admin/tree`): who this session acts for.
            info.note_token_identity(&identity.id);
        }
        let (session_identity, auth_token) = token.dispatch_parts(info.shared_identity());
        let limits = &self.config.limits;
        let deadline = Instant::now() + limits.call_timeout;
        let in_span = span.enter();
        let mut reply = dispatch::dispatch(
            &self.config.registry,
            &*self.config.identities,
            dispatch::Request {
                id: id.clone(),
                operation: request.operation_id,
                input: request.input,
                session_identity,
                auth_token,
                forwarded_for: request.forwarded_for,
                origin: Origin::Remote,
                expect: Expect::ByOpType,
                deadline: Some(deadline),
                session: Some(self.handle.clone()),
            },
        );
        let immediate = answered_at_once(&id, &mut reply, limits.max_frame);
        drop(in_span);
        if immediate.is_some() {
            self.served(&id);
            return immediate;
        }
        let limits = limits.clone();
        let actor = self.actor.clone();
        let task_id = id.clone();
        let mut shared = lock(&self.shared);
        let Some(writer) = shared.writers.get(&stream).cloned() else {
            drop(shared);
            self.served(&id);
            return None;
        };
        let seq = shared.next_seq;
        shared.next_seq += 1;
        let task = tokio::spawn(
            async move {
                respond(&writer, &task_id, reply, deadline, &limits).await;
                let _ = actor.cast(SessionMsg::Served(task_id, seq));
            }
            .instrument(span),
        );
        let running = Running {
            abort: task.abort_handle(),
            seq,
        };
        if let Err(running) = shared.book.serving(&id, stream, running) {
            running.abort.abort();
        }
        None
    }

    /// A request answered without a task is retired here; a draining session
    /// stops once nothing is in flight, which only its actor can do.
    fn served(&self, id: &str) {
        let mut shared = lock(&self.shared);
        shared.book.served(id);
        if shared.book.is_draining() && shared.book.in_flight() == 0 {
            let _ = self.actor.cast(SessionMsg::Drain);
        }
    }
}

/// The terminal envelope of a request that is answered at once: refused by
/// dispatch, or a query or mutation whose handler finished on its first poll
/// (most do). The actor writes those itself: no task, no timer, no round trip
/// back to the actor — what a request costs is mostly that overhead. A handler
/// still pending after its first poll continues in its own task.
fn answered_at_once(
    id: &str,
    reply: &mut Result<Reply, CallError>,
    max_frame: usize,
) -> Option<Vec<u8>> {
    use futures::FutureExt;
    match reply {
        Err(error) => Some(encode(EventEnvelope::error(id, error), max_frame)),
        // The future catches its handler's panics itself (dispatch::run).
        Ok(Reply::One(output)) => Some(match output.as_mut().now_or_never()? {
            Ok(output) => encode_output(id, &output, max_frame),
            Err(error) => encode(EventEnvelope::error(id, &error), max_frame),
        }),
        Ok(Reply::Stream(_)) => None,
    }
}

async fn respond(
    writer: &mpsc::Sender<Vec<u8>>,
    id: &str,
    reply: Result<Reply, CallError>,
    deadline: Instant,
    limits: &SessionLimits,
) {
    let max_frame = limits.max_frame;
    let failed = |error: &CallError| encode(EventEnvelope::error(id, error), max_frame);
    match reply {
        Err(error) => {
            let _ = writer.send(failed(&error)).await;
        }
        Ok(Reply::One(output)) => {
            // Dropping the handler at the deadline cancels its nested calls
            // with it (§9.2).
            let frame = match tokio::time::timeout_at(deadline, output).await {
                Ok(Ok(output)) => encode_output(id, &output, max_frame),
                Ok(Err(error)) => failed(&error),
                Err(_) => failed(&CallError::timeout()),
            };
            let _ = writer.send(frame).await;
        }
        Ok(Reply::Stream(mut items)) => {
            while let Some(item) = items.next().await {
                // An item too large to send becomes the call's error, and an
                // error ends the call: nothing may follow it (§4.2).
                let (frame, last) = match item {
                    Ok(output) => {
                        match encode_or_too_large(&Outgoing::responded(id, &output), id, max_frame)
                        {
                            Ok(frame) => (frame, false),
                            Err(too_large) => (too_large, true),
                        }
                    }
                    Err(error) => (failed(&error), true),
                };
                // A stream whose writer is gone (reset, stalled, closed) has
                // nobody to produce for: stop pulling items, or an endless
                // subscription would spin without ever yielding.
                if writer.send(frame).await.is_err() || last {
                    return;
                }
            }
            let _ = send(writer, EventEnvelope::completed(id), max_frame).await;
        }
    }
}

/// Queues one envelope on a stream, waiting while the queue is full; `Err`
/// when the stream's writer is gone.
pub(crate) async fn send(
    writer: &mpsc::Sender<Vec<u8>>,
    envelope: EventEnvelope,
    max_frame: usize,
) -> Result<(), WriterGone> {
    writer
        .send(encode(envelope, max_frame))
        .await
        .map_err(|_| WriterGone)
}

/// One envelope's frame; a reply above the frame limit is replaced by
/// `INTERNAL` `response too large`.
fn encode(envelope: EventEnvelope, max_frame: usize) -> Vec<u8> {
    encode_or_too_large(&envelope, &envelope.id, max_frame).unwrap_or_else(|too_large| too_large)
}

/// The frame of `call.responded` with `output`, serialized straight from it.
fn encode_output(id: &str, output: &serde_json::Value, max_frame: usize) -> Vec<u8> {
    encode_or_too_large(&Outgoing::responded(id, output), id, max_frame)
        .unwrap_or_else(|too_large| too_large)
}

/// The envelope's frame, or (`Err`) the frame of the `INTERNAL` `response too
/// large` error that replaces it, which is terminal for the call.
fn encode_or_too_large<T: serde::Serialize>(
    envelope: &T,
    id: &str,
    max_frame: usize,
) -> Result<Vec<u8>, Vec<u8>> {
    encode_frame(envelope, max_frame).map_err(|_| {
        let error = CallError::internal("response too large");
        encode_frame(&EventEnvelope::error(id, &error), max_frame)
            .expect("an error envelope fits any frame limit a session allows")
    })
}

/// The stream's writer has ended.
#[derive(Debug)]
pub(crate) struct WriterGone;
