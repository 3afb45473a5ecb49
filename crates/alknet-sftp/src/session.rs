//! One SFTP session: requests are read, run side by side (at most
//! `max_in_flight` at once; the session stops reading while that many are
//! unanswered), and their replies written as they finish. Requests on one
//! handle keep their order ([`crate::handles`]).
//!
//! A request that changes something runs alone, in its place in the
//! stream ([`requests::changes`]): clients such as sshfs pipeline a change
//! and a read of its result without waiting, as OpenSSH's server answers
//! one request at a time. Reads, listings and attribute requests run side
//! by side.
//!
//! Memory is bounded by the permits: a request holds one from before its
//! packet is read until its reply is written, so a session holds at most
//! `max_in_flight` packets and replies of at most `max_packet` bytes each.

use std::io;
use std::sync::Arc;

use alknet_core::ConnectionInfo;
use alknet_core::log_limit::LogLimit;
use bytes::{Bytes, BytesMut};
use futures::future::Either;
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
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
pub(crate) async fn run<S: Storage>(
    session: Arc<Session<S>>,
    reader: impl AsyncRead + Unpin + Send,
    writer: impl AsyncWrite + Unpin + Send,
) -> Result<(), SessionError> {
    let (replies, queued) = mpsc::unbounded_channel();
    session.show();
    tokio::try_join!(
        read_requests(session.clone(), reader, replies),
        write_replies(writer, queued),
    )?;
    Ok(())
}

async fn read_requests<S: Storage>(
    session: Arc<Session<S>>,
    reader: impl AsyncRead + Unpin + Send,
    replies: mpsc::UnboundedSender<Reply>,
) -> Result<(), SessionError> {
    let permits = Arc::new(Semaphore::new(session.limits.max_in_flight));
    // Taken in arrival order (tokio's lock is fair): shared by requests
    // that only look, exclusively by those that change.
    let order = Arc::new(RwLock::new(()));
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut running = JoinSet::new();
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let Some(packet) = read_packet(&mut reader, session.limits.max_packet).await? else {
            break;
        };
        while running.try_join_next().is_some() {}
        session.info.stats().record_request();
        let queued = match requests::handle_of(&packet) {
            None => None,
            Some(name) => match session.handles.queue(&name) {
                Some((handle, turn)) => Some((name, handle, turn)),
                None => {
                    let reply = requests::no_such_handle(&packet);
                    let _ = replies.send((reply, permit));
                    continue;
                }
            },
        };
        // Held until the reply is queued.
        let place = if requests::changes(&packet) {
            Either::Left(order.clone().write_owned().await)
        } else {
            Either::Right(order.clone().read_owned().await)
        };
        let session = session.clone();
        let replies = replies.clone();
        running.spawn(async move {
            let (reply, turn) = match queued {
                Some((name, handle, mut turn)) => {
                    turn.wait().await;
                    let reply = requests::answer(&session, packet, Some((name, handle))).await;
                    (reply, Some(turn))
                }
                None => (requests::answer(&session, packet, None).await, None),
            };
            // Written before the handle's next request may run, so that one
            // handle's replies leave in order too.
            let _ = replies.send((reply, permit));
            drop(turn);
            drop(place);
        });
    }
    // The client is done sending: answer what it already asked.
    while running.join_next().await.is_some() {}
    Ok(())
}

/// The next packet; `None` when the client closed the stream between
/// packets.
async fn read_packet(
    reader: &mut (impl AsyncRead + Unpin),
    max_packet: u32,
) -> Result<Option<Packet>, SessionError> {
    let length = match reader.read_u32().await {
        Ok(length) => length,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if length == 0 || length > max_packet {
        if BAD_PACKET.admit() {
            tracing::warn!(
                length,
                max_packet,
                "SFTP packet over sftp.max_packet; closing the session"
            );
        }
        return Err(SessionError::TooLong(length));
    }
    let mut body = BytesMut::zeroed(length as usize);
    reader.read_exact(&mut body).await?;
    let mut body = body.freeze();
    Packet::try_from(&mut body).map(Some).map_err(|e| {
        if BAD_PACKET.admit() {
            tracing::warn!("malformed SFTP packet ({e}); closing the session");
        }
        SessionError::Malformed(e.to_string())
    })
}

async fn write_replies(
    writer: impl AsyncWrite + Unpin + Send,
    mut queued: mpsc::UnboundedReceiver<Reply>,
) -> Result<(), SessionError> {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some((reply, permit)) = queued.recv().await {
        writer.write_all(&reply).await?;
        drop(permit);
        // Flush only when nothing else is ready: replies that finish
        // together leave together.
        if queued.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    writer.shutdown().await?;
    Ok(())
}
