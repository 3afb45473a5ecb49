//! Hosted git driven by stock `git` (issue #18): the real node, over smart
//! HTTP (HTTP/2 and HTTP/1.1, protocol v2 and v0), over SSH (QUIC through
//! `alknet proxy`, TCP+TLS through `openssl s_client`, the plain listener)
//! and over `alknet/git` (`ext::alknet proxy`), with `git fsck` on both
//! sides and `git ls-remote` against `git/refs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use alknet_e2e::eventually_blocking;
use alknet_e2e::process::alknet_bin;
use alknet_e2e::ssh::{Fixture, Route, certificate_fingerprint, client_certificate, text};
use serde_json::{Value, json};

/// A node serving git, a client key for SSH, a client certificate for
/// `alknet/git`, tokens, and a scratch directory for clones.
struct Node {
    fixture: Fixture,
    ssh_key: PathBuf,
    certificate: PathBuf,
    work: tempfile::TempDir,
}

impl Node {
    /// A node whose client `alice` holds `scopes` on every route.
    fn start(scopes: &str, extra_config: &str) -> Self {
        let fixture = Fixture::start(extra_config);
        let ssh_key = fixture.key("alice");
        fixture.allow(&ssh_key, "alice", scopes);
        let certificate = client_certificate(fixture.client.path(), "alice");
        let fingerprint = certificate_fingerprint(&certificate);
        let added = alknet_e2e::process::run(&[
            "peer",
            "add",
            &fingerprint,
            "--id",
            "alice",
            "--scopes",
            scopes,
            "--data-dir",
            fixture.node.data_dir.path().to_str().unwrap(),
        ]);
        assert!(added.status.success(), "{added:?}");
        // git reaches the node by address, so it is shown the node
        // certificate; browsers with a name get the web one.
        let data = fixture.node.data_dir.path();
        let mut bundle = std::fs::read(data.join("node.crt")).unwrap();
        bundle.extend(std::fs::read(data.join("web.crt")).unwrap());
        let ca = fixture.client.path().join("ca.pem");
        std::fs::write(&ca, bundle).unwrap();
        // Trust as docs/git.md says: the node's certificates and nothing
        // else. For every URL, not the node's only: git applies URL-scoped
        // settings only to URLs it can normalise, and the traversal tests'
        // `/git/../../etc.git` is not one.
        let no_cas = fixture.client.path().join("no-cas");
        std::fs::create_dir(&no_cas).unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::write(
            work.path().join(".gitconfig"),
            format!(
                "[http]\n\tsslCAInfo = {}\n\tsslCAPath = {}\n",
                ca.display(),
                no_cas.display()
            ),
        )
        .unwrap();
        Self {
            fixture,
            ssh_key,
            certificate,
            work,
        }
    }

    fn admin(&self, operation: &str, input: Value) -> Value {
        self.fixture.admin().call(operation, input)
    }

    /// A token for `id` with `scopes`.
    fn token(&self, id: &str, scopes: &str) -> String {
        alknet_e2e::process::create_token(self.fixture.node.data_dir.path(), id, scopes)
    }

