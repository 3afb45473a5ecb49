//! The vault through the `alknet` binary: the node identity comes from the
//! mnemonic (`init`, `init --restore`, `serve`), the passphrase that seals it
//! (from a file, systemd's credentials directory, never a prompt without a
//! terminal), the `vault` commands, data directories from before the vault,
//! and sealed credentials that never show up in any output.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alknet_e2e::process::alknet_bin;

const ABOUT: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
/// m/74'/0'/0'/0' of `abandon … about`, no BIP39 passphrase: computed
/// independently by tests/python/test_vault_reference.py and held by
/// crates/alknet-vault/tests/vectors.rs too.
const ABOUT_IDENTITY: &str = "e78c2766a792f09bfccb51493968ac322283e8d021a30063784d806929762ecc";
const ABOUT_IDENTITY_SECRET: &str =
    "603aa5c626317fda4afd87b902e5c9de76c33f40834005245e1c5a675e92d700";
const ABOUT_SSH_HOST_KEY: &str = "6a9dd5c41915fba6cc22b8760263aba45b068cae7bead1d069c7b8eeb0118134";

/// What one `alknet` run did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The value of the first `label: value` line of stdout.
    fn field(&self, label: &str) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(label)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no `{label}:` line in {:?}", self.stdout))
            .to_owned()
    }

    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `alknet` to completion with `stdin` (empty when `None`: never a
/// terminal) and extra environment variables.
fn alknet_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &Path)]) -> Run {
    let mut command = Command::new(alknet_bin());
    command
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("alknet runs");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default())
        .expect("stdin written");
    drop(pipe);
    let out = child.wait_with_output().expect("alknet finishes");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn alknet(args: &[&str]) -> Run {
    alknet_with(args, None, &[])
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A file holding `content`, mode 0600.
fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Every file of a data directory with a hash of its content, to prove
/// nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        // The lock `serve` takes before unlocking, holding the pid of the
        // last serve: the process's, not the node's data.
        .filter(|path| !path.ends_with("serve.lock"))
        .map(|path| {
            let mut hasher = DefaultHasher::new();
            if path.is_dir() {
                // A directory (SFTP's `files`): its names.
                let mut names: Vec<_> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().file_name())
                    .collect();
                names.sort();
                names.hash(&mut hasher);
            } else {
                std::fs::read(&path).unwrap().hash(&mut hasher);
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, hasher.finish())
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `alknet serve` on an existing data directory, until it prints `serving:`.
struct Serving {
    child: Child,
    addr: SocketAddr,
    node_id: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    collectors: Vec<JoinHandle<()>>,
}

impl Serving {
    fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut command = Command::new(alknet_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("ALKNET_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("alknet serve starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let collectors = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), Some(tx)),
            collect(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut node_id) = (None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "alknet serve did not start; stdout: {:?}; stderr: {:?}",
                        stdout.lock().unwrap(),
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
            if line.starts_with("serving:") {
                break;
            }
        }
        Self {
            child,
            addr: addr.expect("address printed"),
            node_id: node_id.expect("node id printed"),
            stdout,
            stderr,
            collectors,
        }
    }

    /// `alknet call --connect … --pin PIN OPERATION [--token T]`.
    fn call(&self, pin: &str, operation: &str, token: Option<&str>) -> Run {
        let addr = self.addr.to_string();
        let mut args = vec!["call", "--connect", &addr, "--pin", pin];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        args.push(operation);
        alknet(&args)
    }

    /// SIGINT, then everything it printed once it has exited.
    fn stop(mut self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal delivered");
        let status = self.child.wait().expect("exits");
        // The collectors end when the pipes close with the process.
        for collector in self.collectors.drain(..) {
            collector.join().expect("collector thread");
        }
        let output = format!(
            "{}\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        );
        (status, output)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(
    source: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    notify: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            if let Some(tx) = &notify {
                let _ = tx.send(line);
            }
        }
    })
}

#[test]
fn restore_reproduces_the_node_id_and_a_pinned_peer_still_connects() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let init = alknet(&["init", "--data-dir", s(&original)]).ok("init");
    let node_id = init.field("node id");
    let mnemonic = init.field("mnemonic");
    assert_eq!(mnemonic.split(' ').count(), 24, "{mnemonic}");
    assert!(
        init.stdout.contains("WRITE THESE 24 WORDS DOWN"),
        "{}",
        init.stdout
    );
    // No terminal and no passphrase option: stored in clear, with a warning.
    assert!(
        init.stderr.contains("without a passphrase"),
        "{}",
        init.stderr
    );
    assert_eq!(mode(&original.join("mnemonic.txt")), 0o600);

    // A peer pins the original node.
    let node = Serving::start(&original, &[], &[]);
    assert_eq!(node.node_id, node_id);
    node.call(&node_id, "services/list", None)
        .ok("call the original");
    node.stop();

    let words = secret_file(tmp.path(), "words", &format!("{mnemonic}\n"));
    let passphrase = secret_file(tmp.path(), "passphrase", "correct horse battery staple\n");
    // Restored in clear …
    let clear = tmp.path().join("clear");
    let restored = alknet(&[
        "init",
        "--data-dir",
        s(&clear),
        "--restore",
        "--mnemonic-file",
        s(&words),
        "--no-passphrase",
    ])
    .ok("restore in clear");
    assert_eq!(restored.field("node id"), node_id);
    assert!(
        !restored.stdout.contains("mnemonic:"),
        "a restored mnemonic is not printed again"
    );
    // … and sealed: no private identity key on disk then.
    let sealed = tmp.path().join("sealed");
    let restored = alknet(&[
        "init",
        "--data-dir",
        s(&sealed),
        "--restore",
        "--mnemonic-file",
        s(&words),
        "--passphrase-file",
        s(&passphrase),
    ])
    .ok("restore sealed");
    assert_eq!(restored.field("node id"), node_id);
    assert!(restored.stderr.contains("Argon2id"), "{}", restored.stderr);
    assert!(sealed.join("mnemonic.sealed").exists());
    assert!(!sealed.join("mnemonic.txt").exists());
    assert!(!sealed.join("node.key").exists());
    let sealed_file = std::fs::read_to_string(sealed.join("mnemonic.sealed")).unwrap();
    for word in mnemonic.split(' ') {
        assert!(
            !sealed_file.contains(&format!("{word} ")),
            "{word} in the sealed file"
        );
    }
    assert_eq!(
        std::fs::read_to_string(sealed.join("ssh_host_ed25519_key.pub")).unwrap(),
        std::fs::read_to_string(original.join("ssh_host_ed25519_key.pub")).unwrap(),
        "the SSH host key is derived too"
    );

    // The peer's pin still holds against both restored nodes.
    for (dir, extra) in [
        (&clear, vec![]),
        (&sealed, vec!["--passphrase-file", s(&passphrase)]),
    ] {
        let node = Serving::start(dir, &extra, &[]);
        assert_eq!(node.node_id, node_id);
        let listed = node
            .call(&node_id, "services/list", None)
            .ok("call the restored node");
        assert!(listed.stdout.contains("services/list"), "{}", listed.stdout);
        let (status, _) = node.stop();
        assert!(status.success());
    }
}

