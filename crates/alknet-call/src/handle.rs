//! [`SessionHandle`]: calling the remote end of a session, and its overlay.
//!
//! Both ends of a session serve and call (§5.1). Whoever holds a session's
//! handle — node-side code given it in a handler's [`Context`], or a
//! [`CallClient`] — calls the remote end's operations through it. A call is
//! registered with the session actor before its request is written, so its
//! reply can arrive on any stream; a call dropped before its terminal envelope
//! sends `call.aborted` (§9.1), which is how an abort cascades through nested
//! calls that cross sessions or nodes.
//!
//! The overlay (§10.5, [`crate::overlay`]) is the set of operations the
//! remote end registered on this session with `session/register`: reachable
//! only through this handle, and dropped when the session closes.
//!
//! [`Context`]: crate::registry::Context
//! [`CallClient`]: crate::client::CallClient

use std::sync::Arc;
use std::time::Duration;

use alknet_core::{ConnectionInfo, Identity};
use futures::Stream;
use ractor::ActorRef;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::codec::encode_frame;
use crate::envelope::{CallRequest, EventEnvelope};
use crate::error::CallError;
use crate::limits::SessionLimits;
use crate::mailbox::SessionMsg;
use crate::operation::{OpType, OperationSpec};
use crate::overlay::Overlay;
use crate::schema::InputSchema;
use crate::session::{CallKind, Delivery};
use crate::switchboard::{SharedSwitchboard, Unregistered, lock};

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// A bearer token for this request (§7.2).
    pub auth_token: Option<String>,
    /// The original caller, when relaying (metadata for the callee).
    pub forwarded_for: Option<Identity>,
}

/// What a handle shares with the other handles of its session.
#[derive(Clone)]
pub(crate) struct HandleParts {
    overlay: Arc<Overlay>,
    shared: SharedSwitchboard,
    max_frame: usize,
    caller_timer: Duration,
}

impl HandleParts {
    /// `info`: the connection or channel the session runs on, whose
    /// counters show what its overlay holds.
    pub(crate) fn new(
        shared: SharedSwitchboard,
        limits: &SessionLimits,
        caller_timer: Duration,
        info: Arc<ConnectionInfo>,
    ) -> Self {
        Self {
            overlay: Arc::new(Overlay::new(limits.overlay.clone(), Some(info))),
            shared,
            max_frame: limits.max_frame,
            caller_timer,
        }
    }
}

/// A live session's handle. Cheap to clone; calls fail with `INTERNAL`
/// `connection closed` once the session has ended.
#[derive(Clone)]
pub struct SessionHandle {
    actor: ActorRef<SessionMsg>,
    parts: HandleParts,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("actor", &self.actor.get_id())
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(crate) fn new(actor: ActorRef<SessionMsg>, parts: HandleParts) -> Self {
        Self { actor, parts }
    }

    /// Ends the session: what is queued is written, streams are finished.
    pub(crate) fn stop(&self) {
        self.actor.stop(None);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        !matches!(
            self.actor.get_status(),
            ractor::ActorStatus::Running | ractor::ActorStatus::Starting
        )
    }

    /// Calls a query or mutation the remote end serves.
    pub async fn call(&self, operation: &str, input: Value) -> Result<Value, CallError> {
        self.call_with(operation, input, CallOptions::default())
            .await
    }

    /// [`SessionHandle::call`] with a token or a relayed caller. Gives up
    /// with `TIMEOUT` after the caller-side timer (deadline + 5 s), sending
    /// `call.aborted`; dropping the future aborts the call the same way.
    pub async fn call_with(
        &self,
        operation: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let (pending, mut replies) = self
            .start(operation, input, options, CallKind::Unary)
            .await?;
        let reply = match tokio::time::timeout(self.parts.caller_timer, replies.recv()).await {
            Ok(reply) => reply,
            // `pending` is dropped armed: the call is aborted.
            Err(_) => return Err(CallError::timeout()),
        };
        pending.finished();
        match reply {
            Some(Delivery::Output { output, .. }) => Ok(output),
            Some(Delivery::Failed(error)) => Err(error),
            Some(Delivery::Completed) => Err(CallError::internal("invalid response payload")),
            None => Err(CallError::internal("connection closed")),
        }
    }

    /// Calls a subscription the remote end serves. Its items arrive on the
    /// returned stream; dropping it before the end aborts the call (§5.4).
    pub async fn subscribe(
        &self,
        operation: &str,
        input: Value,
        options: CallOptions,
    ) -> Result<Subscription, CallError> {
        let (pending, replies) = self
            .start(operation, input, options, CallKind::Subscription)
            .await?;
        Ok(Subscription {
            id: pending.id.clone(),
            pending: Some(pending),
            replies,
        })
    }

