//! SFTP driven by stock OpenSSH `sftp`, `scp` and `sshfs` (issue #17): the
//! real node, over the SSH subsystem (QUIC through `alknet proxy`, TCP+TLS
//! through `openssl s_client`) and over `alknet/sftp` (`sftp -D` with
//! `alknet proxy`, no SSH layer), compared where it matters with OpenSSH's
//! own `sftp-server`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alknet_e2e::eventually_blocking;
use alknet_e2e::process::{alknet_bin, run};
use alknet_e2e::ssh::{Fixture, Route, certificate_fingerprint, client_certificate, output, text};
use serde_json::{Value, json};

/// OpenSSH's own SFTP server, which `sftp -D` runs without SSH.
const OPENSSH_SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// How `sftp` reaches the node's SFTP.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// The SSH subsystem, over one of SSH's routes.
    Subsystem(Route),
    /// `alknet/sftp` over QUIC: `sftp -D 'alknet proxy --alpn alknet/sftp'`.
    Direct,
}

const EVERY_WAY: [Way; 3] = [
    Way::Subsystem(Route::Quic),
    Way::Subsystem(Route::Tls),
    Way::Direct,
];

/// A node serving SFTP, and one client with both an SSH key and a client
/// certificate for the same identity.
struct Node {
    fixture: Fixture,
    ssh_key: PathBuf,
    certificate: PathBuf,
}

impl Node {
    /// A node whose client `alice` holds `scopes` (comma-separated).
    fn start(scopes: &str, extra_config: &str) -> Self {
        let fixture = Fixture::start(extra_config);
        let ssh_key = fixture.key("alice");
        fixture.allow(&ssh_key, "alice", scopes);
        let certificate = client_certificate(fixture.client.path(), "alice-tls");
        allow_fingerprint(
            &fixture,
            &certificate_fingerprint(&certificate),
            "alice",
            scopes,
        );
        Self {
            fixture,
            ssh_key,
            certificate,
        }
    }

    /// The SFTP root on the node's disk.
    fn root(&self) -> PathBuf {
        self.fixture.node.data_dir.path().join("files")
    }

    /// `sftp` reaching the node `way`, with `args` before the host.
    fn sftp(&self, way: Way, args: &[&str]) -> Command {
        match way {
            Way::Subsystem(route) => {
                let mut sftp = self.fixture.openssh("sftp", route, &self.ssh_key);
                sftp.args(args).arg("127.0.0.1");
                sftp
            }
            Way::Direct => {
                let mut sftp = Command::new("sftp");
                sftp.args(args).arg("-D").arg(format!(
                    "{} proxy --alpn alknet/sftp --key {} --pin {} {}",
                    alknet_bin().display(),
                    self.certificate.display(),
                    self.fixture.node.node_id,
                    self.fixture.node.addr
                ));
                sftp
            }
        }
    }

    /// Runs `batch` with `sftp -b -` in `cwd`.
    fn batch(&self, way: Way, cwd: &Path, batch: &str) -> Output {
        let mut sftp = self.sftp(way, &["-b", "-"]);
        batch_output(sftp.current_dir(cwd), batch)
    }
}

fn batch_output(command: &mut Command, batch: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sftp runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("batch written");
    child.wait_with_output().expect("sftp ends")
}

