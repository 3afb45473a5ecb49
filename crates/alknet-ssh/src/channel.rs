//! Channels as actors: each channel of a connection is an `ssh-channel`
//! actor linked under the connection's actor, listed in the tree with what
//! it runs, and stopped by `admin/kill` or with its connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use alknet_core::log_limit::LogLimit;
use alknet_core::{ChildActor, Connection, ConnectionInfo};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use russh::server::{ChannelOpenHandle, Handle, Msg};
use russh::{Channel, ChannelOpenFailure, ChannelReadHalf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::Shared;
use crate::access::Access;

/// The tree name of a channel actor.
pub(crate) const ACTOR_NAME: &str = "ssh-channel";

/// What a channel is.
pub(crate) enum ChannelKind {
    /// A session: a shell, a command or a subsystem, once requested.
    Session,
    /// `ssh -L`, `ssh -D`: a TCP connection the node makes.
    DirectTcpip {
        host: String,
        port: u32,
        originator: String,
    },
    /// `ssh -R`: a TCP connection accepted on a remote-forward listener.
    ForwardedTcpip {
        listening: String,
        stream: tokio::net::TcpStream,
    },
}

impl ChannelKind {
    fn detail(&self) -> String {
        match self {
            Self::Session => "session".to_owned(),
            Self::DirectTcpip {
                host,
                port,
                originator,
            } => format!("direct-tcpip {host}:{port} from {originator}"),
            Self::ForwardedTcpip { listening, stream } => match stream.peer_addr() {
                Ok(peer) => format!("forwarded-tcpip {listening} from {peer}"),
                Err(_) => format!("forwarded-tcpip {listening}"),
            },
        }
    }
}

/// Runs a channel's last steps (exit status, EOF, close) while discarding
/// what the client still sends. russh's connection loop hands every
/// incoming message to the channel's bounded queue and waits for room, so
/// a queue nobody reads would stall that loop: these very messages would
/// never leave, and neither would any other channel's.
pub(crate) async fn finish_draining(read: &mut ChannelReadHalf, last: impl Future<Output = ()>) {
    let drain = async {
        while read.wait().await.is_some() {}
        // The connection dropped the channel: the last steps fail at once.
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = last => {}
        () = drain => {}
    }
}

/// Everything a channel actor starts from.
pub(crate) struct Start {
    pub(crate) kind: ChannelKind,
    pub(crate) channel: Channel<Msg>,
    /// For channels the client opened: accepted or refused by the channel
    /// once it knows (a forward connects first).
    pub(crate) reply: Option<ChannelOpenHandle>,
    pub(crate) access: Arc<Access>,
    pub(crate) handle: Handle,
    pub(crate) shared: Arc<Shared>,
}

/// What a running channel works with.
pub(crate) struct Context {
    pub(crate) access: Arc<Access>,
    pub(crate) handle: Handle,
    pub(crate) shared: Arc<Shared>,
    /// The channel's own details in the tree (identity, bytes, detail).
    pub(crate) info: Arc<ConnectionInfo>,
    /// Cancelled by `admin/kill`.
    pub(crate) killed: CancellationToken,
}

/// A connection's channels: counted against `ssh.max_channels`, stopped
/// together when the connection ends.
#[derive(Clone)]
pub(crate) struct Channels {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    max: usize,
    open: AtomicUsize,
    actors: Mutex<Vec<ActorCell>>,
}

static CHANNEL_SPAWN_FAILED: LogLimit = LogLimit::warn("cannot start an SSH channel actor");

impl Channels {
    pub(crate) fn new(connection: Connection, max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                max,
                open: AtomicUsize::new(0),
                actors: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts a channel's actor, or refuses the channel when the connection
    /// holds `ssh.max_channels` already.
    pub(crate) fn spawn(&self, start: Start) {
        let Some(slot) = Slot::take(&self.inner) else {
            tracing::info!(
                remote = %self.inner.connection.remote(),
                max = self.inner.max,
                "SSH channel refused: the connection holds ssh.max_channels"
            );
            if let Some(reply) = start.reply {
                tokio::spawn(reply.reject(ChannelOpenFailure::ResourceShortage));
            }
            return;
        };
        let inner = self.inner.clone();
        let info = Arc::new(inner.connection.info().carried());
        info.set_identity(inner.connection.info().identity());
        info.set_detail(start.kind.detail());
        let tree = inner.connection.tree().cloned();
        let args = Args { start, info, slot };
        tokio::spawn(async move {
            let spawned = match tree.as_ref().map(|tree| tree.parent()) {
                Some(parent) => Actor::spawn_linked(None, ChannelActor, (args, tree), parent).await,
                None => Actor::spawn(None, ChannelActor, (args, None)).await,
            };
            match spawned {
                Ok((actor, _)) => {
                    let mut actors = inner.actors.lock().unwrap_or_else(PoisonError::into_inner);
                    actors.retain(|a| a.get_status() != ractor::ActorStatus::Stopped);
                    actors.push(actor.get_cell());
                }
                Err(error) => {
                    if CHANNEL_SPAWN_FAILED.admit() {
                        tracing::warn!("cannot start an SSH channel actor: {error}");
                    }
                }
            }
        });
    }

    /// Stops every channel (the connection ended): their processes die and
    /// their forwards close.
    pub(crate) fn stop_all(&self) {
        let actors = std::mem::take(
            &mut *self
                .inner
                .actors
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for actor in actors {
            actor.stop(Some("connection closed".into()));
        }
    }
}

/// One of the connection's `ssh.max_channels`, given back when dropped.
struct Slot(Arc<Inner>);

impl Slot {
    fn take(inner: &Arc<Inner>) -> Option<Self> {
        inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < inner.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Self(inner.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

struct ChannelActor;

struct Args {
    start: Start,
    info: Arc<ConnectionInfo>,
    slot: Slot,
}

struct State {
    // Dropping the task ends the channel: its processes are killed and its
    // sockets closed.
    _task: AbortOnDropHandle<()>,
    _listed: Option<Box<dyn Send + Sync>>,
    _slot: Slot,
}

impl Actor for ChannelActor {
    type Msg = ();
    type State = State;
    type Arguments = (Args, Option<Arc<dyn alknet_core::ConnectionTree>>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (args, tree): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let Args { start, info, slot } = args;
        let killed = CancellationToken::new();
        let listed = tree.map(|tree| {
            let kill = killed.clone();
            tree.register(
                &myself.get_cell(),
                ChildActor {
                    name: ACTOR_NAME.to_owned(),
                    info: info.clone(),
                    kill: Box::new(move || kill.cancel()),
                },
            )
        });
        let context = Context {
            access: start.access,
            handle: start.handle,
            shared: start.shared,
            info,
            killed,
        };
        let channel = start.channel;
        let reply = start.reply;
        let task = tokio::spawn(async move {
            match start.kind {
                ChannelKind::Session => {
                    crate::session_channel::run(channel, reply, context).await;
                }
                ChannelKind::DirectTcpip { host, port, .. } => {
                    crate::forward::direct(channel, reply, &host, port, context).await;
                }
                ChannelKind::ForwardedTcpip { stream, .. } => {
                    crate::forward::pump(channel, stream, &context).await;
                }
            }
            myself.stop(None);
        });
        Ok(State {
            _task: AbortOnDropHandle::new(task),
            _listed: listed,
            _slot: slot,
        })
    }
}
