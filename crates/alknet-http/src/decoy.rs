//! The stealth decoy (PROTOCOL.md §11.7): whatever the node does not serve
//! answers exactly like a stock nginx 404, so probing reveals nothing.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The 146-byte body of nginx's default 404 page.
pub const NOT_FOUND_BODY: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The `NotFound` decoy.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::SERVER, "nginx"),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        NOT_FOUND_BODY,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_nginxs_146_bytes() {
        assert_eq!(super::NOT_FOUND_BODY.len(), 146);
        assert!(!super::NOT_FOUND_BODY.contains("alknet"));
    }
}