    /// `git` with no configuration but ours (`$HOME/.gitconfig`, which
    /// trusts the node).
    fn git(&self) -> Command {
        let mut git = Command::new("git");
        git.current_dir(self.work.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.work.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", self.ssh_command(Route::Quic))
            .args([
                "-c",
                "user.name=Alice",
                "-c",
                "user.email=alice@example.org",
            ])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "protocol.ext.allow=always",
            ]);
        git
    }

    /// `git` in the repository `dir` (under the scratch directory).
    fn git_in(&self, dir: &str) -> Command {
        let mut git = self.git();
        git.arg("-C").arg(self.work.path().join(dir));
        git
    }

    /// The command line `GIT_SSH_COMMAND` runs for `route`.
    fn ssh_command(&self, route: Route) -> String {
        let ssh = self.fixture.openssh("ssh", route, &self.ssh_key);
        std::iter::once(ssh.get_program())
            .chain(ssh.get_args())
            .map(|arg| shell_quote(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The URL of `repo` over HTTPS, with `token` as Basic password.
    fn https(&self, repo: &str, token: Option<&str>) -> String {
        match token {
            Some(token) => format!(
                "https://git:{token}@{}/git/{repo}.git",
                self.fixture.node.addr
            ),
            None => format!("https://{}/git/{repo}.git", self.fixture.node.addr),
        }
    }

    /// The URL of `repo` over SSH (the host is the ProxyCommand's, or the
    /// plain listener's port).
    fn ssh(&self, route: Route, repo: &str) -> String {
        match route {
            Route::Plain => format!(
                "ssh://alice@127.0.0.1:{}/{repo}.git",
                self.fixture.plain.port()
            ),
            _ => format!("ssh://alice@127.0.0.1/{repo}.git"),
        }
    }

    /// The URL of `repo` over `alknet/git`, with alice's certificate.
    fn ext(&self, repo: &str, with_key: bool) -> String {
        let key = if with_key {
            format!("--key {} ", self.certificate.display())
        } else {
            String::new()
        };
        format!(
            "ext::{} proxy --pin {} {key}--alpn alknet/git {} %S {repo}.git",
            alknet_bin().display(),
            self.fixture.node.node_id,
            self.fixture.node.addr
        )
    }

    /// The server's copy of `repo`.
    fn server_repo(&self, repo: &str) -> PathBuf {
        self.fixture
            .node
            .data_dir
            .path()
            .join("git")
            .join(format!("{repo}.git"))
    }

    /// A new local repository `dir` with `commits` commits on `main`.
    fn local_repo(&self, dir: &str, commits: usize) {
        assert_ok(self.git().args(["init", "-q", dir]));
        for i in 0..commits {
            self.commit(dir, &format!("change {i}"));
        }
    }

    fn commit(&self, dir: &str, message: &str) -> String {
        let file = self.work.path().join(dir).join("file.txt");
        let mut content = std::fs::read_to_string(&file).unwrap_or_default();
        content.push_str(message);
        content.push('\n');
        std::fs::write(&file, content).unwrap();
        assert_ok(self.git_in(dir).args(["add", "file.txt"]));
        assert_ok(self.git_in(dir).args(["commit", "-q", "-m", message]));
        self.head(dir)
    }

    fn head(&self, dir: &str) -> String {
        text(&assert_ok(self.git_in(dir).args(["rev-parse", "HEAD"])).stdout)
            .trim()
            .to_owned()
    }

    /// `git fsck --strict` of a repository directory passes.
    fn fsck(&self, dir: &Path) {
        let out = output(
            self.git()
                .arg("-C")
                .arg(dir)
                .args(["fsck", "--strict", "--no-dangling"]),
        );
        assert!(
            out.status.success(),
            "git fsck {}: {}",
            dir.display(),
            text(&out.stderr)
        );
    }

    /// `git ls-remote URL` equals `git/refs` for `repo`.
    fn assert_ls_remote_matches(&self, url: &str, repo: &str, protocol: &str) {
        self.assert_ls_remote_matches_with(url, repo, protocol, &self.ssh_command(Route::Quic));
    }

    /// [`Self::assert_ls_remote_matches`], with SSH reaching the node as
    /// `ssh_command` does.
    fn assert_ls_remote_matches_with(
        &self,
        url: &str,
        repo: &str,
        protocol: &str,
        ssh_command: &str,
    ) {
        let listed = text(
            &assert_ok(self.git().env("GIT_SSH_COMMAND", ssh_command).args([
                "-c",
                protocol,
                "ls-remote",
                url,
            ]))
            .stdout,
        );
        let refs = self.admin("git/refs", json!({ "name": repo }));
        let mut expected = Vec::new();
        if let Some(head) = refs["head_id"].as_str() {
            expected.push(format!("{head}\tHEAD"));
        }
        for entry in refs["refs"].as_array().unwrap() {
            let (id, name) = (
                entry["id"].as_str().unwrap(),
                entry["name"].as_str().unwrap(),
            );
            expected.push(format!("{id}\t{name}"));
            if let Some(peeled) = entry["peeled"].as_str() {
                expected.push(format!("{peeled}\t{name}^{{}}"));
            }
        }
        let mut listed: Vec<String> = listed.lines().map(str::to_owned).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "ls-remote {url} ({protocol})");
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

fn output(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("git runs")
}

fn assert_ok(command: &mut Command) -> Output {
    let out = output(command);
    succeeded(command, out)
}

/// `out`, after asserting that `command` succeeded.
fn succeeded(command: &Command, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn assert_fails(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        !out.status.success(),
        "{command:?} should fail: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Clone, fetch and every kind of push over HTTPS: HTTP/2 with protocol v2
/// and HTTP/1.1 with v0; the token as Basic password and as Bearer header.
#[test]
fn https_clone_fetch_push_and_ls_remote_equal_git_refs() {
    let node = Node::start("git:write:team/*", "");
    let token = node.token("alice", "git:write:team/*");
    assert_eq!(
        node.admin("git/create", json!({ "name": "team/app" }))["name"],
        "team/app"
    );
    node.local_repo("src", 3);
    let url = node.https("team/app", Some(&token));
    let first = node.head("src");
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    let second = node.commit("src", "fast forward");
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    assert_ok(
        node.git_in("src")
            .args(["push", &url, &format!("{first}:refs/heads/topic")]),
    );
    assert_ok(
        node.git_in("src")
            .args(["tag", "-a", "v1", "-m", "release", &first]),
    );
    assert_ok(node.git_in("src").args(["tag", "light", &second]));
    assert_ok(node.git_in("src").args(["push", &url, "v1", "light"]));
    assert_ok(node.git_in("src").args(["push", &url, ":refs/heads/topic"]));

    for (version, protocol) in [
        ("HTTP/2", "protocol.version=2"),
        ("HTTP/1.1", "protocol.version=0"),
    ] {
        let dir = format!("clone-{}", &protocol[17..]);
        let mut clone = node.git();
        clone.args(["-c", &format!("http.version={version}"), "-c", protocol]);
        let traced = output(
            clone
                .env("GIT_TRACE_CURL", "1")
                .env("GIT_TRACE_CURL_NO_DATA", "1")
                .args(["clone", &url, &dir]),
        );
        assert!(traced.status.success(), "{}", text(&traced.stderr));
        let trace = text(&traced.stderr);
        let sent = if version == "HTTP/2" {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        assert!(
            trace.contains(&format!(
                "=> Send header: GET /git/team/app.git/info/refs?service=git-upload-pack {sent}"
            )),
            "{version} was used"
        );
        assert_eq!(
            trace.contains("git-protocol: version=2") || trace.contains("Git-Protocol: version=2"),
            protocol.ends_with('2')
        );
        assert_eq!(node.head(&dir), second);
        node.fsck(&node.work.path().join(&dir));
        node.assert_ls_remote_matches(&url, "team/app", protocol);
    }
    // A fetch brings a new commit; the Bearer header works as the password does.
    let third = node.commit("src", "third");
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    let bare = node.https("team/app", None);
    assert_ok(
        node.git_in("clone-2")
            .args([
                "-c",
                &format!("http.extraHeader=Authorization: Bearer {token}"),
            ])
            .args(["fetch", &bare, "main"]),
    );
    let fetched = text(&assert_ok(node.git_in("clone-2").args(["rev-parse", "FETCH_HEAD"])).stdout);
    assert_eq!(fetched.trim(), third);
    node.fsck(&node.server_repo("team/app"));
    let described = node.admin("git/describe", json!({ "name": "team/app" }));
    assert_eq!(described["default_branch"], "main");
    assert_eq!(described["last_push"]["identity"], "alice");
}

/// Clone and push over SSH on all three routes, protocol v2 (GIT_PROTOCOL
/// sent as env) and v0, and over `alknet/git` with a client certificate.
#[test]
fn ssh_and_alknet_git_clone_and_push() {
    let node = Node::start("git:write:*", "");
    node.admin("git/create", json!({ "name": "app" }));
    node.local_repo("src", 2);
    for (i, route) in [Route::Quic, Route::Tls, Route::Plain]
        .into_iter()
        .enumerate()
    {
        let url = node.ssh(route, "app");
        let ssh = node.ssh_command(route);
        let head = node.commit("src", &format!("over {route:?}"));
        assert_ok(
            node.git_in("src")
                .env("GIT_SSH_COMMAND", &ssh)
                .args(["push", &url, "main"]),
        );
        let protocol = if i % 2 == 0 {
            "protocol.version=2"
        } else {
            "protocol.version=0"
        };
        let dir = format!("ssh-{i}");
        assert_ok(
            node.git()
                .env("GIT_SSH_COMMAND", &ssh)
                .args(["-c", protocol, "clone", &url, &dir]),
        );
        assert_eq!(node.head(&dir), head, "{route:?}");
        node.fsck(&node.work.path().join(&dir));
        node.assert_ls_remote_matches_with(&url, "app", protocol, &ssh);
    }
    // alknet/git: the git daemon protocol on a QUIC stream.
    let url = node.ext("app", true);
    assert_ok(node.git().args(["clone", &url, "ext"]));
    let head = node.commit("ext", "over alknet/git");
    assert_ok(node.git_in("ext").args(["push", "origin", "main"]));
    assert_ok(node.git_in("ext").args(["fetch", "origin"]));
    assert_eq!(
        node.admin("git/refs", json!({ "name": "app" }))["head_id"],
        head.as_str()
    );
    node.fsck(&node.server_repo("app"));
}

/// What is refused, and with which words.
#[test]
fn refusals_read_only_private_non_fast_forward_and_traversal() {
    let node = Node::start("git:read:*", "[git.repositories.\"open\"]\npublic = true\n");
    let writer = node.token("bob", "git:write:*");
    let reader = node.token("carol", "git:read:*");
    node.admin("git/create", json!({ "name": "private" }));
    node.admin("git/create", json!({ "name": "open" }));
    node.local_repo("src", 2);
    assert_ok(
        node.git_in("src")
            .args(["push", &node.https("private", Some(&writer)), "main"]),
    );
    assert_ok(
        node.git_in("src")
            .args(["push", &node.https("open", Some(&writer)), "main"]),
    );

    // A read-only token cannot push: refused before git starts.
    node.commit("src", "more");
    let stderr = assert_fails(node.git_in("src").args([
        "push",
        &node.https("private", Some(&reader)),
        "main",
    ]));
    assert!(stderr.contains("403"), "{stderr}");
    // A read-only SSH key: git prints the node's reason.
    let stderr =
        assert_fails(
            node.git_in("src")
                .args(["push", &node.ssh(Route::Quic, "private"), "main"]),
        );
    assert!(
        stderr.contains("alice may not push to private: that needs the scope git:write:private"),
        "{stderr}"
    );
    // No token, private repository: 401, and git (without a prompt) gives up.
    let stderr = assert_fails(
        node.git()
            .args(["clone", &node.https("private", None), "anon"]),
    );
    assert!(
        stderr.contains("could not read Username") || stderr.contains("Authentication failed"),
        "{stderr}"
    );
    let stderr = assert_fails(
        node.git()
            .args(["clone", &node.ext("private", false), "anon"]),
    );
    assert!(
        stderr.contains("remote error: repository private needs a token"),
        "{stderr}"
    );
    // A public repository reads without a token on HTTPS and alknet/git,
    // and still refuses an anonymous push.
    assert_ok(
        node.git()
            .args(["clone", &node.https("open", None), "open-https"]),
    );
    assert_ok(
        node.git()
            .args(["clone", &node.ext("open", false), "open-ext"]),
    );
    node.commit("open-https", "anonymous");
    assert_fails(node.git_in("open-https").args(["push", "origin", "main"]));
    // Non-fast-forward: git's own refusal.
    assert_ok(
        node.git()
            .args(["clone", &node.https("private", Some(&writer)), "behind"]),
    );
    assert_ok(
        node.git_in("src")
            .args(["push", &node.https("private", Some(&writer)), "main"]),
    );
    node.commit("behind", "diverged");
    let stderr = assert_fails(node.git_in("behind").args(["push", "origin", "main"]));
    assert!(
        stderr.contains("[rejected]") && stderr.contains("fetch first"),
        "{stderr}"
    );
    // Names that would leave the root.
    let invalid = node
        .fixture
        .admin()
        .call_result("git/create", json!({ "name": "../escape" }));
    assert_eq!(invalid.unwrap_err().code.as_str(), "INVALID_INPUT");
    for name in ["../../etc", "private.git/../../x", "/etc/passwd"] {
        let stderr = assert_fails(
            node.git()
                .args(["ls-remote", &node.https(name, Some(&writer))]),
        );
        assert!(
            stderr.contains("not found") || stderr.contains("400"),
            "{name}: {stderr}"
        );
        let ssh = format!("ssh://alice@127.0.0.1/{name}");
        let stderr = assert_fails(node.git().args(["ls-remote", &ssh]));
        assert!(
            stderr.contains("invalid repository name") || stderr.contains("not found"),
            "{name}: {stderr}"
        );
    }
    // Sent as is (git and curl would normalise the dots away), the node
    // itself refuses the name.
    let status = Command::new("curl")
        .args([
            "-sS",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(node.fixture.client.path().join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {writer}")])
        .arg(format!(
            "https://{}/git/private.git/../../../etc/info/refs?service=git-upload-pack",
            node.fixture.node.addr
        ))
        .output()
        .unwrap();
    assert_eq!(text(&status.stdout), "400");
    node.fsck(&node.server_repo("private"));
}

/// Two pushes to one branch at once: one wins, the other is refused, and
/// the repository stays consistent.
#[test]
fn concurrent_pushes_to_one_branch_one_wins() {
    let node = Node::start("git:write:*", "");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "race" }));
    node.local_repo("base", 1);
    let url = node.https("race", Some(&token));
    bounded(node.git_in("base").args(["push", &url, "main"]), &node);
    let mut heads = Vec::new();
    for side in ["a", "b"] {
        bounded(node.git().args(["clone", "-q", &url, side]), &node);
        // Enough data that the two pushes overlap.
        let blob = node.work.path().join(side).join("blob.bin");
        std::fs::write(&blob, random_bytes(4 << 20, side.len() as u64 + 7)).unwrap();
        bounded(node.git_in(side).args(["add", "blob.bin"]), &node);
        heads.push(node.commit(side, side));
    }
    let pushes: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|side| {
            let mut push = node.git_in(side);
            push.args(["push", "origin", "main"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            push.spawn().expect("git push runs")
        })
        .collect();
    let results: Vec<Output> = pushes
        .into_iter()
        .map(|push| finished_within(push, Duration::from_secs(60), &node))
        .collect();
    let won: Vec<bool> = results.iter().map(|r| r.status.success()).collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "exactly one push wins: {:?}",
        results.iter().map(|r| text(&r.stderr)).collect::<Vec<_>>()
    );
    let winner = won.iter().position(|w| *w).unwrap();
    let refs = node.admin("git/refs", json!({ "name": "race" }));
    assert_eq!(refs["head_id"], heads[winner].as_str());
    node.fsck(&node.server_repo("race"));
}

/// `command` run to success within a minute (see [`finished_within`]).
fn bounded(command: &mut Command, node: &Node) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    let out = finished_within(child, Duration::from_secs(60), node);
    succeeded(command, out)
}

/// `child`'s output once it exits; if it has not within `deadline`, it is
/// killed and the test fails with what it and the node said, rather than
/// hanging until the runner's timeout with nothing to go on.
fn finished_within(mut child: std::process::Child, deadline: Duration, node: &Node) -> Output {
    let exited = eventually_blocking(deadline, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        exited,
        "git still running after {deadline:?}; it said {:?}; the node logged:\n{}",
        text(&output.stderr),
        node.fixture.node.log().join("\n")
    );
    output
}

/// `kill -9` of the node in the middle of a push: after a restart the
/// repository is consistent and the branch is either old or new.
#[test]
fn kill_9_mid_push_leaves_the_old_or_the_new_ref() {
    let node = Node::start("git:write:*", "");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "crash" }));
    node.local_repo("src", 1);
    let url = node.https("crash", Some(&token));
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    let old = node.head("src");
    let blob = node.work.path().join("src/big.bin");
    std::fs::write(&blob, random_bytes(48 << 20, 3)).unwrap();
    assert_ok(node.git_in("src").args(["add", "big.bin"]));
    let new = node.commit("src", "big");
    let mut push = node.git_in("src");
    let push = push
        .args(["push", &url, "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The receive has started when the node logs it.
    let started = eventually_blocking(Duration::from_secs(30), || {
        node.fixture
            .node
            .log()
            .iter()
            .any(|l| l.contains("git pack started") && l.contains("git-receive-pack"))
    });
    assert!(started, "the push reached the node");
    let Node { fixture, work, .. } = node;
    let mut process = fixture.node;
    process.kill();
    let mut push = push;
    let _ = push.wait();
    let process = process.restart();
    let repo = process.data_dir.path().join("git/crash.git");
    let fsck = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", text(&fsck.stderr));
    let head = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    let head = text(&head.stdout).trim().to_owned();
    assert!(
        head == old || head == new,
        "main is {head}: neither {old} nor {new}"
    );
    drop(work);
}

/// `git/events`: a subscribed `alknet call` prints a push.
#[test]
fn git_events_reach_a_subscribed_call() {
    let node = Node::start("git:write:*", "");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "watched" }));
    node.local_repo("src", 1);
    let url = node.https("watched", Some(&token));
    let mut call = Command::new(alknet_bin())
        .args(["call", "git/events", r#"{"repo":"watched"}"#])
        .args(["--connect", &node.fixture.node.addr.to_string()])
        .args(["--pin", &node.fixture.node.node_id, "--token", &token])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = call.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The subscription starts when the call connects: push until an event
    // arrives, each push being one more event.
    let mut event = None;
    for round in 0..50 {
        let head = node.commit("src", &format!("round {round}"));
        assert_ok(node.git_in("src").args(["push", &url, "main"]));
        if let Ok(line) = received.recv_timeout(Duration::from_millis(300)) {
            event = Some((serde_json::from_str::<Value>(&line).unwrap(), head));
            break;
        }
    }
    let _ = call.kill();
    let _ = call.wait();
    let (event, pushed) = event.expect("a push event within 50 pushes");
    assert_eq!(event["repo"], "watched");
    assert_eq!(event["ref"], "refs/heads/main");
    assert_eq!(event["identity"], "alice");
    // The event may be of an earlier push than the last (the subscription
    // started between two), never of one that did not happen.
    let new = event["new"].as_str().unwrap();
    let log = text(&assert_ok(node.git_in("src").args(["log", "--format=%H", &pushed])).stdout);
    assert!(log.lines().any(|id| id == new), "{new} was pushed");
}

/// A pack served over HTTP is an actor under its connection: listed in
/// `admin/tree` with repository, service and identity, killable, and
/// counted against `git.max_concurrent` (the next is refused with 503).
#[test]
fn an_http_pack_is_an_actor_and_packs_are_capped() {
    let node = Node::start("git:write:*", "[git]\nmax_concurrent = 1\n");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "held" }));
    node.local_repo("src", 1);
    let url = node.https("held", Some(&token));
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    let mut held = hold_upload_pack(&node, &token, "held");
    let admin = node.fixture.admin();
    let mut pack = None;
    let listed = eventually_blocking(Duration::from_secs(20), || {
        pack = find_actor(&admin.call("admin/tree", json!({}))["root"], "git-pack");
        pack.is_some()
    });
    assert!(listed, "a git-pack actor is listed");
    let pack = pack.unwrap();
    assert_eq!(pack["identity"], "alice");
    assert!(
        pack["detail"]
            .as_str()
            .unwrap()
            .contains("git-upload-pack held"),
        "{pack}"
    );
    // The one allowed pack is running: another is refused.
    let stderr = assert_fails(node.git().args(["ls-remote", &url]));
    assert!(stderr.contains("503"), "{stderr}");
    admin.call("admin/kill", json!({ "id": pack["id"] }));
    let gone = eventually_blocking(Duration::from_secs(20), || {
        find_actor(&admin.call("admin/tree", json!({}))["root"], "git-pack").is_none()
    });
    assert!(gone, "admin/kill stops the pack");
    drop(held.stdin.take());
    let _ = held.wait();
    assert_ok(node.git().args(["ls-remote", &url]));
}

