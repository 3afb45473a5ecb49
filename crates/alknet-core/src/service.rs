//! The seam for long-lived work a protocol needs beyond its connections:
//! [`Service`].
//!
//! A service is a task the node keeps running for as long as it runs: a
//! socket of its own (plain DNS on UDP), a publisher that republishes a
//! record before it expires, a cache that expires entries. The node runs
//! each in a permanent actor `service/<name>` under the root supervisor:
//! shown by `admin/tree`, restarted one-for-one under the node's restart
//! intensity when it returns an error or panics, and stopped with the node.
//!
//! ```
//! use std::time::Duration;
//!
//! use alknet_core::service::{Service, ServiceError};
//!
//! /// Logs a heartbeat every minute.
//! struct Heartbeat;
//!
//! impl Service for Heartbeat {
//!     const NAME: &'static str = "heartbeat";
//!
//!     async fn run(&self) -> Result<(), ServiceError> {
//!         loop {
//!             tokio::time::sleep(Duration::from_secs(60)).await;
//!             tracing::debug!("still here");
//!         }
//!     }
//! }
//!
//! // Registered with `Node::builder(…).service(Heartbeat)`; the node holds it as:
//! let heartbeat = alknet_core::service::ErasedService::new(Heartbeat);
//! assert_eq!(heartbeat.tree_name(), "service/heartbeat");
//! ```
//!
//! `run` takes `&self` and may be called again after a restart, so state that
//! must survive a crash lives in the service value (or on disk), and state
//! that a crash may have corrupted is built inside `run`.

use std::sync::Arc;

use futures::future::BoxFuture;

/// Why a service stopped. Returning it makes the node restart the service.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl ServiceError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(error.into())
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error)
    }
}

/// Long-lived work the node keeps running (see the module docs).
pub trait Service: Send + Sync + 'static {
    /// Its actor is `service/<NAME>` in the tree.
    const NAME: &'static str;

    /// Runs until the node stops it (the future is dropped) or it fails.
    /// Returning `Ok` ends the service for good; an error or a panic
    /// restarts it.
    fn run(&self) -> impl Future<Output = Result<(), ServiceError>> + Send;
}

trait DynService: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), ServiceError>>;
}

impl<S: Service> DynService for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move { Service::run(&*self).await })
    }
}

/// A registered service of any type, as the node holds it. Cheap to clone.
#[derive(Clone)]
pub struct ErasedService(Arc<dyn DynService>);

impl ErasedService {
    /// Erases `service`'s type.
    pub fn new(service: impl Service) -> Self {
        Self(Arc::new(service))
    }

    /// Its name in the tree: `service/<NAME>`.
    pub fn tree_name(&self) -> String {
        format!("service/{}", self.0.name())
    }

    /// Runs it once (see [`Service::run`]).
    pub fn run(&self) -> BoxFuture<'static, Result<(), ServiceError>> {
        self.0.clone().run()
    }
}

impl<S: Service> From<S> for ErasedService {
    fn from(service: S) -> Self {
        Self::new(service)
    }
}

impl std::fmt::Debug for ErasedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ErasedService")
            .field(&self.0.name())
            .finish()
    }
}
