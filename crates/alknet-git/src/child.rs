//! A pack served over HTTP as an actor of its own: HTTP requests are not
//! actors, but an operator must see a running clone or push under its
//! connection (`git-pack`) and be able to stop it with `admin/kill`.

use std::sync::Arc;

use alknet_core::{ChildActor, Connection, ConnectionInfo, ConnectionTree};
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// The tree name of a pack actor.
pub(crate) const ACTOR_NAME: &str = "git-pack";

/// Runs `task` as a `git-pack` actor linked under `connection`'s actor and
/// listed with `info`; without a tree (a connection the node's supervisors
/// did not accept) it runs as a plain task.
pub(crate) fn spawn_under(
    connection: &Connection,
    info: Arc<ConnectionInfo>,
    task: BoxFuture<'static, ()>,
) {
    let Some(tree) = connection.tree().cloned() else {
        tokio::spawn(task);
        return;
    };
    tokio::spawn(async move {
        let parent = tree.parent();
        if let Err(error) = Actor::spawn_linked(None, PackActor, (info, tree, task), parent).await {
            tracing::warn!("cannot start a git-pack actor: {error}");
        }
    });
}

struct PackActor;

struct State {
    // Dropping the task kills its process (`kill_on_drop`).
    _task: AbortOnDropHandle<()>,
    _listed: Box<dyn Send + Sync>,
}

impl Actor for PackActor {
    type Msg = ();
    type State = State;
    type Arguments = (
        Arc<ConnectionInfo>,
        Arc<dyn ConnectionTree>,
        BoxFuture<'static, ()>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (info, tree, task): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let killed = CancellationToken::new();
        let kill = killed.clone();
        let listed = tree.register(
            &myself.get_cell(),
            ChildActor {
                name: ACTOR_NAME.to_owned(),
                info,
                kill: Box::new(move || kill.cancel()),
            },
        );
        let task = tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                () = killed.cancelled() => tracing::info!("git pack stopped by the operator"),
            }
            myself.stop(None);
        });
        Ok(State {
            _task: AbortOnDropHandle::new(task),
            _listed: listed,
        })
    }
}
