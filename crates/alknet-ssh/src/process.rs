//! Starting a channel's process: the shell, a command through the shell, or
//! a command without one, on a PTY or on pipes, in a process group of its
//! own that dies with the channel.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User, getuid};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Child;

/// What a session channel runs.
#[derive(Clone, Debug)]
pub(crate) enum Program {
    /// The shell, as a login shell.
    Shell,
    /// `shell -c command`.
    ShellCommand(String),
    /// An argument vector, without a shell.
    Direct(Vec<String>),
}

/// A PTY's requested type and size.
#[derive(Clone, Debug)]
pub(crate) struct Terminal {
    pub(crate) term: String,
    pub(crate) cols: u16,
    pub(crate) rows: u16,
}

/// How to start the process.
pub(crate) struct Launch<'a> {
    pub(crate) program: Program,
    pub(crate) terminal: Option<Terminal>,
    /// Variables the client sent (already filtered).
    pub(crate) env: &'a [(String, String)],
    pub(crate) shell: &'a Path,
    /// The alknet identity, exported as `ALKNET_IDENTITY`.
    pub(crate) identity: &'a str,
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A started process and its ends.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) stdin: Writer,
    pub(crate) stdout: Reader,
    /// Separate stderr (without a PTY).
    pub(crate) stderr: Option<Reader>,
    /// The PTY's master, for window changes.
    pub(crate) terminal: Option<OwnedFd>,
    pub(crate) group: ProcessGroup,
}

/// The login shell of the user the node runs as, else `/bin/sh`.
pub(crate) fn login_shell() -> PathBuf {
    User::from_uid(getuid())
        .ok()
        .flatten()
        .map(|user| user.shell)
        .filter(|shell| shell.is_absolute() && shell.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Starts `launch`.
pub(crate) fn spawn(launch: Launch<'_>) -> std::io::Result<Spawned> {
    let user = User::from_uid(getuid()).ok().flatten();
    let home = user
        .as_ref()
        .map(|u| u.dir.clone())
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = user.as_ref().map(|u| u.name.clone()).unwrap_or_default();
    let (program, args, arg0) = match &launch.program {
        Program::Shell => {
            // A leading `-` in argv[0] makes the shell a login shell, as
            // sshd starts it.
            let base = launch
                .shell
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sh".to_owned());
            (
                launch.shell.as_os_str().to_owned(),
                Vec::new(),
                Some(format!("-{base}")),
            )
        }
        Program::ShellCommand(command) => (
            launch.shell.as_os_str().to_owned(),
            vec!["-c".to_owned(), command.clone()],
            None,
        ),
        Program::Direct(argv) => {
            let (first, rest) = argv
                .split_first()
                .ok_or_else(|| std::io::Error::other("empty command"))?;
            (OsString::from(first), rest.to_vec(), None)
        }
    };
    // A clean environment, as sshd gives: the node's own (which may hold a
    // passphrase or tokens) is not the user's business.
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut env: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), home.clone().into()),
        ("USER".into(), name.clone().into()),
        ("LOGNAME".into(), name.into()),
        ("SHELL".into(), launch.shell.as_os_str().to_owned()),
        ("PATH".into(), path),
        ("ALKNET_IDENTITY".into(), launch.identity.into()),
    ];
    if let Some(terminal) = &launch.terminal {
        env.push(("TERM".into(), terminal.term.clone().into()));
    }
    env.extend(
        launch
            .env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    match launch.terminal {
        Some(terminal) => spawn_on_pty(program, args, arg0, env, &home, &terminal),
        None => spawn_on_pipes(program, args, env, &home),
    }
}

fn spawn_on_pty(
    program: OsString,
    args: Vec<String>,
    arg0: Option<String>,
    env: Vec<(OsString, OsString)>,
    home: &Path,
    terminal: &Terminal,
) -> std::io::Result<Spawned> {
    let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
    pty.resize(pty_process::Size::new(terminal.rows, terminal.cols))
        .map_err(std::io::Error::other)?;
    let master = pty.as_fd().try_clone_to_owned()?;
    let mut command = pty_process::Command::new(&program)
        .args(&args)
        .env_clear()
        .envs(env)
        .current_dir(home)
        .kill_on_drop(true);
    if let Some(arg0) = arg0 {
        command = command.arg0(arg0);
    }
    // The child becomes a session leader on the PTY: its pid is its group.
    let child = command.spawn(pts).map_err(std::io::Error::other)?;
    let group = ProcessGroup::of(&child);
    let (read, write) = pty.into_split();
    Ok(Spawned {
        child,
        stdin: Box::new(write),
        stdout: Box::new(read),
        stderr: None,
        terminal: Some(master),
        group,
    })
}

fn spawn_on_pipes(
    program: OsString,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
    home: &Path,
) -> std::io::Result<Spawned> {
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env_clear()
        .envs(env)
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = ProcessGroup::of(&child);
    let missing = || std::io::Error::other("child pipe missing");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    Ok(Spawned {
        child,
        stdin: Box::new(stdin),
        stdout: Box::new(stdout),
        stderr: Some(Box::new(stderr)),
        terminal: None,
        group,
    })
}

/// The process group a channel's process leads. Dropping it kills the
/// group, so that nothing a channel started outlives it (no orphans).
///
/// The group id is the leader's pid. The system does not reuse a pid while
/// a process group of that id has members, so killing it reaches this
/// channel's processes or, once all are gone, nobody.
pub(crate) struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        Self(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        )
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(group) = self.0 {
            let _ = killpg(group, signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Hang-up first, as a terminal closing does, then no choice.
        self.signal(Signal::SIGHUP);
        self.signal(Signal::SIGKILL);
    }
}

/// Sets a PTY's window size.
pub(crate) fn resize(master: &OwnedFd, cols: u32, rows: u32) {
    let size = rustix::termios::Winsize {
        ws_row: u16::try_from(rows).unwrap_or(u16::MAX),
        ws_col: u16::try_from(cols).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, size);
}