#[test]
fn a_sealed_vault_needs_its_passphrase_and_a_wrong_one_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let words = secret_file(tmp.path(), "words", ABOUT);
    let passphrase = secret_file(tmp.path(), "passphrase", "right one");
    let wrong = secret_file(tmp.path(), "wrong", "wrong one");
    let data = tmp.path().join("data");
    alknet(&[
        "init",
        "--data-dir",
        s(&data),
        "--restore",
        "--mnemonic-file",
        s(&words),
        "--passphrase-file",
        s(&passphrase),
    ])
    .ok("init sealed");
    let before = snapshot(&data);

    // A wrong passphrase is a clear error, and nothing is written.
    let run = alknet(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        s(&data),
        "--passphrase-file",
        s(&wrong),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
    assert!(run.stderr.contains("deriving the key"), "{}", run.stderr);
    for command in [
        vec!["vault", "show-mnemonic"],
        vec!["vault", "unseal"],
        vec!["vault", "derive", "m/74'/0'/0'/0'"],
    ] {
        let mut args = command.clone();
        args.extend(["--data-dir", s(&data), "--passphrase-file", s(&wrong)]);
        let run = alknet(&args);
        assert_eq!(run.code, Some(2), "{command:?}: {}", run.all());
        assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
        assert!(!run.all().contains("abandon"), "{}", run.all());
    }
    let mut args = vec!["vault", "seal", "--data-dir", s(&data)];
    args.extend([
        "--passphrase-file",
        s(&wrong),
        "--new-passphrase-file",
        s(&wrong),
    ]);
    assert_eq!(alknet(&args).code, Some(2));

    // No passphrase source and no terminal: an error that says what to do,
    // at once (never a prompt nobody can answer).
    let run = alknet(&["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data)]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--passphrase-file"), "{}", run.stderr);
    assert!(
        run.stderr.contains("LoadCredential=vault-passphrase"),
        "{}",
        run.stderr
    );
    assert_eq!(
        snapshot(&data),
        before,
        "a failed unlock changed the data directory"
    );

    // systemd's credentials directory.
    let credentials = tmp.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    secret_file(&credentials, "vault-passphrase", "right one\n");
    let node = Serving::start(&data, &[], &[("CREDENTIALS_DIRECTORY", &credentials)]);
    assert_eq!(node.node_id, format!("ed25519:{ABOUT_IDENTITY}"));
    node.stop();
    // The identity store is the node's to update, SFTP's and git's roots
    // are made (without files or repositories) on the first start, and the
    // node's own pkarr packet is kept with the packets its relay stores;
    // every other file is as it was.
    let mut after = snapshot(&data);
    let mut unchanged = before.clone();
    after.remove("identities.redb");
    unchanged.remove("identities.redb");
    assert_eq!(std::fs::read_dir(data.join("files")).unwrap().count(), 0);
    after.remove("files");
    let git_root: Vec<_> = std::fs::read_dir(data.join("git"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(git_root, [".alknet"], "only the node's scratch directory");
    after.remove("git");
    // (Written by the publisher just after start: a stop before it may
    // leave none.)
    let packets: Vec<_> = std::fs::read_dir(data.join("dns/pkarr"))
        .map(|dir| dir.map(|entry| entry.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        packets.len() <= 1,
        "only the node's own packet: {packets:?}"
    );
    after.remove("dns");
    assert_eq!(after, unchanged, "serving changed the data directory");
}

#[test]
fn abandon_about_derives_the_recorded_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The mnemonic from standard input (not a terminal), spacing and case
    // normalised.
    let words = format!("  {}\n", ABOUT.to_uppercase().replace(' ', "\t "));
    let init = alknet_with(
        &[
            "init",
            "--data-dir",
            s(&data),
            "--restore",
            "--no-passphrase",
        ],
        Some(words.as_bytes()),
        &[],
    )
    .ok("restore from stdin");
    assert_eq!(init.field("node id"), format!("ed25519:{ABOUT_IDENTITY}"));
    let derive = |path: &str, public: bool| {
        let mut args = vec!["vault", "derive", path, "--data-dir", s(&data)];
        if public {
            args.push("--public");
        }
        alknet(&args).ok("derive").stdout.trim().to_owned()
    };
    assert_eq!(derive("m/74'/0'/0'/0'", true), ABOUT_IDENTITY);
    assert_eq!(derive("m/74h/0h/0h/0h", false), ABOUT_IDENTITY_SECRET);
    assert_eq!(derive("m/74'/0'/1'/0'", true), ABOUT_SSH_HOST_KEY);
    let ssh = std::fs::read_to_string(data.join("ssh_host_ed25519_key.pub")).unwrap();
    assert!(
        ssh.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
        "{ssh}"
    );
    assert_eq!(init.field("ssh host key"), ssh.trim_end());

    // Unhardened Ed25519 derivation is an error naming the component.
    let run = alknet(&["vault", "derive", "m/74'/0'/0/0'", "--data-dir", s(&data)]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("hardened"), "{}", run.stderr);
    let run = alknet(&["vault", "derive", "74'/0'", "--data-dir", s(&data)]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("starts with `m`"), "{}", run.stderr);
}

#[test]
fn encrypt_decrypt_and_rotate_through_the_cli_fail_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    alknet(&["init", "--data-dir", s(&data), "--no-passphrase"]).ok("init");
    let other = tmp.path().join("other");
    alknet(&["init", "--data-dir", s(&other), "--no-passphrase"]).ok("init other");
    let vault = |command: &[&str], dir: &Path, stdin: &str| {
        let mut args = vec!["vault"];
        args.extend(command);
        args.extend(["--data-dir", s(dir)]);
        alknet_with(&args, Some(stdin.as_bytes()), &[])
    };

    let sealed = vault(&["encrypt"], &data, "api-key-123\n").ok("encrypt");
    let blob: serde_json::Value = serde_json::from_str(sealed.stdout.trim()).unwrap();
    assert_eq!(blob["key_version"], 2);
    assert!(!sealed.all().contains("api-key-123"));
    let opened = vault(&["decrypt"], &data, &sealed.stdout).ok("decrypt");
    assert_eq!(opened.stdout, "api-key-123\n");
    let raw = vault(&["decrypt", "--raw"], &data, &sealed.stdout).ok("decrypt --raw");
    assert_eq!(raw.stdout, "api-key-123");

    let v3 = vault(&["rotate", "--to", "3"], &data, &sealed.stdout).ok("rotate to 3");
    let v3_blob: serde_json::Value = serde_json::from_str(v3.stdout.trim()).unwrap();
    assert_eq!(v3_blob["key_version"], 3);
    let v2 = vault(&["rotate", "--to", "2"], &data, &v3.stdout).ok("rotate back");
    assert_eq!(
        vault(&["decrypt"], &data, &v2.stdout).ok("decrypt").stdout,
        "api-key-123\n"
    );

    // Every failure: exit status 1, one generic message, no plaintext.
    let mut tampered = blob.clone();
    let data_field = tampered["data"].as_str().unwrap().to_owned();
    let flipped = if data_field.starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered["data"] = format!("{flipped}{}", &data_field[1..]).into();
    let mut wrong_version = blob.clone();
    wrong_version["key_version"] = 3.into();
    for (input, dir, what) in [
        (tampered.to_string(), &data, "tampered"),
        (wrong_version.to_string(), &data, "wrong key version"),
        (sealed.stdout.clone(), &other, "another vault"),
        ("not json".to_owned(), &data, "not JSON"),
        (String::new(), &data, "empty"),
    ] {
        let run = vault(&["decrypt"], dir, &input);
        assert_eq!(run.code, Some(1), "{what}: {}", run.all());
        assert_eq!(run.stderr.trim(), "error: decryption failed", "{what}");
        assert!(run.stdout.is_empty(), "{what}");
        let run = vault(&["rotate", "--to", "3"], dir, &input);
        assert_eq!(run.code, Some(1), "{what}: {}", run.all());
    }
    // Key versions below 2 have no key.
    let run = vault(&["encrypt", "--key-version", "1"], &data, "x");
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("PBKDF2"), "{}", run.stderr);
}

