//! Feeding a session from a connection's streams (§3.1, §5.3).
//!
//! Each stream gets a reader task, which decodes frames and hands envelopes to
//! the session actor one at a time (waiting until each is taken: the
//! backpressure on a peer that writes faster than the session decides), and a
//! writer task draining the stream's bounded queue. [`Session::drive`] accepts
//! the peer's streams for as long as the connection lives; the dialling side
//! attaches the stream it opened itself. Nothing here knows which end dialled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alknet_core::connection::{BiStream, RecvHalf, SendHalf, StreamError};
use alknet_core::{Connection, TransportKind};
use ractor::{Actor, ActorRef, SpawnErr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::{
    CallSession, Carrier, Inbox, SessionArgs, SessionMsg, Shared, SharedSession, StreamEnding,
};
use crate::codec::FrameDecoder;
use crate::handle::{HandleParts, SessionHandle};
use crate::server::{SessionConfig, SessionLimits};
use crate::session::StreamKey;

/// Queued frames coalesced into one write, in bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes one read takes from a stream; frames longer than this take their
/// room from the session's frame budget before the rest is read.
const READ_BUFFER: usize = 64 * 1024;

/// How large frames are, alone and together.
struct FrameLimits {
    max_frame: usize,
    budget: Arc<Semaphore>,
}

/// Attaches streams to one session: key numbering and the task set.
#[derive(Clone)]
pub(crate) struct Streams {
    connection: Connection,
    shared: SharedSession,
    limits: SessionLimits,
    next_key: Arc<AtomicU64>,
    tasks: TaskTracker,
    ended: CancellationToken,
    /// Whether any stream has delivered a whole frame yet.
    heard: Arc<AtomicBool>,
    /// Bytes of large frames the session's streams may be receiving at once
    /// (one `max_frame`): over QUIC a peer could otherwise have every one of
    /// its streams fill a maximum-size frame at the same time.
    frame_budget: Arc<Semaphore>,
}

impl Streams {
    fn new(connection: Connection, shared: SharedSession, limits: SessionLimits) -> Self {
        Self {
            connection,
            shared,
            next_key: Arc::new(AtomicU64::new(0)),
            tasks: TaskTracker::new(),
            ended: CancellationToken::new(),
            heard: Arc::new(AtomicBool::new(false)),
            frame_budget: Arc::new(Semaphore::new(limits.max_frame)),
            limits,
        }
    }

    /// The session is over: readers stop reading (writers finish once the
    /// session drops their queues), so no stream outlives its session.
    pub(crate) fn end(&self) {
        self.ended.cancel();
    }

    /// Starts reading and writing `stream` for `session`.
    pub(crate) fn attach(&self, session: &ActorRef<SessionMsg>, stream: BiStream) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.limits.outgoing_queue);
        let reset = CancellationToken::new();
        if session
            .cast(SessionMsg::Stream(key, tx, reset.clone()))
            .is_err()
        {
            return;
        }
        let writer = write_stream(
            key,
            stream.send,
            rx,
            reset,
            session.clone(),
            self.limits.write_stall,
        );
        // A writer finishes what is queued when the session ends (it drops
        // the queues); a reader stops at once.
        self.spawn_until(writer, false);
        let reader = read_stream(
            key,
            stream.recv,
            session.clone(),
            Inbox::new(session.clone(), self.shared.clone()),
            FrameLimits {
                max_frame: self.limits.max_frame,
                budget: self.frame_budget.clone(),
            },
            self.heard.clone(),
        );
        self.spawn_until(reader, true);
    }

    /// Runs a stream task until it ends or the connection closes (`admin/kill`,
    /// shutdown: nothing more is read or written after the close) — or, with
    /// `until_session_end`, the session ends.
    fn spawn_until(
        &self,
        task: impl Future<Output = ()> + Send + 'static,
        until_session_end: bool,
    ) {
        let connection = self.connection.clone();
        let ended = self.ended.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = connection.closed() => {}
                () = ended.cancelled(), if until_session_end => {}
                () = task => {}
            }
        });
    }

    /// Opens a stream of our own and attaches it.
    pub(crate) async fn open(&self, session: &ActorRef<SessionMsg>) -> Result<(), StreamError> {
        let stream = self.connection.open_bi().await?;
        self.attach(session, stream);
        Ok(())
    }
}

/// A running session: its actor, its streams, and the handle to call through it.
pub(crate) struct Session {
    actor: ActorRef<SessionMsg>,
    ended: JoinHandle<()>,
    streams: Streams,
    connection: Connection,
    handle: SessionHandle,
}

