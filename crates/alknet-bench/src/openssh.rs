//! What the OpenSSH benchmarks share: OpenSSH's `sshd` on a loopback port,
//! client keys, payloads, timing and the CPU time of a server process.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use alknet_bench::node_process::NodeProcess;

/// What a benchmark starts from: the alknet binary (`bin`, else the one
/// beside the benchmark), a scratch directory, and a client key in it.
pub(crate) fn prepare(bin: Option<&Path>) -> anyhow::Result<(PathBuf, tempfile::TempDir, PathBuf)> {
    let bin = match bin {
        Some(bin) => bin.to_owned(),
        None => alknet_bench::node_process::alknet_beside_me()?,
    };
    let dir = tempfile::tempdir()?;
    let key = keygen(dir.path(), "client")?;
    Ok((bin, dir, key))
}

/// An `alknet serve` with SSH on its port and on a plain listener, and a
/// client key it admits with the `admin` scope.
pub(crate) struct SshNode {
    pub(crate) node: NodeProcess,
    /// The plain SSH listener (`[ssh] listen`).
    pub(crate) plain: SocketAddr,
    /// `ed25519:<hex>`, for `alknet proxy --pin`.
    pub(crate) node_id: String,
}

impl SshNode {
    pub(crate) fn start(bin: &Path, client_key: &Path, extra_config: &str) -> anyhow::Result<Self> {
        let node = NodeProcess::start(
            bin,
            &format!("[ssh]\nlisten = \"127.0.0.1:0\"\n{extra_config}"),
        )?;
        let plain = node
            .banner
            .iter()
            .find_map(|l| {
                l.split("plain SSH on ")
                    .nth(1)?
                    .split(';')
                    .next()?
                    .parse()
                    .ok()
            })
            .context("the banner names no plain SSH address")?;
        let node_id = node
            .banner
            .iter()
            .find_map(|l| l.strip_prefix("alknet node "))
            .context("the banner names no node id")?
            .trim()
            .to_owned();
        let this = Self {
            node,
            plain,
            node_id,
        };
        this.admit(bin, &client_key.with_extension("pub").display().to_string())?;
        Ok(this)
    }

    /// Adds `peer` (a key file or `ed25519:<hex>`) with the `admin` scope.
    pub(crate) fn admit(&self, bin: &Path, peer: &str) -> anyhow::Result<()> {
        let added = Command::new(bin)
            .args([
                "peer",
                "add",
                peer,
                "--id",
                "bench",
                "--scopes",
                "admin",
                "--data-dir",
            ])
            .arg(self.node.data_dir())
            .output()?;
        if !added.status.success() {
            bail!("peer add: {}", String::from_utf8_lossy(&added.stderr));
        }
        Ok(())
    }
}

/// The options every benchmark client (`ssh`, `sftp`) runs with: only the
/// bench's key, no host checking, and the same cipher and key exchange for
/// every server.
pub(crate) fn client_options(key: &Path, cipher: &str, kex: &str) -> Vec<String> {
    let mut options = vec!["-F".to_owned(), "/dev/null".to_owned(), "-i".to_owned()];
    options.push(key.display().to_string());
    for option in [
        "IdentitiesOnly=yes",
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "Compression=no",
    ] {
        options.push("-o".to_owned());
        options.push(option.to_owned());
    }
    options.extend([
        "-c".to_owned(),
        cipher.to_owned(),
        "-o".to_owned(),
        format!("KexAlgorithms={kex}"),
    ]);
    options
}

pub(crate) fn check(status: std::process::ExitStatus, what: &str) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{what} failed: {status}")
    }
}

pub(crate) fn timed(run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed())
}

pub(crate) fn keygen(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .context("ssh-keygen")?;
    check(status, "ssh-keygen")?;
    Ok(path)
}

/// Bytes that do not compress (a xorshift stream).
pub(crate) fn write_payload(path: &Path, len: usize) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n])?;
        left -= n;
    }
    file.flush()?;
    Ok(())
}

