//! One SFTP session: requests are read, run side by side (at most
//! `max_in_flight` at once; the session stops reading while that many are
//! unanswered), and their replies written as they finish. Requests on one
//! handle keep their order ([`crate::handles`]).
//!
//! A request that changes something runs alone, in its place in the
//! stream ([`requests::changes`]): clients such as sshfs pipeline a change
//! and a read of its result without waiting, as OpenSSH's server answers
//! one request at a time. Reads, listings and attributes requests run side
//! by side.
//!
//! A request starts in the session's own task and moves to a task of its
//! own only if it has to wait (for an earlier request on its handle, or for
//! the blocking pool). Most requests of a small-file transfer never wait,
//! and answering them in place spares the thread wake-ups that handing them
//! to another task and their replies back would cost: on a runtime with
//! idle worker threads, each such hand-off wakes one.
//!
//! Memory is bounded by the permits: a request holds one from before its
//! packet is taken until its reply is written, so a session holds at most
//! `max_in_flight` requests and replies of at most `max_packet` bytes each,
//! and its read buffer at most one packet and one read more.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use alknet_core::ConnectionInfo;
use alknet_core::log_limit::LogLimit;
use bytes::{Buf, Bytes, BytesMut};
use futures::future::Either;
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::access::Access;
use crate::handles::Handles;
use crate::longname::Names;
use crate::requests;
use crate::storage::Storage;

/// The bounds of one session.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_packet: u32,
    pub(crate) max_open_handles: usize,
    pub(crate) max_in_flight: usize,
}

/// What a session's requests share.
pub(crate) struct Session<S: Storage> {
    pub(crate) storage: S,
    pub(crate) access: Access,
    pub(crate) handles: Handles<S>,
    pub(crate) limits: Limits,
    pub(crate) names: Arc<Names>,
    pub(crate) info: Arc<ConnectionInfo>,
    /// Where the session's `/` is on the host, for the tree.
    pub(crate) root: String,
}

impl<S: Storage> Session<S> {
    /// Shows the session in `admin/tree`: its root, grants and handles.
    pub(crate) fn show(&self) {
        self.info.set_detail(format!(
            "sftp {} ({}); {} open",
            self.root,
            self.access.summary(),
            self.handles.len()
        ));
    }
}

/// A reply ready to write, and the permit its request held.
type Reply = (Bytes, OwnedSemaphorePermit);

static BAD_PACKET: LogLimit = LogLimit::warn("an SFTP client sent a malformed packet");

/// Why a session ended other than by its client closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A packet longer than `sftp.max_packet`.
    #[error("an SFTP packet of {0} bytes, over sftp.max_packet")]
    TooLong(u32),
    /// A packet that does not decode.
    #[error("a malformed SFTP packet: {0}")]
    Malformed(String),
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Runs the session until the client closes its side and every reply is
/// written, or until the stream fails or the client breaks the protocol.
///
/// One loop reads requests and writes replies, each as the stream allows:
/// a reply waiting for the client to open its window must not stop the
/// session reading, or the transport, with the client's requests queued
/// for this session, could not take in the window update either.
pub(crate) async fn run<S: Storage>(
    session: Arc<Session<S>>,
    reader: impl AsyncRead + Unpin + Send,
    mut writer: impl AsyncWrite + Unpin + Send,
) -> Result<(), SessionError> {
    session.show();
    let mut state = Running {
        permits: Arc::new(Semaphore::new(session.limits.max_in_flight)),
        // Taken in arrival order (tokio's lock is fair): shared by requests
        // that only look, exclusively by those that change.
        order: Arc::new(RwLock::new(())),
        finished: mpsc::unbounded_channel(),
        waiting: JoinSet::new(),
        out: Outgoing::default(),
    };
    let mut packets = Packets::new(reader, session.limits.max_packet);
    let mut reading = true;
    loop {
        while state.waiting.try_join_next().is_some() {}
        state.take_finished();
        if !reading && state.waiting.is_empty() {
            // Every waiting request sent its reply before it ended, and
            // every reply is queued.
            while !state.out.is_empty() {
                state.out.write_some(&mut writer).await?;
            }
            break;
        }
        // Requests already in the buffer are answered before anything is
        // written, so that their replies can leave together.
        while reading && state.permits.available_permits() > 0 {
            match packets.take()? {
                Some(packet) => state.start(&session, packet).await?,
                None => break,
            }
        }
        let room = state.permits.available_permits() > 0;
        tokio::select! {
            biased;
            Some((reply, permit)) = state.finished.1.recv() => state.out.push(reply, permit),
            // A request that panicked sends no reply: reaped here.
            Some(_) = state.waiting.join_next(), if !state.waiting.is_empty() => {}
            written = state.out.write_some(&mut writer), if !state.out.is_empty() => {
                written?;
                if state.out.is_empty() {
                    writer.flush().await?;
                }
            }
            packet = packets.next(), if reading && room => match packet? {
                Some(packet) => state.start(&session, packet).await?,
                None => reading = false,
            },
        }
    }
    writer.flush().await?;
    writer.shutdown().await?;
    Ok(())
}

/// The session's requests in progress and its replies on their way out.
struct Running {
    permits: Arc<Semaphore>,
    order: Arc<RwLock<()>>,
    /// Replies of the requests that had to wait, as they finish.
    finished: (mpsc::UnboundedSender<Reply>, mpsc::UnboundedReceiver<Reply>),
    /// The requests that had to wait.
    waiting: JoinSet<()>,
    out: Outgoing,
}

