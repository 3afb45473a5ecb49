//! `alknet/ssh` driven by stock OpenSSH (issue #16): the real node, the
//! Debian `ssh` client, over the plain listener, TCP+TLS (`openssl s_client`
//! as the ProxyCommand, no alknet binary on the client) and QUIC (`alknet
//! proxy`), with the host key the vault derives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alknet_e2e::eventually_blocking;
use alknet_e2e::ssh::{Admin, Fixture, Route, ed25519_fingerprint, output, text};
use serde_json::{Value, json};

#[test]
fn a_command_prints_and_its_exit_status_returns_on_every_path() {
    let fixture = Fixture::start("");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    for path in [Route::Plain, Route::Tls, Route::Quic] {
        let out = output(
            fixture
                .ssh(path, &key)
                .arg("echo hi; echo $ALKNET_IDENTITY; exit 3"),
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{path:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "hi\nalice\n", "{path:?}");
    }
}

#[test]
fn an_unknown_key_is_denied_and_logged_with_its_fingerprint() {
    let fixture = Fixture::start("");
    let stranger = fixture.key("stranger");
    let out = output(fixture.ssh(Route::Plain, &stranger).arg("true"));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    let fingerprint = ed25519_fingerprint(&stranger);
    assert!(
        eventually_blocking(Duration::from_secs(5), || fixture
            .node
            .log()
            .iter()
            .any(|l| l.contains("alknet::auth") && l.contains(&fingerprint))),
        "{:#?}",
        fixture.node.log()
    );
}

#[test]
fn exec_scopes_run_their_commands_without_a_shell_and_refuse_the_rest() {
    let fixture = Fixture::start("");
    let key = fixture.key("deploy");
    fixture.allow(&key, "deploy", "ssh:exec:echo");
    let allowed = output(
        fixture
            .ssh(Route::Plain, &key)
            .arg("echo 'a  b' ; rm -rf /nothing"),
    );
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    // Split as a shell would, run without one: `;` is an argument.
    assert_eq!(text(&allowed.stdout), "a  b ; rm -rf /nothing\n");
    let refused = output(fixture.ssh(Route::Plain, &key).arg("id"));
    assert_eq!(
        refused.status.code(),
        Some(126),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        text(&refused.stderr).contains("ssh:exec"),
        "{}",
        text(&refused.stderr)
    );
    // A terminal needs ssh:shell, and says so.
    let shell = output(fixture.ssh(Route::Plain, &key).arg("-tt"));
    assert_eq!(shell.status.code(), Some(126));
    assert!(
        text(&shell.stderr).contains("ssh:shell") || text(&shell.stdout).contains("ssh:shell"),
        "stdout {} stderr {}",
        text(&shell.stdout),
        text(&shell.stderr)
    );
}

/// A loopback HTTP server answering every request with `body`.
fn http_server(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ssh -N` with `forward` (`-L …`, `-R …`, `-D …`), running until dropped.
struct Forwarding(Child);

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn forwarding(fixture: &Fixture, key: &Path, forward: &[&str]) -> Forwarding {
    let child = fixture
        .ssh(Route::Plain, key)
        .args(["-N", "-o", "ExitOnForwardFailure=yes"])
        .args(forward)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    Forwarding(child)
}

/// Waits until something listens on `port`, read from the kernel's socket
/// table rather than by connecting: a probe connection would open a
/// forwarding channel of its own.
fn wait_for_port(port: u16) {
    let listening = || {
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
            std::fs::read_to_string(table).is_ok_and(|text| {
                text.lines().skip(1).any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 3
                        && fields[3] == "0A"
                        && fields[1]
                            .rsplit(':')
                            .next()
                            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                            == Some(port)
                })
            })
        })
    };
    assert!(
        eventually_blocking(Duration::from_secs(20), listening),
        "nothing listens on {port}"
    );
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}

#[test]
fn local_forwarding_reaches_a_loopback_server_only_with_its_scope() {
    let fixture = Fixture::start("");
    let web = http_server("through -L");
    let allowed = fixture.key("allowed");
    fixture.allow(
        &allowed,
        "allowed",
        &format!("ssh:forward:127.0.0.1:{}", web.port()),
    );
    let refused = fixture.key("refused");
    fixture.allow(&refused, "refused", "ssh:forward:127.0.0.1:1");

    let port = free_port();
    let _ssh = forwarding(&fixture, &allowed, &["-L", &format!("{port}:{web}")]);
    wait_for_port(port);
    let out = curl(&[&format!("http://127.0.0.1:{port}/")]);
    assert_eq!(text(&out.stdout), "through -L", "{}", text(&out.stderr));

    let port = free_port();
    let _ssh = forwarding(&fixture, &refused, &["-L", &format!("{port}:{web}")]);
    wait_for_port(port);
    let out = curl(&[&format!("http://127.0.0.1:{port}/")]);
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("through -L"));
}

#[test]
fn remote_forwarding_listens_on_the_node_only_with_its_scope() {
    let fixture = Fixture::start("");
    let web = http_server("through -R");
    let port = free_port();
    let allowed = fixture.key("allowed");
    fixture.allow(&allowed, "allowed", &format!("ssh:listen:{port}"));
    let _ssh = forwarding(&fixture, &allowed, &["-R", &format!("{port}:{web}")]);
    wait_for_port(port);
    let out = curl(&[&format!("http://127.0.0.1:{port}/")]);
    assert_eq!(text(&out.stdout), "through -R", "{}", text(&out.stderr));

    let refused = fixture.key("refused");
    fixture.allow(&refused, "refused", "ssh:shell");
    let other = free_port();
    let mut ssh = forwarding(&fixture, &refused, &["-R", &format!("{other}:{web}")]);
    let status = wait_exit(&mut ssh.0, Duration::from_secs(20));
    assert_eq!(status, Some(255));
    let mut stderr = String::new();
    ssh.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("remote port forwarding failed"), "{stderr}");
}

fn wait_exit(child: &mut Child, deadline: Duration) -> Option<i32> {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn dynamic_forwarding_serves_curl_socks5_hostname_within_the_scope() {
    let fixture = Fixture::start("");
    let web = http_server("through -D");
    let allowed = fixture.key("allowed");
    fixture.allow(&allowed, "allowed", "ssh:forward:localhost:*");
    let port = free_port();
    let _ssh = forwarding(&fixture, &allowed, &["-D", &port.to_string()]);
    wait_for_port(port);
    let socks = format!("127.0.0.1:{port}");
    // The name is resolved on the node.
    let out = curl(&[
        "--socks5-hostname",
        &socks,
        &format!("http://localhost:{}/", web.port()),
    ]);
    assert_eq!(text(&out.stdout), "through -D", "{}", text(&out.stderr));
    // The address is not the name the scope allows.
    let out = curl(&["--socks5-hostname", &socks, &format!("http://{web}/")]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
}

/// Runs `command` on the node over plain SSH in the background.
fn background(fixture: &Fixture, key: &Path, command: &str) -> Forwarding {
    let child = fixture
        .ssh(Route::Plain, key)
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh runs");
    Forwarding(child)
}

fn tree(admin: &Admin<'_>) -> Value {
    admin.call("admin/tree", json!({}))
}

/// Every `ssh-channel` under an `ssh-conn`, as (id, detail).
fn channels(tree: &Value) -> Vec<(String, String)> {
    fn walk(node: &Value, parent: &str, found: &mut Vec<(String, String)>) {
        let name = node["name"].as_str().unwrap_or_default();
        if name == "ssh-channel" && parent == "ssh-conn" {
            found.push((
                node["id"].as_str().unwrap_or_default().to_owned(),
                node["detail"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, name, found);
        }
    }
    let mut found = Vec::new();
    walk(&tree["root"], "", &mut found);
    found
}

fn processes_running(marker: &str) -> bool {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    out.status.success()
}

/// A `sleep` no other test (or leftover process) runs: fractional seconds
/// unique to this test process.
fn unique_sleep(base: u32) -> String {
    format!("sleep {base}.{}", std::process::id())
}

#[test]
fn the_tree_lists_channels_and_killing_one_ends_it_and_its_process_only() {
    let fixture = Fixture::start("");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let admin = fixture.admin();
    let (one, two) = (unique_sleep(301), unique_sleep(302));
    let mut first = background(&fixture, &key, &one);
    let mut second = background(&fixture, &key, &two);
    let mut listed = Vec::new();
    assert!(
        eventually_blocking(Duration::from_secs(20), || {
            listed = channels(&tree(&admin));
            listed.iter().any(|(_, d)| *d == format!("exec: {one}"))
                && listed.iter().any(|(_, d)| *d == format!("exec: {two}"))
        }),
        "{listed:#?}"
    );
    assert!(processes_running(&one) && processes_running(&two));
    let (victim, _) = listed
        .iter()
        .find(|(_, d)| *d == format!("exec: {one}"))
        .unwrap()
        .clone();
    admin.call("admin/kill", json!({"id": victim}));
    assert!(wait_exit(&mut first.0, Duration::from_secs(20)).is_some());
    assert!(
        eventually_blocking(Duration::from_secs(10), || !processes_running(&one)),
        "the killed channel's process is gone"
    );
    assert!(
        second.0.try_wait().unwrap().is_none(),
        "the other channel runs on"
    );
    assert!(processes_running(&two));
    // Closing the connection kills its processes too.
    drop(second);
    assert!(
        eventually_blocking(Duration::from_secs(10), || !processes_running(&two)),
        "no orphans after the client goes away"
    );
}

/// A channel killed while its client still sends: its process reads
/// nothing, so the client's data backs up into russh's queue for the
/// channel, which the connection's one loop waits on. The close must still
/// go out.
#[test]
fn a_channel_killed_while_its_client_floods_it_still_closes() {
    let fixture = Fixture::start("");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let admin = fixture.admin();
    let sleeper = unique_sleep(303);
    let mut flooding = fixture
        .ssh(Route::Plain, &key)
        .arg(&sleeper)
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh runs");
    // Past the pipe to `sleep` and the channel's own stdin queue: the
    // channel has stopped taking data, so the client's backs up in russh.
    const BACKED_UP: u64 = 256 * 1024;
    let mut victim = None;
    assert!(
        eventually_blocking(Duration::from_secs(20), || {
            victim = find_channel(&tree(&admin)["root"], &format!("exec: {sleeper}"))
                .filter(|(_, bytes_in)| *bytes_in >= BACKED_UP)
                .map(|(id, _)| id);
            victim.is_some()
        }),
        "the channel took {BACKED_UP} bytes"
    );
    admin.call("admin/kill", json!({"id": victim.unwrap()}));
    assert!(
        wait_exit(&mut flooding, Duration::from_secs(20)).is_some(),
        "ssh saw its channel close"
    );
    assert!(
        eventually_blocking(Duration::from_secs(10), || !processes_running(&sleeper)),
        "the killed channel's process is gone"
    );
}

/// The id and bytes in of the channel whose detail is `detail`.
fn find_channel(tree: &Value, detail: &str) -> Option<(String, u64)> {
    if tree["name"] == "ssh-channel" && tree["detail"] == detail {
        return Some((tree["id"].as_str()?.to_owned(), tree["bytes_in"].as_u64()?));
    }
    tree["children"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|child| find_channel(child, detail))
}

#[test]
fn a_panicking_ssh_connection_leaves_the_others_serving() {
    let fixture = Fixture::start("[diagnostics]\ncall_ops = true\nfault = true\n");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let steady_sleep = unique_sleep(303);
    let mut steady = background(&fixture, &key, &steady_sleep);
    let admin = fixture.admin();
    assert!(eventually_blocking(Duration::from_secs(20), || channels(
        &tree(&admin)
    )
    .iter()
    .any(|(_, d)| *d == format!("exec: {steady_sleep}"))));
    let out = output(
        fixture
            .ssh(Route::Plain, &key)
            .arg(alknet_ssh::FAULT_PANIC_COMMAND),
    );
    assert_eq!(
        out.status.code(),
        Some(255),
        "the panicking connection ends"
    );
    assert!(
        steady.0.try_wait().unwrap().is_none(),
        "the other connection runs on"
    );
    let out = output(fixture.ssh(Route::Plain, &key).arg("echo still"));
    assert_eq!(text(&out.stdout), "still\n", "{}", text(&out.stderr));
    let echoed = admin.call("diag/echo", json!({"after": "panic"}));
    assert_eq!(echoed, json!({"after": "panic"}));
    drop(steady);
    assert!(
        eventually_blocking(Duration::from_secs(10), || !processes_running(
            &steady_sleep
        )),
        "the surviving connection's process ends with it"
    );
}

/// Bytes that are not SSH, on the plain listener and inside TLS, and a key
/// exchange that stops half-way: each connection ends (the half-way one at
/// the login grace time) and the node serves on.
#[test]
fn garbage_and_a_truncated_key_exchange_end_their_connections_only() {
    let fixture = Fixture::start("login_grace_time = \"2s\"\n");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let admin = fixture.admin();

    let mut garbage = TcpStream::connect(fixture.plain).unwrap();
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise);
    garbage
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest); // ends: closed by the node
    assert!(
        rest.len() < 4096,
        "the node answers garbage with a banner at most"
    );

    // Identification and half a KEXINIT, then silence.
    let mut truncated = TcpStream::connect(fixture.plain).unwrap();
    truncated.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    truncated.write_all(&[0, 0, 4, 0, 10, 20]).unwrap();
    let opened = Instant::now();
    assert!(
        eventually_blocking(Duration::from_secs(10), || count_named(
            &tree(&admin),
            "ssh-conn"
        ) >= 1),
        "the half-way connection is listed"
    );
    truncated
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = truncated.read_to_end(&mut rest);
    let held = opened.elapsed();
    assert!(
        held < Duration::from_secs(15),
        "closed at the login grace time, held {held:?}"
    );
    assert!(
        eventually_blocking(Duration::from_secs(10), || count_named(
            &tree(&admin),
            "ssh-conn"
        ) == 0),
        "no SSH connection left"
    );
    let out = output(fixture.ssh(Route::Tls, &key).arg("echo served"));
    assert_eq!(text(&out.stdout), "served\n", "{}", text(&out.stderr));
}

fn count_named(tree: &Value, name: &str) -> usize {
    fn walk(node: &Value, name: &str) -> usize {
        let own = usize::from(node["name"] == name);
        own + node["children"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| walk(c, name))
            .sum::<usize>()
    }
    walk(&tree["root"], name)
}

/// A thousand logins with an unknown key from one address: past the
/// per-address limit its connections are refused at once, memory stays
/// bounded, and a login from another address is served throughout.
#[test]
fn a_thousand_failed_logins_from_one_address_disturb_nobody_else() {
    let fixture = Fixture::start("max_failed_logins_per_minute = 20\n");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let stranger = fixture.key("stranger");
    let before = fixture.node.rss_bytes();
    let attempts = 1000;
    let denied = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let fixture = &fixture;
            let stranger = &stranger;
            let denied = &denied;
            scope.spawn(move || {
                for _ in (worker..attempts).step_by(8) {
                    let out = output(
                        fixture
                            .ssh(Route::Plain, stranger)
                            .args(["-o", "BindAddress=127.0.0.2"])
                            .arg("true"),
                    );
                    if out.status.code() == Some(255) {
                        denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        // Meanwhile, the owner of a known key logs in from 127.0.0.1.
        let out = output(fixture.ssh(Route::Plain, &key).arg("echo unbothered"));
        assert_eq!(text(&out.stdout), "unbothered\n", "{}", text(&out.stderr));
    });
    assert_eq!(denied.load(std::sync::atomic::Ordering::Relaxed), attempts);
    let log = fixture.node.log();
    assert!(
        log.iter().any(|l| l.contains("too many failed logins")),
        "{log:#?}"
    );
    let grown = fixture.node.rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    let out = output(fixture.ssh(Route::Plain, &key).arg("echo still"));
    assert_eq!(text(&out.stdout), "still\n");
}

/// A forward whose client stops reading: the source blocks once the windows
/// fill, the node holds a bounded amount, other channels run, and every
/// byte arrives once the client reads again.
#[test]
fn a_forward_whose_client_stops_reading_holds_bounded_memory() {
    const TOTAL: usize = 256 << 20;
    let fixture = Fixture::start("");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell,ssh:forward:127.0.0.1:*");
    let source = TcpListener::bind("127.0.0.1:0").unwrap();
    let source_addr = source.local_addr().unwrap();
    // Each connection to the source gets the whole stream; `written` counts
    // the latest (the port probe below makes one that goes away at once).
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    std::thread::spawn(move || {
        for stream in source.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let chunk = vec![0x5a_u8; 64 * 1024];
                let mut sent = 0;
                while sent < TOTAL {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                    sent += chunk.len();
                    counter.store(sent, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let before = fixture.node.rss_bytes();
    let port = free_port();
    let _ssh = forwarding(&fixture, &key, &["-L", &format!("{port}:{source_addr}")]);
    wait_for_port(port);
    let mut reader = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The source stalls: what it wrote stops growing, far below the total.
    let mut last = usize::MAX;
    assert!(
        eventually_blocking(Duration::from_secs(30), || {
            let now = written.load(std::sync::atomic::Ordering::Relaxed);
            let stalled = now == last && now > 0;
            last = now;
            std::thread::sleep(Duration::from_millis(300));
            stalled
        }),
        "the source never stalled"
    );
    let stalled_at = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stalled_at < 64 << 20, "{stalled_at} bytes in flight");
    let grown = fixture.node.rss_bytes().saturating_sub(before);
    assert!(grown < 48 << 20, "the node holds {grown} bytes more");
    let out = output(
        fixture
            .ssh(Route::Plain, &key)
            .arg("echo other channels run"),
    );
    assert_eq!(text(&out.stdout), "other channels run\n");
    // Reading again, everything arrives.
    let mut received = 0usize;
    let mut buffer = vec![0u8; 256 * 1024];
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while received < TOTAL {
        let read = reader.read(&mut buffer).expect("data keeps coming");
        assert!(read > 0, "ended after {received} bytes");
        assert!(buffer[..read].iter().all(|&b| b == 0x5a));
        received += read;
    }
}

/// A CA key pair in `dir`, returning its public line.
fn certificate_authority(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Signs `key`'s public half with the CA `ca` for `principals`; ssh picks
/// up `<key>-cert.pub` beside the key.
fn certify(ca: &Path, key: &Path, principals: &str) {
    let signed = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "laptop-of-alice", "-n", principals, "-V", "-5m:+1h"])
        .arg(key.with_extension("pub"))
        .status()
        .unwrap();
    assert!(signed.success());
}

#[test]
fn user_certificates_from_a_configured_ca_log_in_as_their_principal() {
    let cas = tempfile::tempdir().unwrap();
    let trusted = certificate_authority(cas.path(), "trusted-ca");
    let _untrusted = certificate_authority(cas.path(), "untrusted-ca");
    let fixture = Fixture::start(&format!(
        "[[ssh.user_ca]]\nkey = \"{trusted}\"\nscopes = [\"ssh:shell\"]\nprincipals = [\"alice\", \"carol\"]\n"
    ));
    let alice = fixture.key("alice");
    certify(&cas.path().join("trusted-ca"), &alice, "alice,bob");
    let as_user = |key: &Path, user: &str| {
        output(
            fixture
                .ssh(Route::Plain, key)
                .args(["-l", user])
                .arg("echo $ALKNET_IDENTITY"),
        )
    };
    let out = as_user(&alice, "alice");
    assert_eq!(text(&out.stdout), "alice\n", "{}", text(&out.stderr));
    // In the certificate but not allowed by the CA's entry; allowed by the
    // entry but not in the certificate.
    for user in ["bob", "carol"] {
        let out = as_user(&alice, user);
        assert_eq!(out.status.code(), Some(255), "{user}");
        assert!(text(&out.stderr).contains("Permission denied (publickey)"));
    }
    let mallory = fixture.key("mallory");
    certify(&cas.path().join("untrusted-ca"), &mallory, "alice");
    let out = as_user(&mallory, "alice");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        eventually_blocking(Duration::from_secs(5), || fixture
            .node
            .log()
            .iter()
            .any(|l| l.contains("signed by a CA not in ssh.user_ca"))),
        "{:#?}",
        fixture.node.log()
    );
}

#[test]
fn ssh_keyscan_on_the_plain_listener_sees_the_vault_host_key() {
    let fixture = Fixture::start("");
    let out = Command::new("ssh-keyscan")
        .args([
            "-t",
            "ed25519",
            "-p",
            &fixture.plain.port().to_string(),
            "127.0.0.1",
        ])
        .output()
        .expect("ssh-keyscan runs");
    let published = std::fs::read_to_string(
        fixture
            .node
            .data_dir
            .path()
            .join("ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    let published: Vec<&str> = published.split_whitespace().take(2).collect();
    let scanned = text(&out.stdout);
    let scanned: Vec<&str> = scanned.split_whitespace().skip(1).take(2).collect();
    assert_eq!(scanned, published, "{}", text(&out.stderr));
}

/// Channels past `ssh.max_channels` are refused on one connection (shared
/// by OpenSSH's connection multiplexing); the others run on.
#[test]
fn channels_past_the_cap_are_refused_on_one_connection() {
    let fixture = Fixture::start("max_channels = 2\n");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let socket = fixture.client.path().join("mux");
    let multiplexed = |command: &mut Command| {
        command
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()));
    };
    let mut master = fixture.ssh(Route::Plain, &key);
    master.args(["-M", "-N", "-o", "ControlMaster=yes"]);
    multiplexed(&mut master);
    let _master = Forwarding(
        master
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        eventually_blocking(Duration::from_secs(20), || socket.exists()),
        "the master connection is up"
    );
    let session = |command: &str| {
        let mut ssh = fixture.ssh(Route::Plain, &key);
        ssh.args(["-o", "ControlMaster=no"]);
        multiplexed(&mut ssh);
        ssh.arg(command);
        ssh
    };
    let (one, two) = (unique_sleep(311), unique_sleep(312));
    let _first = Forwarding(session(&one).stdin(Stdio::null()).spawn().unwrap());
    let _second = Forwarding(session(&two).stdin(Stdio::null()).spawn().unwrap());
    assert!(eventually_blocking(Duration::from_secs(20), || {
        processes_running(&one) && processes_running(&two)
    }));
    // The shared connection refuses a third channel; OpenSSH then says so
    // and runs the command over a connection of its own.
    let third = output(&mut session("echo third"));
    assert!(
        text(&third.stderr).contains("Session open refused by peer"),
        "{}",
        text(&third.stderr)
    );
    assert!(
        eventually_blocking(Duration::from_secs(5), || fixture
            .node
            .log()
            .iter()
            .any(|l| l.contains("the connection holds ssh.max_channels"))),
        "{:#?}",
        fixture.node.log()
    );
    assert!(processes_running(&one) && processes_running(&two));
}

/// A command killed by a signal reports `exit-signal`, not an exit status
/// (OpenSSH's client then exits with 255 and names it with `-v`).
#[test]
fn a_command_killed_by_a_signal_reports_exit_signal() {
    let fixture = Fixture::start("");
    let key = fixture.key("alice");
    fixture.allow(&key, "alice", "ssh:shell");
    let out = output(
        fixture
            .ssh(Route::Plain, &key)
            .arg("-v")
            .arg("kill -TERM $$"),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("rtype exit-signal"), "{stderr}");
    assert!(!stderr.contains("rtype exit-status"), "{stderr}");
}