    async fn start(
        &self,
        operation: &str,
        input: Value,
        options: CallOptions,
        kind: CallKind,
    ) -> Result<(PendingCall, mpsc::UnboundedReceiver<Delivery>), CallError> {
        let id = uuid::Uuid::new_v4().to_string();
        let operation_id = if operation.starts_with('/') {
            operation.to_owned()
        } else {
            format!("/{operation}")
        };
        let mut request = CallRequest::new(operation_id, input);
        request.auth_token = options.auth_token;
        request.forwarded_for = options.forwarded_for;
        let frame = encode_frame(
            &EventEnvelope::requested(id.clone(), &request),
            self.parts.max_frame,
        )
        .map_err(|_| CallError::internal("request too large"))?;
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let closed = || CallError::internal("connection closed");
        let mut registered = lock(&self.parts.shared).register(id.clone(), kind, &replies_tx);
        if let Err(Unregistered::NoStream) = registered {
            // Every stream has ended: the actor opens one (QUIC only).
            let opened = ractor::call!(self.actor, SessionMsg::OpenStream).map_err(|_| closed())?;
            if !opened {
                return Err(closed());
            }
            registered = lock(&self.parts.shared).register(id.clone(), kind, &replies_tx);
        }
        let writer = match registered {
            Ok(writer) => writer,
            Err(Unregistered::NoStream) => return Err(closed()),
            Err(Unregistered::Refused(error)) => return Err(error),
        };
        let pending = PendingCall {
            actor: self.actor.clone(),
            id,
            armed: true,
        };
        writer
            .send(frame)
            .await
            .map_err(|_| CallError::internal("connection closed"))?;
        Ok((pending, replies))
    }

    /// Registers operations the remote end serves in this session's overlay
    /// (§10.5), replacing entries of the same name; all or nothing, within
    /// the session's overlay limits. `anonymous`: the registering request has
    /// no identity.
    pub(crate) fn register_overlay(
        &self,
        operations: Value,
        anonymous: bool,
    ) -> Result<Vec<String>, CallError> {
        self.parts.overlay.register(operations, anonymous)
    }

    /// The overlay's operations, sorted by name.
    pub fn overlay(&self) -> Vec<OperationSpec> {
        self.parts.overlay.specs()
    }

    /// JSON bytes of the operations registered in the overlay.
    pub fn overlay_bytes(&self) -> usize {
        self.parts.overlay.bytes()
    }

    pub(crate) fn clear_overlay(&self) {
        self.parts.overlay.clear();
    }

    /// An overlay operation and its input checked against its schema.
    fn overlay_op(&self, name: &str, input: &Value) -> Result<Arc<OperationSpec>, CallError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let spec = self
            .parts
            .overlay
            .get(name)
            .ok_or_else(|| CallError::operation_not_found(name))?;
        // The schema compiled at registration; compiled again here rather
        // than kept (see `overlay`), as only node-side code calls overlays.
        InputSchema::compile(&spec.input_schema)
            .map_err(|e| CallError::internal(format!("overlay schema of {name}: {e}")))?
            .validate(input)?;
        Ok(spec)
    }

    /// Calls a query or mutation of the overlay: `NOT_FOUND` unless the remote
    /// end registered it on this session; the input is checked against its
    /// schema before anything is sent.
    pub async fn call_overlay(&self, name: &str, input: Value) -> Result<Value, CallError> {
        let spec = self.overlay_op(name, &input)?;
        if spec.op_type == OpType::Subscription {
            return Err(CallError::invalid_operation_type(format!(
                "invalid operation type: {} is a subscription",
                spec.name
            )));
        }
        self.call(&spec.name, input).await
    }

    /// Calls a subscription of the overlay, like [`SessionHandle::call_overlay`].
    pub async fn subscribe_overlay(
        &self,
        name: &str,
        input: Value,
    ) -> Result<Subscription, CallError> {
        let spec = self.overlay_op(name, &input)?;
        if spec.op_type != OpType::Subscription {
            return Err(CallError::invalid_operation_type(format!(
                "invalid operation type: {} is not a subscription",
                spec.name
            )));
        }
        self.subscribe(&spec.name, input, CallOptions::default())
            .await
    }
}

/// A call in flight; aborts it when dropped before [`PendingCall::finished`].
struct PendingCall {
    actor: ActorRef<SessionMsg>,
    id: String,
    armed: bool,
}

impl PendingCall {
    fn finished(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if self.armed {
            let _ = self
                .actor
                .cast(SessionMsg::Abort(std::mem::take(&mut self.id)));
        }
    }
}

/// A running subscription's items. It ends after `call.completed` or with one
/// error; dropping it earlier aborts the call.
pub struct Subscription {
    id: String,
    pending: Option<PendingCall>,
    replies: mpsc::UnboundedReceiver<Delivery>,
}

impl Subscription {
    /// The request id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Aborts the subscription (§9.1): `call.aborted` is sent unless it has
    /// already ended. Dropping it does the same.
    pub fn abort(self) {}
}

impl Stream for Subscription {
    type Item = Result<Value, CallError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(pending) = self.pending.take() else {
            return Poll::Ready(None);
        };
        let item = match self.replies.poll_recv(cx) {
            Poll::Pending => {
                self.pending = Some(pending);
                return Poll::Pending;
            }
            Poll::Ready(Some(Delivery::Output { output, .. })) => {
                self.pending = Some(pending);
                return Poll::Ready(Some(Ok(output)));
            }
            Poll::Ready(Some(Delivery::Completed)) => None,
            Poll::Ready(Some(Delivery::Failed(error))) => Some(Err(error)),
            Poll::Ready(None) => Some(Err(CallError::internal("connection closed"))),
        };
        pending.finished();
        Poll::Ready(item)
    }
}
