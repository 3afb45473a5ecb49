//! A session channel: its requests (pty, env, shell, exec, window changes,
//! signals), the process it starts, and the exit status it reports.

use std::process::ExitStatus;
use std::sync::Arc;

use alknet_core::Counted;
use bytes::Bytes;
use nix::sys::signal::Signal;
use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::access::ExecGrant;
use crate::channel::{Context, finish_draining};
use crate::command::{Command, CommandRequest};
use crate::process::{self, Launch, Program, Spawned, Terminal};
use crate::subsystem::{Subsystem, SubsystemIo};

/// Variables a client may set, as OpenSSH's default `AcceptEnv` plus git's.
fn accepted_env(name: &str) -> bool {
    matches!(name, "LANG" | "TZ" | "GIT_PROTOCOL" | "COLORTERM") || name.starts_with("LC_")
}
/// Bounds on what `env` requests may hold.
const MAX_ENV: usize = 64;
const MAX_ENV_VALUE: usize = 4096;

/// Data from the client queued for the process's stdin.
const STDIN_QUEUE: usize = 8;

/// Runs a session channel to its end.
pub(crate) async fn run(channel: Channel<Msg>, reply: Option<ChannelOpenHandle>, cx: Context) {
    if let Some(reply) = reply {
        reply.accept().await;
    }
    let id = channel.id();
    let (mut read, write) = channel.split();
    let (program, terminal, env) = match setup(&mut read, &write, id, &cx).await {
        Some(Requested::Process(program, terminal, env)) => (program, terminal, env),
        Some(Requested::Subsystem(name, subsystem)) => {
            serve_subsystem(&mut read, &write, id, &cx, &name, subsystem.as_ref()).await;
            return;
        }
        Some(Requested::Command(command, args, env)) => {
            serve_command(&mut read, &write, id, &cx, command.as_ref(), args, env).await;
            return;
        }
        None => {
            let _ = cx.handle.close(id).await;
            return;
        }
    };
    let identity = cx
        .info
        .identity()
        .map(|identity| identity.id)
        .unwrap_or_default();
    let launch = Launch {
        program,
        terminal,
        env: &env,
        shell: &cx.shared.shell,
        identity: &identity,
    };
    let spawned = match process::spawn(launch) {
        Ok(spawned) => spawned,
        Err(error) => {
            tracing::warn!(channel = %id, "cannot start the channel's process: {error}");
            let message = format!("alknet: cannot start the process: {error}\r\n");
            let _ = write
                .extended_data_bytes(1, Bytes::from(message.into_bytes()))
                .await;
            let _ = cx.handle.exit_status_request(id, 127).await;
            let _ = write.eof().await;
            let _ = cx.handle.close(id).await;
            return;
        }
    };
    running(read, write, id, spawned, &cx).await;
}

/// What a session channel was asked to run.
enum Requested {
    /// A shell or a command, with its terminal and environment.
    Process(Program, Option<Terminal>, Vec<(String, String)>),
    /// A subsystem another crate serves.
    Subsystem(String, Arc<dyn Subsystem>),
    /// A command another crate serves, with its arguments and environment.
    Command(Arc<dyn Command>, Vec<String>, Vec<(String, String)>),
}