#[test]
fn seal_change_and_remove_the_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node_id = alknet(&["init", "--data-dir", s(&data), "--no-passphrase"])
        .ok("init")
        .field("node id");
    let first = secret_file(tmp.path(), "first", "first passphrase");
    let second = secret_file(tmp.path(), "second", "second passphrase");
    let with = |command: &[&str], extra: &[&str]| {
        let mut args = vec!["vault"];
        args.extend(command);
        args.extend(["--data-dir", s(&data)]);
        args.extend(extra);
        alknet(&args)
    };
    let mnemonic = with(&["show-mnemonic"], &[]).ok("show in clear");
    assert!(mnemonic.stderr.contains("warning"), "{}", mnemonic.stderr);
    let words = mnemonic.stdout.trim().to_owned();
    assert_eq!(words.split(' ').count(), 24);

    // Add a passphrase: nothing private stays in clear.
    with(&["seal"], &["--new-passphrase-file", s(&first)]).ok("seal");
    assert!(!data.join("mnemonic.txt").exists() && !data.join("node.key").exists());
    assert_eq!(mode(&data.join("mnemonic.sealed")), 0o600);
    let node = Serving::start(&data, &["--passphrase-file", s(&first)], &[]);
    assert_eq!(node.node_id, node_id);
    node.stop();
    // Change it; the old one stops working.
    with(
        &["seal"],
        &[
            "--passphrase-file",
            s(&first),
            "--new-passphrase-file",
            s(&second),
        ],
    )
    .ok("change the passphrase");
    assert_eq!(
        with(&["show-mnemonic"], &["--passphrase-file", s(&first)]).code,
        Some(2)
    );
    let shown = with(&["show-mnemonic"], &["--passphrase-file", s(&second)]).ok("show sealed");
    assert_eq!(shown.stdout.trim(), words);
    // Remove it.
    let unsealed = with(&["unseal"], &["--passphrase-file", s(&second)]).ok("unseal");
    assert!(unsealed.stderr.contains("warning"), "{}", unsealed.stderr);
    assert_eq!(mode(&data.join("mnemonic.txt")), 0o600);
    assert_eq!(mode(&data.join("node.key")), 0o600);
    assert!(!data.join("mnemonic.sealed").exists());
    assert_eq!(with(&["unseal"], &[]).code, Some(2), "not sealed any more");
    let node = Serving::start(&data, &[], &[]);
    assert_eq!(node.node_id, node_id);
    node.stop();

    // A mnemonic file other users can read is refused, as sshd refuses an
    // unprotected host key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("mnemonic.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let run = alknet(&["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data)]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
}

