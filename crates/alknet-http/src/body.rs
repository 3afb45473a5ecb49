//! Reading a request body whole, within what the connection may hold.
//!
//! The gateway needs a request's whole JSON body before it can dispatch. A
//! peer that opens many streams and sends most of a large body on each, then
//! stops, would have the node hold all of it; one that sends a byte now and
//! then would hold a request open indefinitely. So the bytes come out of the
//! connection's body budget (refused, not awaited, when it is spent: waiting
//! requests could hold each other's share forever), and the body must keep up
//! with a minimum average rate.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the largest body.
    TooLarge,
    /// Behind the minimum rate by more than the grace.
    TooSlow,
    /// The connection's other requests hold its whole body budget.
    OverBudget,
    /// The stream failed.
    Read(axum::Error),
}

/// The pace a body must keep, and the budget it draws on.
pub(crate) struct BodyRules {
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) min_rate: u64,
    /// How far behind the minimum rate a body may fall.
    pub(crate) grace: Duration,
}

/// The body's bytes, with the share of the connection's budget they hold
/// (released when dropped).
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    pub(crate) _held: Option<OwnedSemaphorePermit>,
}

/// Reads `body` whole: at most `max` bytes, and, under `rules`, within the
/// budget and the pace. The budget is charged for the buffer's capacity,
/// which is what the body actually holds.
pub(crate) async fn read_whole(
    mut body: Body,
    max: usize,
    rules: Option<&BodyRules>,
) -> Result<ReadBody, BodyError> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut bytes: Vec<u8> = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    // An announced length is reserved at once: no reallocation as the body
    // grows (each would leave the old buffer to the allocator, doubling what
    // the body costs). One over the limit is refused as its bytes arrive.
    if let Some(announced) = hyper::body::Body::size_hint(&body)
        .exact()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= max)
    {
        grow(&mut bytes, announced, &mut held, rules)?;
    }
    loop {
        let frame = match rules {
            Some(rules) => {
                // Behind the average rate by more than the grace, or silent
                // for longer than it.
                let due = (started + rules.grace + time_for(bytes.len(), rules.min_rate))
                    .min(last_progress + rules.grace);
                match tokio::time::timeout_at(due, body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => return Err(BodyError::TooSlow),
                }
            }
            None => body.frame().await,
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue;
        };
        last_progress = Instant::now();
        let needed = bytes.len() + data.len();
        if needed > max {
            return Err(BodyError::TooLarge);
        }
        if needed > bytes.capacity() {
            let capacity = needed.max(bytes.capacity() * 2).min(max);
            grow(&mut bytes, capacity, &mut held, rules)?;
        }
        bytes.extend_from_slice(&data);
    }
    Ok(ReadBody {
        bytes: Bytes::from(bytes),
        _held: held,
    })
}

/// Grows `bytes` to `capacity`, charging the growth to the budget.
fn grow(
    bytes: &mut Vec<u8>,
    capacity: usize,
    held: &mut Option<OwnedSemaphorePermit>,
    rules: Option<&BodyRules>,
) -> Result<(), BodyError> {
    let growth = capacity.saturating_sub(bytes.capacity());
    if let Some(rules) = rules {
        let share = u32::try_from(growth).map_err(|_| BodyError::TooLarge)?;
        let permit = rules
            .budget
            .clone()
            .try_acquire_many_owned(share)
            .map_err(|_| BodyError::OverBudget)?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
    }
    bytes.reserve_exact(capacity - bytes.len());
    Ok(())
}

/// How long `bytes` take at `rate` bytes per second.
fn time_for(bytes: usize, rate: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    fn rules(budget: usize) -> BodyRules {
        BodyRules {
            budget: Arc::new(Semaphore::new(budget)),
            min_rate: 1000,
            grace: Duration::from_millis(100),
        }
    }

    fn chunks(sizes: &[usize]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = sizes
            .iter()
            .map(|n| Ok(Frame::data(Bytes::from(vec![b'x'; *n]))))
            .collect();
        Body::new(StreamBody::new(stream::iter(frames)))
    }

    #[tokio::test]
    async fn a_body_holds_its_share_of_the_budget_until_dropped() {
        let rules = rules(100);
        let first = read_whole(chunks(&[40, 20]), 1000, Some(&rules))
            .await
            .unwrap();
        assert_eq!(first.bytes.len(), 60);
        // 40, then doubled to 80: the capacity is what is charged.
        assert_eq!(rules.budget.available_permits(), 20);
        let refused = read_whole(chunks(&[30]), 1000, Some(&rules)).await;
        assert!(matches!(refused, Err(BodyError::OverBudget)));
        drop(first);
        assert_eq!(rules.budget.available_permits(), 100);
        assert!(matches!(
            read_whole(chunks(&[600, 600]), 1000, None).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn a_body_that_pauses_longer_than_the_grace_is_too_slow() {
        let rules = BodyRules {
            min_rate: 1,
            ..rules(1_000_000)
        };
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, std::io::Error>>();
        // 500 bytes at once earn 500 s at 1 B/s; the pause still ends it.
        tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![0; 500]))))
            .unwrap();
        let started = Instant::now();
        let read = read_whole(Body::new(StreamBody::new(rx)), 1_000_000, Some(&rules)).await;
        assert!(matches!(read, Err(BodyError::TooSlow)));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_keeps_coming_below_the_rate_is_too_slow() {
        let rules = rules(1_000_000);
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, std::io::Error>>();
        // 10 bytes every 50 ms: 200 B/s, never silent for the 100 ms grace.
        let trickle = tokio::spawn(async move {
            while tx
                .unbounded_send(Ok(Frame::data(Bytes::from_static(&[0; 10]))))
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let read = read_whole(Body::new(StreamBody::new(rx)), 1_000_000, Some(&rules)).await;
        assert!(matches!(read, Err(BodyError::TooSlow)));
        // Behind 1000 B/s by the 100 ms grace: once 100 ms + n/1000 s < t,
        // with n = 10 bytes per 50 ms, that is after 125 ms.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(125) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        trickle.abort();
    }
}
