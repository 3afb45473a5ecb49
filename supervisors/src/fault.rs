//! `diag/fault/panic-supervisor` (`{"alpn": "..."}`, scope `admin`): makes a
//! protocol supervisor of the running node panic, so that the real binary's
//! restarts and escalation can be measured from outside (`alknet-bench
//! chaos`). It exists only in builds with the `fault-injection` feature and
//! only when `[diagnostics] fault = true`; like the admin operations it
//! reaches the node through the [`AdminHandle`].

use alknet_call::registry::{RegistrationError, Registry};

use crate::admin::AdminHandle;

/// Registers `diag/fault/panic-supervisor` when this build allows it and
/// `enabled` (`[diagnostics] fault`); otherwise registers nothing, so callers
/// need no feature gate of their own.
pub fn register(
    registry: &Registry,
    handle: &AdminHandle,
    enabled: bool,
) -> Result<(), RegistrationError> {
    #[cfg(feature = "fault-injection")]
    if enabled {
        registry.register(panic_supervisor(handle.clone()))?;
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (registry, handle, enabled);
    Ok(())
}

#[cfg(feature = "fault-injection")]
fn panic_supervisor(handle: AdminHandle) -> alknet_call::OperationDef {
    use alknet_call::CallError;
    use alknet_call::access::AccessControl;
    use serde_json::{Value, json};

    use crate::node::CrashError;

    alknet_call::OperationDef::mutation("diag/fault/panic-supervisor")
        .description("Make a protocol supervisor panic (fault-injection builds only)")
        .input_schema(json!({
            "type": "object",
            "properties": {"alpn": {"type": "string"}},
            "required": ["alpn"]
        }))
        .access(AccessControl::scopes(["admin"]))
        .unary(move |_, input: Value| {
            let handle = handle.clone();
            async move {
                let alpn = input["alpn"].as_str().unwrap_or_default().to_owned();
                // Answers once the supervisor has stopped: the caller times
                // its restart from here.
                match handle.node()?.crash_supervisor(&alpn).await {
                    Ok(supervisor) => Ok(json!({ "crashed": supervisor })),
                    Err(CrashError::UnknownProtocol) => {
                        Err(CallError::not_found(format!("no protocol serves {alpn}")))
                    }
                    Err(CrashError::Restarting) => Err(CallError::unavailable(
                        format!("the supervisor of {alpn} is not running"),
                        1,
                    )),
                }
            }
        })
}
