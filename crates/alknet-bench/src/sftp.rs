//! `alknet-bench sftp`: stock OpenSSH `sftp` against alknet's SFTP and
//! against OpenSSH `sshd` with its `sftp-server`, in one run, with the same
//! client, key, cipher and key exchange.
//!
//! alknet is reached four ways: the SSH subsystem over its plain listener
//! (the same transport as sshd), over TCP+TLS and over QUIC (both through
//! `alknet proxy`), and `alknet/sftp` over QUIC (`sftp -D` through `alknet
//! proxy`, no SSH layer). The floor is `sftp -D sftp-server`: OpenSSH's
//! server as a local child process, no network and no encryption — what
//! the SFTP exchange itself costs on these cores.
//!
//! Measured: one large file put and got, and a directory of many small
//! files put and got (`put -r`, `get -r`), round after round with the
//! servers taking turns, so that neither the disk's writeback of one
//! server's files nor a busy moment of the machine lands on one server
//! alone; the table has each figure's median. Server CPU comes from
//! `/proc` (sshd: its reaped per-connection children).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::openssh::{
    SshNode, Sshd, check, client_options, cpu_of, median_of, prepare, print_ratios, take_turns,
    timed, write_payload,
};

/// OpenSSH's SFTP server on Debian.
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// `alknet-bench sftp`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The alknet binary [default: the one beside this benchmark].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The OpenSSH server.
    #[arg(long, default_value = "/usr/sbin/sshd")]
    sshd: PathBuf,
    /// The large file, in MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// How many small files.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// The size of each small file, in bytes.
    #[arg(long, default_value_t = 4096)]
    file_bytes: usize,
    /// The cipher every SSH server is asked for.
    #[arg(long, default_value = "chacha20-poly1305@openssh.com")]
    cipher: String,
    /// The key exchange every SSH server is asked for.
    #[arg(long, default_value = "curve25519-sha256")]
    kex: String,
    /// Rounds; each server is measured once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One server under test.
