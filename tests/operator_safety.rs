//! The `alknet` binary guarding its operator (issue #20): data directories
//! it will not invent or share, secrets other users could read, log settings
//! that would silence it, JSON logs, a line for every refused credential,
//! and a banner that says which certificate browsers get.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, NodeKey};
use alknet_e2e::client::{tls_connect, tls_echo};
use alknet_e2e::process::{NodeProcess, alknet_bin, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START_DEADLINE: Duration = Duration::from_secs(30);

/// An `alknet` child whose output lines are collected as they come.
struct ServeChild {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ServeChild {
    /// `alknet serve --listen 127.0.0.1:0 <args>` in `cwd`, with `ALKNET_LOG`
    /// set to `log` (or unset).
    fn serve(args: &[&str], cwd: &Path, log: Option<&str>) -> Self {
        let mut command = Command::new(alknet_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(cwd)
            .env_remove("ALKNET_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(log) = log {
            command.env("ALKNET_LOG", log);
        }
        let mut child = command.spawn().expect("alknet serve starts");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a line of `lines` satisfies `found`, or panics with
    /// everything printed so far.
    fn wait_for(
        &mut self,
        lines: fn(&Self) -> Vec<String>,
        what: &str,
        deadline: Duration,
        found: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(line) = lines(self).into_iter().find(|line| found(line)) {
                return line;
            }
            let exited = self.child.try_wait().expect("try_wait");
            if exited.is_some() || Instant::now() >= end {
                panic!(
                    "no {what} (exit: {exited:?}); stdout: {:#?}; stderr: {:#?}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the banner's last line; returns the address it listens on.
    fn wait_serving(&mut self) -> std::net::SocketAddr {
        self.wait_for(Self::stdout, "`serving:` line", START_DEADLINE, |l| {
            l.starts_with("serving:")
        });
        self.stdout()
            .iter()
            .find_map(|l| l.strip_prefix("listening on "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .expect("listening address")
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(source: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A data directory initialised by `alknet init --no-passphrase`.
fn initialised(parent: &Path) -> PathBuf {
    let data = parent.join("data");
    let out = run(&["init", "--no-passphrase", "--data-dir", s(&data)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `serve` on `data` to completion: its exit code and stderr.
fn serve_once(data: &Path) -> (Option<i32>, String, String) {
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--data-dir", s(data)]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_data_directory_other_than_the_default_is_refused_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("srv").join("alknet-dtaa");
    let (code, stdout, stderr) = serve_once(&typo);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        stderr.contains(&format!("alknet init --data-dir {}", typo.display())),
        "{stderr}"
    );
    assert!(stderr.contains("alknet serve --init"), "{stderr}");
    assert!(!stdout.contains("admin token"), "{stdout}");
    assert!(
        !tmp.path().join("srv").exists(),
        "nothing may be created for a refused directory"
    );
}

#[test]
fn serve_init_creates_a_missing_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("srv").join("node");
    let mut node = ServeChild::serve(&["--init", "--data-dir", s(&data)], tmp.path(), None);
    node.wait_serving();
    assert!(
        node.stdout()
            .iter()
            .any(|l| l.starts_with("admin token: alk_")),
        "{:#?}",
        node.stdout()
    );
    assert!(data.join("node.key").exists());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_default_data_directory_is_still_created_on_first_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = ServeChild::serve(&[], tmp.path(), None);
    node.wait_serving();
    assert!(tmp.path().join("alknet-data").join("node.key").exists());
    assert!(
        node.stdout()
            .iter()
            .any(|l| l.starts_with("data directory: ./alknet-data")),
        "{:#?}",
        node.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_data_directory_is_refused_naming_the_first_pid() {
    let node = NodeProcess::start("[diagnostics]\necho = true\n");
    let second = tokio::task::spawn_blocking({
        let data = node.data_dir.path().to_owned();
        move || serve_once(&data)
    })
    .await
    .unwrap();
    let (code, stdout, stderr) = second;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", node.pid())),
        "the holder's pid is named: {stderr}"
    );
    assert!(stderr.contains("same node id"), "{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    // The first node is untouched and still serves.
    let stream = tls_connect(node.addr, &["alknet/echo"]).await.unwrap();
    assert_eq!(
        tls_echo(stream, b"still here").await.unwrap(),
        b"still here"
    );
}

#[test]
fn the_lock_is_released_when_the_node_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    let mut first = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    first.wait_serving();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // SIGKILL ran no destructor: the kernel released the lock.
    let mut second = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    second.wait_serving();
}

#[test]
fn secrets_other_users_may_read_are_refused_with_the_chmod_that_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    // An operator certificate, and a credentials file (which start reads
    // after the permission check: its content does not matter here).
    let (cert, key) = alknet_core::node_key::generate_web_certificate("localhost").unwrap();
    std::fs::write(data.join("fullchain.pem"), cert).unwrap();
    std::fs::write(data.join("privkey.pem"), key).unwrap();
    chmod(&data.join("privkey.pem"), 0o600);
    std::fs::write(data.join("credentials.toml"), "").unwrap();
    chmod(&data.join("credentials.toml"), 0o600);
    let config = std::fs::read_to_string(data.join("alknet.toml")).unwrap();
    let config = config.replace(
        "# cert = \"fullchain.pem\"\n# key = \"privkey.pem\"",
        "cert = \"fullchain.pem\"\nkey = \"privkey.pem\"",
    );
    assert!(config.contains("\ncert = \"fullchain.pem\""));
    std::fs::write(data.join("alknet.toml"), config).unwrap();

    for (file, mode) in [
        ("node.key", 0o644),
        ("web.key", 0o640),
        ("identities.redb", 0o604),
        ("credentials.toml", 0o644),
        ("mnemonic.txt", 0o660),
        ("privkey.pem", 0o644),
    ] {
        let path = data.join(file);
        chmod(&path, mode);
        let (code, stdout, stderr) = serve_once(&data);
        assert_eq!(code, Some(2), "{file}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("run `chmod 600 {}`", path.display())),
            "{file}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("(mode {mode:03o})")),
            "{file}: {stderr}"
        );
        assert!(!stdout.contains("listening on"), "{file}: {stdout}");
        chmod(&path, 0o600);
    }

    chmod(&data, 0o777);
    let (code, _, stderr) = serve_once(&data);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("run `chmod go-w {}`", data.display())),
        "{stderr}"
    );
    chmod(&data, 0o700);

    // Restored, the same directory serves: the refusals were the modes'.
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    node.wait_serving();
}

#[test]
fn a_log_level_that_is_not_one_is_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o700);
    std::fs::write(data.join("alknet.toml"), "log = \"loud\"\n").unwrap();
    let (code, stdout, stderr) = serve_once(&data);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let config = data.join("alknet.toml");
    assert!(
        stderr.contains(&format!("{}: key `log`: expected", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("trace, debug, info, warn, error, off"),
        "{stderr}"
    );
    assert!(!data.join("node.key").exists(), "nothing is initialised");

    std::fs::write(data.join("alknet.toml"), "log_format = \"xml\"\n").unwrap();
    let (code, _, stderr) = serve_once(&data);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("log_format") && stderr.contains("`json`"),
        "{stderr}"
    );

    // ALKNET_LOG overrides the file, and is checked the same way.
    std::fs::write(data.join("alknet.toml"), "").unwrap();
    let out = Command::new(alknet_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data)])
        .env("ALKNET_LOG", "loud")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ALKNET_LOG=\"loud\": expected a log filter"),
        "{stderr}"
    );
    assert!(!data.join("node.key").exists(), "nothing is initialised");
}

#[test]
fn json_log_lines_are_json_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    std::fs::write(data.join("alknet.toml"), "log_format = \"json\"\n").unwrap();
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    node.wait_serving();
    node.wait_for(
        ServeChild::stderr,
        "`node started` log line",
        START_DEADLINE,
        |l| l.contains("node started"),
    );
    let lines = node.stderr();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}; all: {lines:#?}"));
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
        assert!(value["target"].is_string(), "{line}");
    }
    let started = lines
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["message"] == "node started")
        .expect("node started");
    assert_eq!(started["level"], "INFO");
    assert!(started["node_id"].as_str().unwrap().starts_with("ed25519:"));
}

#[test]
fn the_node_runs_as_many_workers_as_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    std::fs::write(
        data.join("alknet.toml"),
        "log_format = \"json\"\nworkers = 1\n",
    )
    .unwrap();
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    node.wait_serving();
    let line = node.wait_for(
        ServeChild::stderr,
        "`runtime started` log line",
        START_DEADLINE,
        |l| l.contains("runtime started"),
    );
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(started["workers"], 1, "{line}");
}

/// One HTTP/1.1 request over TLS with `Authorization: Bearer <token>`; the
/// response's status line.
async fn request_with_token(addr: std::net::SocketAddr, token: &str) -> String {
    let mut stream = tls_connect(addr, &["http/1.1"]).await.unwrap();
    let request = format!(
        "GET /search HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_refused_token_is_logged_by_prefix_with_its_source_and_rate_limited() {
    const SECRET_PART: &str = "Sekr3tRestOfTheToken9876543210abcdefghijkmn";
    let token = format!("alk_Zz9q{SECRET_PART}");
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), Some("info"));
    let addr = node.wait_serving();
    let runtime = alknet_e2e::runtime();

    let status = runtime.block_on(request_with_token(addr, &token));
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let line = node.wait_for(ServeChild::stderr, "auth line", START_DEADLINE, |l| {
        l.contains("alknet::auth") && l.contains("bearer token refused")
    });
    assert!(line.contains("token_prefix=alk_Zz9q"), "{line}");
    assert!(line.contains("source=127.0.0.1:"), "{line}");
    assert!(line.contains("via=\"http\""), "{line}");

    // A burst: at most LINES_PER_WINDOW (3) lines per 10 s window, and the
    // rest summarised once the window ends.
    let burst = Instant::now();
    runtime.block_on(async {
        for _ in 0..30 {
            request_with_token(addr, &token).await;
        }
    });
    let windows = burst.elapsed().as_secs() / 10 + 2;
    node.wait_for(
        ServeChild::stderr,
        "summary of suppressed auth lines",
        Duration::from_secs(30),
        |l| l.contains("suppressed") && l.contains("auth: bearer token refused"),
    );
    let lines = node.stderr();
    let refused = lines
        .iter()
        .filter(|l| l.contains("bearer token refused") && !l.contains("suppressed"))
        .count();
    assert!(
        refused as u64 <= 3 * windows,
        "{refused} lines for 31 refusals: {lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains(SECRET_PART), "the secret was logged: {line}");
    }
}

#[test]
fn an_unknown_client_certificate_is_logged_by_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    std::fs::write(data.join("alknet.toml"), "[diagnostics]\necho = true\n").unwrap();
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), Some("info"));
    let addr = node.wait_serving();
    let client = NodeKey::from_seed(&[7; 32]);
    let echoed = alknet_e2e::runtime().block_on(async {
        let config = tls::client_config(
            ServerVerification::Insecure,
            Some(&client),
            &[Alpn::new("alknet/echo")],
            false,
        )
        .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls_echo(stream, b"anonymous").await.unwrap()
    });
    assert_eq!(echoed, b"anonymous", "the connection goes on, anonymous");
    let line = node.wait_for(ServeChild::stderr, "auth line", START_DEADLINE, |l| {
        l.contains("alknet::auth") && l.contains("client certificate not known")
    });
    assert!(
        line.contains(&format!("fingerprint={}", client.node_id())),
        "{line}"
    );
    assert!(line.contains("source=127.0.0.1:"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_names_the_operator_certificate_browsers_get() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    let (cert, key) = alknet_core::node_key::generate_web_certificate("operator.example").unwrap();
    std::fs::write(data.join("fullchain.pem"), cert).unwrap();
    std::fs::write(data.join("privkey.pem"), key).unwrap();
    chmod(&data.join("privkey.pem"), 0o600);
    std::fs::write(
        data.join("alknet.toml"),
        "[tls]\ncert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
    )
    .unwrap();
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), None);
    let addr = tokio::task::block_in_place(|| node.wait_serving());
    let console = node
        .stdout()
        .into_iter()
        .find(|l| l.starts_with("console: "))
        .expect("console line");
    assert!(
        console.contains(&format!(
            "(operator certificate {}",
            data.join("fullchain.pem").display()
        )),
        "{console}"
    );
    assert!(!console.contains("self-signed"), "{console}");
    // And it is what a browser gets.
    let served = tls_connect(addr, &["http/1.1"]).await.unwrap();
    let leaf = served.get_ref().1.peer_certificates().unwrap()[0].clone();
    let operator =
        tls::load_pem_pair(&data.join("fullchain.pem"), &data.join("privkey.pem")).unwrap();
    assert_eq!(leaf, operator.chain[0]);
}