/// `git.max_push_size`: a larger pack is refused with git's message and
/// leaves the branch where it was.
#[test]
fn pushes_larger_than_max_push_size_are_refused() {
    let node = Node::start("git:write:*", "[git]\nmax_push_size = 200000\n");
    node.admin("git/create", json!({ "name": "small" }));
    node.local_repo("src", 1);
    let url = node.ssh(Route::Quic, "small");
    assert_ok(node.git_in("src").args(["push", &url, "main"]));
    let old = node.head("src");
    std::fs::write(
        node.work.path().join("src/big.bin"),
        random_bytes(1 << 20, 9),
    )
    .unwrap();
    assert_ok(node.git_in("src").args(["add", "big.bin"]));
    node.commit("src", "too big");
    let stderr = assert_fails(node.git_in("src").args(["push", &url, "main"]));
    assert!(
        stderr.contains("pack exceeds maximum allowed size"),
        "{stderr}"
    );
    assert_eq!(
        node.admin("git/refs", json!({ "name": "small" }))["head_id"],
        old.as_str()
    );
    node.fsck(&node.server_repo("small"));
}

/// An upload-pack request whose body never ends (curl reads it from a pipe
/// the test holds): its git process waits for input.
fn hold_upload_pack(node: &Node, token: &str, repo: &str) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(node.fixture.client.path().join("ca.pem"))
        .args(["-H", "Content-Type: application/x-git-upload-pack-request"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-T", "-", "-X", "POST"])
        .arg(format!(
            "https://{}/git/{repo}.git/git-upload-pack",
            node.fixture.node.addr
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A client that goes away mid-request takes its git process with it.
#[test]
fn a_pack_whose_client_goes_away_is_killed() {
    let node = Node::start("git:write:*", "");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "left" }));
    let mut held = hold_upload_pack(&node, &token, "left");
    let admin = node.fixture.admin();
    let listed = eventually_blocking(Duration::from_secs(20), || {
        find_actor(&admin.call("admin/tree", json!({}))["root"], "git-pack").is_some()
    });
    assert!(listed, "a git-pack actor is listed");
    // A git upload-pack serving left.git, found in /proc.
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|line| {
                let line = String::from_utf8_lossy(&line);
                line.contains("upload-pack") && line.contains("left.git")
            })
        })
    };
    assert!(running(), "git upload-pack runs for the request");
    held.kill().unwrap();
    let _ = held.wait();
    let gone = eventually_blocking(Duration::from_secs(20), || {
        !running() && find_actor(&admin.call("admin/tree", json!({}))["root"], "git-pack").is_none()
    });
    assert!(gone, "the process and its actor end with the client");
}

