//! How a callee handles one request: docs/protocol.md §7.1, steps 4 to 9.
//!
//! Steps 1–3 (payload shape, duplicate ids, the in-flight cap) belong to the
//! session, which owns that state; from the name lookup on, every entry point
//! — a call session, the HTTP gateway, MCP, a handler's nested call — goes
//! through [`dispatch`], so they cannot disagree on order or messages.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use alknet_core::{Identity, IdentityProvider, NoIdentities};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use crate::access::hidden;
use crate::call_metrics::{self, CallRecord, UNKNOWN_OPERATION};
use crate::error::CallError;
use crate::handle::SessionHandle;
use crate::registry::{Context, Handler, OpType, Operation, Registry, Visibility};

/// Where a request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A session, the gateway or MCP: internal operations do not exist for it.
    Remote,
    /// A handler's nested call inside the node.
    Nested,
}

/// The reply pattern the entry point can carry (§7.1 step 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A session: the operation's `op_type` picks the pattern.
    ByOpType,
    /// Exactly one reply (`/call`, `/batch`, MCP `call`, nested calls).
    OneReply,
    /// A stream (`/subscribe`).
    Stream,
}

/// One request, as the entry point received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request id.
    pub id: String,
    /// The operation, with or without its leading slash.
    pub operation: String,
    /// The input.
    pub input: Value,
    /// The identity of the session or HTTP request, if any: shared, because a
    /// session's every request runs as it.
    pub session_identity: Option<Arc<Identity>>,
    /// A per-request bearer token, if presented.
    pub auth_token: Option<String>,
    /// The original caller of a relayed request.
    pub forwarded_for: Option<Identity>,
    /// Where it comes from.
    pub origin: Origin,
    /// The reply pattern the entry point can carry.
    pub expect: Expect,
    /// When a query or mutation must be answered; handed to the handler so
    /// its nested calls inherit the remaining time.
    pub deadline: Option<Instant>,
    /// The call session the request arrived on, if any.
    pub session: Option<SessionHandle>,
}

impl Request {
    /// A request from outside the node (a session, the gateway), running as
    /// nobody until its fields say otherwise; the reply pattern follows the
    /// operation's `op_type`, with no deadline.
    pub fn new(id: impl Into<String>, operation: impl Into<String>, input: Value) -> Self {
        Self {
            id: id.into(),
            operation: operation.into(),
            input,
            session_identity: None,
            auth_token: None,
            forwarded_for: None,
            origin: Origin::Remote,
            expect: Expect::ByOpType,
            deadline: None,
            session: None,
        }
    }
}

/// What a request's bearer token amounts to, resolved once by the entry point
/// that also needs the answer (the session shows the identity to operators;
/// HTTP picks 401 or 403 by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedToken {
    /// No token presented.
    Anonymous,
    /// A token that resolved.
    Identity(Identity),
    /// A token that did not resolve (unknown, revoked, expired). Kept so that
    /// dispatch refuses it at the right step (§7.1 step 6).
    Unresolved(String),
}

impl PresentedToken {
    /// Resolves `token` (if any) through `identities`.
    pub fn resolve(identities: &dyn IdentityProvider, token: Option<String>) -> Self {
        match token {
            None => Self::Anonymous,
            Some(token) => match identities.resolve_token(&token) {
                Some(identity) => Self::Identity(identity),
                None => Self::Unresolved(token),
            },
        }
    }

    /// [`resolve`](Self::resolve), for a token presented from `source` over
    /// `via`: a token that does not resolve is logged (`alknet::auth`).
    pub fn resolve_from(
        identities: &dyn IdentityProvider,
        token: Option<String>,
        source: std::net::SocketAddr,
        via: &'static str,
    ) -> Self {
        let resolved = Self::resolve(identities, token);
        if let Self::Unresolved(token) = &resolved {
            alknet_core::auth_log::token_refused(source, token, via);
        }
        resolved
    }

    /// Whether the request has an identity of its own.
    pub fn has_identity(&self) -> bool {
        matches!(self, Self::Identity(_))
    }

    /// The `session_identity` and `auth_token` of a [`Request`]: a resolved
    /// token replaces the session identity for this request; an unresolved
    /// one goes to dispatch, which refuses it.
    pub fn dispatch_parts(
        self,
        session_identity: Option<Arc<Identity>>,
    ) -> (Option<Arc<Identity>>, Option<String>) {
        match self {
            Self::Anonymous => (session_identity, None),
            Self::Identity(identity) => (Some(Arc::new(identity)), None),
            Self::Unresolved(token) => (None, Some(token)),
        }
    }
}

