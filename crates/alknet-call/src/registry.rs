//! Operations and the registry that holds them (docs/protocol.md §6).
//!
//! Most operations are registered at start-up, but importers (`from_call`
//! reaching a peer that came up late) and a client registering operations on
//! its own session add some while requests are served, so the table sits
//! behind a read-write lock that dispatch holds only for one lookup.
//! Everything that can be wrong with an operation — its name, its schemas, its
//! declared error codes, a handler of the wrong kind — is refused at
//! registration, never discovered by a request.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use zeroize::Zeroizing;

use alknet_core::Identity;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

use crate::access::AccessControl;
use crate::error::CallError;
use crate::handle::SessionHandle;
use crate::names::{self, NameError};
pub use crate::operation::{ErrorSchema, OpType, OperationSpec, Visibility};
use crate::schema::{InputSchema, SchemaError};

/// Credentials and settings an operation's registration hands its handler.
/// Values never appear in `Debug` output and are zeroed when dropped.
#[derive(Clone, Default)]
pub struct Capabilities(BTreeMap<String, Zeroizing<String>>);

impl Capabilities {
    /// One capability's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What a handler knows about the request it serves, and its way to call
/// other operations (composition, §7.2 and §9).
#[derive(Clone, Debug)]
pub struct Context {
    /// The request id (the envelope id, or the gateway's request id).
    pub request_id: String,
    /// The registry name of the operation.
    pub operation: String,
    /// The identity the request runs as.
    pub identity: Option<Arc<Identity>>,
    /// The original caller of a relayed request (metadata only).
    pub forwarded_for: Option<Identity>,
    /// The registration's capabilities.
    pub capabilities: Capabilities,
    /// The registry the operation was dispatched from (discovery, nested calls).
    pub registry: Arc<Registry>,
    /// When the request must be answered (`None` for subscriptions). Nested
    /// calls inherit it.
    pub deadline: Option<tokio::time::Instant>,
    /// The call session the request arrived on, if any: node-side code reaches
    /// that session's overlay through it (§10.5).
    pub session: Option<SessionHandle>,
    /// What nested calls run as: the registration's grant, never the caller's.
    pub(crate) authority: Option<Arc<Identity>>,
}

type UnaryFn = dyn Fn(Context, Value) -> BoxFuture<'static, Result<Value, CallError>> + Send + Sync;
type StreamFn =
    dyn Fn(Context, Value) -> BoxStream<'static, Result<Value, CallError>> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Handler {
    Unary(Arc<UnaryFn>),
    Stream(Arc<StreamFn>),
}

/// A registered operation.
pub struct Operation {
    pub(crate) spec: OperationSpec,
    pub(crate) input: InputSchema,
    pub(crate) handler: Handler,
    pub(crate) capabilities: Capabilities,
    pub(crate) authority: Option<Arc<Identity>>,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Operation {
    /// The public description.
    pub fn spec(&self) -> &OperationSpec {
        &self.spec
    }

    /// Whether `code` is declared by this operation (or is an importer's
    /// `HTTP_<status>` / `MCP_TOOL_ERROR`, which count as declared).
    pub fn declares(&self, code: &str) -> bool {
        self.spec.declares(code)
    }
}

/// An operation being defined: spec, handler, capabilities.
pub struct OperationDef {
    spec: OperationSpec,
    handler: Option<Handler>,
    capabilities: Capabilities,
    authority: Option<Arc<Identity>>,
}

impl OperationDef {
    fn new(name: &str, op_type: OpType) -> Self {
        Self {
            spec: OperationSpec {
                name: name.to_owned(),
                namespace: names::namespace(name).to_owned(),
                op_type,
                visibility: Visibility::External,
                description: String::new(),
                input_schema: json!({}),
                output_schema: json!({}),
                error_schemas: Vec::new(),
                access_control: AccessControl::default(),
            },
            handler: None,
            capabilities: Capabilities::default(),
            authority: None,
        }
    }

