//! Pack negotiation: the system `git upload-pack` / `git receive-pack`,
//! one process per request, with its standard streams tied to the client.
//!
//! gix has no server side, so git itself negotiates. The node decides
//! everything before a process starts (who may do what, how many run at
//! once) and fixes what git may do once running: `receive.fsckObjects`,
//! `receive.maxInputSize`, the node's own hooks, and an environment with
//! no configuration but the repository's. A process whose client goes
//! away is killed.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use alknet_core::Filling;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;

use crate::events::PUSH_LOG_ENV;

/// The two services git's transports ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Clone and fetch.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    /// The service as the protocol names it (`git-upload-pack`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "git-upload-pack" => Some(Self::UploadPack),
            "git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        }
    }

    /// `git-upload-pack` or `git-receive-pack`.
    pub fn name(self) -> &'static str {
        match self {
            Self::UploadPack => "git-upload-pack",
            Self::ReceivePack => "git-receive-pack",
        }
    }

    fn subcommand(self) -> &'static str {
        &self.name()[4..]
    }
}

/// How the process talks to its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One conversation on one stream (SSH, `alknet/git`).
    Stateful,
    /// One request of smart HTTP (`--stateless-rpc`).
    StatelessRpc,
    /// Smart HTTP's `info/refs` (`--stateless-rpc --advertise-refs`).
    AdvertiseRefs,
}

/// The value of `GIT_PROTOCOL` a client asked for, if it is one git can
/// take (`version=2`, colon-separated `key=value` items).
pub fn protocol_value(requested: &str) -> Option<String> {
    let plausible = !requested.is_empty()
        && requested.len() <= 256
        && requested
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b':' | b'.' | b'_' | b'-'));
    plausible.then(|| requested.to_owned())
}

/// Everything a process is started with.
pub(crate) struct Launch {
    pub(crate) program: PathBuf,
    pub(crate) service: Service,
    pub(crate) mode: Mode,
    pub(crate) directory: PathBuf,
    pub(crate) protocol: Option<String>,
    pub(crate) max_push_size: u64,
    pub(crate) hooks: PathBuf,
    pub(crate) push_log: Option<PathBuf>,
}

/// A running pack process.
pub struct Running {
    pub(crate) child: Child,
    /// Our end of the process's standard input, a socket (see [`spawn`]).
    pub(crate) stdin: Option<UnixStream>,
    pub(crate) stdout: ChildStdout,
    pub(crate) stderr: ChildStderr,
    /// Held until the process is done: one of `git.max_concurrent`.
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) finish: crate::Finish,
}

/// Starts the pack process. Its standard input is one end of a Unix socket
/// pair, not a pipe: `index-pack` reads a pushed pack 4 KiB at a time, and
/// a full pipe wakes its writer for every page read (one wake-up, write
/// and `EAGAIN` per 4 KiB, about 14,000 for a 56 MiB push), where a socket
/// wakes it only once three quarters of its buffer has drained. OpenSSH's
/// `sshd` hands its sessions sockets for the same reason.
pub(crate) fn spawn(
    launch: Launch,
) -> std::io::Result<(Child, UnixStream, ChildStdout, ChildStderr)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let stdin = UnixStream::from_std(ours)?;
    let mut command = Command::new(&launch.program);
    command
        .arg("-c")
        .arg("receive.fsckObjects=true")
        .arg("-c")
        .arg(format!("receive.maxInputSize={}", launch.max_push_size))
        .arg("-c")
        .arg(format!("core.hooksPath={}", launch.hooks.display()))
        // Pushes that change many references apply all or none of them
        // when the client asks (`--atomic`); reporting stays per reference.
        .arg("-c")
        .arg("receive.advertiseAtomic=true")
        .arg(launch.service.subcommand());
    match launch.mode {
        Mode::Stateful => {}
        Mode::StatelessRpc => {
            command.arg("--stateless-rpc");
        }
        Mode::AdvertiseRefs => {
            command.arg("--stateless-rpc").arg("--advertise-refs");
        }
    }
    if launch.service == Service::UploadPack {
        // Only the directory given, never `<dir>/.git`.
        command.arg("--strict");
    }
    command.arg(&launch.directory);
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &launch.directory)
        // The operator's ~/.gitconfig and /etc/gitconfig do not change
        // what the node serves.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(protocol) = &launch.protocol {
        command.env("GIT_PROTOCOL", protocol);
    }
    if let Some(log) = &launch.push_log {
        command.env(PUSH_LOG_ENV, log);
    }
    command
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    // The child's end closes with `command`: our drop of `stdin` is then
    // the end of the process's input.
    drop(command);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the pack process has no pipes"));
    };
    Ok((child, stdin, stdout, stderr))
}

/// What git writes on stderr that is worth keeping for the log, in bytes.
const STDERR_KEPT: usize = 4096;

impl Running {
    /// Runs a stateful conversation (SSH, `alknet/git`): the client's bytes
    /// to the process, the process's to the client, its stderr to
    /// `stderr` when the transport has one (SSH), until the process exits
    /// or the client goes away (the process is then killed).
    pub async fn converse(
        self,
        reader: impl AsyncRead + Unpin + Send,
        mut writer: impl AsyncWrite + Unpin + Send,
        mut stderr: Option<impl AsyncWrite + Unpin + Send>,
    ) -> Option<ExitStatus> {
        let Self {
            mut child,
            stdin,
            mut stdout,
            stderr: mut errors_from_git,
            _permit,
            finish,
        } = self;
        let mut stdin = stdin;
        // A request body or an SSH channel yields one frame per read: each
        // write to git takes every frame that has arrived instead.
        let mut reader = Filling::new(reader);
        let input = async {
            if let Some(pipe) = &mut stdin {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if pipe.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            // EOF to git: the client said all it will.
            drop(stdin.take());
            std::future::pending::<()>().await
        };
        let output = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) => return writer.flush().await.is_ok(),
                    Err(_) => return false,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).await.is_err() {
                            return false;
                        }
                    }
                }
            }
        };
        let errors = keep_stderr(&mut errors_from_git, stderr.as_mut());
        let (delivered, kept) = tokio::select! {
            both = async { tokio::join!(output, errors) } => both,
            () = input => unreachable!("the input side never ends by itself"),
        };
        if !delivered {
            // The client is gone: nothing the process does now reaches it.
            let _ = child.start_kill();
        }
        let status = child.wait().await.ok();
        // The client learns the end only now, with the process reaped, its
        // slot free and a push's events out: its next request (smart HTTP
        // makes two) never finds its own previous one still counted.
        drop(_permit);
        finish.done(status, &kept).await;
        // End of output is the client's end of input (and for a pipe, the
        // only way its reader learns it).
        let _ = writer.shutdown().await;
        status
    }
}

/// Reads git's stderr to its end, passing it to `sink` when there is one,
/// and returns its first bytes for the log.
pub(crate) async fn keep_stderr(
    errors: &mut ChildStderr,
    mut sink: Option<&mut (impl AsyncWrite + Unpin + Send)>,
) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = errors.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Some(sink) = &mut sink {
            let _ = sink.write_all(&buf[..n]).await;
            let _ = sink.flush().await;
        }
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}