fn find_actor(node: &Value, name: &str) -> Option<Value> {
    if node["name"] == name {
        return Some(node.clone());
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|child| find_actor(child, name))
}

/// `len` bytes that do not compress, from a seeded generator.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// `alknet/git` takes one bounded request line: garbage, a line longer
/// than 4,096 bytes and an unknown service are answered with an `ERR`
/// pkt-line, and no process starts.
#[test]
fn alknet_git_refuses_malformed_request_lines() {
    let node = Node::start("git:write:*", "");
    node.admin("git/create", json!({ "name": "app" }));
    let cases: [(&[u8], &str); 3] = [
        (b"GET / HTTP/1.1\r\n\r\n", "ERR malformed request line"),
        (&[b'f'; 8000], "ERR malformed request line"),
        (
            b"0024git-upload-archive /app.git\0host=x\0",
            "ERR service not served",
        ),
    ];
    for (input, expected) in cases {
        let mut proxy = Command::new(alknet_bin())
            .args([
                "proxy",
                "--alpn",
                "alknet/git",
                "--pin",
                &node.fixture.node.node_id,
            ])
            .args(["--key"])
            .arg(&node.certificate)
            .arg(node.fixture.node.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = proxy.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input).unwrap();
        let out = proxy.wait_with_output().unwrap();
        drop(stdin);
        let reply = text(&out.stdout);
        assert!(
            reply.contains(expected),
            "{expected}: got {reply:?} {}",
            text(&out.stderr)
        );
    }
    let log = node.fixture.node.log();
    assert!(
        !log.iter().any(|l| l.contains("git pack started")),
        "no process started"
    );
}

