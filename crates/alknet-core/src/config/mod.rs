//! Node configuration: one TOML file, every key with an embedded default.
//!
//! `alknet serve` with no file at all runs a working local node, so every key
//! has a default, and the file `alknet init` writes spells out each key with
//! its default and a comment. Unknown keys are errors: a typo must never
//! silently fall back to a default.
//!
//! This crate owns the node-wide keys ([`NodeConfig`]: `listen`, `log`, `log_format`,
//! `workers`, `[tls]`, `[limits]`, `[supervision]`, `[protocols."<alpn>"]`). Every other
//! top-level table belongs to the crate it configures, through
//! [`ConfigSection`]; see the [`section`] module.

mod error;
mod limits;
mod log;
mod node;
mod parse;
pub mod section;
mod template;
mod validate;

pub use error::{ConfigError, InvalidKey};
pub use limits::{ABSOLUTE_MAX_FRAME, Limits};
pub use log::check_log_filter;
pub use node::{LogFormat, NodeConfig, ProtocolSettings, Supervision, TlsSettings};
pub use section::{Config, ConfigSection, SectionRegistry};

#[cfg(test)]
mod tests;