struct Target {
    name: &'static str,
    /// `sftp`'s arguments before the batch file, host included.
    command: Vec<String>,
    /// Where the target's files go, as the client names it.
    remote: String,
    /// Where that is on this machine, to clean up.
    local: PathBuf,
    /// The server process whose CPU is counted, if any.
    pid: Option<u32>,
    /// Whether its CPU includes reaped children (sshd forks).
    children: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<()> {
    let (bin, dir, key) = prepare(args.bin.as_deref())?;
    let large = dir.path().join("large.bin");
    write_payload(&large, args.mib << 20)?;
    let small = dir.path().join("small");
    std::fs::create_dir(&small)?;
    for n in 0..args.files {
        write_payload(&small.join(format!("f{n:05}")), args.file_bytes)?;
    }
    let node = SshNode::start(&bin, &key, "")?;
    let certificate = dir.path().join("client.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&certificate)
        .output()
        .context("openssl")?;
    check(made.status, "openssl genpkey")?;
    node.admit(&bin, &certificate_fingerprint(&certificate)?)?;
    let mut sshd = Sshd::start(&args.sshd, dir.path(), &key)?;
    let sshd_files = dir.path().join("sshd-files");
    std::fs::create_dir(&sshd_files)?;
    let floor_files = dir.path().join("floor-files");
    std::fs::create_dir(&floor_files)?;
    let node_files = node.node.data_dir().join("files");

    let options = client_options(&key, &args.cipher, &args.kex);
    let over_ssh = |reach: Vec<String>| -> Vec<String> {
        let mut command = options.clone();
        command.extend(reach);
        command.push("127.0.0.1".to_owned());
        command
    };
    let proxy = |transport: &str| {
        format!(
            "ProxyCommand={} proxy {transport} --pin {} {}",
            bin.display(),
            node.node_id,
            node.node.addr
        )
    };
    let targets = [
        Target {
            name: "sshd + sftp-server",
            command: over_ssh(vec!["-P".into(), sshd.addr.port().to_string()]),
            remote: sshd_files.display().to_string(),
            local: sshd_files.clone(),
            pid: Some(sshd.child.id()),
            children: true,
        },
        Target {
            name: "alknet subsystem, plain TCP",
            command: over_ssh(vec!["-P".into(), node.plain.port().to_string()]),
            remote: "/".into(),
            local: node_files.clone(),
            pid: Some(node.node.pid()),
            children: false,
        },
        Target {
            name: "alknet subsystem, TCP+TLS",
            command: over_ssh(vec!["-o".into(), proxy("--tcp")]),
            remote: "/".into(),
            local: node_files.clone(),
            pid: Some(node.node.pid()),
            children: false,
        },
        Target {
            name: "alknet subsystem, QUIC",
            command: over_ssh(vec!["-o".into(), proxy("--quic")]),
            remote: "/".into(),
            local: node_files.clone(),
            pid: Some(node.node.pid()),
            children: false,
        },
        Target {
            name: "alknet/sftp, QUIC",
            command: vec![
                "-D".into(),
                format!(
                    "{} proxy --quic --alpn alknet/sftp --key {} --pin {} {}",
                    bin.display(),
                    certificate.display(),
                    node.node_id,
                    node.node.addr
                ),
            ],
            remote: "/".into(),
            local: node_files.clone(),
            pid: Some(node.node.pid()),
            children: false,
        },
        Target {
            name: "floor: sftp -D sftp-server",
            command: vec![
                "-D".into(),
                format!("{SFTP_SERVER} -d {}", floor_files.display()),
            ],
            remote: floor_files.display().to_string(),
            local: floor_files.clone(),
            pid: None,
            children: false,
        },
    ];

    let large_bytes = (args.mib << 20) as f64;
    println!(
        "SFTP: one {} MiB file, and {} files of {} bytes; cipher {}, key exchange {}; median of {} rounds",
        args.mib, args.files, args.file_bytes, args.cipher, args.kex, args.rounds
    );
    let samples = take_turns(
        &targets,
        args.rounds,
        |target| target.name,
        |target, _| measure(target, dir.path(), &large, args),
    )?;
    println!(
        "| server | put MiB/s | get MiB/s | put files/s | get files/s | server CPU ms/GiB put, get | server CPU ms per 1000 files put, get |"
    );
    println!("|---|---|---|---|---|---|---|");
    let gib = large_bytes / (1u64 << 30) as f64;
    let thousands = args.files as f64 / 1000.0;
    let mut rows = Vec::new();
    for (target, samples) in targets.iter().zip(&samples) {
        let of = |figure: &dyn Fn(&Sample) -> f64| median_of(samples, figure);
        let rate = |seconds: f64, amount: f64| amount / seconds;
        let row = Row {
            put: rate(of(&|s| s.wall[0].as_secs_f64()), large_bytes / 1048576.0),
            get: rate(of(&|s| s.wall[1].as_secs_f64()), large_bytes / 1048576.0),
            put_files: rate(of(&|s| s.wall[2].as_secs_f64()), args.files as f64),
            get_files: rate(of(&|s| s.wall[3].as_secs_f64()), args.files as f64),
        };
        let ms = |cpu: usize| of(&|s| s.cpu[cpu].as_secs_f64() * 1e3);
        let cpu_cells = match target.pid {
            Some(_) => (
                format!("{:.0}, {:.0}", ms(0) / gib, ms(1) / gib),
                format!("{:.0}, {:.0}", ms(2) / thousands, ms(3) / thousands),
            ),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
            target.name, row.put, row.get, row.put_files, row.get_files, cpu_cells.0, cpu_cells.1
        );
        rows.push((target.name, row));
    }
    let figures: Vec<(&str, Vec<f64>)> = rows
        .iter()
        .map(|(name, r)| (*name, vec![r.put, r.get, r.put_files, r.get_files]))
        .collect();
    print_ratios(
        "sshd + sftp-server",
        &["put", "get", "put files", "get files"],
        &figures,
    );
    sshd.stop();
    drop(node);
    Ok(())
}

struct Row {
    put: f64,
    get: f64,
    put_files: f64,
    get_files: f64,
}

/// One round's figures for one server, per transfer (put, get, put -r,
/// get -r): its wall time and the server's CPU.
struct Sample {
    wall: [Duration; 4],
    cpu: [Duration; 4],
}

/// Puts and gets the large file and the small files once against `target`,
/// checks what came back, and removes what was sent.
fn measure(target: &Target, dir: &Path, large: &Path, args: &Args) -> anyhow::Result<Sample> {
    let cpu = || match target.pid {
        Some(pid) => cpu_of(pid, target.children),
        None => Ok(Duration::ZERO),
    };
    let down = dir.join("down");
    let _ = std::fs::remove_dir_all(&down);
    std::fs::create_dir(&down)?;
    let remote = |name: &str| format!("{}/{name}", target.remote.trim_end_matches('/'));
    let transfers = [
        format!("put large.bin {}", remote("large.bin")),
        format!("get {} down/large.bin", remote("large.bin")),
        format!("put -r small {}", remote("small")),
        format!("get -r {} down/small", remote("small")),
    ];
    let mut sample = Sample {
        wall: [Duration::ZERO; 4],
        cpu: [Duration::ZERO; 4],
    };
    for (n, command) in transfers.iter().enumerate() {
        let before = cpu()?;
        sample.wall[n] = sftp(target, dir, command)?;
        sample.cpu[n] = cpu()? - before;
    }
    verify(
        large,
        &down.join("large.bin"),
        &down.join("small"),
        args.files,
    )?;
    let _ = std::fs::remove_file(target.local.join("large.bin"));
    let _ = std::fs::remove_dir_all(target.local.join("small"));
    Ok(sample)
}

/// Runs one `sftp -b` command against `target` from `cwd`, timed.
fn sftp(target: &Target, cwd: &Path, command: &str) -> anyhow::Result<Duration> {
    let batch = cwd.join("batch");
    std::fs::write(&batch, format!("{command}\n"))?;
    timed(|| {
        let out = Command::new("sftp")
            .args(["-q", "-b"])
            .arg(&batch)
            .args(&target.command)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "{} `{command}`: {}",
                target.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    })
}

/// The large file came back whole and every small file came back.
fn verify(large: &Path, got: &Path, small: &Path, files: usize) -> anyhow::Result<()> {
    if std::fs::metadata(got)?.len() != std::fs::metadata(large)?.len() {
        bail!("the large file came back with another size");
    }
    let count = std::fs::read_dir(small)?.count();
    if count != files {
        bail!("{count} of {files} small files came back");
    }
    Ok(())
}

/// `ed25519:<hex>` of a PKCS#8 key, as `alknet peer add` takes it.
fn certificate_fingerprint(key: &Path) -> anyhow::Result<String> {
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .context("openssl")?;
    check(out.status, "openssl pkey")?;
    let public = out
        .stdout
        .get(out.stdout.len().saturating_sub(32)..)
        .context("no public key")?;
    Ok(format!("ed25519:{}", hex::encode(public)))
}
