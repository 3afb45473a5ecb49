//! The root supervisor: starts the services, the protocol supervisors, the
//! router and the listeners (in that order, so nothing is accepted before it
//! can be served) and restarts each one-for-one under its restart intensity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_core::service::ErasedService;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::directory::{ActorInfo, ActorKind, ActorStatus, DirectoryEntry};
use crate::listener::{Listener, ListenerArgs, ListenerKind};
use crate::messages::RootMsg;
use crate::policy::{ExitKind, RestartDecision, RestartIntensity, RestartTracker, RestartType};
use crate::protocol_entry::ProtocolEntry;
use crate::protocol_supervisor::{ProtocolArgs, ProtocolSupervisor};
use crate::router::{Router, RouterArgs};
use crate::service_actor::{ServiceActor, ServiceArgs};
use crate::state::NodeState;

/// One permanent child of the root.
#[derive(Clone)]
enum ChildSpec {
    Service(ErasedService),
    Protocol(Arc<ProtocolEntry>),
    Router,
    Listener(ListenerKind),
}

impl ChildSpec {
    fn name(&self) -> String {
        match self {
            Self::Service(service) => service.tree_name(),
            Self::Protocol(entry) => entry.supervisor_name.clone(),
            Self::Router => "router".into(),
            Self::Listener(kind) => kind.name().into(),
        }
    }
}

struct ChildSlot {
    spec: ChildSpec,
    restart: RestartType,
    tracker: RestartTracker,
    restarts: u32,
    current: Option<ActorCell>,
}

pub(crate) struct RootSupervisor;

pub(crate) struct RootState {
    node: Arc<NodeState>,
    slots: Vec<ChildSlot>,
    by_id: HashMap<ActorId, usize>,
    start_error: Option<String>,
    _registration: DirectoryEntry,
}

impl RootState {
    async fn start_child(
        &mut self,
        myself: &ActorRef<RootMsg>,
        index: usize,
    ) -> Result<(), String> {
        let slot = &self.slots[index];
        let cell = myself.get_cell();
        let restarts = slot.restarts;
        let node = self.node.clone();
        let spawned = match &slot.spec {
            ChildSpec::Service(service) => {
                let args = ServiceArgs {
                    node,
                    service: service.clone(),
                    restarts,
                };
                Actor::spawn_linked(None, ServiceActor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            ChildSpec::Protocol(entry) => {
                let args = ProtocolArgs {
                    node,
                    entry: entry.clone(),
                    restarts,
                };
                Actor::spawn_linked(None, ProtocolSupervisor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            ChildSpec::Router => {
                Actor::spawn_linked(None, Router, RouterArgs { node, restarts }, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            ChildSpec::Listener(kind) => {
                let args = ListenerArgs {
                    node,
                    kind: *kind,
                    restarts,
                };
                Actor::spawn_linked(None, Listener, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
        }
        .map_err(|e| format!("{}: {e}", slot.spec.name()))?;
        self.by_id.insert(spawned.get_id(), index);
        self.slots[index].current = Some(spawned);
        Ok(())
    }
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Arc<NodeState>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        node: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registration = node.directory.register(
            myself.get_id(),
            ActorInfo::new("node", ActorKind::Supervisor, 0),
        );
        let supervision = &node.config.supervision;
        let node_intensity = RestartIntensity {
            max_restarts: supervision.max_restarts,
            window: supervision.restart_window,
        };
        // Start order: services (which protocols may use), protocols (the
        // router's targets), router, then the listeners, so nothing is
        // accepted before it can be served.
        let mut specs: Vec<(ChildSpec, RestartIntensity)> = node
            .services
            .iter()
            .map(|service| (ChildSpec::Service(service.clone()), node_intensity))
            .collect();
        specs.extend(node.protocols().iter().map(|entry| {
            let (max_restarts, window) = node.config.restart_intensity_for(&entry.alpn);
            (
                ChildSpec::Protocol(entry.clone()),
                RestartIntensity {
                    max_restarts,
                    window,
                },
            )
        }));
        specs.push((ChildSpec::Router, node_intensity));
        specs.push((ChildSpec::Listener(ListenerKind::Quic), node_intensity));
        specs.push((ChildSpec::Listener(ListenerKind::Tcp), node_intensity));
        for index in 0..node.plain.len() {
            specs.push((
                ChildSpec::Listener(ListenerKind::Plain(index)),
                node_intensity,
            ));
        }
        let slots = specs
            .into_iter()
            .map(|(spec, intensity)| ChildSlot {
                // A service that returns `Ok` is done; everything else is
                // always restarted.
                restart: match spec {
                    ChildSpec::Service(_) => RestartType::Transient,
                    _ => RestartType::Permanent,
                },
                spec,
                tracker: RestartTracker::new(intensity),
                restarts: 0,
                current: None,
            })
            .collect();
        Ok(RootState {
            node,
            slots,
            by_id: HashMap::new(),
            start_error: None,
            _registration: registration,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for index in 0..state.slots.len() {
            if let Err(error) = state.start_child(&myself, index).await {
                state.start_error = Some(error);
                break;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::NotifyReady(reply) => {
                let _ = reply.send(state.start_error.clone().map_or(Ok(()), Err));
            }
            RootMsg::StopAccepting(reply) => {
                state.node.begin_shutdown();
                if let Some(info) = state.node.directory.get(&myself.get_id()) {
                    info.set_status(ActorStatus::Draining);
                }
                for slot in &state.slots {
                    if let (ChildSpec::Listener(_), Some(cell)) = (&slot.spec, &slot.current) {
                        let _ = cell.stop_and_wait(None, Some(Duration::from_secs(1))).await;
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, exit, detail) = match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                (cell, ExitKind::Abnormal, error.to_string())
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                ExitKind::Normal,
                reason.unwrap_or_else(|| "stopped".into()),
            ),
            _ => return Ok(()),
        };
        let Some(index) = state.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.slots[index].current = None;
        if state.node.is_shutting_down() {
            return Ok(());
        }
        let name = state.slots[index].spec.name();
        if !state.slots[index].restart.restarts_after(exit) {
            return Ok(());
        }
        tracing::warn!(actor = %cell.get_id(), child = %name, ?exit, "child exited: {detail}; restarting");
        let slot = &mut state.slots[index];
        match slot.tracker.record(Instant::now()) {
            RestartDecision::Restart => {
                slot.restarts += 1;
                metrics::counter!("alknet_supervisor_restarts_total", "child" => name.to_string())
                    .increment(1);
                if let Err(error) = state.start_child(&myself, index).await {
                    tracing::error!(child = %name, "restart failed ({error}); shutting the node down");
                    state.node.escalate(name);
                }
            }
            RestartDecision::Escalate => {
                let RestartIntensity {
                    max_restarts,
                    window,
                } = slot.tracker.intensity();
                tracing::error!(
                    child = %name,
                    "{name} exceeded its restart intensity ({max_restarts} restarts in {window:?}); shutting the node down"
                );
                state.node.escalate(name);
            }
        }
        Ok(())
    }
}
