//! The session state the actor shares with its handles and reader tasks: the
//! session book and each stream's writer, behind one mutex.
//!
//! A call this end makes is registered here by the caller itself before its
//! `call.requested` is queued, and the reader that decodes a reply hands it to
//! its caller directly, so replies find their caller without an actor round
//! trip. The lock is held for map operations only, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::ActorRef;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use crate::envelope::Incoming;
use crate::error::CallError;
use crate::mailbox::SessionMsg;
use crate::session::{Action, CallKind, Delivery, SessionBook, StreamKey};

/// What the actor shares with the session's handles.
pub(crate) struct Switchboard {
    pub(crate) book: SessionBook<Running, Waiter>,
    pub(crate) writers: HashMap<StreamKey, mpsc::Sender<Vec<u8>>>,
    /// Tells a request's `Served` from that of an earlier one with its id.
    pub(crate) next_seq: u64,
}

/// The shared half of a session.
pub(crate) type SharedSwitchboard = Arc<Mutex<Switchboard>>;

/// Why a call could not be registered.
pub(crate) enum Unregistered {
    /// No stream is open to write it on.
    NoStream,
    /// The session refused it (closed, or a duplicate id).
    Refused(CallError),
}

impl Switchboard {
    pub(crate) fn new(max_in_flight: usize) -> SharedSwitchboard {
        Arc::new(Mutex::new(Self {
            book: SessionBook::new(max_in_flight),
            writers: HashMap::new(),
            next_seq: 0,
        }))
    }

    /// Adds a channel's writer (a message session's only one).
    pub(crate) fn attach_writer(&mut self, key: StreamKey, writer: mpsc::Sender<Vec<u8>>) {
        self.writers.insert(key, writer);
    }

    /// Registers one of this end's calls; returns the writer of the stream to
    /// put its request on: the oldest one still open (over TCP+TLS the only
    /// one). A peer's first stream is its session's main one; later streams
    /// often carry one exchange and end, and a request queued on a stream the
    /// peer is abandoning would be lost with it.
    pub(crate) fn register(
        &mut self,
        id: String,
        kind: CallKind,
        replies: &mpsc::UnboundedSender<Delivery>,
    ) -> Result<mpsc::Sender<Vec<u8>>, Unregistered> {
        let (stream, writer) = self
            .writers
            .iter()
            .min_by_key(|(key, _)| **key)
            .map(|(key, writer)| (*key, writer.clone()))
            .ok_or(Unregistered::NoStream)?;
        let waiter = Waiter {
            replies: replies.clone(),
            stream,
        };
        self.book
            .call(id, kind, waiter)
            .map_err(|refused| Unregistered::Refused(CallError::internal(refused.to_string())))?;
        Ok(writer)
    }
}

/// Envelopes one reader may have waiting for its session actor.
const INBOUND_PERMITS: usize = 32;

/// What a reader hands its envelopes to the session with.
#[derive(Clone)]
pub(crate) struct Inbox {
    session: ActorRef<SessionMsg>,
    shared: SharedSwitchboard,
    permits: Arc<Semaphore>,
}

/// The session has ended.
pub(crate) struct SessionOver;

impl Inbox {
    pub(crate) fn new(session: ActorRef<SessionMsg>, shared: SharedSwitchboard) -> Self {
        Self {
            session,
            shared,
            permits: Arc::new(Semaphore::new(INBOUND_PERMITS)),
        }
    }

    /// Hands one envelope read on `key` to the session: a reply to one of this
    /// end's calls straight to its waiter, anything else to the actor —
    /// waiting only while this reader has [`INBOUND_PERMITS`] envelopes
    /// queued there.
    pub(crate) async fn deliver(
        &self,
        key: StreamKey,
        envelope: Incoming,
    ) -> Result<(), SessionOver> {
        if envelope.is_reply() {
            deliver_reply(&self.shared, key, envelope);
            return Ok(());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SessionOver)?;
        self.session
            .cast(SessionMsg::Inbound(key, envelope, permit))
            .map_err(|_| SessionOver)
    }
}

/// Hands a reply to the call waiting for it; late replies are ignored.
pub(crate) fn deliver_reply(shared: &SharedSwitchboard, stream: StreamKey, envelope: Incoming) {
    let action = lock(shared).book.receive(stream, envelope);
    if let Action::Deliver(waiter, delivery) = action {
        let _ = waiter.replies.send(delivery);
    }
}

pub(crate) fn lock(shared: &SharedSwitchboard) -> MutexGuard<'_, Switchboard> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Running {
    pub(crate) abort: AbortHandle,
    pub(crate) seq: u64,
}

/// Delivers replies to one of this end's calls.
#[derive(Clone)]
pub(crate) struct Waiter {
    pub(crate) replies: mpsc::UnboundedSender<Delivery>,
    pub(crate) stream: StreamKey,
}
