//! `alknet-bench git`: stock `git` clones and pushes one generated
//! repository over alknet and over the usual servers on loopback, in one
//! run, round by round, with the same client.
//!
//! alknet is reached three ways: smart HTTP over HTTPS (HTTP/1.1 and
//! HTTP/2; its peer is `git daemon`, git://, the cheapest transport git
//! has), and `git-upload-pack` / `git-receive-pack` over its SSH server,
//! on the plain listener and over QUIC through `alknet proxy` (their peer
//! is OpenSSH `sshd` with the same client, key, cipher and key exchange).
//!
//! The repository is made once per run with `git fast-import`: `--commits`
//! commits, each rewriting one of `--paths` files with pseudo-random, so
//! incompressible, bytes (`--megabytes` in all, a fixed seed), then
//! repacked as a server's repository would be. A clone is `git clone
//! --bare` (the transfer and the client's indexing of the pack, without
//! writing a work tree); a push sends every branch into an empty bare
//! repository made for it. Every route does both once per round, the
//! routes interleaved so that machine noise hits them all alike; the
//! median of `--rounds` is reported, with the server's CPU per operation
//! from `/proc`: the server process and its reaped children (sshd's and
//! git daemon's per-connection processes, and the `git upload-pack` /
//! `git receive-pack` that every one of these servers runs), and the
//! client's CPU: the git processes the bench waited for, with everything
//! they waited for in turn (`git-remote-https`, `pack-objects`).
//!
//! git speaks its default protocol (v2 for fetches) wherever the server
//! takes it; sshd as configured here does not accept `GIT_PROTOCOL`, so
//! clones through it fall back to v0, which differs only in how refs are
//! advertised (one branch here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::openssh::{
    SshNode, Sshd, client_options, cpu_of, free_port, keygen, median, reaped_children_cpu, timed,
    wait_listening,
};

/// `alknet-bench git`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The alknet binary [default: the one beside this benchmark].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The OpenSSH server.
    #[arg(long, default_value = "/usr/sbin/sshd")]
    sshd: PathBuf,
    /// Commits in the generated repository.
    #[arg(long, default_value_t = 5000)]
    commits: usize,
    /// Bytes of file contents over all commits, in MiB (incompressible: the
    /// pack is about this size).
    #[arg(long, default_value_t = 55)]
    megabytes: usize,
    /// Distinct file paths the commits rewrite.
    #[arg(long, default_value_t = 300)]
    paths: usize,
    /// Clones and pushes per route; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The routes to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = Route::ALL
    )]
    routes: Vec<Route>,
    /// Do not verify alknet's HTTPS certificate (`http.sslVerify=false`)
    /// instead of trusting the data directory's `node.crt` and `web.crt`.
    #[arg(long)]
    https_insecure: bool,
    /// Also trust the system's CA directory over HTTPS, as git does when a
    /// remote sets only `http.sslCAInfo`. By default the node's own
    /// certificates are the only trust anchors (`http.sslCAPath` is an
    /// empty directory), as docs/git.md advises: Debian's GnuTLS libcurl
    /// otherwise parses every file in /etc/ssl/certs for every git command.
    #[arg(long, conflicts_with = "https_insecure")]
    https_system_cas: bool,
    /// The cipher every SSH server is asked for.
    #[arg(long, default_value = "chacha20-poly1305@openssh.com")]
    cipher: String,
    /// The key exchange every SSH server is asked for.
    #[arg(long, default_value = "curve25519-sha256")]
    kex: String,
    /// Extra lines for the node's alknet.toml (e.g. `[limits]` keys, to see
    /// what one setting changes).
    #[arg(long, default_value = "")]
    node_config: String,
}

