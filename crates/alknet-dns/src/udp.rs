//! Plain DNS over UDP (`[dns] listen`): a node service reading one socket,
//! one receive loop per core (at most [`MAX_LOOPS`]).
//!
//! Answers are built inline (the zone path never waits), sized to the
//! requester's EDNS payload and truncated past it, and pass the
//! response-rate limiter ([`crate::rate`], one for all the loops) first.
//! The socket belongs to the service value, not to one run of it: a
//! restarted service resumes on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use alknet_core::log_limit::LogLimit;
use alknet_core::service::{Service, ServiceError};
use hickory_proto::op::Message;
use hickory_proto::serialize::binary::BinEncodable;
use tokio::sync::Semaphore;

use crate::Dns;
use crate::answer::{Reply, Transport};
use crate::rate::{RateLimiter, Verdict};

/// pkarr lookups the UDP service waits for at once.
const MAX_LOOKUPS: usize = 64;
/// How many source networks the rate limiter tracks per second.
const MAX_SOURCES: usize = 65_536;
/// Receive loops on the socket at most, however many cores there are.
pub const MAX_LOOPS: usize = 4;

/// A failed send or receive: logged a few lines a window.
static SOCKET_ERROR: LogLimit = LogLimit::warn("DNS UDP socket error");

/// Plain DNS on a UDP socket.
#[derive(Debug)]
pub struct UdpDns {
    dns: Dns,
    socket: Arc<std::net::UdpSocket>,
}

impl UdpDns {
    /// Serves `dns` on `socket` (bound by the caller, so that an address in
    /// use is reported before the node starts).
    pub fn new(dns: Dns, socket: std::net::UdpSocket) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            dns,
            socket: Arc::new(socket),
        })
    }

    /// The address it answers on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Service for UdpDns {
    const NAME: &'static str = "dns-udp";

    async fn run(&self) -> Result<(), ServiceError> {
        let shared = Arc::new(Shared {
            dns: self.dns.clone(),
            socket: Arc::new(tokio::net::UdpSocket::from_std(self.socket.try_clone()?)?),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
            limiter: Mutex::new(RateLimiter::new(
                self.dns.section().response_rate_limit,
                MAX_SOURCES,
            )),
            started: Instant::now(),
        });
        let loops = std::thread::available_parallelism().map_or(1, usize::from);
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..loops.clamp(1, MAX_LOOPS) {
            running.spawn(receive_loop(shared.clone()));
        }
        // The loops never end but by panicking: the service fails with
        // them, and its restart starts them all again (dropping the set
        // stops the others).
        match running.join_next().await {
            Some(Err(error)) => Err(ServiceError::new(format!("a receive loop failed: {error}"))),
            _ => Err(ServiceError::new("a receive loop ended")),
        }
    }
}

/// What the receive loops share.
struct Shared {
    dns: Dns,
    socket: Arc<tokio::net::UdpSocket>,
    /// pkarr lookups in progress, node-wide for this socket.
    lookups: Arc<Semaphore>,
    limiter: Mutex<RateLimiter>,
    started: Instant,
}

async fn receive_loop(shared: Arc<Shared>) {
    let Shared {
        dns,
        socket,
        lookups,
        ..
    } = &*shared;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (length, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                if SOCKET_ERROR.admit() {
                    tracing::warn!("DNS UDP receive failed: {error}");
                }
                continue;
            }
        };
        // Port 0 cannot be answered; it is only ever forged.
        if source.port() == 0 {
            continue;
        }
        let verdict = shared
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(source.ip(), shared.started.elapsed().as_secs());
        if verdict == Verdict::Drop {
            continue;
        }
        let answered = match dns.answerer().answer(&buffer[..length], Transport::Udp) {
            Reply::Send(answered) => answered,
            Reply::Drop => continue,
            // A pkarr packet to fetch: off the receive loop, a bounded
            // number at once; past that the query goes unanswered (the
            // client retries).
            Reply::Resolve(_) => {
                let Ok(permit) = lookups.clone().try_acquire_owned() else {
                    continue;
                };
                let (dns, socket) = (dns.clone(), socket.clone());
                let request = buffer[..length].to_vec();
                tokio::spawn(async move {
                    let reply = dns
                        .answerer()
                        .answer_resolving(&request, Transport::Udp)
                        .await;
                    if let Reply::Send(answered) = reply {
                        let bytes = match verdict {
                            Verdict::Truncate => truncated(&answered.bytes),
                            _ => Some(answered.bytes),
                        };
                        if let Some(bytes) = bytes {
                            let _ = socket.send_to(&bytes, source).await;
                        }
                    }
                    drop(permit);
                });
                continue;
            }
        };
        let bytes = match verdict {
            Verdict::Truncate => match truncated(&answered.bytes) {
                Some(bytes) => bytes,
                None => continue,
            },
            _ => answered.bytes,
        };
        if let Err(error) = socket.send_to(&bytes, source).await
            && SOCKET_ERROR.admit()
        {
            tracing::warn!(%source, "DNS UDP send failed: {error}");
        }
    }
}

/// `response` without its records, TC set.
fn truncated(response: &[u8]) -> Option<Vec<u8>> {
    Message::from_vec(response).ok()?.truncate().to_bytes().ok()
}

/// Binds UDP and TCP to `addr`; with port 0, to one port number the system
/// picks for both.
pub fn bind_plain(
    addr: SocketAddr,
) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(addr)?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}