/// CPU time of `pid` (and, for sshd, of its reaped children).
pub(crate) fn cpu_of(pid: u32, children: bool) -> anyhow::Result<Duration> {
    if children {
        wait_reaped(pid);
    }
    let [user, system, reaped_user, reaped_system] = cpu_ticks(&pid.to_string())?;
    let reaped = if children {
        reaped_user + reaped_system
    } else {
        0
    };
    Ok(Duration::from_millis((user + system + reaped) * 10))
}

/// The CPU time of this process's children that it has waited for: the
/// clients a bench ran to their end, with everything they waited for in
/// turn (git's `git-remote-https`, `pack-objects`).
pub(crate) fn reaped_children_cpu() -> anyhow::Result<Duration> {
    let [_, _, user, system] = cpu_ticks("self")?;
    Ok(Duration::from_millis((user + system) * 10))
}

/// utime, stime, cutime and cstime of `/proc/<pid>/stat`, in clock ticks
/// (10 ms).
fn cpu_ticks(pid: &str) -> anyhow::Result<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
    let mut fields = after_name
        .split_whitespace()
        .skip(11)
        .map(|f| f.parse().unwrap_or(0));
    Ok(std::array::from_fn(|_| fields.next().unwrap_or(0)))
}

/// Waits (up to 5 s) until `pid` has no children left: a child's CPU time
/// counts for its parent only once the parent reaped it, and sshd reaps a
/// connection's process a moment after the client exits.
fn wait_reaped(pid: u32) {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::read_to_string(&children) {
            Ok(list) if !list.trim().is_empty() => std::thread::sleep(Duration::from_millis(5)),
            _ => return,
        }
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` accepts (a probe connection is harmless here: its
/// channel ends at once).
pub(crate) fn wait_listening(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// OpenSSH's server on a loopback port, with a temporary configuration.
pub(crate) struct Sshd {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Sshd {
    pub(crate) fn start(sshd: &Path, dir: &Path, client_key: &Path) -> anyhow::Result<Self> {
        let host_key = keygen(dir, "sshd_host")?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)?;
        let port = free_port()?;
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n",
                host_key.display(),
                authorized.display()
            ),
        )?;
        // The privilege-separation directory sshd insists on.
        std::fs::create_dir_all("/run/sshd")?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", sshd.display()))?;
        wait_listening(port)?;
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Prints each row's figures divided by the first row's, as a table headed
/// `ratio to <baseline>` with `columns`.
pub(crate) fn print_ratios(baseline: &str, columns: &[&str], rows: &[(&str, Vec<f64>)]) {
    let Some(((_, base), others)) = rows.split_first() else {
        return;
    };
    println!();
    println!("| ratio to {baseline} | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    for (name, figures) in others {
        let ratios: Vec<String> = figures
            .iter()
            .zip(base)
            .map(|(figure, base)| format!("{:.2}", figure / base))
            .collect();
        println!("| {name} | {} |", ratios.join(" | "));
    }
}

/// The median of `figures`; `None` for none.
pub(crate) fn median(mut figures: Vec<f64>) -> Option<f64> {
    if figures.is_empty() {
        return None;
    }
    figures.sort_by(f64::total_cmp);
    let middle = figures.len() / 2;
    Some(if figures.len().is_multiple_of(2) {
        (figures[middle - 1] + figures[middle]) / 2.0
    } else {
        figures[middle]
    })
}

/// Measures every target in each of `rounds` rounds (at least one), the
/// targets taking turns within a round, so that a slow spell of the machine
/// falls on all of them alike. `measure` gets the round, from 0; the result
/// has each target's samples, in the targets' order.
pub(crate) fn take_turns<T, S>(
    targets: &[T],
    rounds: usize,
    name: impl Fn(&T) -> &str,
    mut measure: impl FnMut(&T, usize) -> anyhow::Result<S>,
) -> anyhow::Result<Vec<Vec<S>>> {
    let mut samples: Vec<Vec<S>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        for (target, samples) in targets.iter().zip(&mut samples) {
            eprintln!("round {}: {}", round + 1, name(target));
            samples.push(measure(target, round)?);
        }
    }
    Ok(samples)
}

/// The median over `samples` of one `figure` of each; 0 for no samples.
pub(crate) fn median_of<S>(samples: &[S], figure: impl Fn(&S) -> f64) -> f64 {
    median(samples.iter().map(figure).collect()).unwrap_or(0.0)
}
