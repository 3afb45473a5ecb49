//! quinn's runtime for every QUIC endpoint here: tokio's timers and tasks,
//! with a UDP socket that wakes its endpoint only when a datagram arrives.
//!
//! quinn's own tokio runtime registers the socket for reading and writing.
//! Linux signals a UDP socket writable again after every datagram leaves
//! it, so each send woke a parked worker thread for nothing: over a
//! request-and-answer exchange (SFTP through `alknet proxy`), a node's
//! thread woke once per request for writability nobody waited for, and
//! the proxy's every other request. Here the socket is registered for
//! reading only. A UDP send rarely finds the socket's buffer full (4 MiB,
//! see [`crate::udp`]); when it does, the sender tries again after
//! [`RETRY_WHEN_FULL`] instead of waiting for the kernel's signal.
//!
//! Receiving skips one system call per wake-up as well: a batch read that
//! returns fewer datagrams than it asked for has emptied the socket's
//! queue, so the socket is taken as drained without the read that would
//! report it.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How long a sender waits before trying a full socket again. The 4 MiB
/// send buffer [`crate::udp::bind`] asks for takes over 3 ms to drain even at
/// 10 Gbit/s, so the wait costs no throughput. Where `net.core.wmem_max`
/// grants less, a sender at line rate may idle for part of the wait, once
/// per full buffer; that is the price of not being woken after every
/// datagram.
pub const RETRY_WHEN_FULL: Duration = Duration::from_millis(1);

/// quinn's runtime on tokio, with sockets watched for reading only.
#[derive(Debug)]
pub struct QuicRuntime;

impl Runtime for QuicRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(at)
    }

    #[track_caller]
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(Socket::new(socket)?))
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}

/// A UDP socket registered with tokio for reading only.
#[derive(Debug)]
struct Socket {
    io: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// The last send found the send buffer full.
    full: AtomicBool,
}

impl Socket {
    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        // SAFETY: `register_with_interest` needs the descriptor open and the
        // same for the whole life of the `AsyncFd`. The `UdpSocket` owns its
        // descriptor, always returns that one from `as_raw_fd`, and closes it
        // only when dropped, which the `AsyncFd` that takes ownership of it
        // does after deregistering.
        let io = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|refused| refused.into_parts().1)?;
        Ok(Self {
            state,
            io,
            full: AtomicBool::new(false),
        })
    }
}

impl AsyncUdpSocket for Socket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            retry: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let sent = self.state.send(self.io.get_ref().into(), transmit);
        let full = matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        // Every connection's sends pass here, from any thread: write the
        // flag only when it changes, so the common send only reads it.
        if self.full.load(Ordering::Relaxed) != full {
            self.full.store(full, Ordering::Relaxed);
        }
        sent
    }

    /// Reads a batch. A batch read (`recvmmsg`) on a non-blocking socket
    /// stops short of the batch only when the queue is empty, so a short
    /// batch clears the readiness as a would-block error does. A datagram
    /// arriving after the read is not missed: it is a new readiness event,
    /// and tokio keeps a readiness that changed since it was observed.
    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let batch = bufs.len().min(meta.len()).min(quinn::udp::BATCH_SIZE);
        loop {
            let mut ready = ready!(self.io.poll_read_ready(cx))?;
            match self.state.recv(self.io.get_ref().into(), bufs, meta) {
                Ok(read) => {
                    if cfg!(target_os = "linux") && read < batch {
                        ready.clear_ready();
                    }
                    return Poll::Ready(Ok(read));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

/// A connection's gate before each send: open unless the last send found
/// the socket full, then open again after [`RETRY_WHEN_FULL`].
#[derive(Debug)]
struct Writable {
    socket: Arc<Socket>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.socket.full.load(Ordering::Relaxed) {
            this.retry = None;
            return Poll::Ready(Ok(()));
        }
        let retry = this
            .retry
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(RETRY_WHEN_FULL)));
        ready!(Future::poll(retry.as_mut(), cx));
        this.retry = None;
        // Let the next send find out; if the buffer is still full, it
        // says so again.
        this.socket.full.store(false, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn socket() -> Arc<Socket> {
        Arc::new(Socket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_socket_is_tried_again_after_the_wait_and_not_before() {
        let socket = socket();
        let mut gate = socket.clone().create_io_poller();
        let poll_once = |gate: &mut Pin<Box<dyn UdpPoller>>| {
            let waker = futures::task::noop_waker();
            gate.as_mut()
                .poll_writable(&mut Context::from_waker(&waker))
                .is_ready()
        };
        assert!(poll_once(&mut gate), "a socket that was never full is open");

        socket.full.store(true, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        assert!(!poll_once(&mut gate), "a full socket waits");
        poll_fn(|cx| gate.as_mut().poll_writable(cx)).await.unwrap();
        assert!(started.elapsed() >= RETRY_WHEN_FULL);
        assert!(!socket.full.load(Ordering::Relaxed));
        assert!(
            poll_once(&mut gate),
            "open again until a send finds it full"
        );
    }

    /// Reads until `count` datagrams have arrived, in order of arrival
    /// (coalesced ones split by their stride).
    async fn receive(socket: &Socket, count: usize) -> Vec<Vec<u8>> {
        let batch = quinn::udp::BATCH_SIZE;
        let mut storage = vec![vec![0u8; 4096]; batch];
        let mut meta = vec![RecvMeta::default(); batch];
        let mut datagrams = Vec::new();
        while datagrams.len() < count {
            let mut bufs: Vec<IoSliceMut> =
                storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                poll_fn(|cx| socket.poll_recv(cx, &mut bufs, &mut meta)),
            )
            .await
            .expect("datagrams that were sent arrive")
            .unwrap();
            drop(bufs);
            for (buf, meta) in storage.iter().zip(&meta).take(read) {
                datagrams.extend(buf[..meta.len].chunks(meta.stride).map(<[u8]>::to_vec));
            }
        }
        datagrams
    }

    #[tokio::test]
    async fn bursts_shorter_and_longer_than_a_batch_all_arrive() {
        let receiver = socket();
        let to = receiver.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // A short batch clears the readiness: the next burst must wake the
        // reader again. A full batch must not: what is left of a longer
        // burst is read without another datagram arriving.
        let batch = quinn::udp::BATCH_SIZE;
        for (round, size) in [1, 3, batch, batch + 8, 2 * batch + 1, 2]
            .into_iter()
            .enumerate()
        {
            let sent: Vec<Vec<u8>> = (0..size)
                .map(|i| format!("{round}:{i}").into_bytes())
                .collect();
            for datagram in &sent {
                sender.send_to(datagram, to).unwrap();
            }
            assert_eq!(
                receive(&receiver, size).await,
                sent,
                "burst {round} of {size}"
            );
        }
    }
}
