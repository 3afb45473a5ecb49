//! The node as a systemd service (`Type=notify`): readiness, reloads,
//! stopping and watchdog pings, sent to `$NOTIFY_SOCKET`.
//!
//! Without `NOTIFY_SOCKET` (run by hand, or by another supervisor) every
//! function here does nothing. A failed send is logged once and otherwise
//! ignored: the service manager's view of the node is not a reason to stop
//! serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Start-up is done: the node listens and the banner is printed.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (`SIGHUP`) started; [`reloaded`] ends it. systemd's
/// `Type=notify-reload` needs the monotonic timestamp.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload finished (whatever it could apply).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The node is draining its connections and will exit.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
}

/// Pings the watchdog at half the interval systemd asked for
/// (`WatchdogSec=` in the unit sets `WATCHDOG_USEC`). The pings come from a
/// task on the node's runtime, so a runtime that stops scheduling tasks stops
/// them and systemd restarts the node.
pub fn spawn_watchdog() {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let every = interval / 2;
    tracing::info!(interval = ?every, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

/// `WATCHDOG_USEC`, when the watchdog is meant for this process. As
/// sd_watchdog_enabled(3) says: a `WATCHDOG_PID` naming another process
/// means the watchdog is not ours; an absent one means it is (the
/// `sd-notify` crate requires the PID, which wrappers such as `systemd-run
/// --pipe` or a shell `exec` need not set).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn send(states: &[NotifyState<'_>]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("cannot notify the service manager through NOTIFY_SOCKET: {error}");
    }
}