/// One way to reach a git server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Route {
    /// `git daemon`, git:// (no encryption, no authentication).
    GitDaemon,
    /// alknet's smart HTTP over HTTPS, HTTP/1.1.
    AlknetHttps1,
    /// alknet's smart HTTP over HTTPS, HTTP/2.
    AlknetHttps2,
    /// OpenSSH `sshd`, running `git-upload-pack` / `git-receive-pack` in
    /// the user's shell.
    Sshd,
    /// alknet's SSH server on its plain TCP listener.
    AlknetSsh,
    /// alknet's SSH server over QUIC (`ssh -o ProxyCommand='alknet proxy'`).
    AlknetQuic,
}

impl Route {
    /// Every route, in the table's order.
    const ALL: [Route; 6] = [
        Route::GitDaemon,
        Route::AlknetHttps1,
        Route::AlknetHttps2,
        Route::Sshd,
        Route::AlknetSsh,
        Route::AlknetQuic,
    ];

    /// Each alknet route with the peer it is compared with.
    const PAIRS: [(Route, Route); 4] = [
        (Route::AlknetHttps1, Route::GitDaemon),
        (Route::AlknetHttps2, Route::GitDaemon),
        (Route::AlknetSsh, Route::Sshd),
        (Route::AlknetQuic, Route::Sshd),
    ];

    fn label(self) -> &'static str {
        match self {
            Route::GitDaemon => "git daemon (git://)",
            Route::AlknetHttps1 => "alknet HTTPS, HTTP/1.1",
            Route::AlknetHttps2 => "alknet HTTPS, HTTP/2",
            Route::Sshd => "sshd",
            Route::AlknetSsh => "alknet SSH, plain TCP",
            Route::AlknetQuic => "alknet SSH, QUIC",
        }
    }

    /// Its name on the command line, which also names its push
    /// repositories.
    fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }

    fn is_alknet(self) -> bool {
        !matches!(self, Route::GitDaemon | Route::Sshd)
    }
}

/// A route's server, ready to be cloned from and pushed to.
struct Target {
    route: Route,
    /// `git` options before the subcommand (`-c …`).
    options: Vec<String>,
    /// Environment of the `git` client (`GIT_SSH_COMMAND`, …).
    env: Vec<(String, String)>,
    /// What `git clone` is given.
    clone_url: String,
    /// A push repository's URL is this followed by `<name>.git`.
    push_base: String,
    /// Where the server keeps the push repositories, on this machine.
    repos: PathBuf,
    /// The server process whose CPU (with its reaped children) is counted.
    pid: u32,
}

impl Target {
    /// `git` as this route's client runs it, before the subcommand.
    fn git(&self) -> Command {
        let mut command = git();
        command.args(&self.options);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn push_url(&self, name: &str) -> String {
        format!("{}{name}.git", self.push_base)
    }
}

/// What one route measured, or why it stopped.
#[derive(Default)]
struct Outcome {
    clone: Vec<Duration>,
    push: Vec<Duration>,
    clone_cpu: Vec<Duration>,
    push_cpu: Vec<Duration>,
    /// The git client's own CPU: with the server's, it shows what each
    /// route costs the two cores the client and server share.
    clone_client_cpu: Vec<Duration>,
    push_client_cpu: Vec<Duration>,
    error: Option<String>,
}

/// The generated repository.
struct Source {
    /// The bare repository.
    path: PathBuf,
    /// `refs/heads/main`, which every clone and push must end with.
    head: String,
    /// Bytes in its pack files.
    pack_bytes: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let mut routes = args.routes.clone();
    routes.sort_by_key(|r| Route::ALL.iter().position(|a| a == r));
    routes.dedup();

    let dir = tempfile::tempdir()?;
    let key = keygen(dir.path(), "client")?;
    // The peers' repositories: `git daemon`'s base path, and the absolute
    // paths sshd's clients name.
    let peers = dir.path().join("peers");
    std::fs::create_dir(&peers)?;
    let started = Instant::now();
    let source = generate(
        &peers.join("r.git"),
        args.commits,
        args.megabytes << 20,
        args.paths,
    )
    .context("generating the repository")?;
    println!(
        "git: a generated repository of {} commits over {} paths, pack {:.1} MiB (made in {:.1} s); \
         `git clone --bare` and `git push` of every branch into an empty repository, median of {} rounds",
        args.commits,
        args.paths,
        source.pack_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        args.rounds
    );
    println!(
        "HTTPS trust: {}",
        if args.https_insecure {
            "none (http.sslVerify=false)"
        } else if args.https_system_cas {
            "the node's certificates and the system's CA directory"
        } else {
            "the node's certificates only (http.sslCAPath: an empty directory)"
        }
    );

