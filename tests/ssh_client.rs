//! The SSH client side of the CLI (issue #16), through the real binary:
//! `peer add` with OpenSSH keys, `alknet proxy` piping a stream, and — once
//! the node serves `alknet/ssh` — `alknet ssh-config` and `alknet proxy
//! --socks5` with curl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alknet_e2e::process::{NodeProcess, isolated, json_stdout, output_of};
use base64::Engine;

const ECHO_CONFIG: &str = "[diagnostics]\necho = true\n";
const DEADLINE: Duration = Duration::from_secs(20);

/// `ssh-keygen -t kind` into `dir/name` (no passphrase); returns the
/// private key's path.
fn ssh_keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "test@e2e", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (Debian: openssh-client)");
    assert!(status.success());
    path
}

fn pub_path(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

/// A data directory made by `alknet init`.
fn data_dir(home: &Path) -> PathBuf {
    let data = home.join("data");
    let out = output_of(isolated(
        home,
        &[
            "init",
            "--no-passphrase",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

#[test]
fn peer_add_takes_openssh_public_keys_in_every_form() {
    let home = tempfile::tempdir().unwrap();
    let data = data_dir(home.path());
    let data = data.to_str().unwrap();
    let ed25519 = ssh_keygen(home.path(), "id_ed25519", "ed25519");
    let ecdsa = ssh_keygen(home.path(), "id_ecdsa", "ecdsa");
    let ed25519_line = std::fs::read_to_string(pub_path(&ed25519)).unwrap();

    // The Ed25519 key's name is its raw 32 bytes: the last 32 of the blob.
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ed25519_line.split_whitespace().nth(1).unwrap())
        .unwrap();
    let expected = format!("ed25519:{}", hex(&blob[blob.len() - 32..]));

    let add = |peer: &str, stdin: Option<&str>| {
        let mut command = isolated(
            home.path(),
            &[
                "peer",
                "add",
                peer,
                "--id",
                "alice",
                "--scopes",
                "ssh:shell",
                "--json",
            ],
        );
        command.args(["--data-dir", data]);
        match stdin {
            None => output_of(command),
            Some(text) => {
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        }
    };
    let pub_file = pub_path(&ed25519);
    let at_file = format!("@{}", pub_file.display());
    for (peer, stdin) in [
        (pub_file.to_str().unwrap(), None),
        (ed25519_line.trim(), None),
        ("-", Some(ed25519_line.as_str())),
        (at_file.as_str(), None),
    ] {
        let printed = json_stdout(&add(peer, stdin));
        assert_eq!(printed["fingerprint"], expected.as_str(), "{peer}");
        assert_eq!(printed["key_type"], "ssh-ed25519", "{peer}");
    }

    // Other key types are named as `ssh-keygen -l` names them.
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path(&ecdsa))
        .output()
        .unwrap();
    let keygen_name = String::from_utf8(listed.stdout).unwrap();
    let keygen_name = keygen_name.split_whitespace().nth(1).unwrap().to_owned();
    assert!(keygen_name.starts_with("SHA256:"), "{keygen_name}");
    let printed = json_stdout(&add(pub_path(&ecdsa).to_str().unwrap(), None));
    assert_eq!(printed["fingerprint"], keygen_name.as_str());
    assert_eq!(printed["key_type"], "ecdsa-sha2-nistp256");

    // Text output names the fingerprint and the key type.
    let out = output_of(isolated(home.path(), &["peer", "list", "--data-dir", data]));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains(&expected) && listed.contains(&keygen_name),
        "{listed}"
    );

    // `peer remove` takes the same forms.
    let out = output_of(isolated(
        home.path(),
        &[
            "peer",
            "remove",
            pub_path(&ecdsa).to_str().unwrap(),
            "--data-dir",
            data,
        ],
    ));
    let said = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        said.trim(),
        format!("removed peer {keygen_name} (ecdsa-sha2-nistp256 key) (alice)")
    );
    let out = output_of(isolated(
        home.path(),
        &["peer", "remove", ed25519_line.trim(), "--data-dir", data],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A private key given by mistake, and garbage, are refused in one line.
    let out = output_of(isolated(
        home.path(),
        &[
            "peer",
            "add",
            ed25519.to_str().unwrap(),
            "--id",
            "x",
            "--scopes",
            "a",
            "--data-dir",
            data,
        ],
    ));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        error.contains("is a private key: give the public key"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
    let out = output_of(isolated(
        home.path(),
        &[
            "peer",
            "add",
            "ssh-ed25519 not-base64",
            "--id",
            "x",
            "--scopes",
            "a",
            "--data-dir",
            data,
        ],
    ));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("not an OpenSSH public key"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `n` bytes from `stdout` within the deadline.
fn read_exactly(stdout: &mut ChildStdout, n: usize) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let mut reader = stdout_clone(stdout);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; n];
        let result = reader.read_exact(&mut buf).map(|()| buf);
        let _ = tx.send(result);
    });
    rx.recv_timeout(DEADLINE)
        .expect("the echo came back in time")
        .expect("read the echo")
}

/// A second handle on the child's stdout pipe, for a reader thread.
fn stdout_clone(stdout: &ChildStdout) -> std::fs::File {
    use std::os::fd::AsFd;
    std::fs::File::from(stdout.as_fd().try_clone_to_owned().unwrap())
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < end, "alknet proxy did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proxy_pipes_a_stream_over_quic_and_tcp_and_exits_when_the_node_ends_it() {
    let node = NodeProcess::start(ECHO_CONFIG);
    let home = tempfile::tempdir().unwrap();
    let connect = format!("localhost:{}", node.addr.port());
    for transport in [None, Some("--quic"), Some("--tcp")] {
        let mut args = vec!["proxy", "--alpn", "alknet/echo", "--pin", &node.node_id];
        args.extend(transport);
        args.push(&connect);
        let mut child = isolated(home.path(), &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Each chunk comes back before the next is sent: nothing waits in a buffer.
        for chunk in [
            &b"SSH-2.0-hello\r\n"[..],
            &[0u8, 1, 2, 255][..],
            &[7u8; 40_000][..],
        ] {
            stdin.write_all(chunk).unwrap();
            stdin.flush().unwrap();
            assert_eq!(
                read_exactly(&mut stdout, chunk.len()),
                chunk,
                "{transport:?}"
            );
        }
        // Our end of input finishes our side only; the node's end ends the process.
        drop(stdin);
        let status = wait_exit(&mut child);
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "{transport:?}: {status:?}: {stderr}");
        assert!(rest.is_empty(), "{transport:?}: {rest:?}");
        assert!(stderr.is_empty(), "{transport:?}: {stderr}");
    }
}

#[test]
fn proxy_to_a_node_with_another_id_fails_in_one_line_on_stderr() {
    let node = NodeProcess::start(ECHO_CONFIG);
    let home = tempfile::tempdir().unwrap();
    let wrong = format!("ed25519:{}", "00".repeat(32));
    let connect = node.addr.to_string();
    for transport in [None, Some("--tcp")] {
        let mut args = vec!["proxy", "--alpn", "alknet/echo", "--pin", &wrong];
        args.extend(transport);
        args.push(&connect);
        let out = output_of(isolated(home.path(), &args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{transport:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "stdout is the SSH stream: {:?}",
            out.stdout
        );
        assert_eq!(stderr.lines().count(), 1, "{transport:?}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot open an alknet/echo stream to"),
            "{stderr}"
        );
    }
    // A pin is required, as for `alknet call`.
    let out = output_of(isolated(home.path(), &["proxy", &connect]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--pin ed25519:<hex>"), "{stderr}");
}

#[test]
fn socks5_names_an_identity_it_cannot_use_before_connecting() {
    let home = tempfile::tempdir().unwrap();
    let encrypted = home.path().join("encrypted");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&encrypted)
        .status()
        .unwrap();
    assert!(status.success());
    let missing = home.path().join("missing");
    for (key, expected) in [
        (
            &encrypted,
            "is encrypted (has a passphrase); --identity takes an unencrypted key",
        ),
        (&missing, "cannot read the SSH key"),
    ] {
        let out = output_of(isolated(
            home.path(),
            &[
                "proxy",
                "--socks5",
                "127.0.0.1:0",
                "--identity",
                key.to_str().unwrap(),
                "--insecure",
                "127.0.0.1:9",
            ],
        ));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(expected), "{said}");
    }
}

#[test]
fn ssh_config_prints_the_host_block_and_the_vault_host_key() {
    let node = NodeProcess::start("");
    let home = tempfile::tempdir().unwrap();
    let connect = node.addr.to_string();
    for transport in [None, Some("--tcp")] {
        let mut args = vec![
            "ssh-config",
            "--pin",
            &node.node_id,
            "--alias",
            "box",
            "--json",
        ];
        args.extend(transport);
        args.push(&connect);
        let printed = json_stdout(&output_of(isolated(home.path(), &args)));
        let published =
            std::fs::read_to_string(node.data_dir.path().join("ssh_host_ed25519_key.pub")).unwrap();
        let published: Vec<&str> = published.split_whitespace().take(2).collect();
        assert_eq!(
            printed["known_hosts"],
            format!("box {}", published.join(" "))
        );
        let block = printed["host_block"].as_str().unwrap();
        assert!(block.starts_with("Host box\n"), "{block}");
        assert!(block.contains("    HostKeyAlias box\n"), "{block}");
        assert!(
            block.contains(&format!("    Port {}\n", node.addr.port())),
            "{block}"
        );
        let proxy = format!("    ProxyCommand alknet proxy --pin {}", node.node_id);
        assert!(block.contains(&proxy), "{block}");
        assert_eq!(block.contains("--tcp"), transport.is_some(), "{block}");
    }
}

/// A loopback HTTP server answering every request with `body`; returns its
/// address and a receiver that gets one message per connection.
fn http_server(body: &'static str) -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = tx.send(());
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, rx)
}

/// `alknet proxy --socks5 127.0.0.1:0` with `identity`; returns the child and
/// the address it listens on, once it says so.
fn socks_proxy(home: &Path, node: &NodeProcess, identity: &Path) -> (Child, String) {
    let mut child = isolated(
        home,
        &[
            "proxy",
            "--socks5",
            "127.0.0.1:0",
            "--identity",
            identity.to_str().unwrap(),
            "--pin",
        ],
    )
    .arg(&node.node_id)
    .arg(node.addr.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + DEADLINE;
    let mut said = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("alknet proxy --socks5 did not say where it listens: {said:?}");
        };
        if let Some(addr) = line.strip_prefix("SOCKS5 proxy listening on ") {
            return (child, addr.to_owned());
        }
        said.push(line);
    }
}

fn curl_through(socks: &str, url: &str) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks5-hostname", socks, url])
        .stdin(Stdio::null())
        .output()
        .expect("curl runs")
}

#[test]
fn socks5_reaches_a_loopback_server_when_the_scope_allows_it() {
    let node = NodeProcess::start("");
    let home = tempfile::tempdir().unwrap();
    let data = node.data_dir.path().to_str().unwrap().to_owned();
    let (http, connections) = http_server("hello through ssh");
    let allowed = ssh_keygen(home.path(), "allowed", "ed25519");
    let refused = ssh_keygen(home.path(), "refused", "ed25519");
    for (key, scopes) in [
        (&allowed, "ssh:forward:127.0.0.1:*"),
        (&refused, "ssh:shell"),
    ] {
        let out = output_of(isolated(
            home.path(),
            &[
                "peer",
                "add",
                pub_path(key).to_str().unwrap(),
                "--id",
                "socks",
                "--scopes",
                scopes,
                "--data-dir",
                &data,
            ],
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = format!("http://{http}/");

    let (mut proxy, socks) = socks_proxy(home.path(), &node, &allowed);
    for _ in 0..3 {
        let out = curl_through(&socks, &url);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello through ssh");
        connections
            .recv_timeout(DEADLINE)
            .expect("the server saw the connection");
    }
    proxy.kill().unwrap();
    proxy.wait().unwrap();

    // Without the scope the node refuses the channel: SOCKS reply 0x02,
    // and nothing reaches the server.
    let (mut proxy, socks) = socks_proxy(home.path(), &node, &refused);
    let out = curl_through(&socks, &url);
    let said = String::from_utf8_lossy(&out.stderr);
    // curl 7.x prints the reply code, `… connection to 127.0.0.1. (2)`;
    // curl 8 names it, `… not allowed by ruleset`.
    assert_eq!(out.status.code(), Some(97), "curl's CURLE_PROXY: {said}");
    assert!(
        said.contains(". (2)") || said.contains("not allowed by ruleset"),
        "{said}"
    );
    assert!(
        connections.try_recv().is_err(),
        "a refused request reached the server"
    );
    proxy.kill().unwrap();
    proxy.wait().unwrap();
}

#[test]
fn without_ssh_served_proxy_and_ssh_config_say_so_in_one_line() {
    let node = NodeProcess::start("[ssh]\nenabled = false\n");
    let home = tempfile::tempdir().unwrap();
    let addr = node.addr.to_string();
    let key = ssh_keygen(home.path(), "id", "ed25519");
    let commands: [Vec<&str>; 2] = [
        vec!["ssh-config", "--pin", &node.node_id, &addr],
        vec![
            "proxy",
            "--socks5",
            "127.0.0.1:0",
            "--identity",
            key.to_str().unwrap(),
            "--pin",
            &node.node_id,
            &addr,
        ],
    ];
    for args in commands {
        let out = output_of(isolated(home.path(), &args));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(
            said.contains("the node does not serve alknet/ssh"),
            "{said}"
        );
    }
}
