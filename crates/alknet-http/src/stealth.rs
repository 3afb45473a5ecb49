//! Stealth (`[http] stealth = true`): to anyone without a valid bearer token
//! the node is an nginx that has nothing but `/healthz` (and the configured
//! public paths).
//!
//! The answer is the 404 nginx 1.22 sends with `server_tokens off`, byte for
//! byte over HTTP/1.x: the status line, the header names (in nginx's case and
//! order) and values, `Connection` as nginx decides it, and the 146-byte body
//! (`tests/data/nginx/` holds the reference bytes, captured from nginx). Over
//! HTTP/2 the header list and body are nginx's; HPACK encodings differ
//! between any two implementations and are not imitated.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use alknet_core::IdentityProvider;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, SERVER};
use axum::http::{HeaderMap, Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::auth::bearer_token;
use crate::decoy::NOT_FOUND_BODY;
use crate::websocket::subprotocol_token;

/// Who may see past the decoy.
#[derive(Clone)]
pub(crate) struct Stealth {
    /// Paths served to anyone, besides `/healthz`.
    pub(crate) public_paths: Vec<String>,
    pub(crate) identities: Arc<dyn IdentityProvider>,
}

impl Stealth {
    /// Whether `request` gets the 404 instead of being served: it is
    /// anonymous (no bearer token that resolves, in the `Authorization`
    /// header or, for a browser's WebSocket, the subprotocol list) and its
    /// path is not public.
    /// A refused token is logged here: the bearer middleware never sees a
    /// hidden request.
    pub(crate) fn hides<B>(&self, request: &Request<B>, source: SocketAddr) -> bool {
        let path = request.uri().path();
        if path == "/healthz" || self.public_paths.iter().any(|public| public == path) {
            return false;
        }
        !self.identifies(request.headers(), source)
    }

    fn identifies(&self, headers: &HeaderMap, source: SocketAddr) -> bool {
        let header_token = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_owned);
        let Some(token) = header_token.or_else(|| subprotocol_token(headers)) else {
            return false;
        };
        let resolves = self.identities.resolve_token(&token).is_some();
        if !resolves {
            alknet_core::auth_log::token_refused(source, &token, "http");
        }
        resolves
    }
}

/// nginx's 404 for `request`. `Connection` is as nginx sets it: HTTP/1.1
/// keeps the connection unless the client said `close`, HTTP/1.0 closes it
/// unless the client said `keep-alive`; HTTP/2 has no such header.
pub(crate) fn not_found<B>(request: &Request<B>) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(SERVER, "nginx")
        .header(DATE, httpdate::fmt_http_date(SystemTime::now()))
        .header(CONTENT_TYPE, "text/html")
        .header(CONTENT_LENGTH, NOT_FOUND_BODY.len());
    let said = |token: &str| {
        request.headers().get_all(CONNECTION).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let keep_alive = match request.version() {
        Version::HTTP_10 => Some(said("keep-alive")),
        Version::HTTP_11 => Some(!said("close")),
        _ => None,
    };
    if let Some(keep_alive) = keep_alive {
        response = response.header(CONNECTION, if keep_alive { "keep-alive" } else { "close" });
    }
    response
        .body(Body::from(NOT_FOUND_BODY))
        .expect("static parts are valid")
}

/// What an HTTP/1.0 response starts with; the last byte is the one raised.
const HTTP_1_0: &[u8; 8] = b"HTTP/1.0";

/// An HTTP/1.x connection's stream whose first response says `HTTP/1.1`,
/// as nginx's does, also to an HTTP/1.0 client: hyper answers such a client
/// `HTTP/1.0` and offers no setting for it. Only the first response: hyper
/// closes an HTTP/1.0 connection after it unless the client asked for
/// keep-alive.
pub(crate) struct Http11StatusLine<S> {
    inner: S,
    /// Bytes written so far, counted up to the version digit.
    written: usize,
    /// Whether the bytes written so far are those of [`HTTP_1_0`].
    matches: bool,
}

impl<S> Http11StatusLine<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            written: 0,
            matches: true,
        }
    }

    /// The stream, once hyper is done with it (an upgrade).
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Http11StatusLine<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Http11StatusLine<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.written >= HTTP_1_0.len() || !this.matches {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let expected = &HTTP_1_0[this.written..];
        let compared = buf.len().min(expected.len());
        let matches = buf[..compared] == expected[..compared];
        let digit = expected.len() - 1;
        let result = if matches && buf.len() > digit {
            let mut raised = buf.to_vec();
            raised[digit] = b'1';
            Pin::new(&mut this.inner).poll_write(cx, &raised)
        } else {
            Pin::new(&mut this.inner).poll_write(cx, buf)
        };
        if let Poll::Ready(Ok(n)) = result {
            this.matches = buf[..n.min(compared)] == expected[..n.min(compared)];
            this.written += n;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn only_the_first_status_line_of_http_1_0_is_raised() {
        let cases: [(&[u8], &[u8]); 3] = [
            (
                b"HTTP/1.0 404 Not Found\r\n\r\nHTTP/1.0 x",
                b"HTTP/1.1 404 Not Found\r\n\r\nHTTP/1.0 x",
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"),
            (b"HTTP/1.2 200 OK\r\n\r\n", b"HTTP/1.2 200 OK\r\n\r\n"),
        ];
        for (written, expected) in cases {
            let (near, mut far) = tokio::io::duplex(1024);
            let mut stream = Http11StatusLine::new(near);
            // Written in pieces, as a short write would leave them.
            for piece in [&written[..3], &written[3..]] {
                stream.write_all(piece).await.unwrap();
            }
            drop(stream);
            let mut read = Vec::new();
            far.read_to_end(&mut read).await.unwrap();
            assert_eq!(read, expected);
        }
    }
}