    let mut targets: Vec<(Route, anyhow::Result<Target>)> = Vec::new();
    let daemon = if routes.contains(&Route::GitDaemon) {
        match GitDaemon::start(&peers) {
            Ok(daemon) => {
                targets.push((Route::GitDaemon, Ok(daemon_target(&daemon, &peers))));
                Some(daemon)
            }
            Err(error) => {
                targets.push((Route::GitDaemon, Err(error.context("starting git daemon"))));
                None
            }
        }
    } else {
        None
    };
    let ssh_command = |extra: &[String]| -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(
            client_options(&key, &args.cipher, &args.kex)
                .iter()
                .chain(extra)
                .map(|word| shell_quote(word)),
        );
        words.join(" ")
    };
    let sshd = if routes.contains(&Route::Sshd) {
        match Sshd::start(&args.sshd, dir.path(), &key) {
            Ok(sshd) => {
                let target = Target {
                    route: Route::Sshd,
                    options: Vec::new(),
                    env: vec![("GIT_SSH_COMMAND".into(), ssh_command(&[]))],
                    clone_url: format!("ssh://{}{}/r.git", sshd.addr, peers.display()),
                    push_base: format!("ssh://{}{}/", sshd.addr, peers.display()),
                    repos: peers.clone(),
                    pid: sshd.child.id(),
                };
                targets.push((Route::Sshd, Ok(target)));
                Some(sshd)
            }
            Err(error) => {
                targets.push((Route::Sshd, Err(error.context("starting sshd"))));
                None
            }
        }
    } else {
        None
    };
    let alknet_routes: Vec<Route> = routes.iter().copied().filter(|r| r.is_alknet()).collect();
    let node = if alknet_routes.is_empty() {
        None
    } else {
        match start_node(args, &key, &source) {
            Ok((node, bin, root)) => {
                for &route in &alknet_routes {
                    let target =
                        alknet_target(route, &node, &bin, &root, dir.path(), args, &ssh_command);
                    targets.push((route, target));
                }
                Some(node)
            }
            Err(error) => {
                let error = format!("{error:#}");
                for &route in &alknet_routes {
                    targets.push((route, Err(anyhow::anyhow!("{error}"))));
                }
                None
            }
        }
    };
    targets.sort_by_key(|(r, _)| Route::ALL.iter().position(|a| a == r));

    // Every push repository exists before the first measurement.
    let mut outcomes: Vec<Outcome> = targets.iter().map(|_| Outcome::default()).collect();
    for ((route, target), outcome) in targets.iter().zip(&mut outcomes) {
        let made = match target {
            Ok(target) => (1..=args.rounds).try_for_each(|round| {
                init_bare(
                    &target
                        .repos
                        .join(format!("{}.git", push_name(*route, round))),
                )
            }),
            Err(error) => Err(anyhow::anyhow!("{error:#}")),
        };
        if let Err(error) = made {
            outcome.error = Some(format!("{error:#}"));
            eprintln!("{}: {error:#}", route.label());
        }
    }

    let scratch = dir.path().join("work");
    std::fs::create_dir(&scratch)?;
    for round in 1..=args.rounds {
        for ((route, target), outcome) in targets.iter().zip(&mut outcomes) {
            let Ok(target) = target else { continue };
            if outcome.error.is_some() {
                continue;
            }
            let measured = measure(target, &source, &scratch, round, outcome);
            if let Err(error) = measured {
                let mut error = format!("{}, round {round}: {error:#}", route.label());
                if let (true, Some(node)) = (route.is_alknet(), &node) {
                    let log = node.node.log();
                    let tail = &log[log.len().saturating_sub(20)..];
                    error.push_str(&format!(
                        "\nthe node's last log lines:\n{}",
                        tail.join("\n")
                    ));
                }
                eprintln!("{error}");
                outcome.error = Some(error);
            }
        }
    }