    /// An operation from a full spec (importers, overlays).
    pub fn from_spec(spec: OperationSpec) -> Self {
        let mut def = Self::new(&spec.name, spec.op_type);
        def.spec = OperationSpec {
            namespace: names::namespace(&spec.name).to_owned(),
            ..spec
        };
        def
    }

    /// A query.
    pub fn query(name: &str) -> Self {
        Self::new(name, OpType::Query)
    }

    /// A mutation.
    pub fn mutation(name: &str) -> Self {
        Self::new(name, OpType::Mutation)
    }

    /// A subscription.
    pub fn subscription(name: &str) -> Self {
        Self::new(name, OpType::Subscription)
    }

    /// The spec as defined so far.
    pub fn spec(&self) -> &OperationSpec {
        &self.spec
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.spec.description = description.into();
        self
    }

    /// Sets the input schema.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.spec.input_schema = schema;
        self
    }

    /// Sets the output schema.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.spec.output_schema = schema;
        self
    }

    /// Declares a domain error.
    pub fn error(mut self, error: ErrorSchema) -> Self {
        self.spec.error_schemas.push(error);
        self
    }

    /// Sets the access requirements.
    pub fn access(mut self, access: AccessControl) -> Self {
        self.spec.access_control = access;
        self
    }

    /// Makes the operation internal (nested calls only).
    pub fn internal(mut self) -> Self {
        self.spec.visibility = Visibility::Internal;
        self
    }

    /// Hands the handler a capability.
    pub fn capability(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.capabilities
            .0
            .insert(key.into(), Zeroizing::new(value.into()));
        self
    }

    /// The identity this operation's nested calls run as (§7.2). Without one
    /// they are anonymous, so they reach only operations without access
    /// control: a composing handler gets exactly the authority granted here.
    pub fn authority(mut self, identity: Identity) -> Self {
        self.authority = Some(Arc::new(identity));
        self
    }

    /// The handler of a query or mutation.
    pub fn unary<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
    {
        self.handler = Some(Handler::Unary(Arc::new(move |cx, input| {
            handler(cx, input).boxed()
        })));
        self
    }

    /// The handler of a subscription.
    pub fn stream<F, S>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Value) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<Value, CallError>> + Send + 'static,
    {
        self.handler = Some(Handler::Stream(Arc::new(move |cx, input| {
            handler(cx, input).boxed()
        })));
        self
    }
}