/// A running request's reply.
pub enum Reply {
    /// The single output of a query or mutation.
    One(BoxFuture<'static, Result<Value, CallError>>),
    /// A subscription's outputs; an `Err` item is terminal and nothing follows it.
    Stream(BoxStream<'static, Result<Value, CallError>>),
}

impl Reply {
    /// The one output of a query or mutation, awaited until `deadline` if
    /// there is one (`TIMEOUT` after it). Every entry point that carries
    /// exactly one reply — the HTTP gateway, MCP, a handler's nested call —
    /// ends a dispatch with this, having asked for [`Expect::OneReply`]: a
    /// stream here means the entry point asked for something else.
    pub async fn one_output(self, deadline: Option<Instant>) -> Result<Value, CallError> {
        let Self::One(output) = self else {
            return Err(CallError::internal("invalid response payload"));
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, output)
                .await
                .unwrap_or_else(|_| Err(CallError::timeout())),
            None => output.await,
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::One(_) => "Reply::One",
            Self::Stream(_) => "Reply::Stream",
        })
    }
}

/// Runs steps 4–9 for `request`: `Err` is the one `call.error` to answer with;
/// `Ok` is the handler, already started.
pub fn dispatch(
    registry: &Arc<Registry>,
    identities: &dyn IdentityProvider,
    request: Request,
) -> Result<Reply, CallError> {
    if !call_metrics::enabled() {
        return checked(registry, identities, request);
    }
    let name = request
        .operation
        .strip_prefix('/')
        .unwrap_or(&request.operation)
        .to_owned();
    let deadline = request.deadline;
    match checked(registry, identities, request) {
        // Dispatched: the name is a registered operation.
        Ok(Reply::One(output)) => {
            let record = CallRecord::start(name, true, deadline);
            Ok(Reply::One(
                async move {
                    let outcome = output.await;
                    record.finish(&outcome);
                    outcome
                }
                .boxed(),
            ))
        }
        Ok(Reply::Stream(items)) => {
            let record = CallRecord::start(name, false, None);
            Ok(Reply::Stream(recorded_stream(items, record)))
        }
        Err(error) => {
            let label = match registry.get(&name) {
                Some(_) => name.as_str(),
                None => UNKNOWN_OPERATION,
            };
            CallRecord::refused(label, &error);
            Err(error)
        }
    }
}

/// `items`, counting the subscription when it ends: at its first error, at
/// its end, or (dropped) as cancelled.
fn recorded_stream(
    items: BoxStream<'static, Result<Value, CallError>>,
    record: CallRecord,
) -> BoxStream<'static, Result<Value, CallError>> {
    futures::stream::unfold(
        (items, Some(record)),
        |(mut items, mut record)| async move {
            match items.next().await {
                Some(item) => {
                    if item.is_err()
                        && let Some(record) = record.take()
                    {
                        record.finish(&item);
                    }
                    Some((item, (items, record)))
                }
                None => {
                    if let Some(record) = record.take() {
                        record.finish(&Ok::<(), CallError>(()));
                    }
                    None
                }
            }
        },
    )
    .boxed()
}

fn checked(
    registry: &Arc<Registry>,
    identities: &dyn IdentityProvider,
    request: Request,
) -> Result<Reply, CallError> {
    let name = request
        .operation
        .strip_prefix('/')
        .unwrap_or(&request.operation);
    // 4–5. Unknown, or internal and reached from outside: the same NOT_FOUND.
    let operation = registry
        .get(name)
        .filter(|op| request.origin == Origin::Nested || op.spec.visibility == Visibility::External)
        .ok_or_else(|| CallError::operation_not_found(name))?;
    // 6. A presented token must resolve; then the access check.
    let identity = match &request.auth_token {
        Some(token) => Some(Arc::new(
            identities
                .resolve_token(token)
                .ok_or_else(|| CallError::forbidden("invalid token"))?,
        )),
        None => request.session_identity,
    };
    // An operation the caller may not call does not exist for it.
    operation
        .spec
        .access_control
        .check(identity.as_deref())
        .map_err(|denied| hidden(name, &denied))?;
    // 7. The reply pattern must fit the entry point.
    let is_subscription = operation.spec.op_type == OpType::Subscription;
    match request.expect {
        Expect::OneReply if is_subscription => {
            return Err(CallError::invalid_operation_type(format!(
                "invalid operation type: {name} is a subscription"
            )));
        }
        Expect::Stream if !is_subscription => {
            return Err(CallError::invalid_operation_type(format!(
                "invalid operation type: {name} is not a subscription"
            )));
        }
        _ => {}
    }
    // 8. Input against the schema.
    operation.input.validate(&request.input)?;
    // 9. Run the handler.
    let context = Context {
        request_id: request.id,
        operation: name.to_owned(),
        identity,
        forwarded_for: request.forwarded_for,
        capabilities: operation.capabilities.clone(),
        registry: registry.clone(),
        // Subscriptions have no deadline (§9.2).
        deadline: request.deadline.filter(|_| !is_subscription),
        session: request.session,
        authority: operation.authority.clone(),
    };
    Ok(run(operation, context, request.input))
}

