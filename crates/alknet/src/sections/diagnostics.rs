//! `[diagnostics]`: the diagnostic protocols and operations, for tests and
//! benchmarks.
//!
//! The binary owns this section because it switches things that live in
//! several crates: the echo protocol (`alknet-echo`), the fault protocol
//! (`alknet-core`), and the `diag/*` and fault operations of `alknet-call`.

use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig};
use serde::{Deserialize, Serialize};

/// `[diagnostics]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diagnostics {
    /// Serve `alknet/echo` (each stream echoes its bytes).
    pub echo: bool,
    /// Register the call-protocol operations `diag/echo`, `diag/sleep`,
    /// `diag/count` and `diag/callback`.
    pub call_ops: bool,
    /// Serve `alknet/fault` and register `diag/fault/panic-supervisor`
    /// (builds with fault injection only: panics on command).
    pub fault: bool,
}

impl ConfigSection for Diagnostics {
    const KEY: &'static str = "diagnostics";
    const TEMPLATE: &'static str = r#"[diagnostics]
# Serve alknet/echo: every stream echoes its bytes. For tests and benchmarks.
echo = false
# Register the call operations diag/echo (returns its input), diag/sleep
# ({"ms": n}, at most 60000), diag/count (a subscription: {"n": items,
# "interval_ms": gap}) and diag/callback (calls an operation the caller
# registered on its own session). For tests and benchmarks.
call_ops = false
"#;

    fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
        // Whether this build can inject faults is `alknet-core`'s feature,
        // which the workspace's tests switch on for every crate; a cfg here
        // would see only this crate's own features.
        if self.fault && !alknet_core::fault::available() {
            return Err(InvalidKey::new(
                "diagnostics.fault",
                "false: this build has no fault injection (cargo feature `fault-injection`)",
            ));
        }
        Ok(())
    }
}
