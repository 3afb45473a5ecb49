//! A reader whose reads take everything the stream has ready.
//!
//! Some readers hand out one piece per read however much more is waiting
//! behind it: a TLS stream one record (at most 16 KiB), a request body or
//! an SSH channel one frame. A consumer that moves a bulk transfer on,
//! such as hyper filling its buffer or a pump feeding a child process, then
//! makes one pass per piece, and when the pieces come from another task,
//! every pass is a wake-up of that task and back. [`Filling`] keeps reading
//! until the caller's buffer is full or the inner reader would wait, so
//! that one pass moves what is there.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A reader (and writer, passed through) whose every read fills the
/// caller's buffer with all the inner stream has ready, not just its first
/// piece.
///
/// A read that got data returns it even if a later piece failed; the error
/// is kept and returned by the next read, so none is lost.
pub struct Filling<T> {
    inner: T,
    failed: Option<io::Error>,
}

impl<T> Filling<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            failed: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Filling<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Err(error));
        }
        let start = buf.filled().len();
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    // End of stream, or a full buffer: either way, done.
                    if buf.filled().len() == before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(error)) => {
                    if buf.filled().len() == start {
                        return Poll::Ready(Err(error));
                    }
                    this.failed = Some(error);
                    return Poll::Ready(Ok(()));
                }
                // Nothing more ready: what was read is the answer. The inner
                // reader keeps its wake-up registered, which at worst wakes
                // the caller once for nothing.
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Filling<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures::task::noop_waker_ref;

    use super::*;

    /// What a scripted reader's next read does.
    enum Step {
        Data(&'static [u8]),
        Wait,
        Fail,
    }

    /// A reader that plays its steps in order, then reports end of stream.
    struct Scripted(VecDeque<Step>);

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.front_mut() {
                None => Poll::Ready(Ok(())),
                Some(Step::Wait) => {
                    self.0.pop_front();
                    Poll::Pending
                }
                Some(Step::Fail) => {
                    self.0.pop_front();
                    Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
                }
                Some(Step::Data(data)) => {
                    let taken = data.len().min(buf.remaining());
                    buf.put_slice(&data[..taken]);
                    *data = &data[taken..];
                    if data.is_empty() {
                        self.0.pop_front();
                    }
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    fn read(reader: &mut Filling<Scripted>, room: usize) -> Poll<io::Result<Vec<u8>>> {
        let mut storage = vec![0u8; room];
        let mut buf = ReadBuf::new(&mut storage);
        let mut cx = Context::from_waker(noop_waker_ref());
        Pin::new(reader)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().to_vec())
    }

    /// What a read that must succeed at once returned.
    fn got(reader: &mut Filling<Scripted>, room: usize) -> Vec<u8> {
        match read(reader, room) {
            Poll::Ready(Ok(data)) => data,
            other => panic!("expected data or the end, got {other:?}"),
        }
    }

    fn filling(steps: impl IntoIterator<Item = Step>) -> Filling<Scripted> {
        Filling::new(Scripted(steps.into_iter().collect()))
    }

    #[test]
    fn one_read_takes_every_ready_piece() {
        let mut reader = filling([Step::Data(b"ab"), Step::Data(b"cd"), Step::Wait]);
        assert_eq!(got(&mut reader, 16), b"abcd");
        // The wait ended the first read; what follows it is the end.
        assert_eq!(got(&mut reader, 16), b"");
    }

    #[test]
    fn a_full_buffer_ends_the_read_and_the_rest_waits_its_turn() {
        let mut reader = filling([Step::Data(b"abc"), Step::Data(b"def")]);
        assert_eq!(got(&mut reader, 4), b"abcd");
        assert_eq!(got(&mut reader, 4), b"ef");
        assert_eq!(got(&mut reader, 4), b"");
    }

    #[test]
    fn nothing_ready_is_pending() {
        let mut reader = filling([Step::Wait, Step::Data(b"x")]);
        assert!(read(&mut reader, 4).is_pending());
        assert_eq!(got(&mut reader, 4), b"x");
    }

    #[test]
    fn an_error_after_data_comes_with_the_next_read() {
        let mut reader = filling([Step::Data(b"ok"), Step::Fail, Step::Data(b"late")]);
        assert_eq!(got(&mut reader, 16), b"ok");
        match read(&mut reader, 16) {
            Poll::Ready(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected the kept error, got {other:?}"),
        }
        assert_eq!(got(&mut reader, 16), b"late");
    }

    #[test]
    fn end_of_stream_after_data_returns_the_data_then_the_end() {
        let mut reader = filling([Step::Data(b"last")]);
        assert_eq!(got(&mut reader, 16), b"last");
        assert_eq!(got(&mut reader, 16), b"");
    }
}