#[test]
fn serve_initialises_a_missing_data_directory_without_a_passphrase_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fresh");
    // Only ./alknet-data is created unasked (tests/operator_safety.rs).
    let node = Serving::start(&data, &["--init"], &[]);
    let node_id = node.node_id.clone();
    let (status, output) = node.stop();
    assert!(status.success(), "{output}");
    assert!(
        output.contains("initialising it without a passphrase"),
        "{output}"
    );
    assert!(output.contains(&format!("node id: {node_id}")), "{output}");
    assert!(output.contains("admin token: alk_"), "{output}");
    // The mnemonic is kept out of serve's output (often a log) …
    assert!(!output.contains("mnemonic: "), "{output}");
    assert!(output.contains("vault show-mnemonic"), "{output}");
    // … and is there to be shown and restored from.
    let words = alknet(&["vault", "show-mnemonic", "--data-dir", s(&data)])
        .ok("show")
        .stdout;
    let again = tmp.path().join("again");
    let restored = alknet_with(
        &[
            "init",
            "--data-dir",
            s(&again),
            "--restore",
            "--no-passphrase",
        ],
        Some(words.as_bytes()),
        &[],
    )
    .ok("restore");
    assert_eq!(restored.field("node id"), node_id);
}

#[test]
fn a_bad_mnemonic_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (words, expected) in [
        (ABOUT.replace("about", "abandon"), "checksum"),
        (ABOUT.replace("about", "abbout"), "word 12"),
        ("abandon about".to_owned(), "12, 15, 18, 21 or 24 words"),
    ] {
        let run = alknet_with(
            &[
                "init",
                "--data-dir",
                s(&data),
                "--restore",
                "--no-passphrase",
            ],
            Some(words.as_bytes()),
            &[],
        );
        assert_eq!(run.code, Some(2), "{}", run.all());
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
        assert!(!data.exists(), "init wrote something for a bad mnemonic");
    }
}