fn run(operation: Arc<Operation>, context: Context, input: Value) -> Reply {
    match operation.handler.clone() {
        Handler::Unary(handler) => {
            let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(context, input)));
            Reply::One(
                async move {
                    let outcome = match started {
                        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                        Err(panic) => Err(panic),
                    };
                    match outcome {
                        Ok(result) => result.map_err(|e| declared_or_internal(&operation, e)),
                        Err(_) => Err(handler_panicked(&operation)),
                    }
                }
                .boxed(),
            )
        }
        Handler::Stream(handler) => {
            let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(context, input)));
            let items = match started {
                Ok(stream) => AssertUnwindSafe(stream)
                    .catch_unwind()
                    .map(move |item| match item {
                        Ok(result) => result.map_err(|e| declared_or_internal(&operation, e)),
                        Err(_) => Err(handler_panicked(&operation)),
                    })
                    .boxed(),
                Err(_) => {
                    futures::stream::once(async move { Err(handler_panicked(&operation)) }).boxed()
                }
            };
            Reply::Stream(until_first_error(items))
        }
    }
}

/// Ends a stream right after its first error (§5.4: a `call.error` is terminal).
fn until_first_error(
    items: BoxStream<'static, Result<Value, CallError>>,
) -> BoxStream<'static, Result<Value, CallError>> {
    futures::stream::unfold(Some(items), |state| async move {
        let mut items = state?;
        let item = items.next().await?;
        let rest = if item.is_err() { None } else { Some(items) };
        Some((item, rest))
    })
    .boxed()
}

// A caller can repeat whatever made a handler fail: a few lines a window.
static HANDLER_PANICKED_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::error("handler panicked; answered INTERNAL");
static UNDECLARED_CODE_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::warn("handler returned an undeclared error code");

fn handler_panicked(operation: &Operation) -> CallError {
    if HANDLER_PANICKED_LOG.admit() {
        tracing::error!(operation = %operation.spec.name, "handler panicked; answered INTERNAL");
    }
    CallError::internal("internal error")
}

/// §8: an undeclared domain code leaves the node as `INTERNAL`, message kept,
/// details dropped, not retryable.
fn declared_or_internal(operation: &Operation, error: CallError) -> CallError {
    if error.code.is_protocol() || operation.declares(error.code.as_str()) {
        return error;
    }
    if UNDECLARED_CODE_LOG.admit() {
        tracing::warn!(
            operation = %operation.spec.name,
            code = %error.code,
            "handler returned an undeclared error code; sent as INTERNAL"
        );
    }
    CallError::internal(error.message)
}

// A handler's nested calls (§7.2): dispatch seen from inside a handler.
impl Context {
    /// Calls a query or mutation of this node's registry, internal ones
    /// included, as the authority this operation's registration grants (not as
    /// the caller, who becomes `forwarded_for`). The call shares this request's
    /// deadline, and is cancelled with it: dropping the returned future drops
    /// the nested handler.
    pub async fn call(&self, operation: &str, input: Value) -> Result<Value, CallError> {
        let request = self.nested(operation, input, Expect::OneReply);
        dispatch(&self.registry, &NoIdentities, request)?
            .one_output(self.deadline)
            .await
    }

    /// Calls a subscription of this node's registry, like [`Context::call`];
    /// dropping the stream cancels it.
    pub fn subscribe(
        &self,
        operation: &str,
        input: Value,
    ) -> Result<BoxStream<'static, Result<Value, CallError>>, CallError> {
        let request = self.nested(operation, input, Expect::Stream);
        match dispatch(&self.registry, &NoIdentities, request)? {
            Reply::Stream(items) => Ok(items),
            Reply::One(_) => Err(CallError::internal("invalid response payload")),
        }
    }

    fn nested(&self, operation: &str, input: Value, expect: Expect) -> Request {
        Request {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_owned(),
            input,
            session_identity: self.authority.clone(),
            auth_token: None,
            // The composing request's caller, as metadata; its own
            // `forwarded_for` is not inherited (§7.2).
            forwarded_for: self.identity.as_deref().cloned(),
            origin: Origin::Nested,
            expect,
            deadline: self.deadline,
            session: self.session.clone(),
        }
    }
}
