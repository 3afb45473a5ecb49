//! `alknet proxy`: standard input and output piped to one stream with an
//! ALPN, for `ssh -o ProxyCommand='alknet proxy --pin … %h:%p'`. Standard
//! output carries the stream's bytes and nothing else.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{StreamArgs, runtime};

/// What `alknet proxy` was asked.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// The protocol to open the stream with.
    #[arg(long, default_value = "alknet/ssh", conflicts_with = "socks5")]
    pub alpn: String,
    /// Run a local SOCKS5 server on this address instead (e.g.
    /// 127.0.0.1:1080): each connection rides a `direct-tcpip` channel of one
    /// SSH session with the node, and the node resolves the names.
    #[arg(long, value_name = "ADDR")]
    pub socks5: Option<SocketAddr>,
    /// With --socks5: the OpenSSH private key to authenticate with (as
    /// `ssh -i`; unencrypted) [default: ~/.ssh/id_ed25519].
    #[arg(long, value_name = "PATH", requires = "socks5")]
    pub identity: Option<PathBuf>,
    /// With --socks5: the SSH user name [default: $USER].
    #[arg(long, requires = "socks5")]
    pub user: Option<String>,
    /// With --socks5: at most this many SOCKS connections at once; more are
    /// refused.
    #[arg(long, default_value_t = 256, requires = "socks5")]
    pub max_connections: usize,
    /// With --alpn alknet/git: the service and repository (`git-upload-pack
    /// team/app.git`, what git-remote-ext's `%S <repo>` gives), sent to the
    /// node as git daemon's request line before the pipe starts, for `git
    /// clone "ext::alknet proxy --alpn alknet/git HOST:PORT %S team/app.git"`.
    #[arg(value_name = "SERVICE REPO", num_args = 2, conflicts_with = "socks5")]
    pub git_request: Vec<String>,
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    // One stream needs one thread: QUIC's tasks and the copying then wake
    // each other without crossing threads, packet after packet.
    let runtime = match args.socks5 {
        Some(_) => runtime()?,
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?,
    };
    let result = runtime.block_on(async {
        match args.socks5 {
            Some(listen) => super::socks5::serve(&args, listen).await,
            None => {
                let first = git_request_line(&args)?;
                pipe(&args.stream, &args.alpn, first.as_deref()).await
            }
        }
    });
    // A read of standard input may still be blocked in the runtime's thread
    // pool; waiting for it would hang the exit.
    runtime.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

/// Bytes moved per read of standard input or of the stream: a bulk
/// transfer (scp, sftp) pays the per-read costs (a system call; for a
/// terminal or a file, a hop through the runtime's blocking pool) once per
/// chunk, so large chunks keep them small next to the copying.
const PIPE_CHUNK: usize = 256 * 1024;

/// git daemon's request line for `SERVICE REPO` (a pkt-line), with the
/// protocol version git asks for in `GIT_PROTOCOL` as an extra parameter.
fn git_request_line(args: &ProxyArgs) -> anyhow::Result<Option<Vec<u8>>> {
    let [service, repo] = args.git_request.as_slice() else {
        return Ok(None);
    };
    if args.alpn != "alknet/git" {
        anyhow::bail!("SERVICE REPO is for --alpn alknet/git only");
    }
    if !matches!(service.as_str(), "git-upload-pack" | "git-receive-pack") {
        anyhow::bail!(
            "unknown git service {service:?}: expected git-upload-pack or git-receive-pack"
        );
    }
    let host = args.stream.target.as_deref().unwrap_or("node");
    let mut payload = format!("{service} {repo}\0host={host}\0");
    if let Ok(protocol) = std::env::var("GIT_PROTOCOL")
        && !protocol.is_empty()
    {
        payload.push('\0');
        for parameter in protocol.split(':') {
            payload.push_str(parameter);
            payload.push('\0');
        }
    }
    if payload.len() + 4 > 4096 {
        anyhow::bail!("the repository name is too long");
    }
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload.as_bytes());
    Ok(Some(line))
}

/// Copies standard input to the stream and the stream to standard output
/// until the node ends the stream, after sending `first` if given. The end
/// of standard input only finishes our side: the node may still be
/// answering.
async fn pipe(args: &StreamArgs, alpn: &str, first: Option<&[u8]>) -> anyhow::Result<()> {
    let mut node = super::open(args, alpn).await?;
    let (send, recv) = (&mut node.stream.send, &mut node.stream.recv);
    if let Some(first) = first {
        send.write_all(first)
            .await
            .context("the connection with the node broke")?;
    }
    let upstream = async {
        let mut stdin = super::stdio::input();
        let mut buf = vec![0u8; PIPE_CHUNK];
        loop {
            let n = stdin
                .read(&mut buf)
                .await
                .context("cannot read standard input")?;
            if n == 0 {
                let _ = send.shutdown().await;
                break;
            }
            // A failed write means the stream is gone; the reading side
            // sees why and reports it.
            if send.write_all(&buf[..n]).await.is_err() || send.flush().await.is_err() {
                break;
            }
        }
        std::future::pending::<anyhow::Result<()>>().await
    };
    let downstream = async {
        let mut stdout = super::stdio::output();
        let mut buf = vec![0u8; PIPE_CHUNK];
        loop {
            let n = match recv.read(&mut buf).await {
                Ok(n) => n,
                // A TLS peer that closes without close_notify has still ended the stream.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => 0,
                // The node ended the session with the connection.
                Err(e) if closed_normally(&e) => 0,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("the connection with the node broke"));
                }
            };
            if n == 0 {
                return Ok(());
            }
            match stdout.write_all(&buf[..n]).await {
                Ok(()) => {}
                // Whoever read our output (ssh) is gone: nothing more to do.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(anyhow::Error::new(e).context("cannot write standard output")),
            }
            if let Err(e) = stdout.flush().await {
                if e.kind() == ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(anyhow::Error::new(e).context("cannot write standard output"));
            }
        }
    };
    let result = tokio::select! {
        result = upstream => result,
        result = downstream => result,
    };
    node.close().await;
    result
}

/// Whether a read error is the node closing the QUIC connection normally
/// (`NO_ERROR`: the session ended, the node shut down): an end, not a failure.
fn closed_normally(error: &std::io::Error) -> bool {
    use quinn::{ConnectionError, ReadError};
    match error.get_ref().and_then(|e| e.downcast_ref::<ReadError>()) {
        Some(ReadError::ConnectionLost(ConnectionError::ApplicationClosed(close))) => {
            close.error_code.into_inner() == u64::from(alknet_core::close::NO_ERROR)
        }
        _ => false,
    }
}