fn allow_fingerprint(fixture: &Fixture, fingerprint: &str, id: &str, scopes: &str) {
    let data_dir = fixture.node.data_dir.path().to_str().unwrap();
    let out = run(&[
        "peer",
        "add",
        fingerprint,
        "--id",
        id,
        "--scopes",
        scopes,
        "--data-dir",
        data_dir,
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// `len` bytes that do not compress, from a seeded generator.
fn random_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_256_mib_file_goes_up_and_down_intact_every_way() {
    let node = Node::start("sftp:read,sftp:write", "");
    let work = tempfile::tempdir().unwrap();
    random_file(&work.path().join("big.bin"), 256 << 20, 17);
    let expected = sha256(&work.path().join("big.bin"));
    for (n, way) in EVERY_WAY.into_iter().enumerate() {
        let name = format!("big-{n}.bin");
        let batch = format!("put big.bin {name}\nget {name} back-{n}.bin\n");
        let out = node.batch(way, work.path(), &batch);
        assert_ok(&out, &format!("{way:?}"));
        assert_eq!(
            sha256(&node.root().join(&name)),
            expected,
            "{way:?}: uploaded"
        );
        let back = work.path().join(format!("back-{n}.bin"));
        assert_eq!(sha256(&back), expected, "{way:?}: downloaded");
        std::fs::remove_file(back).unwrap();
        std::fs::remove_file(node.root().join(&name)).unwrap();
    }
}

#[test]
fn reget_and_reput_resume_partial_transfers() {
    let node = Node::start("sftp:read,sftp:write", "");
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source.bin");
    random_file(&source, 8 << 20, 5);
    let whole = std::fs::read(&source).unwrap();
    std::fs::copy(&source, node.root().join("remote.bin")).unwrap();
    // The parts already transferred are zeros: a resumed transfer keeps
    // them, a transfer from the start would not.
    let (local_part, remote_part) = (3 << 20, 1 << 20);
    let resumed = |kept: usize| {
        let mut expected = vec![0u8; kept];
        expected.extend_from_slice(&whole[kept..]);
        expected
    };
    for way in [Way::Subsystem(Route::Quic), Way::Direct] {
        std::fs::write(work.path().join("local.bin"), vec![0u8; local_part]).unwrap();
        std::fs::write(node.root().join("half.bin"), vec![0u8; remote_part]).unwrap();
        let out = node.batch(
            way,
            work.path(),
            "reget remote.bin local.bin\nreput source.bin half.bin\n",
        );
        assert_ok(&out, &format!("{way:?}"));
        assert!(
            std::fs::read(work.path().join("local.bin")).unwrap() == resumed(local_part),
            "{way:?}: reget"
        );
        assert!(
            std::fs::read(node.root().join("half.bin")).unwrap() == resumed(remote_part),
            "{way:?}: reput"
        );
    }
}

/// What an everyday session prints, mistakes included, with the parts that
/// differ between two servers (paths of their roots, times) masked.
const EVERYDAY: &str = "\
mkdir d
put small.txt d/a.txt
put small.txt d/b.txt
ls -l d
rename d/a.txt d/c.txt
symlink c.txt d/link
ls -l d
chmod 600 d/c.txt
ls -l d/c.txt
-get nope.txt
-rm nope.txt
-mkdir d
-rmdir d
-rmdir nope
-chmod 644 nope
-ls nope
-cd d/c.txt
-cd nope
-rename nope other
-symlink x d/link
-put missing-local.txt
get d/link linked.txt
rm d/link
rm d/b.txt
rm d/c.txt
rmdir d
ls
";

fn masked(output: &Output, root: &str) -> Vec<String> {
    let both = format!("{}{}", text(&output.stdout), text(&output.stderr));
    both.lines()
        .map(|line| {
            let line = line.replace(root, "");
            // `-rw-r--r--    1 user     group         12 Dec  3 20:13 name`
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() == 9 && fields[0].len() == 10 {
                let mut kept = fields[..5].to_vec();
                kept.push(fields[8]);
                kept.join(" ")
            } else {
                line
            }
        })
        .collect()
}

#[test]
fn everyday_commands_and_mistakes_print_what_openssh_prints() {
    let node = Node::start("sftp:read,sftp:write", "");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("small.txt"), "twelve bytes").unwrap();
    let ours = node.batch(Way::Subsystem(Route::Quic), work.path(), EVERYDAY);
    // The same batch against OpenSSH's server in a directory of its own.
    let reference_root = tempfile::tempdir().unwrap();
    let root = reference_root.path().canonicalize().unwrap();
    let server = format!("{OPENSSH_SFTP_SERVER} -d {}", root.display());
    let mut reference = Command::new("sftp");
    reference.args(["-b", "-", "-D", &server]);
    let theirs = batch_output(reference.current_dir(work.path()), EVERYDAY);
    assert_ok(&ours, "alknet");
    assert_ok(&theirs, "OpenSSH");
    let (ours, theirs) = (masked(&ours, ""), masked(&theirs, root.to_str().unwrap()));
    assert_eq!(ours, theirs, "alknet (left) and OpenSSH (right) differ");
    assert!(ours.iter().any(|l| l.contains("not found")), "{ours:#?}");
    assert_eq!(
        std::fs::read(work.path().join("linked.txt")).unwrap(),
        b"twelve bytes"
    );
    // df: the file system's totals, in OpenSSH's layout.
    let df = node.batch(Way::Direct, work.path(), "df -h\n");
    assert_ok(&df, "df");
    assert!(
        text(&df.stdout).contains("%Capacity"),
        "{}",
        text(&df.stdout)
    );
}

#[test]
fn scp_copies_both_ways_over_sftp() {
    let node = Node::start("sftp:read,sftp:write", "");
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("up.bin");
    random_file(&source, 3 << 20, 9);
    for route in [Route::Quic, Route::Tls, Route::Plain] {
        let mut up = node.fixture.openssh("scp", route, &node.ssh_key);
        up.arg(&source).arg("127.0.0.1:copied.bin");
        assert_ok(&output(&mut up), &format!("scp up {route:?}"));
        assert_eq!(sha256(&node.root().join("copied.bin")), sha256(&source));
        let down_path = work.path().join("down.bin");
        let mut down = node.fixture.openssh("scp", route, &node.ssh_key);
        down.arg("127.0.0.1:copied.bin").arg(&down_path);
        assert_ok(&output(&mut down), &format!("scp down {route:?}"));
        assert_eq!(sha256(&down_path), sha256(&source));
        std::fs::remove_file(down_path).unwrap();
        std::fs::remove_file(node.root().join("copied.bin")).unwrap();
    }
}

#[test]
fn nothing_outside_the_root_is_reachable() {
    let node = Node::start("sftp:read,sftp:write", "");
    let root = node.root();
    // A decoy /etc/passwd inside the root: whatever resolves "/etc" must
    // find this one, never the host's.
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "decoy\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc", root.join("relative")).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("x.txt"), "x").unwrap();
    let batch = "\
get ../../../../etc/passwd 1
get /etc/passwd 2
get absolute/passwd 3
get relative/passwd 4
symlink / up
get up/etc/passwd 5
get up/../../etc/passwd 6
put x.txt absolute/planted.txt
";
    for way in [Way::Subsystem(Route::Tls), Way::Direct] {
        let out = node.batch(way, work.path(), batch);
        assert_ok(&out, &format!("{way:?}"));
        for n in 1..=6 {
            let got = std::fs::read_to_string(work.path().join(n.to_string())).unwrap();
            assert_eq!(
                got, "decoy\n",
                "{way:?}: download {n} reached the host's /etc"
            );
        }
        assert!(root.join("etc/planted.txt").exists());
        assert!(!Path::new("/etc/planted.txt").exists());
        std::fs::remove_file(root.join("up")).unwrap();
        std::fs::remove_file(root.join("etc/planted.txt")).unwrap();
    }
}

