//! A time limit armed only for work that has to wait.
//!
//! Writers bound how long a peer that reads nothing can hold them up, but
//! almost every write completes at once; a timer registered and cancelled per
//! write is measurable on the hot path. So the work is polled once first, and
//! the limit applies only if that poll did not finish it.

use std::future::Future;
use std::time::Duration;

/// Runs `work` within `limit`, arming the timer only if its first poll is
/// pending; `Err` if the limit passed first.
pub async fn within<F: Future>(
    limit: Duration,
    work: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut work = std::pin::pin!(work);
    match futures::poll!(work.as_mut()) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => tokio::time::timeout(limit, work).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_work_needs_no_timer_and_waiting_work_is_cut_off() {
        // A zero limit would cut off anything that waited at all.
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Ok(7));
        let waited = within(Duration::from_millis(10), std::future::pending::<()>()).await;
        assert!(waited.is_err());
        let slow = within(Duration::from_secs(10), async {
            tokio::task::yield_now().await;
            3
        });
        assert_eq!(slow.await, Ok(3));
    }
}
