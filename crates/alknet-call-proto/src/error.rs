//! `CallError`: how a request fails (docs/protocol.md §8), and its [`ErrorCode`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol error codes' texts on the wire. Anything else is a domain
/// code. Code matches on [`ErrorCode`]; these are its wire spelling.
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
}

/// What kind of failure a [`CallError`] reports (§8): one of the protocol's
/// codes, or a domain code an operation declares. On the wire it is the code's
/// text ([`ErrorCode::as_str`]); a text that names a protocol code always reads
/// as that code, never as a domain code.
///
/// Deliberately not `#[non_exhaustive]`: the protocol codes are fixed by the
/// wire contract and domain codes have their own variant, so every mapping
/// (an HTTP status, a CLI hint) matches exhaustively and a new protocol code
/// would be a compile error at each of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `NOT_FOUND`: unknown or internal operation; unknown target of a built-in.
    NotFound,
    /// `FORBIDDEN`: the access check failed, or a token did not resolve.
    Forbidden,
    /// `INVALID_INPUT`: malformed payload, input failing its schema, duplicate id.
    InvalidInput,
    /// `INVALID_OPERATION_TYPE`: the operation's kind does not fit the entry point.
    InvalidOperationType,
    /// `INTERNAL`: handler failure or panic, closed connection, oversize reply.
    Internal,
    /// `TIMEOUT`: the deadline passed (retryable).
    Timeout,
    /// `UNAVAILABLE`: overload, load shedding, shutting down (retryable).
    Unavailable,
    /// A code an operation declares (or, received from a peer, one it sent):
    /// `[A-Z][A-Z0-9_]*` when well-formed, never a protocol code's text.
    Domain(String),
}

impl ErrorCode {
    /// Every protocol code.
    pub const PROTOCOL: [ErrorCode; 7] = [
        Self::NotFound,
        Self::Forbidden,
        Self::InvalidInput,
        Self::InvalidOperationType,
        Self::Internal,
        Self::Timeout,
        Self::Unavailable,
    ];

    /// The code as the wire carries it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => codes::NOT_FOUND,
            Self::Forbidden => codes::FORBIDDEN,
            Self::InvalidInput => codes::INVALID_INPUT,
            Self::InvalidOperationType => codes::INVALID_OPERATION_TYPE,
            Self::Internal => codes::INTERNAL,
            Self::Timeout => codes::TIMEOUT,
            Self::Unavailable => codes::UNAVAILABLE,
            Self::Domain(code) => code,
        }
    }

    /// The protocol code `code` names, if it names one.
    fn protocol(code: &str) -> Option<Self> {
        Some(match code {
            codes::NOT_FOUND => Self::NotFound,
            codes::FORBIDDEN => Self::Forbidden,
            codes::INVALID_INPUT => Self::InvalidInput,
            codes::INVALID_OPERATION_TYPE => Self::InvalidOperationType,
            codes::INTERNAL => Self::Internal,
            codes::TIMEOUT => Self::Timeout,
            codes::UNAVAILABLE => Self::Unavailable,
            _ => return None,
        })
    }

    /// Whether this is one of the protocol codes (not a domain code).
    pub fn is_protocol(&self) -> bool {
        !matches!(self, Self::Domain(_))
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        Self::protocol(code).unwrap_or_else(|| Self::Domain(code.to_owned()))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        Self::protocol(&code).unwrap_or(Self::Domain(code))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// A request's failure: `{code, message, retryable, details?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallError {
    /// A protocol code or a declared domain code.
    pub code: ErrorCode,
    /// Human-readable; for protocol errors, the exact texts of docs/protocol.md.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Structured details; absent (never `null`) when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl CallError {
    fn protocol(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: message.into(),
            retryable,
            details: None,
        }
    }

    /// `NOT_FOUND` with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::protocol(ErrorCode::NotFound, message, false)
    }

    /// `NOT_FOUND` `operation not found: <name>`.
    pub fn operation_not_found(name: &str) -> Self {
        Self::not_found(format!("operation not found: {name}"))
    }

    /// `FORBIDDEN` with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::protocol(ErrorCode::Forbidden, message, false)
    }

    /// `INVALID_INPUT` with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::protocol(ErrorCode::InvalidInput, message, false)
    }

    /// `INVALID_OPERATION_TYPE` with `message`.
    pub fn invalid_operation_type(message: impl Into<String>) -> Self {
        Self::protocol(ErrorCode::InvalidOperationType, message, false)
    }

    /// `INTERNAL` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::protocol(ErrorCode::Internal, message, false)
    }

    /// `TIMEOUT` `request timed out`.
    pub fn timeout() -> Self {
        Self::protocol(ErrorCode::Timeout, "request timed out", true)
    }

    /// `UNAVAILABLE` with `message` and `details.retry_after` in seconds.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            details: Some(serde_json::json!({ "retry_after": retry_after_secs })),
            ..Self::protocol(ErrorCode::Unavailable, message, true)
        }
    }

    /// A domain error (the caller checks that the code is declared). A
    /// protocol code's text makes that protocol code.
    pub fn domain(code: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code: ErrorCode::from(code.into()),
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
        ErrorCode::protocol(code).is_some()
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
        if self.code.is_protocol() || known_domain_code(self.code.as_str()) {
            self
        } else {
            Self {
                code: ErrorCode::Internal,
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
    fn codes_travel_as_exactly_their_texts() {
        for code in ErrorCode::PROTOCOL {
            let text = serde_json::to_value(&code).unwrap();
            assert_eq!(text, json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(text).unwrap(), code);
            assert!(code.is_protocol());
        }
        let wire = [
            codes::NOT_FOUND,
            codes::FORBIDDEN,
            codes::INVALID_INPUT,
            codes::INVALID_OPERATION_TYPE,
            codes::INTERNAL,
            codes::TIMEOUT,
            codes::UNAVAILABLE,
        ];
        assert_eq!(
            ErrorCode::PROTOCOL.map(|code| code.as_str().to_owned()),
            wire
        );
        let domain: ErrorCode = serde_json::from_value(json!("FILE_NOT_FOUND")).unwrap();
        assert_eq!(domain, ErrorCode::Domain("FILE_NOT_FOUND".into()));
        assert!(!domain.is_protocol());
        // A protocol code's text is that code, however it arrives.
        assert_eq!(
            CallError::domain("TIMEOUT", "m", true).code,
            ErrorCode::Timeout
        );
        assert_eq!(ErrorCode::from("NOT_FOUND".to_owned()), ErrorCode::NotFound);
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
        assert_eq!(understood.code, ErrorCode::Internal);
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