impl Running {
    /// Runs `packet` here until it finishes or has to wait; one that has
    /// to wait goes on in a task of its own.
    async fn start<S: Storage>(
        &mut self,
        session: &Arc<Session<S>>,
        packet: Packet,
    ) -> Result<(), SessionError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(io::Error::other)?;
        session.info.stats().record_request();
        let queued = match requests::handle_of(&packet) {
            None => None,
            Some(name) => match session.handles.queue(&name) {
                Some((handle, turn)) => Some((name, handle, turn)),
                None => {
                    self.out.push(requests::no_such_handle(&packet), permit);
                    return Ok(());
                }
            },
        };
        // Held until the reply is on its way.
        let place = if requests::changes(&packet) {
            Either::Left(self.order.clone().write_owned().await)
        } else {
            Either::Right(self.order.clone().read_owned().await)
        };
        let request = {
            let session = session.clone();
            async move {
                match queued {
                    Some((name, handle, mut turn)) => {
                        turn.wait().await;
                        let reply = requests::answer(&session, packet, Some((name, handle))).await;
                        (reply, Some(turn))
                    }
                    None => (requests::answer(&session, packet, None).await, None),
                }
            }
        };
        let mut request = Box::pin(request);
        let polled = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
        match polled {
            Poll::Ready((reply, turn)) => {
                // An earlier reply on the same handle may be in the channel
                // (its request let the handle go once it had sent it): it
                // goes first, so one handle's replies keep their order.
                self.take_finished();
                self.out.push(reply, permit);
                drop((turn, place));
            }
            Poll::Pending => {
                let finished = self.finished.0.clone();
                self.waiting.spawn(async move {
                    let (reply, turn) = request.await;
                    // Sent before the handle's next request may run.
                    let _ = finished.send((reply, permit));
                    drop((turn, place));
                });
            }
        }
        Ok(())
    }

    /// Queues the replies of waiting requests that have finished.
    fn take_finished(&mut self) {
        while let Ok((reply, permit)) = self.finished.1.try_recv() {
            self.out.push(reply, permit);
        }
    }
}

/// Replies to write, in order, each with the permit its request held until
/// it is written.
#[derive(Default)]
struct Outgoing {
    queue: VecDeque<(Bytes, Vec<OwnedSemaphorePermit>)>,
}

/// Replies shorter than this leave together, copied into one write (one
/// channel message), when several are ready.
const GATHER: usize = 16 * 1024;

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push(&mut self, reply: Bytes, permit: OwnedSemaphorePermit) {
        self.queue.push_back((reply, vec![permit]));
    }

    /// Writes what the stream takes of the first reply, with the small
    /// ones behind it. Cancel-safe: what was not written stays queued.
    async fn write_some(&mut self, writer: &mut (impl AsyncWrite + Unpin)) -> io::Result<()> {
        self.gather();
        let Some((front, _)) = self.queue.front_mut() else {
            return Ok(());
        };
        let written = writer.write(front).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        front.advance(written);
        if front.is_empty() {
            self.queue.pop_front();
        }
        Ok(())
    }

    /// Joins small replies at the front into one.
    fn gather(&mut self) {
        let small = |(reply, _): &(Bytes, Vec<OwnedSemaphorePermit>)| reply.len() < GATHER;
        let runs = self.queue.iter().take_while(|r| small(r)).take(64).count();
        if runs < 2 {
            return;
        }
        let mut joined = BytesMut::new();
        let mut permits = Vec::with_capacity(runs);
        for (reply, held) in self.queue.drain(..runs) {
            joined.extend_from_slice(&reply);
            permits.extend(held);
        }
        self.queue.push_front((joined.freeze(), permits));
    }
}

/// The client's requests, read into one buffer so that a read cut short
/// by a reply to write loses nothing.
struct Packets<R> {
    reader: R,
    buffer: BytesMut,
    max_packet: u32,
}

/// What a read asks for at least.
const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> Packets<R> {
    fn new(reader: R, max_packet: u32) -> Self {
        Self {
            reader,
            buffer: BytesMut::new(),
            max_packet,
        }
    }

    /// The next packet; `None` when the client closed the stream between
    /// packets. Cancel-safe.
    async fn next(&mut self) -> Result<Option<Packet>, SessionError> {
        loop {
            if let Some(packet) = self.take()? {
                return Ok(Some(packet));
            }
            if self.buffer.capacity() - self.buffer.len() < READ_CHUNK {
                self.buffer.reserve(READ_CHUNK);
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                // Inside a length a close is a clean end, as it always was;
                // inside a body it cut the request short.
                return if self.buffer.len() < 4 {
                    Ok(None)
                } else {
                    Err(io::Error::from(io::ErrorKind::UnexpectedEof).into())
                };
            }
        }
    }

    /// A whole packet from the buffer, if there is one.
    fn take(&mut self) -> Result<Option<Packet>, SessionError> {
        let Some(length) = self
            .buffer
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l))
        else {
            return Ok(None);
        };
        if length == 0 || length > self.max_packet {
            if BAD_PACKET.admit() {
                tracing::warn!(
                    length,
                    max_packet = self.max_packet,
                    "SFTP packet over sftp.max_packet; closing the session"
                );
            }
            return Err(SessionError::TooLong(length));
        }
        let whole = 4 + length as usize;
        if self.buffer.len() < whole {
            self.buffer.reserve(whole - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(4);
        let mut body = self.buffer.split_to(length as usize).freeze();
        Packet::try_from(&mut body).map(Some).map_err(|e| {
            if BAD_PACKET.admit() {
                tracing::warn!("malformed SFTP packet ({e}); closing the session");
            }
            SessionError::Malformed(e.to_string())
        })
    }
}