/// Smart HTTP details git relies on: a gzipped request body is inflated,
/// protocol v2 is asked for with `Git-Protocol`, and a request without a
/// token for a private repository gets `401` with `WWW-Authenticate: Basic`.
#[test]
fn smart_http_inflates_gzip_bodies_and_asks_for_basic_credentials() {
    let node = Node::start("git:write:*", "");
    let token = node.token("alice", "git:write:*");
    node.admin("git/create", json!({ "name": "wire" }));
    node.local_repo("src", 1);
    assert_ok(
        node.git_in("src")
            .args(["push", &node.https("wire", Some(&token)), "main"]),
    );
    let head = node.head("src");
    let curl = |extra: &[&str], body: Option<Vec<u8>>| {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-i", "--cacert"])
            .arg(node.fixture.client.path().join("ca.pem"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = curl.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &body.unwrap_or_default()).unwrap();
        drop(stdin);
        text(&child.wait_with_output().unwrap().stdout)
    };
    let base = format!("https://{}/git/wire.git", node.fixture.node.addr);
    // ls-refs (protocol v2) with a gzipped body.
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        gzip.stdin.as_mut().unwrap(),
        b"0014command=ls-refs\n0001000bsymrefs0000",
    )
    .unwrap();
    drop(gzip.stdin.take());
    let gzipped = gzip.wait_with_output().unwrap().stdout;
    let answer = curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            "@-",
            "-H",
            "Content-Type: application/x-git-upload-pack-request",
            "-H",
            "Content-Encoding: gzip",
            "-H",
            "Git-Protocol: version=2",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}/git-upload-pack"),
        ],
        Some(gzipped),
    );
    assert!(
        answer.contains("application/x-git-upload-pack-result"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("{head} refs/heads/main")),
        "{answer}"
    );
    // No token: 401 and the Basic challenge git's credential helpers answer.
    let answer = curl(
        &[&format!("{base}/info/refs?service=git-upload-pack")],
        None,
    );
    assert!(answer.starts_with("HTTP/2 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"alknet git\""),
        "{answer}"
    );
    // v0 advertisement: the service line first.
    let answer = curl(
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}/info/refs?service=git-upload-pack"),
        ],
        None,
    );
    assert!(
        answer.contains("001e# service=git-upload-pack\n0000"),
        "{answer}"
    );
}

