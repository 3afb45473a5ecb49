//! CallError → HTTP status and headers (docs/protocol.md §11.5).

use alknet_call::{CallError, ErrorCode, Registry};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Bearer;

/// Where a gateway-level fault came from, for the `INVALID_INPUT` statuses
/// that are not 422.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A body or query that is not what the endpoint takes: 400.
    Malformed,
    /// A body over the limit, or a batch over the item limit: 413.
    TooLarge,
    /// Not `application/json`: 415.
    ContentType,
}

/// The status for `error` returned by `operation` (if known) to a request
/// that `bearer` describes.
pub fn status_for(
    error: &CallError,
    bearer: &Bearer,
    registry: &Registry,
    operation: Option<&str>,
) -> StatusCode {
    let status = match &error.code {
        ErrorCode::NotFound => 404,
        ErrorCode::Forbidden if bearer.has_identity() => 403,
        ErrorCode::Forbidden => 401,
        ErrorCode::InvalidInput => 422,
        ErrorCode::InvalidOperationType => 400,
        ErrorCode::Timeout => 504,
        ErrorCode::Unavailable => 503,
        ErrorCode::Internal => 500,
        ErrorCode::Domain(code) => match code.strip_prefix("HTTP_").map(str::parse::<u16>) {
            Some(Ok(n)) if (400..=599).contains(&n) => n,
            Some(_) => 500,
            None => declared_status(registry, operation, code).unwrap_or(500),
        },
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn declared_status(registry: &Registry, operation: Option<&str>, code: &str) -> Option<u16> {
    let name = operation?.trim_start_matches('/');
    registry
        .get(name)?
        .spec()
        .error_schemas
        .iter()
        .find(|e| e.code == code)?
        .http_status
}

/// The headers a status carries: `WWW-Authenticate` on 401, `Retry-After` on
/// 503 (and on 429 when the error says when).
pub fn headers_for(status: StatusCode, error: &CallError) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let retry_after = error
        .details
        .as_ref()
        .and_then(|d| d.get("retry_after"))
        .and_then(|r| r.as_u64());
    match status.as_u16() {
        401 => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        503 => {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.unwrap_or(1)),
            );
        }
        429 => {
            if let Some(seconds) = retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
        }
        _ => {}
    }
    headers
}

/// The error as the gateway answers it: the bare CallError JSON.
pub fn error_response(status: StatusCode, error: &CallError) -> Response {
    (status, headers_for(status, error), axum::Json(error)).into_response()
}

/// A gateway-level fault (§11.3): `INVALID_INPUT` with its own status.
pub fn fault(fault: Fault, message: impl Into<String>) -> Response {
    let status = match fault {
        Fault::Malformed => StatusCode::BAD_REQUEST,
        Fault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Fault::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    };
    error_response(status, &CallError::invalid_input(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alknet_core::Identity;
    use serde_json::json;

    fn status(code: &str, bearer: &Bearer) -> u16 {
        let error = CallError {
            code: code.into(),
            message: "m".to_owned(),
            retryable: false,
            details: None,
        };
        status_for(&error, bearer, &Registry::new(), None).as_u16()
    }

    #[test]
    fn protocol_codes_map_as_the_table_says() {
        let anonymous = Bearer::Anonymous;
        let alice = Bearer::Identity(Identity::new("alice", ["user"]));
        assert_eq!(status("NOT_FOUND", &anonymous), 404);
        assert_eq!(status("FORBIDDEN", &anonymous), 401);
        assert_eq!(status("FORBIDDEN", &Bearer::Unresolved("t".into())), 401);
        assert_eq!(status("FORBIDDEN", &alice), 403);
        assert_eq!(status("INVALID_INPUT", &alice), 422);
        assert_eq!(status("INVALID_OPERATION_TYPE", &alice), 400);
        assert_eq!(status("TIMEOUT", &alice), 504);
        assert_eq!(status("UNAVAILABLE", &alice), 503);
        assert_eq!(status("INTERNAL", &alice), 500);
        assert_eq!(status("HTTP_429", &alice), 429);
        assert_eq!(status("HTTP_302", &alice), 500);
        assert_eq!(status("HTTP_X", &alice), 500);
        assert_eq!(status("SOMETHING_ELSE", &alice), 500);
    }

    #[test]
    fn retry_after_and_www_authenticate() {
        let unavailable = CallError::unavailable("busy", 7);
        let headers = headers_for(StatusCode::SERVICE_UNAVAILABLE, &unavailable);
        assert_eq!(headers[header::RETRY_AFTER], "7");
        let bare = CallError {
            details: None,
            ..unavailable
        };
        let headers = headers_for(StatusCode::SERVICE_UNAVAILABLE, &bare);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        let limited = CallError::internal("x").with_details(json!({"retry_after": 3}));
        assert_eq!(
            headers_for(StatusCode::TOO_MANY_REQUESTS, &limited)[header::RETRY_AFTER],
            "3"
        );
        let headers = headers_for(StatusCode::UNAUTHORIZED, &CallError::forbidden("x"));
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    }
}
