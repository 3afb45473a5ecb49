//! Commands another crate serves in place of a process (`git-upload-pack`,
//! `git-receive-pack`), added with [`crate::SshHandler::with_command`].
//!
//! An `exec` request whose first word names such a command runs it
//! without a shell and without the `ssh:shell` or `ssh:exec:` scopes: the
//! command decides what its caller may do (the identity is in
//! [`SubsystemIo::info`]) and says why not on stderr, as hosted git
//! services do. The channel's actor, tree entry, byte counts and
//! `admin/kill` work as for any channel.

use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;

use crate::subsystem::SubsystemIo;

/// A service run for an `exec` request naming it.
pub trait Command: Send + Sync + 'static {
    /// Serves one request until it ends; returns the exit status the
    /// client sees.
    fn serve<'a>(&'a self, request: CommandRequest<'a>) -> BoxFuture<'a, u32>;
}

/// One `exec` request for a [`Command`].
pub struct CommandRequest<'a> {
    /// The command line's words after the command's name, split as a
    /// POSIX shell would (`git-upload-pack '/team/app.git'` → `["/team/app.git"]`).
    pub args: Vec<String>,
    /// What the client set with `env` requests and the server accepts
    /// (`GIT_PROTOCOL`, `LANG`, `LC_*`, `TZ`).
    pub env: Vec<(String, String)>,
    /// The channel's data and tree entry.
    pub io: SubsystemIo<'a>,
    /// The channel's stderr (extended data).
    pub stderr: Pin<Box<dyn AsyncWrite + Send + 'a>>,
}

/// The exit status of a command `admin/kill` stopped: a shell's for a
/// command ended by SIGTERM.
pub(crate) const KILLED_STATUS: u32 = 128 + 15;
