//! The seam between the node and a protocol: [`ProtocolHandler`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::alpn::Alpn;
use crate::connection::Connection;

/// An error a handler returns when a connection ends abnormally. The node logs
/// it with the connection's span; it never affects other connections.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future returned by [`ProtocolHandler::handle`].
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// What a protocol crate implements to serve connections.
///
/// The node advertises exactly the ALPNs of its registered handlers, routes each
/// negotiated connection to the handler of its ALPN, and runs `handle` inside that
/// connection's actor. When the future completes, the connection actor stops and
/// the connection is closed. A panic inside `handle` stops that connection only.
pub trait ProtocolHandler: Send + Sync + 'static {
    /// The ALPNs this handler serves (at least one).
    fn alpns(&self) -> Vec<Alpn>;

    /// A short protocol name used for the supervisor (`proto/<name>`) and the
    /// connection actors (`<name>-conn`). Defaults to the first ALPN.
    fn name(&self) -> String {
        self.alpns()
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unnamed".to_owned())
    }

    /// The name of this protocol's connection actors in the actor tree.
    fn connection_actor_name(&self) -> String {
        let name = self.name();
        let short = name.rsplit('/').next().unwrap_or(&name);
        format!("{short}-conn")
    }

    /// Runs one connection to its end.
    fn handle(self: Arc<Self>, connection: Connection) -> HandlerFuture;
}
