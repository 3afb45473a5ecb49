//! Feeding a session from a channel of whole envelopes (§3.2): a WebSocket.
//!
//! A WebSocket already delimits messages, so the length prefix of §3.1 does
//! not exist there; everything else — correlation, the in-flight cap, aborts,
//! the overlay, §9.3 on close — is the same [`CallSession`] actor a byte-stream
//! session runs, with the same bookkeeping. Whoever owns the socket reads
//! messages and applies each with [`MessageFeed::receive`] in its own task
//! — a request answered at once comes straight back, to be sent without a hop
//! through the actor — and sends what [`SendQueue`] yields (replies of longer
//! requests, the node's own calls). Pings, close codes and message-size limits
//! are the socket's business, not the session's.
//!
//! [`CallSession`]: crate::actor::CallSession

use std::sync::Arc;

use alknet_core::ConnectionInfo;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actor::{CallSession, Carrier, Requests, SessionArgs};
use crate::envelope::{EnvelopeError, Incoming};
use crate::handle::{HandleParts, SessionHandle};
use crate::mailbox::SessionMsg;
use crate::session::StreamKey;
use crate::session_config::SessionConfig;
use crate::switchboard::Switchboard;

/// The one channel's key in the session's book.
const CHANNEL: StreamKey = 0;

/// The 4-byte length prefix [`encode_frame`] puts on every envelope, which a
/// message channel does not use.
///
/// [`encode_frame`]: crate::codec::encode_frame
const LENGTH_PREFIX: usize = 4;

/// A session fed by whole messages.
pub struct MessageFeed {
    actor: ActorRef<SessionMsg>,
    requests: Requests,
    handle: SessionHandle,
    ended: Option<JoinHandle<()>>,
}

/// Why a message was not taken. Exhaustive on purpose: whoever owns the
/// socket picks a close code for each case.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not a valid envelope (§4.1): the channel must be closed (§3.2).
    #[error("invalid EventEnvelope: {0}")]
    InvalidEnvelope(#[from] EnvelopeError),
    /// The session has ended.
    #[error("the session has ended")]
    SessionOver,
}

/// The envelopes the session sends, one message each, in order.
pub struct SendQueue(mpsc::Receiver<Vec<u8>>);

impl SendQueue {
    /// The next message to send: one envelope's JSON. `None` once the session
    /// has ended and everything it queued was taken.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.0.recv().await.map(strip_prefix)
    }

    /// The next message if one is queued already: lets the owner write a
    /// burst of replies before flushing once.
    pub fn try_next(&mut self) -> Option<Vec<u8>> {
        self.0.try_recv().ok().map(strip_prefix)
    }
}

fn strip_prefix(mut frame: Vec<u8>) -> Vec<u8> {
    // The frames come from `encode_frame`, which always writes the prefix.
    frame.drain(..LENGTH_PREFIX.min(frame.len()));
    frame
}

impl MessageFeed {
    /// Spawns the session actor, linked under `parent` when given (the
    /// connection actor the channel lives in), describing itself with `info`
    /// (whose identity is the session identity, §7.2).
    pub async fn start(
        config: SessionConfig,
        info: Arc<ConnectionInfo>,
        parent: Option<ActorCell>,
        span: tracing::Span,
    ) -> Result<(Self, SendQueue), SpawnErr> {
        let limits = config.limits.clone();
        let shared = Switchboard::new(limits.max_in_flight);
        let (writer, frames) = mpsc::channel(limits.outgoing_queue);
        // Attached before the actor exists: a call the node makes through the
        // session the moment it starts has a channel to go out on.
        crate::switchboard::lock(&shared).attach_writer(CHANNEL, writer);
        let parts = HandleParts::new(shared.clone(), &limits, limits.caller_timer(), info.clone());
        let args = SessionArgs {
            config: config.clone(),
            carrier: Carrier::Messages(info.clone()),
            handle_parts: parts.clone(),
            shared: shared.clone(),
            span: span.clone(),
        };
        let (actor, ended) = match parent {
            Some(parent) => Actor::spawn_linked(None, CallSession, args, parent).await?,
            None => Actor::spawn(None, CallSession, args).await?,
        };
        let handle = SessionHandle::new(actor.clone(), parts);
        let requests = Requests::new(config, info, handle.clone(), shared, actor.clone(), span);
        let session = Self {
            handle,
            requests,
            actor,
            ended: Some(ended),
        };
        Ok((session, SendQueue(frames)))
    }

    /// The session actor, for listing it in the node's tree.
    pub fn actor(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// The handle to call the peer's operations through (its overlay, §10.5).
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// Applies one received message to the session, in the caller's task:
    /// no hop to the actor and back for a request answered at once, whose
    /// reply is returned to be sent right away (one envelope's JSON). What
    /// takes longer runs in a task of its own and comes out of [`SendQueue`].
    pub fn receive(&self, message: &[u8]) -> Result<Option<Vec<u8>>, Refused> {
        let envelope = Incoming::parse(message)?;
        if self.handle.is_closed() {
            return Err(Refused::SessionOver);
        }
        Ok(self.requests.receive(CHANNEL, envelope).map(strip_prefix))
    }

    /// Refuses new requests; the session stops once nothing is in flight.
    pub fn drain(&self) {
        let _ = self.actor.cast(SessionMsg::Drain);
    }

    /// Completes when the session actor has stopped (drained, or stopped by
    /// [`MessageFeed::close`] from elsewhere).
    pub async fn stopped(&mut self) {
        if let Some(ended) = self.ended.as_mut() {
            let _ = ended.await;
            self.ended = None;
        }
    }

    /// The channel is gone: aborts what the session serves and fails what it
    /// awaits (§9.3), and waits for the actor to stop.
    pub async fn close(mut self) {
        self.actor.stop(None);
        self.stopped().await;
    }
}

impl Drop for MessageFeed {
    fn drop(&mut self) {
        // However the owner ends, the session ends with it.
        self.actor.stop(None);
    }
}
