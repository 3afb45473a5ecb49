//! Bearer authentication (docs/protocol.md §11.2).
//!
//! The middleware never rejects: it attaches what the `Authorization` header
//! amounts to and lets each operation decide, so an operation without access
//! control stays callable without a token while a bad token still fails every
//! operation it reaches with `FORBIDDEN` `invalid token`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::scope::ConnectionScope;

/// What a request's `Authorization` header amounts to: the same resolution a
/// call session makes of a request's `auth_token`.
pub use alknet_call::dispatch::PresentedToken as Bearer;

/// The token of an `Authorization: Bearer <token>` header (scheme name
/// case-insensitive); `None` for anything else or an empty token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Attaches a [`Bearer`] to the request's extensions.
pub async fn bearer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let bearer = match request.extensions().get::<ConnectionScope>() {
        Some(scope) => {
            Bearer::resolve_from(&*state.identities, token, scope.connection.remote(), "http")
        }
        // Served outside HttpHandler: no connection to name.
        None => Bearer::resolve(&*state.identities, token),
    };
    request.extensions_mut().insert(bearer);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_empty_bearer_token_counts() {
        assert_eq!(bearer_token("Bearer alk_x"), Some("alk_x"));
        assert_eq!(bearer_token("bEaReR  alk_x "), Some("alk_x"));
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token(""), None);
    }
}