#[test]
fn a_refused_token_on_the_call_protocol_is_logged_with_its_transport() {
    use alknet_e2e::raw_call::{Transport, open_at};
    const SECRET_PART: &str = "CallSekr3tRest0fTheToken9876543210abcdefghij";
    let token = format!("alk_Qq7w{SECRET_PART}");
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    let mut node = ServeChild::serve(&["--data-dir", s(&data)], tmp.path(), Some("info"));
    let addr = node.wait_serving();
    alknet_e2e::runtime().block_on(async {
        let mut session = open_at(addr, Transport::Quic).await;
        session
            .call_as(
                "1",
                "services/list",
                serde_json::json!({}),
                Some(&token),
                None,
            )
            .await;
        let (id, _refused) = session.expect().await;
        assert_eq!(id, "1");
    });
    let line = node.wait_for(ServeChild::stderr, "auth line", START_DEADLINE, |l| {
        l.contains("alknet::auth") && l.contains("bearer token refused")
    });
    assert!(line.contains("token_prefix=alk_Qq7w"), "{line}");
    assert!(line.contains("via=\"alknet/call\""), "{line}");
    assert!(line.contains("source=127.0.0.1:"), "{line}");
    assert!(!line.contains(SECRET_PART), "{line}");
}

#[test]
fn every_command_that_opens_secrets_refuses_them_exposed_as_serve_does() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    std::fs::write(data.join("credentials.toml"), "").unwrap();
    chmod(&data.join("credentials.toml"), 0o600);
    let dir = s(&data);
    let peer = format!("ed25519:{}", "ab".repeat(32));
    let commands: [&[&str]; 15] = [
        &["token", "create", "--scopes", "admin", "--data-dir", dir],
        &["token", "list", "--data-dir", dir],
        &["token", "revoke", "alk_3xYz", "--data-dir", dir],
        &[
            "peer",
            "add",
            &peer,
            "--id",
            "p",
            "--scopes",
            "x",
            "--data-dir",
            dir,
        ],
        &["peer", "list", "--data-dir", dir],
        &["peer", "remove", &peer, "--data-dir", dir],
        &[
            "vault",
            "derive",
            "m/74'/0'/0'/0'",
            "--public",
            "--data-dir",
            dir,
        ],
        &["vault", "encrypt", "--data-dir", dir],
        &["vault", "decrypt", "--data-dir", dir],
        &["vault", "rotate", "--to", "3", "--data-dir", dir],
        &["vault", "seal", "--data-dir", dir],
        &["vault", "unseal", "--data-dir", dir],
        &["vault", "show-mnemonic", "--data-dir", dir],
        &["import", "check", "--data-dir", dir],
        &["token", "list", "--json", "--data-dir", dir],
    ];
    let exposed = [
        ("identities.redb", 0o604),
        ("node.key", 0o644),
        ("mnemonic.txt", 0o640),
        ("web.key", 0o644),
        ("credentials.toml", 0o660),
    ];
    for (i, args) in commands.iter().enumerate() {
        let (file, mode) = exposed[i % exposed.len()];
        let path = data.join(file);
        chmod(&path, mode);
        let out = run(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            !out.status.success(),
            "{args:?} with {file} {mode:o}: {stdout}"
        );
        assert!(
            stderr.contains(&format!("is open to other users (mode {mode:03o})"))
                && stderr.contains(&format!("run `chmod 600 {}`", path.display())),
            "{args:?} with {file} {mode:o}: {stderr}"
        );
        // Nothing was printed, the mnemonic least of all.
        assert!(stdout.trim().is_empty(), "{args:?}: {stdout}");
        chmod(&path, 0o600);
    }

    chmod(&data, 0o777);
    let out = run(&["peer", "list", "--data-dir", dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("run `chmod go-w {dir}`")),
        "{stderr}"
    );
    chmod(&data, 0o700);

    // Restored, the same commands run: the refusals were the modes'.
    for args in [
        &["token", "list", "--data-dir", dir][..],
        &[
            "vault",
            "derive",
            "m/74'/0'/0'/0'",
            "--public",
            "--data-dir",
            dir,
        ],
        &["import", "check", "--data-dir", dir],
    ] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `alknet <args>` with `stdin`; its exit status must be success. Returns