#[test]
fn a_link_swapped_during_opens_never_leads_out() {
    let node = Node::start("sftp:read", "");
    let root = node.root();
    let inside = root.join("inside");
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(inside.join("passwd"), "decoy\n").unwrap();
    // `swap` flips between a directory holding a decoy and a link to the
    // host's /etc, as fast as it can, while the client opens swap/passwd.
    let swap = root.join("swap");
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, swap, root) = (stop.clone(), swap.clone(), root.clone());
        std::thread::spawn(move || {
            let (link, dir) = (root.join("swap.link"), root.join("swap.dir"));
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::os::unix::fs::symlink("/etc", &link);
                let _ = std::fs::rename(&link, &swap);
                let _ = std::fs::create_dir(&dir);
                let _ = std::fs::write(dir.join("passwd"), "decoy\n");
                let _ = std::fs::remove_file(&swap);
                let _ = std::fs::rename(&dir, &swap);
                let _ = std::fs::remove_file(swap.join("passwd"));
                let _ = std::fs::remove_dir(&swap);
                flips += 1;
            }
            flips
        })
    };
    let work = tempfile::tempdir().unwrap();
    let batch: String = (0..300)
        .map(|n| format!("-get swap/passwd got-{n}\n"))
        .collect();
    let out = node.batch(Way::Direct, work.path(), &batch);
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 100, "the link flipped only {flips} times");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut fetched = 0;
    for n in 0..300 {
        if let Ok(got) = std::fs::read_to_string(work.path().join(format!("got-{n}"))) {
            fetched += 1;
            assert!(
                got.is_empty() || got == "decoy\n",
                "fetch {n} read {got:?}: outside the root"
            );
        }
    }
    eprintln!("{fetched} of 300 fetches found a file while the link flipped {flips} times");
}