/// What a channel waits for before it starts: its pty, env and the request
/// that says what to run. `None` when the client closed or was refused.
async fn setup(
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
    id: ChannelId,
    cx: &Context,
) -> Option<Requested> {
    let mut terminal = None;
    let mut env = Vec::new();
    loop {
        let message = tokio::select! {
            message = read.wait() => message?,
            () = cx.killed.cancelled() => return None,
        };
        match message {
            ChannelMsg::Close => return None,
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            } => {
                terminal = Some(Terminal {
                    term,
                    cols: u16::try_from(col_width).unwrap_or(80),
                    rows: u16::try_from(row_height).unwrap_or(24),
                });
                let _ = cx.handle.channel_success(id).await;
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                if let Some(terminal) = &mut terminal {
                    terminal.cols = u16::try_from(col_width).unwrap_or(terminal.cols);
                    terminal.rows = u16::try_from(row_height).unwrap_or(terminal.rows);
                }
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                let accepted = accepted_env(&variable_name)
                    && env.len() < MAX_ENV
                    && variable_value.len() <= MAX_ENV_VALUE
                    && !variable_value.contains('\0');
                if accepted {
                    env.push((variable_name, variable_value));
                    let _ = cx.handle.channel_success(id).await;
                } else {
                    let _ = cx.handle.channel_failure(id).await;
                }
            }
            ChannelMsg::RequestShell { .. } => match cx.access.shell() {
                Ok(()) => {
                    cx.info.set_detail(match &terminal {
                        Some(t) => format!("shell (pty {} {}x{})", t.term, t.cols, t.rows),
                        None => "shell".to_owned(),
                    });
                    let _ = cx.handle.channel_success(id).await;
                    return Some(Requested::Process(Program::Shell, terminal, env));
                }
                Err(refusal) => return refuse(write, id, cx, &refusal.0, Answer::ExitStatus).await,
            },
            ChannelMsg::Exec { command, .. } => {
                let command = String::from_utf8_lossy(&command).into_owned();
                if let Some((served, args)) = served_command(cx, &command) {
                    cx.info.set_detail(format!("exec: {}", shorten(&command)));
                    let _ = cx.handle.channel_success(id).await;
                    return Some(Requested::Command(served, args, env));
                }
                match cx.access.exec(&command) {
                    Ok(grant) => {
                        cx.info.set_detail(format!("exec: {}", shorten(&command)));
                        let _ = cx.handle.channel_success(id).await;
                        let program = match grant {
                            ExecGrant::Shell => Program::ShellCommand(command),
                            ExecGrant::Direct(argv) => Program::Direct(argv),
                        };
                        return Some(Requested::Process(program, terminal, env));
                    }
                    Err(refusal) => {
                        return refuse(write, id, cx, &refusal.0, Answer::ExitStatus).await;
                    }
                }
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                let Some(subsystem) = cx.shared.subsystems.get(&name) else {
                    let reason = format!("alknet: the subsystem {name:?} is not served");
                    return refuse(write, id, cx, &reason, Answer::Failure).await;
                };
                let identity = cx.info.identity();
                if let Err(reason) = subsystem.admit(identity.as_ref()) {
                    let reason = format!("alknet: {name}: {reason}");
                    return refuse(write, id, cx, &reason, Answer::Failure).await;
                }
                cx.info.set_detail(format!("subsystem {}", shorten(&name)));
                let _ = cx.handle.channel_success(id).await;
                return Some(Requested::Subsystem(name, subsystem.clone()));
            }
            ChannelMsg::RequestX11 { .. } => {
                let _ = cx.handle.channel_failure(id).await;
            }
            // russh answered agent forwarding (refused); data before a
            // program has nowhere to go.
            _ => {}
        }
    }
}

/// The command another crate serves for `command_line`, with its
/// arguments, if its first word names one. A line that does not split
/// (an open quote) is served too, with no arguments, so that the command
/// answers it rather than the shell scopes.
fn served_command(cx: &Context, command_line: &str) -> Option<(Arc<dyn Command>, Vec<String>)> {
    let first = command_line.split_whitespace().next()?;
    let served = cx.shared.commands.get(first)?.clone();
    let args = shlex::split(command_line)
        .map(|words| words.into_iter().skip(1).collect())
        .unwrap_or_default();
    Some((served, args))
}

/// Runs a command another crate serves until it ends, the client closes,
/// or `admin/kill` stops the channel; then reports its exit status.
async fn serve_command(
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
    id: ChannelId,
    cx: &Context,
    command: &dyn Command,
    args: Vec<String>,
    env: Vec<(String, String)>,
) {
    let request = CommandRequest {
        args,
        env,
        io: channel_io(read, write, cx),
        stderr: Box::pin(write.make_writer_ext(Some(1))),
    };
    let status = tokio::select! {
        status = command.serve(request) => status,
        () = cx.killed.cancelled() => {
            tracing::info!(channel = %id, "SSH command stopped by the operator");
            crate::command::KILLED_STATUS
        }
    };
    finish_draining(read, async {
        let _ = cx.handle.exit_status_request(id, status).await;
        let _ = write.eof().await;
        let _ = cx.handle.close(id).await;
    })
    .await;
}

/// The channel's data as a service sees it, its bytes counted into the
/// channel's tree entry.
fn channel_io<'a>(
    read: &'a mut ChannelReadHalf,
    write: &'a ChannelWriteHalf<Msg>,
    cx: &Context,
) -> SubsystemIo<'a> {
    SubsystemIo {
        reader: Box::pin(Counted {
            inner: read.make_reader(),
            info: cx.info.clone(),
        }),
        writer: Box::pin(Counted {
            inner: write.make_writer(),
            info: cx.info.clone(),
        }),
        info: cx.info.clone(),
    }
}