/// standard output.
fn run_ok(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(alknet_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The one JSON object a command printed, as one line.
fn one_object(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stdout}");
    let value: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert!(value.is_object(), "{value}");
    value
}

#[test]
fn vault_commands_print_one_json_object_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = initialised(tmp.path());
    let dir = s(&data);
    let path = "m/74'/0'/0'/0'";

    let text = run_ok(
        &["vault", "derive", path, "--public", "--data-dir", dir],
        "",
    );
    let json = one_object(&run_ok(
        &[
            "vault",
            "derive",
            path,
            "--public",
            "--json",
            "--data-dir",
            dir,
        ],
        "",
    ));
    assert_eq!(json["public_key"], text.trim(), "{json}");
    assert_eq!(json["key_type"], "ed25519");
    assert!(json["path"].as_str().unwrap().starts_with("m/74"), "{json}");
    assert!(json.get("private_key").is_none(), "{json}");
    let private = one_object(&run_ok(
        &["vault", "derive", path, "--json", "--data-dir", dir],
        "",
    ));
    assert_eq!(private["private_key"].as_str().unwrap().len(), 64);

    let sealed = run_ok(&["vault", "encrypt", "--data-dir", dir], "hunter2\n");
    let opened = one_object(&run_ok(
        &["vault", "decrypt", "--json", "--data-dir", dir],
        &sealed,
    ));
    assert_eq!(opened, serde_json::json!({ "plaintext": "hunter2" }));

    let phrase = run_ok(&["vault", "show-mnemonic", "--data-dir", dir], "");
    let shown = one_object(&run_ok(
        &["vault", "show-mnemonic", "--json", "--data-dir", dir],
        "",
    ));
    assert_eq!(shown["mnemonic"], phrase.trim());
    assert_eq!(shown["words"], 24);

    // seal and unseal say where the mnemonic went, never what it is.
    let passphrase = tmp.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let state = one_object(&run_ok(
        &[
            "vault",
            "seal",
            "--json",
            "--new-passphrase-file",
            s(&passphrase),
            "--data-dir",
            dir,
        ],
        "",
    ));
    assert_eq!(state["sealed"], true, "{state}");
    assert_eq!(
        state["mnemonic_file"],
        s(&data.join("mnemonic.sealed")),
        "{state}"
    );
    let state = one_object(&run_ok(
        &[
            "vault",
            "unseal",
            "--json",
            "--passphrase-file",
            s(&passphrase),
            "--data-dir",
            dir,
        ],
        "",
    ));
    assert_eq!(state["sealed"], false, "{state}");
    assert_eq!(state["mnemonic_file"], s(&data.join("mnemonic.txt")));
    for words in phrase.split_whitespace().take(3) {
        assert!(!state.to_string().contains(&format!("\"{words} ")));
    }
}