#[test]
fn a_data_directory_from_before_the_vault_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    // A pre-vault data directory: a random node.key and no mnemonic. Built
    // from a current one by replacing its identity files.
    let legacy = tmp.path().join("legacy");
    alknet(&["init", "--data-dir", s(&legacy), "--no-passphrase"]).ok("init");
    let donor = tmp.path().join("donor");
    let donor_id = alknet(&["init", "--data-dir", s(&donor), "--no-passphrase"])
        .ok("init donor")
        .field("node id");
    std::fs::remove_file(legacy.join("mnemonic.txt")).unwrap();
    std::fs::remove_file(legacy.join("ssh_host_ed25519_key.pub")).unwrap();
    std::fs::copy(donor.join("node.key"), legacy.join("node.key")).unwrap();

    let node = Serving::start(&legacy, &[], &[]);
    assert_eq!(node.node_id, donor_id, "serve uses node.key");
    node.call(&donor_id, "services/list", None)
        .ok("call the legacy node");
    node.stop();
    alknet(&["token", "list", "--data-dir", s(&legacy)]).ok("token list");
    for command in [
        vec!["vault", "derive", "m/74'/0'/0'/0'"],
        vec!["vault", "show-mnemonic"],
        vec!["vault", "encrypt"],
        vec!["vault", "seal"],
    ] {
        let mut args = command.clone();
        args.extend(["--data-dir", s(&legacy)]);
        let run = alknet(&args);
        assert_eq!(run.code, Some(2), "{command:?}");
        assert!(run.stderr.contains("has no mnemonic"), "{}", run.stderr);
        assert!(run.stderr.contains("before the vault"), "{}", run.stderr);
    }
    // And init still refuses to replace its identity.
    let run = alknet(&["init", "--data-dir", s(&legacy)]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("already initialised"), "{}", run.stderr);
}