impl Session {
    /// Spawns the session actor for `connection`. Callers through the handle
    /// give up `caller_timer` after sending a query or mutation (§9.2).
    pub(crate) async fn start(
        config: SessionConfig,
        connection: Connection,
        caller_timer: std::time::Duration,
        span: tracing::Span,
    ) -> Result<Self, SpawnErr> {
        let shared = Shared::new(config.limits.max_in_flight);
        let streams = Streams::new(connection.clone(), shared.clone(), config.limits.clone());
        let parts = HandleParts::new(
            shared.clone(),
            &config.limits,
            caller_timer,
            connection.info().clone(),
        );
        let args = SessionArgs {
            config,
            carrier: Carrier::Streams {
                connection: connection.clone(),
                streams: Box::new(streams.clone()),
            },
            handle_parts: parts.clone(),
            shared,
            span,
        };
        let (actor, ended) = Actor::spawn(None, CallSession, args).await?;
        Ok(Self {
            handle: SessionHandle::new(actor.clone(), parts),
            actor,
            ended,
            streams,
            connection,
        })
    }

    /// The handle to call the remote end through.
    pub(crate) fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// Opens a stream of our own (the dialling side's first stream).
    pub(crate) async fn open_stream(&self) -> Result<(), StreamError> {
        self.streams.open(&self.actor).await
    }

    /// Accepts the peer's streams until the session is over: over QUIC until
    /// the connection closes, over TCP+TLS until its one stream ends. However
    /// this future ends (the connection actor may be killed), the session
    /// actor ends with it. With `first_frame_timeout`, a peer that has sent no
    /// whole frame by then is disconnected: an open connection that says
    /// nothing holds a connection slot and must not hold it forever.
    pub(crate) async fn drive(self, first_frame_timeout: Option<std::time::Duration>) {
        let Self {
            actor,
            mut ended,
            streams,
            connection,
            handle: _,
        } = self;
        let _stop = StopOnDrop(actor.clone());
        let mut accepting = true;
        let mut drain_sent = false;
        let mut waiting_first = first_frame_timeout.is_some();
        let first_frame_timer = tokio::time::sleep(first_frame_timeout.unwrap_or_default());
        tokio::pin!(first_frame_timer);
        loop {
            tokio::select! {
                () = &mut first_frame_timer, if waiting_first => {
                    waiting_first = false;
                    if !streams.heard.load(Ordering::Acquire) {
                        tracing::debug!(
                            remote = %connection.remote(),
                            "closing the connection: no frame within {:?} of the handshake",
                            first_frame_timeout.unwrap_or_default()
                        );
                        connection.close(crate::NO_ERROR, "no request in time");
                        break;
                    }
                }
                () = connection.draining(), if !drain_sent => {
                    drain_sent = true;
                    let _ = actor.cast(SessionMsg::Drain);
                }
                next = connection.accept_bi(), if accepting => match next {
                    Ok(Some(stream)) => streams.attach(&actor, stream),
                    // Over TCP+TLS the one stream was handed out; the session
                    // ends with it. Over QUIC the connection is gone (§9.3).
                    Ok(None) | Err(_) => {
                        if connection.info().transport() == TransportKind::Quic {
                            break;
                        }
                        accepting = false;
                        streams.tasks.close();
                    }
                },
                () = streams.tasks.wait(), if !accepting => break,
                _ = &mut ended => return,
            }
        }
        actor.stop(None);
        let _ = ended.await;
    }
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
    inbox: Inbox,
    limits: FrameLimits,
    heard: Arc<AtomicBool>,
) {
    let mut decoder = FrameDecoder::new(limits.max_frame);
    let mut buffer = vec![0u8; READ_BUFFER];
    // The share of the session's frame budget the frame in progress holds.
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    loop {
        if reserved.is_none()
            && let Some(length) = decoder.partial_frame_len().filter(|l| *l > READ_BUFFER)
        {
            // Not read further until the whole frame has room: the peer
            // waits (flow control), and the session holds one `max_frame`
            // of large frames at most.
            let permits = u32::try_from(length).expect("max_frame fits in u32");
            match limits.budget.clone().acquire_many_owned(permits).await {
                Ok(permit) => reserved = Some(permit),
                Err(_) => return,
            }
        }
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
            match decoder.next_incoming() {
                Ok(Some(envelope)) => {
                    // Frames come in order: the one that held the room is read.
                    reserved = None;
                    if !heard.load(Ordering::Relaxed) {
                        heard.store(true, Ordering::Release);
                    }
                    if inbox.deliver(key, envelope).await.is_err() {
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
    key: StreamKey,
    mut send: SendHalf,
    mut frames: mpsc::Receiver<Vec<u8>>,
    reset: CancellationToken,
    session: ActorRef<SessionMsg>,
    write_stall: std::time::Duration,
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
        let Some(mut batch) = frame else { break };
        // Frames already queued go out in the same write: one syscall (or
        // one pass through quinn's connection lock) for many small replies.
        while batch.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        let write = async {
            send.write_all(&batch).await?;
            send.flush().await
        };
        match alknet_core::stall::within(write_stall, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                let _ = session.cast(SessionMsg::WriteStalled(key));
                return;
            }
        }
    }
    // Every sender is gone: the peer's half ended and every request on this
    // stream is terminal (§5.3 rule 3).
    let _ = send.shutdown().await;
}
