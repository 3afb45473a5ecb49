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

use alknet_core::Connection;
use alknet_core::connection::{BiStream, RecvHalf, SendHalf, StreamError};
use ractor::ActorRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::FrameDecoder;
use crate::limits::SessionLimits;
use crate::mailbox::{SessionMsg, StreamEnding};
use crate::session::StreamKey;
use crate::switchboard::{Inbox, SharedSwitchboard};

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
    shared: SharedSwitchboard,
    limits: SessionLimits,
    next_key: Arc<AtomicU64>,
    pub(crate) tasks: TaskTracker,
    ended: CancellationToken,
    /// Whether any stream has delivered a whole frame yet.
    pub(crate) heard: Arc<AtomicBool>,
    /// Bytes of large frames the session's streams may be receiving at once
    /// (one `max_frame`): over QUIC a peer could otherwise have every one of
    /// its streams fill a maximum-size frame at the same time.
    frame_budget: Arc<Semaphore>,
}

impl Streams {
    pub(crate) fn new(
        connection: Connection,
        shared: SharedSwitchboard,
        limits: SessionLimits,
    ) -> Self {
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