#[test]
fn a_read_only_identity_gets_but_changes_nothing() {
    let node = Node::start("sftp:read", "");
    std::fs::write(node.root().join("there.txt"), "there").unwrap();
    std::fs::create_dir(node.root().join("dir")).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("up.txt"), "up").unwrap();
    for way in EVERY_WAY {
        let out = node.batch(way, work.path(), "get there.txt\nls -l\n");
        assert_ok(&out, &format!("{way:?} get"));
        assert_eq!(
            std::fs::read(work.path().join("there.txt")).unwrap(),
            b"there"
        );
        for refused in [
            "put up.txt",
            "rm there.txt",
            "mkdir new",
            "rmdir dir",
            "rename there.txt moved.txt",
            "chmod 600 there.txt",
            "symlink there.txt link",
        ] {
            let out = node.batch(way, work.path(), &format!("{refused}\n"));
            assert!(!out.status.success(), "{way:?}: {refused} was allowed");
            assert!(
                text(&out.stderr).contains("Permission denied"),
                "{way:?}: {refused}: {}",
                text(&out.stderr)
            );
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(node.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "there.txt"]);
}

#[test]
fn a_write_grant_with_a_path_stays_inside_it() {
    let node = Node::start("sftp:read,sftp:write:/incoming", "");
    let root = node.root();
    std::fs::create_dir_all(root.join("incoming")).unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    // A link inside the writable directory to a directory outside it.
    std::os::unix::fs::symlink("/private", root.join("incoming/out")).unwrap();
    std::os::unix::fs::symlink("../private", root.join("incoming/up")).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("f.txt"), "f").unwrap();
    let out = node.batch(Way::Direct, work.path(), "put f.txt incoming/f.txt\n");
    assert_ok(&out, "put inside");
    assert!(root.join("incoming/f.txt").exists());
    for outside in [
        "f.txt",
        "private/f.txt",
        "incoming/out/f.txt",
        "incoming/up/f.txt",
        "incoming/../f.txt",
    ] {
        let out = node.batch(Way::Direct, work.path(), &format!("put f.txt {outside}\n"));
        assert!(!out.status.success(), "put {outside} was allowed");
    }
    assert!(!root.join("f.txt").exists());
    assert_eq!(std::fs::read_dir(root.join("private")).unwrap().count(), 0);
}

#[test]
fn sshfs_mounts_and_git_works_inside() {
    if !Path::new("/dev/fuse").exists() || Command::new("sshfs").arg("-V").output().is_err() {
        eprintln!("skipped: no /dev/fuse or no sshfs");
        return;
    }
    let node = Node::start("sftp:read,sftp:write", "");
    let mount = tempfile::tempdir().unwrap();
    let known_hosts = node.fixture.client.path().join("known_hosts");
    let proxy = format!(
        "ProxyCommand={} proxy --pin {} {}",
        alknet_bin().display(),
        node.fixture.node.node_id,
        node.fixture.node.addr
    );
    let mounted = Command::new("sshfs")
        .arg("127.0.0.1:/")
        .arg(mount.path())
        .args(["-F", "/dev/null", "-o"])
        .arg(proxy)
        .arg("-o")
        .arg(format!(
            "IdentityFile={},IdentitiesOnly=yes,BatchMode=yes,StrictHostKeyChecking=yes,UserKnownHostsFile={},HostKeyAlias={}",
            node.ssh_key.display(),
            known_hosts.display(),
            alknet_e2e::ssh::HOST_ALIAS
        ))
        .output()
        .expect("sshfs runs");
    if !mounted.status.success() && text(&mounted.stderr).contains("fuse") {
        eprintln!("skipped: FUSE refused the mount: {}", text(&mounted.stderr));
        return;
    }
    assert_ok(&mounted, "sshfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("fusermount3").arg("-u").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mount.path());
    let m = mount.path();
    let source = tempfile::NamedTempFile::new().unwrap();
    random_file(source.path(), 2 << 20, 3);
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(m)
            .output()
            .unwrap();
        assert_ok(&out, script);
        text(&out.stdout)
    };
    sh(&format!(
        "cp {} copied.bin && mv copied.bin moved.bin",
        source.path().display()
    ));
    assert_eq!(
        sha256(&node.root().join("moved.bin")),
        sha256(source.path())
    );
    assert!(sh("ls -l").contains("moved.bin"));
    sh(
        "mkdir repo && cd repo && git init -q && echo hello > f && git add f \
        && git -c user.email=t@example.org -c user.name=t commit -qm first && git fsck --no-progress",
    );
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(node.root().join("repo"))
        .output()
        .unwrap();
    assert_eq!(text(&log.stdout), "first\n");
}

