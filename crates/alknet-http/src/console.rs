//! The operator console at `/console` (docs/protocol.md §11.1).
//!
//! One self-contained page, embedded in the binary: no CDN, no build step.
//! It talks to the node only through the WebSocket session at
//! `/alknet/call`, with a token the operator types, so it can do nothing a
//! call-protocol client with the same token could not. The page is served
//! with a Content-Security-Policy that admits exactly its own inline script
//! and style (by hash) and connections to its own origin.

use std::sync::OnceLock;

use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The page.
pub const PAGE: &str = include_str!("console.html");

/// `GET /console`.
pub async fn page() -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CONTENT_SECURITY_POLICY, policy().clone()),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        PAGE,
    )
        .into_response()
}

/// The page's Content-Security-Policy, computed once from the page itself so
/// that editing the page can never leave a stale hash behind.
pub fn policy() -> &'static HeaderValue {
    static POLICY: OnceLock<HeaderValue> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = hash(inline(PAGE, "<script>", "</script>"));
        let style = hash(inline(PAGE, "<style>", "</style>"));
        let policy = format!(
            "default-src 'none'; script-src '{script}'; style-src '{style}'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        HeaderValue::from_str(&policy).expect("hashes are header-safe")
    })
}

/// The text between `open` and `close`: the page has one of each.
fn inline<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).expect("the page has the element") + open.len();
    let end = page[start..].find(close).expect("the element is closed") + start;
    &page[start..end]
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "src=", "<link", "import "] {
            assert!(!PAGE.contains(needle), "the page references {needle}");
        }
        let style = inline(PAGE, "<style>", "</style>");
        assert!(!style.contains("url(") && !style.contains("@import"));
        assert_eq!(PAGE.matches("<script>").count(), 1);
        assert_eq!(PAGE.matches("<style>").count(), 1);
    }

    #[test]
    fn the_policy_admits_exactly_the_inline_script_and_style() {
        let policy = policy().to_str().unwrap();
        let script = inline(PAGE, "<script>", "</script>");
        assert!(script.contains("alknet.bearer."));
        assert!(policy.contains(&format!("script-src '{}'", hash(script))));
        assert!(policy.contains("connect-src 'self'"));
        assert!(policy.starts_with("default-src 'none'"));
    }
}
