//! `service/<name>`: runs one [`alknet_core::service::Service`] in a task
//! and stops itself with the task's outcome, so the root's one-for-one
//! policy restarts a service that failed or panicked exactly as it restarts
//! a protocol supervisor.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use alknet_core::service::ErasedService;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::AbortOnDropHandle;

use crate::directory::{ActorInfo, ActorKind, DirectoryEntry};
use crate::state::NodeState;

pub(crate) struct ServiceActor;

pub(crate) struct ServiceArgs {
    pub(crate) node: Arc<NodeState>,
    pub(crate) service: ErasedService,
    pub(crate) restarts: u32,
}

pub(crate) struct ServiceState {
    _task: AbortOnDropHandle<()>,
    _registration: DirectoryEntry,
}

/// How the service's task ended.
pub(crate) enum ServiceMsg {
    Ended(Result<(), String>),
}

impl Actor for ServiceActor {
    type Msg = ServiceMsg;
    type State = ServiceState;
    type Arguments = ServiceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let name = args.service.tree_name();
        let registration = args.node.directory.register(
            myself.get_id(),
            ActorInfo::new(&name, ActorKind::Service, args.restarts),
        );
        let run = args.service.run();
        let task = tokio::spawn(async move {
            // A panic inside the task would otherwise end it silently; the
            // actor must see it to be restarted.
            let outcome = match AssertUnwindSafe(run).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("panicked".to_owned()),
            };
            let _ = myself.cast(ServiceMsg::Ended(outcome));
        });
        Ok(ServiceState {
            _task: AbortOnDropHandle::new(task),
            _registration: registration,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ServiceMsg::Ended(Ok(())) => {
                myself.stop(Some("finished".into()));
                Ok(())
            }
            ServiceMsg::Ended(Err(error)) => Err(error.into()),
        }
    }
}
