//! Per-operation access control (docs/protocol.md §6.3).
//!
//! The check stops at the first failure and says why ([`Denied`]). The caller
//! is never told: an operation it may not call does not exist for it, so a
//! denial is answered exactly as an unknown name is ([`hidden`]) and nobody
//! can list the node's restricted operations by probing names. The reason goes
//! to the node's debug log, for the operator.

use alknet_core::Identity;
use serde::{Deserialize, Serialize};

use crate::error::CallError;

/// What an operation requires of its caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessControl {
    /// Every one of these scopes is needed.
    pub required_scopes: Vec<String>,
    /// At least one of these scopes is needed (`null` or empty: no such rule).
    pub required_scopes_any: Option<Vec<String>>,
    /// A resource type the identity must hold a grant for.
    pub resource_type: Option<String>,
    /// The action the grant must include.
    pub resource_action: Option<String>,
}

/// Why access was denied: for the node's log, never for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The operation is restricted and the request has no identity.
    #[error("authentication required")]
    AuthenticationRequired,
    /// A scope of `required_scopes` is missing (the first, in order).
    #[error("missing required scope: {0}")]
    MissingScope(String),
    /// None of `required_scopes_any` is held.
    #[error("missing required scope (any of: {})", .0.join(", "))]
    MissingAnyScope(Vec<String>),
    /// The resource grant lacks the action.
    #[error("missing resource: {0}/{1}")]
    MissingResourceAction(String, String),
    /// No grant for the resource type.
    #[error("missing resource: {0}")]
    MissingResource(String),
    /// No grant lists the action.
    #[error("missing resource action: {0}")]
    MissingAction(String),
}

/// The answer to a caller denied `operation`: the same `NOT_FOUND` an unknown
/// name gets, code, message and all; the reason is logged at debug level.
pub fn hidden(operation: &str, denied: &Denied) -> CallError {
    tracing::debug!(operation, reason = %denied, "access denied; answered as unknown");
    CallError::operation_not_found(operation)
}

impl AccessControl {
    /// Restricted to holders of all of `scopes`.
    pub fn scopes(scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            required_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Whether anything is required at all.
    pub fn is_unrestricted(&self) -> bool {
        self.required_scopes.is_empty()
            && self.required_scopes_any.as_ref().is_none_or(Vec::is_empty)
            && self.resource_type.is_none()
            && self.resource_action.is_none()
    }

    /// Runs the check for `identity` (`None`: anonymous).
    pub fn check(&self, identity: Option<&Identity>) -> Result<(), Denied> {
        if self.is_unrestricted() {
            return Ok(());
        }
        let Some(identity) = identity else {
            return Err(Denied::AuthenticationRequired);
        };
        if let Some(missing) = self.required_scopes.iter().find(|s| !identity.has_scope(s)) {
            return Err(Denied::MissingScope(missing.clone()));
        }
        if let Some(any) = self.required_scopes_any.as_ref().filter(|a| !a.is_empty())
            && !any.iter().any(|s| identity.has_scope(s))
        {
            return Err(Denied::MissingAnyScope(any.clone()));
        }
        let grants = |kind: &str| identity.resources.get(kind);
        match (&self.resource_type, &self.resource_action) {
            (Some(kind), Some(action)) => {
                if !grants(kind).is_some_and(|actions| actions.contains(action)) {
                    return Err(Denied::MissingResourceAction(kind.clone(), action.clone()));
                }
            }
            (Some(kind), None) => {
                if grants(kind).is_none() {
                    return Err(Denied::MissingResource(kind.clone()));
                }
            }
            (None, Some(action)) => {
                if !identity
                    .resources
                    .values()
                    .any(|actions| actions.contains(action))
                {
                    return Err(Denied::MissingAction(action.clone()));
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(scopes: &[&str]) -> Identity {
        Identity::new("u", scopes.iter().copied())
    }

    #[test]
    fn unrestricted_operations_admit_anonymous_callers() {
        assert_eq!(AccessControl::default().check(None), Ok(()));
        let empty_any = AccessControl {
            required_scopes_any: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(empty_any.check(None), Ok(()));
    }

    #[test]
    fn restricted_operations_need_an_identity() {
        // docs/protocol.md §16 item 9.
        let admin = AccessControl::scopes(["admin"]);
        assert_eq!(
            admin.check(None).unwrap_err().to_string(),
            "authentication required"
        );
    }

    #[test]
    fn scope_messages_are_exact() {
        // docs/protocol.md §16 item 10.
        let admin = AccessControl::scopes(["admin"]);
        assert_eq!(
            admin.check(Some(&user(&["user"]))).unwrap_err().to_string(),
            "missing required scope: admin"
        );
        assert_eq!(admin.check(Some(&user(&["admin"]))), Ok(()));
        let any = AccessControl {
            required_scopes_any: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        assert_eq!(
            any.check(Some(&user(&["c"]))).unwrap_err().to_string(),
            "missing required scope (any of: a, b)"
        );
        assert_eq!(any.check(Some(&user(&["b"]))), Ok(()));
        let both = AccessControl::scopes(["x", "y"]);
        assert_eq!(
            both.check(Some(&user(&["y"]))).unwrap_err().to_string(),
            "missing required scope: x",
            "the first missing scope in order"
        );
    }

    #[test]
    fn resource_grants() {
        let mut alice = user(&[]);
        alice.resources.insert("repo".into(), vec!["read".into()]);
        let push = AccessControl {
            resource_type: Some("repo".into()),
            resource_action: Some("push".into()),
            ..Default::default()
        };
        assert_eq!(
            push.check(Some(&alice)).unwrap_err().to_string(),
            "missing resource: repo/push"
        );
        let read = AccessControl {
            resource_action: Some("read".into()),
            ..push.clone()
        };
        assert_eq!(read.check(Some(&alice)), Ok(()));
        let any_repo = AccessControl {
            resource_type: Some("repo".into()),
            ..Default::default()
        };
        assert_eq!(any_repo.check(Some(&alice)), Ok(()));
        let any_blob = AccessControl {
            resource_type: Some("blob".into()),
            ..Default::default()
        };
        assert_eq!(
            any_blob.check(Some(&alice)).unwrap_err().to_string(),
            "missing resource: blob"
        );
        let delete = AccessControl {
            resource_action: Some("delete".into()),
            ..Default::default()
        };
        assert_eq!(
            delete.check(Some(&alice)).unwrap_err().to_string(),
            "missing resource action: delete"
        );
    }

    #[test]
    fn a_denied_caller_gets_what_an_unknown_name_gets() {
        for denied in [
            Denied::AuthenticationRequired,
            Denied::MissingScope("admin".into()),
        ] {
            assert_eq!(
                hidden("admin/tree", &denied),
                CallError::operation_not_found("admin/tree")
            );
        }
    }
}