/// An SFTP session left open: `sftp` reading commands from a pipe.
fn interactive(node: &Node, way: Way) -> std::process::Child {
    node.sftp(way, &["-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sftp runs")
}

fn sftp_details(tree: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(node: &Value, found: &mut Vec<String>) {
        if let Some(detail) = node["detail"].as_str()
            && detail.starts_with("sftp ")
        {
            found.push(detail.to_owned());
        }
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, found);
        }
    }
    walk(&tree["root"], &mut found);
    found
}

#[test]
fn sessions_show_in_the_tree_and_a_kill_ends_one() {
    let node = Node::start("sftp:read,sftp:write", "");
    let admin = node.fixture.admin();
    let mut over_ssh = interactive(&node, Way::Subsystem(Route::Quic));
    let mut direct = interactive(&node, Way::Direct);
    let mut details = Vec::new();
    assert!(
        eventually_blocking(Duration::from_secs(20), || {
            details = sftp_details(&admin.call("admin/tree", json!({})));
            details.len() == 2
        }),
        "two SFTP sessions in the tree: {details:?}"
    );
    let root = node.root().canonicalize().unwrap();
    for detail in &details {
        assert!(
            detail.contains(root.to_str().unwrap()) && detail.contains("read /, write /"),
            "{detail}"
        );
    }
    // A command in flight, or just answered, when the kill comes.
    let stdin = over_ssh.stdin.as_mut().unwrap();
    std::fs::write(node.root().join("held.txt"), "x").unwrap();
    writeln!(stdin, "ls").unwrap();
    let tree = admin.call("admin/tree", json!({}));
    let id = find_actor(&tree["root"], |n| {
        n["name"] == "ssh-channel" && n["detail"].as_str().is_some_and(|d| d.starts_with("sftp "))
    })
    .expect("the SSH session's channel");
    admin.call("admin/kill", json!({ "id": id }));
    // `sftp` waiting for its next command does not watch the connection:
    // it learns of the kill when it next asks the server. So it gets one
    // more command and the end of its input; a live session would run it
    // and exit 0, a killed one fails ("Connection closed").
    let mut stdin = over_ssh.stdin.take().unwrap();
    let _ = writeln!(stdin, "ls");
    drop(stdin);
    let mut status = None;
    assert!(
        eventually_blocking(Duration::from_secs(20), || {
            status = over_ssh.try_wait().unwrap();
            status.is_some()
        }),
        "sftp over SSH ended after the kill"
    );
    assert!(
        !status.unwrap().success(),
        "sftp over SSH found its session gone: {status:?}"
    );
    assert_eq!(
        direct.try_wait().unwrap(),
        None,
        "the other session serves on"
    );
    let local = tempfile::NamedTempFile::new().unwrap();
    let put = format!("put {} still-here", local.path().display());
    writeln!(direct.stdin.as_mut().unwrap(), "{put}").unwrap();
    assert!(eventually_blocking(Duration::from_secs(20), || {
        node.root().join("still-here").exists()
    }));
    drop(direct.stdin.take());
    assert!(direct.wait().unwrap().success());
}