/// Runs a subsystem on the channel's data until it ends, the client
/// closes, or `admin/kill` stops the channel; then ends the channel as
/// OpenSSH ends a subsystem's (exit status 0, EOF, close).
async fn serve_subsystem(
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<Msg>,
    id: ChannelId,
    cx: &Context,
    name: &str,
    subsystem: &dyn Subsystem,
) {
    tokio::select! {
        () = subsystem.serve(channel_io(read, write, cx)) => {}
        () = cx.killed.cancelled() => {
            tracing::info!(channel = %id, subsystem = name, "SSH subsystem stopped by the operator");
        }
    }
    finish_draining(read, async {
        let _ = cx.handle.exit_status_request(id, 0).await;
        let _ = write.eof().await;
        let _ = cx.handle.close(id).await;
    })
    .await;
}

/// How a refusal is answered.
#[derive(Clone, Copy)]
enum Answer {
    /// The standard request failure (a subsystem: `sftp` prints that it
    /// failed).
    Failure,
    /// For a shell or a command: OpenSSH's client exits at a bare failure
    /// before it writes the stderr data that came with it, so the reason
    /// would be lost. The request is taken, the reason written to stderr,
    /// and the channel ends with exit status 126 ("cannot execute"), as
    /// hosted git services answer a shell they do not offer.
    ExitStatus,
}

/// The exit status of a shell or command that was refused.
const REFUSED_STATUS: u32 = 126;

/// Refuses the channel's request with a one-line reason on its stderr; the
/// channel then closes.
async fn refuse<T>(
    write: &ChannelWriteHalf<Msg>,
    id: ChannelId,
    cx: &Context,
    reason: &str,
    answer: Answer,
) -> Option<T> {
    tracing::info!(
        channel = %id,
        identity = cx.info.identity().map(|i| i.id).unwrap_or_default(),
        "SSH request refused: {reason}"
    );
    cx.info.set_detail(format!("refused: {reason}"));
    if let Answer::ExitStatus = answer {
        let _ = cx.handle.channel_success(id).await;
    }
    let line = format!("{reason}\r\n");
    let _ = write
        .extended_data_bytes(1, Bytes::from(line.into_bytes()))
        .await;
    match answer {
        Answer::Failure => {
            let _ = cx.handle.channel_failure(id).await;
        }
        Answer::ExitStatus => {
            let _ = cx.handle.exit_status_request(id, REFUSED_STATUS).await;
        }
    }
    let _ = write.eof().await;
    None
}

/// Commands are shown in the tree up to this many characters.
const DETAIL_CHARS: usize = 200;

fn shorten(command: &str) -> String {
    let mut shown: String = command.chars().take(DETAIL_CHARS).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    shown
}

/// How a running channel ended.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    ClientClosed,
    Killed,
}

async fn running(
    mut read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
    id: ChannelId,
    spawned: Spawned,
    cx: &Context,
) {
    let Spawned {
        mut child,
        stdin,
        stdout,
        stderr,
        terminal,
        group,
    } = spawned;
    let on_pty = terminal.is_some();
    let (input, queue) = mpsc::channel::<Bytes>(STDIN_QUEUE);
    let mut input = Some(input);
    let _stdin = AbortOnDropHandle::new(tokio::spawn(feed_stdin(stdin, queue)));
    let out = AbortOnDropHandle::new(tokio::spawn(pump_out(
        stdout,
        write.make_writer(),
        cx.info.clone(),
    )));
    let err = stderr.map(|stderr| {
        AbortOnDropHandle::new(tokio::spawn(pump_out(
            stderr,
            write.make_writer_ext(Some(1)),
            cx.info.clone(),
        )))
    });
    let ending = loop {
        tokio::select! {
            message = read.wait() => match message {
                None | Some(ChannelMsg::Close) => break Ending::ClientClosed,
                Some(ChannelMsg::Data { data }) => {
                    cx.info.stats().record_in(data.len());
                    if let Some(sender) = &input {
                        tokio::select! {
                            sent = sender.send(data) => if sent.is_err() { input = None },
                            () = cx.killed.cancelled() => break Ending::Killed,
                        }
                    }
                }
                // A terminal has no half-close: sshd ignores EOF there too.
                Some(ChannelMsg::Eof) if !on_pty => input = None,
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    if let Some(master) = &terminal {
                        process::resize(master, col_width, row_height);
                    }
                }
                Some(ChannelMsg::Signal { signal }) => {
                    if let Some(signal) = to_signal(&signal) {
                        group.signal(signal);
                    }
                }
                Some(
                    ChannelMsg::RequestPty { .. }
                    | ChannelMsg::RequestShell { .. }
                    | ChannelMsg::Exec { .. }
                    | ChannelMsg::RequestSubsystem { .. }
                    | ChannelMsg::RequestX11 { .. }
                    | ChannelMsg::SetEnv { .. },
                ) => {
                    let _ = cx.handle.channel_failure(id).await;
                }
                Some(_) => {}
            },
            status = child.wait() => break Ending::Exited(status),
            () = cx.killed.cancelled() => break Ending::Killed,
        }
    };
    let exited = match ending {
        Ending::Exited(status) => {
            // Everything the process wrote reaches the client before its
            // exit status, as with sshd.
            let drained = async {
                let _ = out.await;
                if let Some(err) = err {
                    let _ = err.await;
                }
            };
            let client_closed = async {
                while let Some(message) = read.wait().await {
                    if matches!(message, ChannelMsg::Close) {
                        return;
                    }
                }
            };
            tokio::select! {
                () = drained => {}
                () = client_closed => {}
                () = cx.killed.cancelled() => {}
            }
            Some(status)
        }
        Ending::ClientClosed | Ending::Killed => None,
    };
    finish_draining(&mut read, async {
        if let Some(status) = exited {
            report_exit(&cx.handle, id, status).await;
            let _ = write.eof().await;
        }
        // The process group ends before the channel closes (no orphans).
        drop(group);
        let _ = cx.handle.close(id).await;
    })
    .await;
}