    print_tables(&targets, &outcomes);
    drop(daemon);
    drop(sshd);
    drop(node);
    let failed: Vec<&str> = targets
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.error.is_some())
        .map(|((r, _), _)| r.label())
        .collect();
    if !failed.is_empty() {
        bail!("failed routes: {}", failed.join("; "));
    }
    Ok(())
}

/// One round of `target`: a clone and a push, each timed and its server
/// CPU counted, both checked.
fn measure(
    target: &Target,
    source: &Source,
    scratch: &Path,
    round: usize,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let cpu = || cpu_of(target.pid, true).context("the server's CPU time");
    let client_cpu = || reaped_children_cpu().context("the client's CPU time");

    let clone = scratch.join("clone.git");
    remove_if_present(&clone)?;
    let before = cpu()?;
    let client_before = client_cpu()?;
    let took = timed(|| {
        output_of(
            target
                .git()
                .args(["clone", "--bare", "--quiet"])
                .arg(&target.clone_url)
                .arg(&clone),
            "git clone",
        )
        .map(drop)
    })?;
    let after = cpu()?;
    outcome
        .clone_client_cpu
        .push(client_cpu()?.saturating_sub(client_before));
    expect_head(&clone, &source.head).context("the clone")?;
    std::fs::remove_dir_all(&clone)?;
    outcome.clone.push(took);
    outcome.clone_cpu.push(after.saturating_sub(before));

    let name = push_name(target.route, round);
    let before = cpu()?;
    let client_before = client_cpu()?;
    let took = timed(|| {
        output_of(
            target
                .git()
                .arg("-C")
                .arg(&source.path)
                .args(["push", "--quiet"])
                .arg(target.push_url(&name))
                .arg("refs/heads/*:refs/heads/*"),
            "git push",
        )
        .map(drop)
    })?;
    let after = cpu()?;
    outcome
        .push_client_cpu
        .push(client_cpu()?.saturating_sub(client_before));
    let pushed = target.repos.join(format!("{name}.git"));
    expect_head(&pushed, &source.head)
        .with_context(|| format!("the pushed {}", pushed.display()))?;
    std::fs::remove_dir_all(&pushed)?;
    outcome.push.push(took);
    outcome.push_cpu.push(after.saturating_sub(before));
    Ok(())
}

fn push_name(route: Route, round: usize) -> String {
    format!("push-{}-{round}", route.name())
}