/// Why an operation cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The name breaks §6.1.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The name is taken.
    #[error("operation `{0}` is already registered")]
    Duplicate(String),
    /// The input schema does not compile.
    #[error("operation `{name}`: {source}")]
    Schema {
        /// The operation.
        name: String,
        /// Why.
        source: SchemaError,
    },
    /// No handler, or one of the wrong kind for the op_type.
    #[error(
        "operation `{0}`: a query or mutation needs a unary handler, a subscription a stream handler"
    )]
    HandlerKind(String),
    /// A declared error code is not a valid domain code, or its HTTP status is
    /// outside 400–599.
    #[error("operation `{name}`: declared error `{code}` {reason}")]
    ErrorSchema {
        /// The operation.
        name: String,
        /// The code.
        code: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The node's operations.
#[derive(Debug, Default)]
pub struct Registry {
    operations: RwLock<BTreeMap<String, Arc<Operation>>>,
}

impl Registry {
    /// An empty registry to register into.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an operation.
    pub fn register(&self, def: OperationDef) -> Result<(), RegistrationError> {
        let operation = Self::build(def)?;
        let mut operations = self
            .operations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if operations.contains_key(&operation.spec.name) {
            return Err(RegistrationError::Duplicate(operation.spec.name.clone()));
        }
        operations.insert(operation.spec.name.clone(), Arc::new(operation));
        Ok(())
    }

    /// Adds all of `defs` or, if any is refused (a name taken included), none.
    pub fn register_all(&self, defs: Vec<OperationDef>) -> Result<(), RegistrationError> {
        self.replace(&[], defs)
    }

    /// Removes the operations named in `remove` and adds `add`, at once: a
    /// call sees the old set or the new one, never a gap between them (a
    /// reload replacing imported operations). If any of `add` is refused (a
    /// name taken by an operation not in `remove`, twice in `add`, or not
    /// valid), nothing changes.
    pub fn replace(
        &self,
        remove: &[String],
        add: Vec<OperationDef>,
    ) -> Result<(), RegistrationError> {
        let built = add
            .into_iter()
            .map(Self::build)
            .collect::<Result<Vec<_>, _>>()?;
        let mut operations = self
            .operations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names = std::collections::BTreeSet::new();
        for operation in &built {
            let name = &operation.spec.name;
            let taken = operations.contains_key(name) && !remove.contains(name);
            if taken || !names.insert(name.clone()) {
                return Err(RegistrationError::Duplicate(name.clone()));
            }
        }
        for name in remove {
            operations.remove(name);
        }
        for operation in built {
            operations.insert(operation.spec.name.clone(), Arc::new(operation));
        }
        Ok(())
    }

    /// Removes an operation; `true` if it was there.
    pub fn unregister(&self, name: &str) -> bool {
        self.operations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some()
    }

    fn build(def: OperationDef) -> Result<Operation, RegistrationError> {
        let OperationDef {
            spec,
            handler,
            capabilities,
            authority,
        } = def;
        names::validate(&spec.name)?;
        let handler = match (spec.op_type, handler) {
            (OpType::Query | OpType::Mutation, Some(h @ Handler::Unary(_)))
            | (OpType::Subscription, Some(h @ Handler::Stream(_))) => h,
            _ => return Err(RegistrationError::HandlerKind(spec.name)),
        };
        for error in &spec.error_schemas {
            let reason = if !CallError::is_domain_code(&error.code) {
                Some("is not a domain code ([A-Z][A-Z0-9_]*, not a protocol code)")
            } else if error.http_status.is_some_and(|s| !(400..=599).contains(&s)) {
                Some("has an http_status outside 400-599")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(RegistrationError::ErrorSchema {
                    name: spec.name.clone(),
                    code: error.code.clone(),
                    reason,
                });
            }
        }
        let input = InputSchema::compile(&spec.input_schema).map_err(|source| {
            RegistrationError::Schema {
                name: spec.name.clone(),
                source,
            }
        })?;
        Ok(Operation {
            spec,
            input,
            handler,
            capabilities,
            authority,
        })
    }

    /// An operation by registry name.
    pub fn get(&self, name: &str) -> Option<Arc<Operation>> {
        self.operations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// All operations, sorted by name (byte order).
    pub fn operations(&self) -> Vec<Arc<Operation>> {
        self.operations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str) -> OperationDef {
        OperationDef::query(name).unary(|_, _| async { Ok(json!(null)) })
    }

    fn names(registry: &Registry) -> Vec<String> {
        registry
            .operations()
            .iter()
            .map(|o| o.spec.name.clone())
            .collect()
    }

    #[test]
    fn replace_swaps_a_set_at_once_or_changes_nothing() {
        let registry = Registry::new();
        registry.register(op("keep/a")).unwrap();
        registry
            .register_all(vec![op("old/a"), op("old/b")])
            .unwrap();
        let old = vec!["old/a".to_owned(), "old/b".to_owned()];

        // A name taken by an operation outside the set: refused, nothing moves.
        let error = registry
            .replace(&old, vec![op("new/a"), op("keep/a")])
            .unwrap_err();
        assert!(matches!(error, RegistrationError::Duplicate(name) if name == "keep/a"));
        assert_eq!(names(&registry), ["keep/a", "old/a", "old/b"]);
        // Twice in the new set: refused likewise.
        assert!(
            registry
                .replace(&old, vec![op("new/a"), op("new/a")])
                .is_err()
        );
        assert_eq!(names(&registry), ["keep/a", "old/a", "old/b"]);

        // A name of the old set may come back (a changed import).
        registry
            .replace(&old, vec![op("old/a"), op("new/a")])
            .unwrap();
        assert_eq!(names(&registry), ["keep/a", "new/a", "old/a"]);
    }
}