#[test]
fn serve_json_prints_the_banner_as_one_object() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let banner = |args: &[&str]| {
        let mut node = ServeChild::serve(args, tmp.path(), None);
        let line = node.wait_for(ServeChild::stdout, "JSON banner", START_DEADLINE, |l| {
            l.starts_with('{')
        });
        let banner: serde_json::Value = serde_json::from_str(&line).expect("JSON banner");
        assert_eq!(
            node.stdout().len(),
            1,
            "only the banner: {:#?}",
            node.stdout()
        );
        (node, banner)
    };

    let (first, created) = banner(&["--init", "--json", "--data-dir", s(&data)]);
    let addr: std::net::SocketAddr = created["listen"].as_str().unwrap().parse().unwrap();
    assert!(
        created["admin_token"].as_str().unwrap().starts_with("alk_"),
        "{created}"
    );
    assert_eq!(created["data_dir"], s(&data));
    assert_eq!(created["certificate"], "self-signed certificate");
    assert_eq!(created["transports"], serde_json::json!(["quic", "tls"]));
    let alpns = created["alpns"].as_array().unwrap();
    assert!(alpns.contains(&"alknet/call".into()) && alpns.contains(&"h2".into()));
    assert_eq!(created["sftp"]["root"], s(&data.join("files")), "{created}");
    assert_eq!(created["git"]["root"], s(&data.join("git")), "{created}");
    assert_eq!(
        created["console"],
        format!("https://{addr}/console").as_str()
    );
    assert!(
        !created["node_id"].as_str().unwrap().is_empty(),
        "{created}"
    );
    time::OffsetDateTime::parse(
        created["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert!(created.get("mnemonic").is_none(), "{created}");
    assert!(
        first
            .stderr()
            .iter()
            .any(|l| l.contains("admin token is in the banner")),
        "{:#?}",
        first.stderr()
    );
    // It is what it says: the address serves, and the token is the admin's.
    let token = created["admin_token"].as_str().unwrap().to_owned();
    alknet_e2e::runtime().block_on(async {
        let mut stream = tls_connect(addr, &["http/1.1"]).await.unwrap();
        let request = format!(
            "GET /search HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
             connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("admin/tree"), "{response}");
    });
    drop(first);

    // A later start created no token: none is printed.
    let (_second, again) = banner(&["--json", "--data-dir", s(&data)]);
    assert_eq!(again["node_id"], created["node_id"]);
    assert!(again["admin_token"].is_null(), "{again}");
}