#[test]
fn a_node_key_that_is_not_the_mnemonics_identity_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    alknet(&["init", "--data-dir", s(&a), "--no-passphrase"]).ok("init a");
    alknet(&["init", "--data-dir", s(&b), "--no-passphrase"]).ok("init b");
    std::fs::copy(b.join("node.key"), a.join("node.key")).unwrap();
    let run = alknet(&["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&a)]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("is not the identity derived from the mnemonic"),
        "{}",
        run.stderr
    );
}

#[test]
fn credentials_decrypt_at_start_and_never_appear_in_any_output() {
    const CANARY: &str = "canary-6b1f0e-credential";
    const FILE_CANARY: &str = "canary-93d2aa-file-credential";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = alknet(&["init", "--data-dir", s(&data), "--no-passphrase"]).ok("init");
    let admin_token = init.field("admin token");
    let seal = |dir: &Path, secret: &str| -> serde_json::Value {
        let run = alknet_with(
            &["vault", "encrypt", "--data-dir", s(dir)],
            Some(secret.as_bytes()),
            &[],
        )
        .ok("encrypt");
        serde_json::from_str(run.stdout.trim()).unwrap()
    };
    let inline = |v: &serde_json::Value| {
        format!(
            "{{ key_version = {}, salt = \"{}\", iv = \"{}\", data = \"{}\" }}",
            v["key_version"],
            v["salt"].as_str().unwrap(),
            v["iv"].as_str().unwrap(),
            v["data"].as_str().unwrap()
        )
    };
    std::fs::write(data.join("db.json"), seal(&data, FILE_CANARY).to_string()).unwrap();
    let good = format!(
        "[credentials.github]\nencrypted = {}\n\n[credentials.database]\nfile = \"db.json\"\n",
        inline(&seal(&data, CANARY))
    );
    std::fs::write(data.join("credentials.toml"), &good).unwrap();
    // Refused when other users may read it, as the keys are.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("credentials.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let node = Serving::start(&data, &[], &[]);
    let responses = [
        node.call(&node.node_id, "services/list", None)
            .ok("services/list"),
        node.call(&node.node_id, "admin/tree", Some(&admin_token))
            .ok("admin/tree"),
        node.call(&node.node_id, "nope/missing", None),
    ];
    let (status, output) = node.stop();
    assert!(status.success(), "{output}");
    assert!(output.contains("sealed credentials decrypted"), "{output}");
    assert!(
        output.contains("github") && output.contains("database"),
        "{output}"
    );
    for text in responses.iter().map(Run::all).chain([output, init.all()]) {
        assert!(!text.contains(CANARY), "credential leaked: {text}");
        assert!(!text.contains(FILE_CANARY), "credential leaked: {text}");
    }

    // One credential sealed by another vault: the start fails, naming it,
    // and neither value appears.
    let other = tmp.path().join("other");
    alknet(&["init", "--data-dir", s(&other), "--no-passphrase"]).ok("init other");
    std::fs::write(
        data.join("credentials.toml"),
        format!(
            "{good}\n[credentials.foreign]\nencrypted = {}\n",
            inline(&seal(&other, "foreign-canary-value"))
        ),
    )
    .unwrap();
    let run = alknet(&["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data)]);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("credential `foreign`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("credentials.toml"), "{}", run.stderr);
    let all = run.all();
    for value in [CANARY, FILE_CANARY, "foreign-canary-value"] {
        assert!(!all.contains(value), "credential leaked: {all}");
    }
    assert!(
        !all.contains("listening on"),
        "the node must not start: {all}"
    );
}