/// `alknet git create|list|delete` in a data directory, while the node
/// serves it, and on the node with `--connect`.
#[test]
fn the_git_cli_manages_repositories() {
    let node = Node::start("git:write:*", "");
    let data_dir = node
        .fixture
        .node
        .data_dir
        .path()
        .to_str()
        .unwrap()
        .to_owned();
    let run = |args: &[&str]| alknet_e2e::process::run(args);
    let created = run(&["git", "create", "team/cli", "--data-dir", &data_dir]);
    assert!(created.status.success(), "{created:?}");
    assert!(text(&created.stdout).starts_with("created team/cli"));
    let refused = run(&["git", "create", "../out", "--data-dir", &data_dir]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("invalid repository name"),
        "{refused:?}"
    );
    // The node serves what the CLI made, at once.
    let token = node.token("alice", "git:write:*");
    node.local_repo("src", 1);
    assert_ok(
        node.git_in("src")
            .args(["push", &node.https("team/cli", Some(&token)), "main"]),
    );
    let addr = node.fixture.node.addr.to_string();
    let listed = run(&[
        "git",
        "list",
        "--connect",
        &addr,
        "--pin",
        &node.fixture.node.node_id,
        "--token",
        &token,
    ]);
    assert_eq!(text(&listed.stdout).trim(), "team/cli", "{listed:?}");
    let admin = node.fixture.node.admin_token();
    let deleted = run(&[
        "git",
        "delete",
        "team/cli",
        "--connect",
        &addr,
        "--pin",
        &node.fixture.node.node_id,
        "--token",
        &admin,
    ]);
    assert!(deleted.status.success(), "{deleted:?}");
    let listed = run(&["git", "list", "--data-dir", &data_dir]);
    assert_eq!(text(&listed.stdout).trim(), "");
}
