//! Running a session over a connection's streams (§3.1, §5.3): spawns the
//! session actor, accepts the peer's streams for as long as the connection
//! lives, and stops the actor when the connection ends.

use std::sync::atomic::Ordering;

use alknet_core::connection::StreamError;
use alknet_core::{Connection, TransportKind};
use ractor::{Actor, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::actor::{CallSession, Carrier, SessionArgs};
use crate::handle::{HandleParts, SessionHandle};
use crate::mailbox::SessionMsg;
use crate::session_config::SessionConfig;
use crate::streams::Streams;
use crate::switchboard::Switchboard;

/// A running session: its actor, its streams, and the handle to call through it.
pub(crate) struct StreamFeed {
    actor: ActorRef<SessionMsg>,
    ended: JoinHandle<()>,
    streams: Streams,
    connection: Connection,
    handle: SessionHandle,
}

impl StreamFeed {
    /// Spawns the session actor for `connection`. Callers through the handle
    /// give up `caller_timer` after sending a query or mutation (§9.2).
    pub(crate) async fn start(
        config: SessionConfig,
        connection: Connection,
        caller_timer: std::time::Duration,
        span: tracing::Span,
    ) -> Result<Self, SpawnErr> {
        let shared = Switchboard::new(config.limits.max_in_flight);
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

    /// The tasks reading and writing the session's streams: they outlive the
    /// session actor by as long as a writer takes to finish its stream.
    pub(crate) fn stream_tasks(&self) -> tokio_util::task::TaskTracker {
        self.streams.tasks.clone()
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
