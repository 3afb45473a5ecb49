//! A subscription's events on their way to a peer that may stop reading.
//!
//! hyper pulls a response body only as fast as the peer takes it (HTTP/2
//! flow control, a full socket), so a subscription whose peer stops reading
//! would sit idle forever, its slot and handler held. A task moves the events
//! through a short queue instead; when the queue stays full for `write_stall`,
//! the subscription ends (its handler is aborted with cascade) and the body
//! fails, which resets an HTTP/2 stream. If the whole connection wrote nothing
//! in that time, its peer reads nothing at all, and the connection is closed,
//! as call sessions and WebSockets are; so is an HTTP/1.x connection, whose
//! one response the subscription is.

use std::time::Duration;

use alknet_core::ConnectionInfo;
use axum::response::sse::Event;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Events queued ahead of a peer that is slow to read.
const QUEUED_EVENTS: usize = 16;

/// The body error of a subscription ended because its peer stopped reading.
#[derive(Debug, thiserror::Error)]
#[error("the peer read no events for the write-stall limit")]
pub(crate) struct Stalled;

/// The connection a subscription rides on, as far as stalls concern it.
pub(crate) struct StallWatch {
    /// Its counters: whether anything was written during the stall.
    pub(crate) info: std::sync::Arc<ConnectionInfo>,
    /// Closes the connection.
    pub(crate) close: CancellationToken,
    /// The subscription's slot in the connection's cap.
    pub(crate) _slot: OwnedSemaphorePermit,
    /// HTTP/1.x: the subscription is the connection's only response, so its
    /// stall is the connection's.
    pub(crate) sole_response: bool,
}

/// `events` as a body stream that fails once the peer has read nothing for
/// `write_stall` while events waited.
pub(crate) fn end_on_stall(
    events: BoxStream<'static, Event>,
    write_stall: Duration,
    watch: Option<StallWatch>,
) -> impl Stream<Item = Result<Event, Stalled>> + Send + 'static {
    let (queue, queued) = mpsc::channel(QUEUED_EVENTS);
    let stalled = CancellationToken::new();
    tokio::spawn(
        forward(events, queue, write_stall, stalled.clone(), watch)
            .instrument(tracing::Span::current()),
    );
    stream::unfold(Some((queued, stalled)), |state| async move {
        let (mut queued, stalled) = state?;
        tokio::select! {
            biased;
            () = stalled.cancelled() => Some((Err(Stalled), None)),
            event = queued.recv() => event.map(|event| (Ok(event), Some((queued, stalled)))),
        }
    })
}

async fn forward(
    mut events: BoxStream<'static, Event>,
    queue: mpsc::Sender<Event>,
    write_stall: Duration,
    stalled: CancellationToken,
    watch: Option<StallWatch>,
) {
    loop {
        // A body dropped by hyper (the peer went away) ends the subscription
        // even while it has nothing to send.
        let event = tokio::select! {
            event = events.next() => event,
            () = queue.closed() => return,
        };
        let Some(event) = event else { return };
        let written_before = watch.as_ref().map(|w| w.info.stats().bytes_out());
        match alknet_core::stall::within(write_stall, queue.send(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                stalled.cancel();
                let close = watch.as_ref().filter(|w| {
                    w.sole_response || Some(w.info.stats().bytes_out()) == written_before
                });
                tracing::debug!(
                    "ending a subscription: its peer read no events for {write_stall:?}{}",
                    if close.is_some() {
                        "; closing the connection, whose peer reads nothing"
                    } else {
                        ""
                    }
                );
                if let Some(watch) = close {
                    watch.close.cancel();
                }
                return;
            }
        }
    }
}
