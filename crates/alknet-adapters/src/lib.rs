//! HTTP-backed adapters (docs/protocol.md §14): the node as an MCP server, and
//! remote HTTP APIs and MCP servers as operations.
//!
//! - [`to_mcp`]: `/mcp`, the node's operations for AI agents through four
//!   fixed tools, dispatched exactly as the gateway dispatches;
//! - [`from_mcp`]: a remote MCP server's tools as operations;
//! - [`openapi`]: `from_openapi` and `from_jsonschema`, HTTP APIs as
//!   operations;
//! - [`forward`]: how an imported operation becomes an HTTP request and its
//!   reply an output or `HTTP_<status>`;
//! - [`outbound`]: the one outbound HTTP client they share (retries,
//!   `Retry-After`, pooling, TLS settings, swap on reload).
//!
//! Everything imported is `internal` unless configured `external`: an import
//! carries this node's credentials for someone else's API, and exposing it is
//! a decision, never a default.

#![warn(missing_docs)]

pub mod forward;
pub mod from_mcp;
pub mod openapi;
pub mod outbound;
pub mod to_mcp;