async fn feed_stdin(
    mut stdin: Box<dyn AsyncWrite + Send + Unpin>,
    mut queue: mpsc::Receiver<Bytes>,
) {
    while let Some(data) = queue.recv().await {
        if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    // The client's EOF: the process reads end-of-file.
    let _ = stdin.shutdown().await;
}

/// Copies a process's output to the channel until the process closes it.
async fn pump_out(
    mut from: Box<dyn AsyncRead + Send + Unpin>,
    mut to: impl AsyncWrite + Unpin,
    info: std::sync::Arc<alknet_core::ConnectionInfo>,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        // A PTY whose last writer closed reads EIO: that is its end of file.
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).await.is_err() || to.flush().await.is_err() {
            return;
        }
        info.stats().record_out(read);
    }
}

async fn report_exit(
    handle: &russh::server::Handle,
    id: ChannelId,
    status: std::io::Result<ExitStatus>,
) {
    use std::os::unix::process::ExitStatusExt;
    let Ok(status) = status else {
        let _ = handle.exit_status_request(id, 255).await;
        return;
    };
    if let Some(code) = status.code() {
        let _ = handle
            .exit_status_request(id, u32::try_from(code).unwrap_or(255))
            .await;
    } else if let Some(signal) = status.signal() {
        let _ = handle
            .exit_signal_request(
                id,
                to_sig(signal),
                status.core_dumped(),
                String::new(),
                String::new(),
            )
            .await;
    }
}

fn to_signal(signal: &Sig) -> Option<Signal> {
    Some(match signal {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => Signal::SIGUSR2,
            _ => return None,
        },
    })
}

fn to_sig(signal: i32) -> Sig {
    match Signal::try_from(signal) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_owned()),
        Err(_) => Sig::Custom(signal.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_locale_time_zone_and_git_variables_are_accepted() {
        for name in ["LANG", "LC_ALL", "LC_CTYPE", "TZ", "GIT_PROTOCOL"] {
            assert!(accepted_env(name), "{name}");
        }
        for name in ["LD_PRELOAD", "PATH", "HOME", "BASH_ENV", "lang"] {
            assert!(!accepted_env(name), "{name}");
        }
    }

    #[test]
    fn signals_map_both_ways() {
        assert_eq!(to_signal(&Sig::INT), Some(Signal::SIGINT));
        assert_eq!(to_signal(&Sig::Custom("WINCH".into())), None);
        assert!(matches!(to_sig(libc_sigterm()), Sig::TERM));
    }

    fn libc_sigterm() -> i32 {
        Signal::SIGTERM as i32
    }

    #[test]
    fn long_commands_are_shortened_for_the_tree() {
        let long = "x".repeat(500);
        let shown = shorten(&long);
        assert_eq!(shown.chars().count(), DETAIL_CHARS + 1);
        assert_eq!(shorten("ls -l"), "ls -l");
    }
}