fn print_tables(targets: &[(Route, anyhow::Result<Target>)], outcomes: &[Outcome]) {
    let seconds = |d: &[Duration]| median(d.iter().map(Duration::as_secs_f64).collect());
    let millis = |d: &[Duration]| median(d.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    println!(
        "| route | clone s | push s | server CPU ms per clone | server CPU ms per push | client CPU ms per clone | client CPU ms per push | rounds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((route, _), outcome) in targets.iter().zip(outcomes) {
        let cell = |figure: Option<f64>, precision: usize| match figure {
            Some(figure) => format!("{figure:.precision$}"),
            None => "–".to_owned(),
        };
        let failed = if outcome.error.is_some() {
            " (failed)"
        } else {
            ""
        };
        println!(
            "| {}{failed} | {} | {} | {} | {} | {} | {} | {} |",
            route.label(),
            cell(seconds(&outcome.clone), 2),
            cell(seconds(&outcome.push), 2),
            cell(millis(&outcome.clone_cpu), 0),
            cell(millis(&outcome.push_cpu), 0),
            cell(millis(&outcome.clone_client_cpu), 0),
            cell(millis(&outcome.push_client_cpu), 0),
            outcome.clone.len().min(outcome.push.len()),
        );
    }

    let find = |route: Route| {
        targets
            .iter()
            .zip(outcomes)
            .find(|((r, _), o)| *r == route && o.error.is_none())
            .map(|(_, o)| o)
    };
    let pairs: Vec<(Route, Route)> = Route::PAIRS
        .into_iter()
        .filter(|(a, p)| targets.iter().any(|(r, _)| r == a) && targets.iter().any(|(r, _)| r == p))
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!();
    println!(
        "| alknet / peer, medians (lower is better; target: wall time ≤ 1.15) | clone wall time | push wall time | server CPU per clone | server CPU per push |"
    );
    println!("|---|---|---|---|---|");
    for (alknet, peer) in pairs {
        let ratio = |of: fn(&Outcome) -> &Vec<Duration>| match (find(alknet), find(peer)) {
            (Some(a), Some(p)) => match (seconds(of(a)), seconds(of(p)).filter(|base| *base > 0.0))
            {
                (Some(a), Some(p)) => format!("{:.2}", a / p),
                _ => "–".to_owned(),
            },
            _ => "–".to_owned(),
        };
        println!(
            "| {} / {} | {} | {} | {} | {} |",
            alknet.label(),
            peer.label(),
            ratio(|o| &o.clone),
            ratio(|o| &o.push),
            ratio(|o| &o.clone_cpu),
            ratio(|o| &o.push_cpu),
        );
    }
}

/// `git`, isolated from the user's and the system's configuration, never
/// prompting.
fn git() -> Command {
    let mut command = git_env(Command::new("git"));
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to its end; its stdout, or an error with its stderr.
fn output_of(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An empty repository to push into. Every server checks what is pushed
/// as alknet always does (`receive.fsckObjects`), so that all of them do
/// the same work on a push.
fn init_bare(path: &Path) -> anyhow::Result<()> {
    output_of(
        git()
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(path),
        &format!("git init --bare {}", path.display()),
    )?;
    output_of(
        git()
            .arg("--git-dir")
            .arg(path)
            .args(["config", "receive.fsckObjects", "true"]),
        "git config receive.fsckObjects",
    )
    .map(drop)
}

/// Checks that the repository at `path` has `refs/heads/main` at `head`.
fn expect_head(path: &Path, head: &str) -> anyhow::Result<()> {
    let got = output_of(
        git()
            .arg("--git-dir")
            .arg(path)
            .args(["rev-parse", "--verify", "refs/heads/main"]),
        "git rev-parse",
    )?;
    ensure!(got.trim() == head, "main is {}, not {head}", got.trim());
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `word` quoted for `sh` (git runs `GIT_SSH_COMMAND` through the shell).
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Makes the bare repository `path`: `commits` commits on `main`, each
/// replacing one of `paths` files with fresh pseudo-random bytes, `total`
/// bytes of contents in all; then repacks it.
fn generate(path: &Path, commits: usize, total: usize, paths: usize) -> anyhow::Result<Source> {
    ensure!(
        commits > 0 && paths > 0,
        "--commits and --paths must be at least 1"
    );
    init_bare(path)?;
    let mut child = git()
        .arg("--git-dir")
        .arg(path)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git fast-import")?;
    let stdin = child.stdin.take().context("git fast-import's stdin")?;
    let written = write_history(stdin, commits, total.div_ceil(commits).max(1), paths);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git fast-import failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("feeding git fast-import")?;
    // One pack, as `git gc` leaves a served repository (with a bitmap: a
    // bare repository's repack writes one by default).
    output_of(
        git().arg("--git-dir").arg(path).args(["repack", "-adq"]),
        "git repack",
    )?;
    let head = output_of(
        git()
            .arg("--git-dir")
            .arg(path)
            .args(["rev-parse", "--verify", "refs/heads/main"]),
        "git rev-parse",
    )?
    .trim()
    .to_owned();
    let count = output_of(
        git()
            .arg("--git-dir")
            .arg(path)
            .args(["rev-list", "--count", "refs/heads/main"]),
        "git rev-list --count",
    )?;
    ensure!(
        count.trim() == commits.to_string(),
        "fast-import made {} commits, not {commits}",
        count.trim()
    );
    let mut pack_bytes = 0;
    for entry in std::fs::read_dir(path.join("objects/pack"))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "pack") {
            pack_bytes += entry.metadata()?.len();
        }
    }
    Ok(Source {
        path: path.to_owned(),
        head,
        pack_bytes,
    })
}

/// The `git fast-import` stream of the history `generate` describes, with
/// fixed authors, dates and seed.
fn write_history(
    stdin: std::process::ChildStdin,
    commits: usize,
    blob_len: usize,
    paths: usize,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut blob = vec![0u8; blob_len];
    for i in 0..commits {
        let file = next() as usize % paths;
        for chunk in blob.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
        }
        let when = 1_700_000_000 + i as u64 * 60;
        let message = format!("commit {i}: rewrite f{file:04}\n");
        write!(
            out,
            "commit refs/heads/main\n\
             author Bench <bench@alknet.invalid> {when} +0000\n\
             committer Bench <bench@alknet.invalid> {when} +0000\n\
             data {}\n{message}\
             M 100644 inline d{:02}/f{file:04}.bin\n\
             data {blob_len}\n",
            message.len(),
            file % 20,
        )?;
        out.write_all(&blob)?;
        out.write_all(b"\n")?;
    }
    out.write_all(b"done\n")?;
    out.flush()
}

/// `git daemon` on a loopback port, serving (and accepting pushes into)
/// every repository under one directory.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> anyhow::Result<Self> {
        // `git-daemon` itself rather than `git daemon`: the `git` wrapper
        // would run it as a child and never reap it, so neither the wait
        // for reaped children nor their CPU time would work.
        let exec_path = output_of(git().arg("--exec-path"), "git --exec-path")?;
        let program = Path::new(exec_path.trim()).join("git-daemon");
        let port = free_port()?;
        let child = git_env(Command::new(&program))
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            // Its own complaints (the readiness probe's empty connection)
            // are noise: what goes wrong in a request reaches the client
            // (`--informative-errors`, and receive-pack's sideband).
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", program.display()))?;
        let mut daemon = Self { child, port };
        if let Err(error) = wait_listening(port) {
            daemon.stop();
            return Err(error.context("git daemon does not listen"));
        }
        Ok(daemon)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `command` without the user's and the system's git configuration, and
/// never prompting.
fn git_env(mut command: Command) -> Command {
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    command
}

fn daemon_target(daemon: &GitDaemon, peers: &Path) -> Target {
    Target {
        route: Route::GitDaemon,
        options: Vec::new(),
        env: Vec::new(),
        clone_url: format!("git://127.0.0.1:{}/r.git", daemon.port),
        push_base: format!("git://127.0.0.1:{}/", daemon.port),
        repos: peers.to_owned(),
        pid: daemon.child.id(),
    }
}

/// Starts `alknet serve` with SSH on a plain listener too, gives the
/// bench's key the git scopes, and puts a copy of the repository in the
/// node's git root as `r`; the node, the binary and that root.
fn start_node(
    args: &Args,
    key: &Path,
    source: &Source,
) -> anyhow::Result<(SshNode, PathBuf, PathBuf)> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => alknet_bench::node_process::alknet_beside_me()?,
    };
    // git is served by default (`[git] enabled = true`), repositories under
    // `<data-dir>/git/<name>.git`.
    let node = SshNode::start(&bin, key, &args.node_config).context("starting alknet serve")?;
    // SshNode admits the key with `admin`; this replaces that entry (a
    // peer is keyed by its key) with the git scopes alone, so that the SSH
    // routes go through the git service's own access checks.
    output_of(
        Command::new(&bin)
            .args(["peer", "add"])
            .arg(key.with_extension("pub"))
            .args([
                "--id",
                "bench-git",
                "--scopes",
                "git:read:*,git:write:*",
                "--data-dir",
            ])
            .arg(node.node.data_dir()),
        "alknet peer add",
    )?;
    // Plain `git init --bare` (and a copy) into the git root rather than
    // the node's `git/create` call: the bench does not depend on it. The
    // root is the banner's (`git: … repositories in <root>`), else the
    // default `<data-dir>/git`.
    let root = node
        .node
        .banner
        .iter()
        .find_map(|line| {
            let (_, root) = line
                .strip_prefix("git: ")?
                .rsplit_once("repositories in ")?;
            Some(PathBuf::from(root.trim()))
        })
        .unwrap_or_else(|| node.node.data_dir().join("git"));
    std::fs::create_dir_all(&root)?;
    output_of(
        Command::new("cp")
            .arg("-a")
            .arg(&source.path)
            .arg(root.join("r.git")),
        "cp -a of the repository into the node's git root",
    )?;
    Ok((node, bin, root))
}

