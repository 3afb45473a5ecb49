//! Standard input and output for `alknet proxy`, as the runtime's own
//! non-blocking I/O where they allow it.
//!
//! tokio's `stdin()` and `stdout()` do each read and write on the blocking
//! thread pool: a hop to another thread and back per SSH packet, which an
//! interactive session or an SFTP client waiting on one small reply after
//! another pays in latency. What ssh and sftp hand a ProxyCommand are pipes
//! (or a socket pair); those are put in non-blocking mode and polled by the
//! runtime like the node's own sockets, and pipes are grown to 1 MiB. A
//! terminal or a file keeps tokio's `stdin()`/`stdout()`: making a terminal
//! non-blocking would change it for the shell that shares it too.

use tokio::io::{AsyncRead, AsyncWrite};

/// Standard input, to read what the client sends.
pub(super) fn input() -> Box<dyn AsyncRead + Send + Unpin> {
    #[cfg(unix)]
    if let Some(input) = unix::input() {
        return input;
    }
    Box::new(tokio::io::stdin())
}

/// Standard output, to write what the node answers.
pub(super) fn output() -> Box<dyn AsyncWrite + Send + Unpin> {
    #[cfg(unix)]
    if let Some(output) = unix::output() {
        return output;
    }
    Box::new(tokio::io::stdout())
}

#[cfg(unix)]
mod unix {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use nix::sys::stat::{SFlag, fstat};
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::unix::pipe;

    enum Kind {
        Pipe,
        Socket,
    }

    /// What `fd` is and a duplicate of it, if the runtime can poll it; a
    /// pipe is grown first ([`grow`]). A duplicate: dropping ours must not
    /// close descriptor 0 or 1.
    fn pollable(fd: BorrowedFd<'_>) -> Option<(Kind, OwnedFd)> {
        let stat = fstat(fd).ok()?;
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFIFO => {
                grow(fd);
                Kind::Pipe
            }
            SFlag::S_IFSOCK => Kind::Socket,
            _ => return None,
        };
        Some((kind, fd.try_clone_to_owned().ok()?))
    }

    /// A socket as a tokio stream. `UnixStream` only reads, writes and
    /// shuts down through the descriptor, which works for any stream
    /// socket a parent may hand over.
    fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
        let socket = std::os::unix::net::UnixStream::from(fd);
        socket.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(socket).ok()
    }

    /// What a pipe to or from ssh is asked to hold, against Linux's 64 KiB
    /// default: a bulk transfer then wakes the slower side once per
    /// megabyte instead of once per 64 KiB. It is what an unprivileged user
    /// may ask for by default (`/proc/sys/fs/pipe-max-size`); a pipe that
    /// cannot grow keeps its size.
    const PIPE_BYTES: i32 = 1 << 20;

    fn grow(pipe: BorrowedFd<'_>) {
        let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    }

    pub(super) fn input() -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        match pollable(std::io::stdin().as_fd())? {
            (Kind::Pipe, fd) => Some(Box::new(pipe::Receiver::from_owned_fd(fd).ok()?)),
            (Kind::Socket, fd) => Some(Box::new(socket(fd)?)),
        }
    }

    pub(super) fn output() -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        match pollable(std::io::stdout().as_fd())? {
            (Kind::Pipe, fd) => Some(Box::new(pipe::Sender::from_owned_fd(fd).ok()?)),
            (Kind::Socket, fd) => Some(Box::new(socket(fd)?)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pipes_to_and_from_ssh_grow_to_a_megabyte() {
            let (read, write) = nix::unistd::pipe().unwrap();
            let size =
                |fd: &OwnedFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
            assert!(
                size(&read) < PIPE_BYTES,
                "a new pipe already holds {}",
                size(&read)
            );
            grow(read.as_fd());
            // One pipe, two ends: the size is the pipe's.
            assert_eq!(size(&write), PIPE_BYTES);
        }
    }
}
