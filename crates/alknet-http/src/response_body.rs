//! A response body as the connection sends it.
//!
//! A response is built whole before it is sent (a gateway reply is one JSON
//! document), and hyper hands a body's frame to HTTP/2 in one piece, where it
//! waits for a peer that may never read it; a peer that opens stream after
//! stream and reads nothing would have the node hold every reply. So a reply
//! draws on the connection's body budget for as long as it is unsent, and is
//! handed over in slices that hyper takes only as the peer reads (at most
//! `http2_send_buffer` queued per stream). One that the budget cannot cover is
//! replaced by a `503` and dropped. Small replies (error answers, the 404)
//! and streams (SSE, which the event queue bounds) draw nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::watchdog::InFlight;

/// Replies up to this size draw nothing from the budget; also the slice size.
pub(crate) const SLICE: usize = 16 * 1024;

/// A response body that holds its request's in-flight mark and its share of
/// the budget until it is sent or dropped.
pub(crate) struct ResponseBody {
    inner: Body,
    /// The rest of a frame larger than a slice.
    rest: Option<Bytes>,
    _held: Option<OwnedSemaphorePermit>,
    _in_flight: InFlight,
}

/// `response` as the connection sends it; `Err` (the response dropped) if
/// the budget, of `budget_size` in all, cannot hold it: the caller answers
/// with [`uncharged`] `503`.
pub(crate) fn metered(
    response: Response,
    budget: &Arc<Semaphore>,
    budget_size: usize,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, InFlight> {
    let size = hyper::body::Body::size_hint(response.body())
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let held = match size {
        Some(size) if size > SLICE => {
            // A reply larger than the whole budget still goes out when
            // nothing else is held.
            let share = u32::try_from(size.min(budget_size)).unwrap_or(u32::MAX);
            match budget.clone().try_acquire_many_owned(share) {
                Ok(permit) => Some(permit),
                Err(_) => return Err(in_flight),
            }
        }
        _ => None,
    };
    Ok(wrapped(response, held, in_flight))
}

/// A small response, sent without drawing on the budget.
pub(crate) fn uncharged(response: Response, in_flight: InFlight) -> Response<ResponseBody> {
    wrapped(response, None, in_flight)
}

fn wrapped(
    response: Response,
    held: Option<OwnedSemaphorePermit>,
    in_flight: InFlight,
) -> Response<ResponseBody> {
    response.map(|inner| ResponseBody {
        inner,
        rest: None,
        _held: held,
        _in_flight: in_flight,
    })
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(rest) = this.rest.as_mut() {
            let slice = rest.split_to(rest.len().min(SLICE));
            if rest.is_empty() {
                this.rest = None;
            }
            return Poll::Ready(Some(Ok(Frame::data(slice))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) if data.len() > SLICE => {
                    let slice = data.split_to(SLICE);
                    this.rest = Some(data);
                    Poll::Ready(Some(Ok(Frame::data(slice))))
                }
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.as_ref().map_or(0, |rest| rest.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::watchdog::Activity;

    fn in_flight() -> InFlight {
        let (stream, _) = tokio::io::duplex(64);
        let connection = alknet_core::Connection::from_stream(
            stream,
            alknet_core::Alpn::new(crate::ALPN_H2),
            "127.0.0.1:1".parse().unwrap(),
            None,
        );
        Activity::new(connection.info().clone()).request_started()
    }

    fn reply(len: usize) -> Response {
        Response::new(Body::from(vec![b'x'; len]))
    }

    #[tokio::test]
    async fn a_large_reply_holds_the_budget_until_sent_in_slices() {
        let budget = Arc::new(Semaphore::new(100_000));
        let Ok(held) = metered(reply(60_000), &budget, 100_000, in_flight()) else {
            panic!("the budget holds the first reply");
        };
        assert_eq!(budget.available_permits(), 40_000);
        // The budget cannot hold a second one; a small reply draws nothing.
        assert!(metered(reply(60_000), &budget, 100_000, in_flight()).is_err());
        let Ok(small) = metered(reply(SLICE), &budget, 100_000, in_flight()) else {
            panic!("a small reply draws nothing");
        };
        assert_eq!(budget.available_permits(), 40_000);
        drop(small);
        let mut body = held.into_body();
        let mut slices = Vec::new();
        while let Some(frame) = body.frame().await {
            slices.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(slices, [SLICE, SLICE, SLICE, 60_000 - 3 * SLICE]);
        drop(body);
        assert_eq!(budget.available_permits(), 100_000);
        // Larger than the whole budget: it goes out when nothing else is held.
        assert!(metered(reply(300_000), &budget, 100_000, in_flight()).is_ok());
    }
}
