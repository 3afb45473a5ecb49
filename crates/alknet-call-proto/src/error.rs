//! `CallError`: how a request fails (PROTOCOL.md §8).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol error codes. Anything else is a domain code.
pub mod codes {
    /// Unknown or internal operation; unknown target of a built-in.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The access check failed, or a token did not resolve.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Malformed payload, input failing its schema, duplicate id.
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    /// The operation's kind does not fit the entry point.
    pub const INVALID_OPERATION_TYPE: &str = "INVALID_OPERATION_TYPE";
    /// Handler failure or panic, closed connection, oversize reply.
    pub const INTERNAL: &str = "INTERNAL";
    /// The deadline passed (retryable).
    pub const TIMEOUT: &str = "TIMEOUT";
    /// Overload, load shedding, shutting down (retryable).
    pub const UNAVAILABLE: &str = "UNAVAILABLE";

    /// Every protocol code.
    pub const ALL: [&str; 7] = [
        NOT_FOUND,
        FORBIDDEN,
        INVALID_INPUT,
        INVALID_OPERATION_TYPE,
        INTERNAL,
        TIMEOUT,
        UNAVAILABLE,
    ];
}

/// A request's failure: `{code, message, retryable, details?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallError {
    /// A protocol code ([`codes`]) or a declared domain code.
    pub code: String,
    /// Human-readable; for protocol errors, the exact texts of PROTOCOL.md.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Structured details; absent (never `null`) when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl CallError {
    fn protocol(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retryable,
            details: None,
        }
    }

    /// `NOT_FOUND` with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::protocol(codes::NOT_FOUND, message, false)
    }

    /// `NOT_FOUND` `operation not found: <name>`.
    pub fn operation_not_found(name: &str) -> Self {
        Self::not_found(format!("operation not found: {name}"))
    }

    /// `FORBIDDEN` with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::protocol(codes::FORBIDDEN, message, false)
    }

    /// `INVALID_INPUT` with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::protocol(codes::INVALID_INPUT, message, false)
    }

    /// `INVALID_OPERATION_TYPE` with `message`.
    pub fn invalid_operation_type(message: impl Into<String>) -> Self {
        Self::protocol(codes::INVALID_OPERATION_TYPE, message, false)
    }

    /// `INTERNAL` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::protocol(codes::INTERNAL, message, false)
    }

    /// `TIMEOUT` `request timed out`.
    pub fn timeout() -> Self {
        Self::protocol(codes::TIMEOUT, "request timed out", true)
    }

    /// `UNAVAILABLE` with `message` and `details.retry_after` in seconds.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            details: Some(serde_json::json!({ "retry_after": retry_after_secs })),
            ..Self::protocol(codes::UNAVAILABLE, message, true)
        }
    }

    /// A domain error (the caller checks that the code is declared).
    pub fn domain(code: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable,
            details: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Whether `code` is one of the protocol codes.
    pub fn is_protocol_code(code: &str) -> bool {
        codes::ALL.contains(&code)
    }

    /// Whether `code` has the shape of a domain code: `[A-Z][A-Z0-9_]*` and
    /// not a protocol code.
    pub fn is_domain_code(code: &str) -> bool {
        let mut chars = code.chars();
        chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !Self::is_protocol_code(code)
    }

    /// How a client must treat an error it received (§8): a code it does not
    /// recognise is `INTERNAL` and not retryable, whatever the sender said.
    pub fn as_understood_by_client(self, known_domain_code: impl Fn(&str) -> bool) -> Self {
        if Self::is_protocol_code(&self.code) || known_domain_code(&self.code) {
            self
        } else {
            Self {
                code: codes::INTERNAL.to_owned(),
                retryable: false,
                ..self
            }
        }
    }
}

impl std::fmt::Display for CallError {
    /// `CODE: message`, as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_without_details_has_no_details_key() {
        let value = serde_json::to_value(CallError::operation_not_found("nope/missing")).unwrap();
        assert_eq!(
            value,
            json!({"code":"NOT_FOUND","message":"operation not found: nope/missing","retryable":false})
        );
    }

    #[test]
    fn retryable_codes_are_timeout_and_unavailable_only() {
        assert!(CallError::timeout().retryable);
        let unavailable = CallError::unavailable("too many in-flight requests", 1);
        assert!(unavailable.retryable);
        assert_eq!(unavailable.details, Some(json!({"retry_after": 1})));
        for error in [
            CallError::not_found("x"),
            CallError::forbidden("x"),
            CallError::invalid_input("x"),
            CallError::invalid_operation_type("x"),
            CallError::internal("x"),
        ] {
            assert!(!error.retryable, "{error}");
        }
    }

    #[test]
    fn domain_codes_have_their_shape_and_never_shadow_protocol_codes() {
        assert!(CallError::is_domain_code("FILE_NOT_FOUND"));
        assert!(CallError::is_domain_code("HTTP_404"));
        assert!(!CallError::is_domain_code("NOT_FOUND"));
        assert!(!CallError::is_domain_code("file_not_found"));
        assert!(!CallError::is_domain_code("9LIVES"));
        assert!(!CallError::is_domain_code(""));
    }

    #[test]
    fn clients_treat_unknown_codes_as_internal() {
        let received = CallError::domain("SOMETHING_NEW", "m", true);
        let understood = received.as_understood_by_client(|_| false);
        assert_eq!(understood.code, "INTERNAL");
        assert!(!understood.retryable);
        assert_eq!(understood.message, "m");
        let declared = CallError::domain("FILE_NOT_FOUND", "m", false);
        assert_eq!(
            declared
                .clone()
                .as_understood_by_client(|c| c == "FILE_NOT_FOUND"),
            declared
        );
    }
}
