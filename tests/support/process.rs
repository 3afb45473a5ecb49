//! The `alknet` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: `$ALKNET_BIN`, or the `alknet` built beside this test.
pub fn alknet_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALKNET_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/alknet
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("alknet");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p alknet) or set ALKNET_BIN",
        bin.display()
    );
    bin
}

/// pkarr's own client behind a small CLI (`tests/pkarr-client`, its own
/// workspace so its crypto provider stays out of the node): `$ALKNET_PKARR_CLIENT`,
/// or built into `target/pkarr-client` on first use (tests/run builds it
/// before the tests run).
pub fn pkarr_client() -> PathBuf {
    if let Some(path) = std::env::var_os("ALKNET_PKARR_CLIENT") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/pkarr-client
    let target_dir = exe
        .ancestors()
        .nth(3)
        .expect("test binary lives in target/<profile>/deps")
        .join("pkarr-client");
    let bin = target_dir.join("debug").join("pkarr-client");
    if !bin.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("pkarr-client/Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--locked", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build {}", manifest.display());
    }
    bin
}

/// Runs `alknet` with `args` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(alknet_bin())
        .args(args)
        .output()
        .expect("alknet runs")
}

/// `alknet` with `args`, isolated from the caller's `ALKNET_*` variables,
/// client profile and home directory (`home` stands in for both).
pub fn isolated(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(alknet_bin());
    command
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ALKNET_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command` to completion with standard input closed.
pub fn output_of(mut command: Command) -> std::process::Output {
    command.stdin(Stdio::null()).output().expect("alknet runs")
}

/// A new token for `id` with `scopes` (comma-separated), created in the
/// data directory `data_dir` with `alknet token create`.
pub fn create_token(data_dir: &Path, id: &str, scopes: &str) -> String {
    let out = run(&[
        "token",
        "create",
        "--id",
        id,
        "--scopes",
        scopes,
        "--json",
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 path"),
    ]);
    json_stdout(&out)["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// The standard output of a successful run, as JSON.
pub fn json_stdout(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A running `alknet serve`.
pub struct NodeProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its node id as printed.
    pub node_id: String,
    /// Everything it printed on stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Everything it logged on stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// The data directory (removed on drop).
    pub data_dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Writes `config_toml` as the data directory's `alknet.toml` and starts
    /// `alknet serve` on an ephemeral loopback port; returns once it listens.
    pub fn start(config_toml: &str) -> Self {
        Self::start_with_env(config_toml, &[])
    }

    /// [`Self::start`] with extra environment variables (`NOTIFY_SOCKET`, …);
    /// an empty value removes the variable (`ALKNET_LOG`, which the harness
    /// sets otherwise).
    pub fn start_with_env(config_toml: &str, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self::launch(config_toml, env, |_| {})
    }

    /// [`Self::start`], after `setup` put files (certificates, …) into the
    /// data directory.
    pub fn start_with_setup(config_toml: &str, setup: impl FnOnce(&Path)) -> Self {
        Self::launch(config_toml, &[], setup)
    }

    fn launch(
        config_toml: &str,
        env: &[(&str, &std::ffi::OsStr)],
        setup: impl FnOnce(&Path),
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(data_dir.path().join("alknet.toml"), config_toml).expect("write config");
        setup(data_dir.path());
        Self::serve(data_dir, env)
    }

    /// Starts `alknet serve` again on this node's data directory, once the
    /// process has exited (after [`Self::kill`], a crash, a signal).
    pub fn restart(mut self) -> Self {
        let _ = self.child.wait();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        Self::serve(data_dir, &[])
    }

    fn serve(data_dir: tempfile::TempDir, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut command = Command::new(alknet_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env(
                "ALKNET_LOG",
                std::env::var("ALKNET_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (key, value) in env {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("alknet serve starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = mpsc::channel();
        collect_lines(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            Some(line_tx),
        );
        collect_lines(child.stderr.take().expect("stderr"), stderr.clone(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut node_id, mut ready) = (None, None, false);
        // `serving:` is the last line of the start-up banner.
        while !ready {
            let left = deadline.saturating_duration_since(Instant::now());
            let line: String = match line_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "alknet serve did not report its address; stderr: {:?}",
                        stderr.lock().unwrap()
                    );
                }
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("alknet node ") {
                node_id = Some(rest.trim().to_owned());
            }
            ready = line.starts_with("serving:");
        }
        Self {
            child,
            addr: addr.expect("address"),
            node_id: node_id.expect("node id"),
            stdout,
            stderr,
            data_dir,
        }
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) {
        self.signal(nix::sys::signal::Signal::SIGINT);
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal delivered");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGKILL: the node gets no chance to close anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL delivered");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `deadline`.
    pub fn wait_for_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The stderr lines logged so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The admin token `serve` printed when it initialised the data
    /// directory.
    pub fn admin_token(&self) -> String {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .find_map(|line| line.strip_prefix("admin token: "))
            .map(str::to_owned)
            .expect("serve printed an admin token")
    }

    /// Bytes logged on stderr so far (each line counted with its newline).
    pub fn log_bytes(&self) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.len() + 1)
            .sum()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size now, in bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// The peak resident set size so far, in bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// File descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmRSS:`.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(
    source: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    notify: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            if let Some(tx) = &notify {
                let _ = tx.send(line);
            }
        }
    });
}
