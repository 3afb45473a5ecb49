//! `alknet serve` as a child process, and what `/proc` says about it: the
//! benchmarks that measure the real binary (`chaos`, `soak`) start it here,
//! in a fresh data directory, on an ephemeral loopback port.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running `alknet serve`.
pub struct NodeProcess {
    child: Option<Child>,
    pid: u32,
    /// The address it listens on (QUIC and TCP share the port).
    pub addr: SocketAddr,
    /// The admin token it printed when it initialised its data directory.
    pub admin_token: String,
    /// Its start-up banner, line by line.
    pub banner: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    data_dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Writes `config_toml` as the data directory's `alknet.toml`, starts
    /// `bin serve` and returns once its banner says it serves.
    pub fn start(bin: &Path, config_toml: &str) -> anyhow::Result<Self> {
        Self::start_with_setup(bin, config_toml, |_| Ok(()))
    }

    /// [`Self::start`], with `setup` run on the data directory first (to
    /// put files where the node reads them at start, such as zone files).
    pub fn start_with_setup(
        bin: &Path,
        config_toml: &str,
        setup: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        std::fs::write(data_dir.path().join("alknet.toml"), config_toml)?;
        setup(data_dir.path())?;
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env(
                "ALKNET_LOG",
                std::env::var("ALKNET_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let pid = child.id();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines) = mpsc::channel();
        collect_lines(child.stdout.take(), stdout.clone(), Some(lines_tx));
        let stderr_reader = collect_lines(child.stderr.take(), stderr.clone(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut admin_token) = (None, None);
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "{} serve did not start; its log:\n{}",
                    bin.display(),
                    stderr.lock().expect("log lock").join("\n")
                );
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(token) = line.strip_prefix("admin token: ") {
                admin_token = Some(token.trim().to_owned());
            }
            // `serving:` is the banner's last line.
            let last = line.starts_with("serving:");
            banner.push(line);
            if last {
                break;
            }
        }
        Ok(Self {
            child: Some(child),
            pid,
            addr: addr.context("the banner gave no address")?,
            admin_token: admin_token.context("the banner gave no admin token")?,
            banner,
            stderr,
            stderr_reader,
            data_dir,
        })
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().expect("log lock").clone()
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Waits up to `deadline` for the process to exit; its status and when
    /// it was seen (polled every millisecond). Once it has exited, its last
    /// log lines have been read too.
    pub async fn wait_exit(
        &mut self,
        deadline: Duration,
    ) -> anyhow::Result<Option<(ExitStatus, Instant)>> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_exit()? {
                let exited = Instant::now();
                if let Some(reader) = self.stderr_reader.take() {
                    // The pipe is closed: the reader is at its end.
                    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
                }
                return Ok(Some((status, exited)));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// What `/proc` says about the process now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `alknet` binary beside this executable (`target/<profile>/alknet`).
pub fn alknet_beside_me() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .context("the executable has no directory")?
        .join("alknet");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it (cargo build --workspace --release) or pass --bin",
        bin.display()
    );
    Ok(bin)
}

/// One process's resources at one moment, from `/proc/<pid>`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident set (`VmRSS`).
    pub rss_bytes: u64,
    /// Open file descriptors (entries of `fd/`).
    pub open_fds: usize,
    /// CPU time used so far, user and system, all threads (`stat`).
    pub cpu: Duration,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which
/// Linux fixes at 100 on every architecture it exports to user space.
const USER_HZ: u64 = 100;

impl Usage {
    /// Reads the usage of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS")?;
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which may hold spaces and ends at
        // the last `)`: state is field 3, utime 14, stime 15.
        let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| -> anyhow::Result<u64> {
            Ok(fields.get(index).context("short stat")?.parse()?)
        };
        let cpu_ticks = ticks(11)? + ticks(12)?;
        Ok(Self {
            rss_bytes: rss_kib * 1024,
            open_fds,
            cpu: Duration::from_millis(cpu_ticks * 1000 / USER_HZ),
        })
    }
}

/// CPU time the whole machine has spent busy so far, over all cores (the
/// first line of `/proc/stat`): what tells a slow sample caused by the node
/// from one caused by its neighbours.
pub fn host_busy() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, ticks)| ticks)
        .sum();
    Ok(Duration::from_millis(busy * 1000 / USER_HZ))
}

fn collect_lines(
    source: Option<impl std::io::Read + Send + 'static>,
    sink: Arc<Mutex<Vec<String>>>,
    notify: Option<mpsc::Sender<String>>,
) -> Option<std::thread::JoinHandle<()>> {
    let source = source?;
    Some(std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            sink.lock().expect("log lock").push(line.clone());
            if let Some(tx) = &notify {
                let _ = tx.send(line);
            }
        }
    }))
}