fn find_actor(tree: &Value, matches: impl Fn(&Value) -> bool + Copy) -> Option<Value> {
    if matches(tree) {
        return Some(tree["id"].clone());
    }
    tree["children"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|child| find_actor(child, matches))
}

/// Raw SFTP over `alknet proxy --alpn alknet/sftp`, for what no stock
/// client sends.
struct Raw {
    child: std::process::Child,
}

impl Raw {
    fn open(node: &Node, key: &Path) -> Self {
        let child = Command::new(alknet_bin())
            .args(["proxy", "--alpn", "alknet/sftp", "--key"])
            .arg(key)
            .args(["--pin", &node.fixture.node.node_id])
            .arg(node.fixture.node.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("alknet proxy runs");
        Self { child }
    }

    fn send(&mut self, kind: u8, body: &[u8]) -> std::io::Result<()> {
        let mut packet = Vec::with_capacity(5 + body.len());
        packet.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
        packet.push(kind);
        packet.extend_from_slice(body);
        self.child.stdin.as_mut().unwrap().write_all(&packet)
    }

    /// The next packet's type, or `None` at the end of the stream.
    fn receive(&mut self) -> Option<(u8, Vec<u8>)> {
        let stdout = self.child.stdout.as_mut().unwrap();
        let mut length = [0; 4];
        stdout.read_exact(&mut length).ok()?;
        let mut packet = vec![0; u32::from_be_bytes(length) as usize];
        stdout.read_exact(&mut packet).ok()?;
        Some((packet[0], packet[1..].to_vec()))
    }
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_VERSION: u8 = 2;
const SSH_FXP_OPENDIR: u8 = 11;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;

#[test]
fn a_handle_flood_and_an_oversized_packet_end_only_their_session() {
    let node = Node::start("sftp:read,sftp:write", "[sftp]\nmax_open_handles = 16\n");
    let mut raw = Raw::open(&node, &node.certificate);
    raw.send(SSH_FXP_INIT, &3u32.to_be_bytes()).unwrap();
    assert_eq!(raw.receive().map(|p| p.0), Some(SSH_FXP_VERSION));
    for id in 0..40u32 {
        let mut body = id.to_be_bytes().to_vec();
        body.extend(string(b"/"));
        raw.send(SSH_FXP_OPENDIR, &body).unwrap();
    }
    let (mut handles, mut refused) = (0, 0);
    for _ in 0..40 {
        match raw.receive().expect("a reply").0 {
            SSH_FXP_HANDLE => handles += 1,
            SSH_FXP_STATUS => refused += 1,
            other => panic!("unexpected reply type {other}"),
        }
    }
    assert_eq!(
        (handles, refused),
        (16, 24),
        "handles past sftp.max_open_handles fail"
    );
    // A packet declared far over sftp.max_packet closes the session.
    let _ = raw
        .child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(&(1u32 << 30).to_be_bytes());
    assert_eq!(raw.receive(), None, "the session closed");
    let _ = raw.child.kill();
    let _ = raw.child.wait();
    // Others are served as before.
    let work = tempfile::tempdir().unwrap();
    let out = node.batch(Way::Subsystem(Route::Quic), work.path(), "ls\n");
    assert_ok(&out, "a later session");
    assert!(
        node.fixture
            .node
            .log()
            .iter()
            .any(|l| l.contains("sftp.max_packet"))
    );
}

#[test]
fn identities_without_an_sftp_scope_are_refused_every_way() {
    let node = Node::start("ssh:shell", "");
    let work = tempfile::tempdir().unwrap();
    for way in EVERY_WAY {
        let out = node.batch(way, work.path(), "ls\n");
        assert!(!out.status.success(), "{way:?} was allowed");
    }
    // No certificate at all: the ALPN refuses before any SFTP.
    let anonymous = client_certificate(node.fixture.client.path(), "stranger");
    let mut raw = Raw::open(&node, &anonymous);
    let _ = raw.send(SSH_FXP_INIT, &3u32.to_be_bytes());
    assert_eq!(raw.receive(), None);
    let _ = raw.child.kill();
    let _ = raw.child.wait();
}