fn alknet_target(
    route: Route,
    node: &SshNode,
    bin: &Path,
    root: &Path,
    scratch: &Path,
    args: &Args,
    ssh_command: &dyn Fn(&[String]) -> String,
) -> anyhow::Result<Target> {
    let repos = root.to_owned();
    let pid = node.node.pid();
    let https = |version: &str| -> anyhow::Result<Target> {
        let mut options = vec![
            "-c".to_owned(),
            format!(
                "http.extraHeader=Authorization: Bearer {}",
                node.node.admin_token
            ),
            "-c".to_owned(),
            format!("http.version={version}"),
        ];
        let mut env = Vec::new();
        if args.https_insecure {
            options.extend(["-c".to_owned(), "http.sslVerify=false".to_owned()]);
        } else {
            // The node shows a client that can verify Ed25519 its node
            // certificate and any other its web one; both are self-signed
            // for 127.0.0.1, so both are the trust anchors. Through the
            // environment, which every git process of the operation
            // inherits (`GIT_SSL_CAINFO` is `http.sslCAInfo`,
            // `GIT_SSL_CAPATH` `http.sslCAPath`).
            let bundle = scratch.join("alknet-ca.pem");
            let mut pem = String::new();
            for name in ["node.crt", "web.crt"] {
                let file = node.node.data_dir().join(name);
                pem.push_str(
                    &std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                );
            }
            std::fs::write(&bundle, pem)?;
            env.push(("GIT_SSL_CAINFO".to_owned(), bundle.display().to_string()));
            if !args.https_system_cas {
                let no_cas = scratch.join("no-cas");
                std::fs::create_dir_all(&no_cas)?;
                env.push(("GIT_SSL_CAPATH".to_owned(), no_cas.display().to_string()));
            }
        }
        Ok(Target {
            route,
            options,
            env,
            clone_url: format!("https://{}/git/r.git", node.node.addr),
            push_base: format!("https://{}/git/", node.node.addr),
            repos: repos.clone(),
            pid,
        })
    };
    let ssh = |extra: &[String], host: String| Target {
        route,
        options: Vec::new(),
        env: vec![("GIT_SSH_COMMAND".to_owned(), ssh_command(extra))],
        clone_url: format!("ssh://alknet@{host}/r.git"),
        push_base: format!("ssh://alknet@{host}/"),
        repos: repos.clone(),
        pid,
    };
    Ok(match route {
        Route::AlknetHttps1 => https("HTTP/1.1")?,
        Route::AlknetHttps2 => https("HTTP/2")?,
        Route::AlknetSsh => ssh(&[], node.plain.to_string()),
        Route::AlknetQuic => ssh(
            &[
                "-o".to_owned(),
                format!(
                    "ProxyCommand={} proxy --pin {} {}",
                    bin.display(),
                    node.node_id,
                    node.node.addr
                ),
            ],
            // The proxy dials the node; ssh's host is a name only.
            "127.0.0.1".to_owned(),
        ),
        Route::GitDaemon | Route::Sshd => bail!("{} is not an alknet route", route.label()),
    })
}
