//! `alknet-bench ssh`: stock OpenSSH `ssh` against alknet's SSH server (its
//! plain listener, and `alknet proxy` over QUIC) and against OpenSSH `sshd`
//! started on a loopback port with a temporary configuration, in one run,
//! with the same client, key and cipher.
//!
//! Measured: a file streamed up (`ssh host 'cat >/dev/null' <file`) and down
//! (`ssh host 'cat file' >/dev/null`) through an exec channel, the same
//! through `ssh -L`, and sequential `ssh host true` round trips. Raw TCP over
//! loopback, with no SSH at all, is the floor: what the two shared cores
//! give a byte stream. Server CPU comes from `/proc` (sshd: the listener's
//! reaped per-connection children). The servers take turns in each of
//! `--rounds` rounds, so a slow spell of the machine falls on all of them
//! alike; the table has medians.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::bail;

use crate::openssh::{
    SshNode, Sshd, check, client_options, cpu_of, free_port, median_of, prepare, print_ratios,
    take_turns, timed, wait_listening, write_payload,
};

/// `alknet-bench ssh`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The alknet binary [default: the one beside this benchmark].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The OpenSSH server.
    #[arg(long, default_value = "/usr/sbin/sshd")]
    sshd: PathBuf,
    /// Bytes streamed each way, in MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Sequential `ssh host true` runs per server, spread over the rounds.
    #[arg(long, default_value_t = 1000)]
    round_trips: usize,
    /// Rounds; each server takes its turn in every round, and the table has
    /// each figure's median (the round trips' percentiles are over all).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The cipher every server is asked for.
    #[arg(long, default_value = "chacha20-poly1305@openssh.com")]
    cipher: String,
    /// The key exchange every server is asked for (OpenSSH 9 would pick
    /// the costlier post-quantum sntrup761x25519 with sshd).
    #[arg(long, default_value = "curve25519-sha256")]
    kex: String,
}

/// One server under test.
struct Target {
    name: &'static str,
    /// Arguments that make `ssh` reach it.
    reach: Vec<String>,
    /// The process whose CPU is the server's.
    pid: u32,
    /// Whether its CPU includes reaped children (sshd forks per connection).
    children: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<()> {
    let (bin, dir, key) = prepare(args.bin.as_deref())?;
    let file = dir.path().join("payload");
    write_payload(&file, args.mib << 20)?;

    let SshNode {
        node,
        plain,
        node_id,
    } = SshNode::start(&bin, &key, "")?;
    let mut sshd = Sshd::start(&args.sshd, dir.path(), &key)?;

    let targets = [
        Target {
            name: "sshd",
            reach: vec!["-p".into(), sshd.addr.port().to_string()],
            pid: sshd.child.id(),
            children: true,
        },
        Target {
            name: "alknet plain",
            reach: vec!["-p".into(), plain_port(plain).to_string()],
            pid: node.pid(),
            children: false,
        },
        Target {
            name: "alknet quic",
            reach: vec![
                "-o".into(),
                format!(
                    "ProxyCommand={} proxy --pin {node_id} {}",
                    bin.display(),
                    node.addr
                ),
            ],
            pid: node.pid(),
            children: false,
        },
    ];
    let options = client_options(&key, &args.cipher, &args.kex);
    let bytes = (args.mib << 20) as f64;
    let floor = raw_tcp(args.mib << 20)?;
    let rounds = args.rounds.max(1);
    println!(
        "SSH, {} MiB each way, cipher {}, key exchange {}; median of {} rounds; raw TCP floor {:.0} MiB/s",
        args.mib,
        args.cipher,
        args.kex,
        rounds,
        bytes / floor.as_secs_f64() / 1048576.0
    );
    let samples = take_turns(
        &targets,
        rounds,
        |target| target.name,
        |target, round| {
            // The round trips are spread over the rounds, so more rounds
            // do not lengthen the slowest part of the run.
            let trips = args.round_trips / rounds + usize::from(round < args.round_trips % rounds);
            measure(target, &options, &file, args.mib << 20, trips)
        },
    )?;
    println!(
        "| server | up MiB/s | down MiB/s | -L up MiB/s | -L down MiB/s | `true` p50 ms | p99 ms | server CPU ms/GiB up, down | server CPU ms per `true` |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let gib = bytes / (1u64 << 30) as f64;
    let mut rows = Vec::new();
    for (target, samples) in targets.iter().zip(&samples) {
        let of = |figure: &dyn Fn(&Sample) -> f64| median_of(samples, figure);
        let rate = |n: usize| bytes / of(&|s| s.wall[n].as_secs_f64()) / 1048576.0;
        let mut trips: Vec<Duration> = samples
            .iter()
            .flat_map(|s| s.trips.iter().copied())
            .collect();
        trips.sort();
        let percentile = |p: f64| {
            trips
                .get(((trips.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or_default()
        };
        let trip_cpu: Duration = samples.iter().map(|s| s.cpu[2]).sum();
        let row = vec![
            rate(0),
            rate(1),
            rate(2),
            rate(3),
            percentile(0.5).as_secs_f64(),
            percentile(0.99).as_secs_f64(),
        ];
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0}, {:.0} | {:.2} |",
            target.name,
            row[0],
            row[1],
            row[2],
            row[3],
            row[4] * 1e3,
            row[5] * 1e3,
            of(&|s| s.cpu[0].as_secs_f64()) * 1e3 / gib,
            of(&|s| s.cpu[1].as_secs_f64()) * 1e3 / gib,
            trip_cpu.as_secs_f64() * 1e3 / trips.len().max(1) as f64,
        );
        rows.push((target.name, row));
    }
    print_ratios(
        "sshd",
        &["up", "down", "-L up", "-L down", "p50", "p99"],
        &rows,
    );
    sshd.stop();
    drop(node);
    Ok(())
}

/// One round's figures for one server.
struct Sample {
    /// Streaming up and down through an exec channel, then through `-L`.
    wall: [Duration; 4],
    /// The server's CPU while streaming up, down (exec), and over the round
    /// trips.
    cpu: [Duration; 3],
    /// Each `ssh host true`.
    trips: Vec<Duration>,
}

/// Streams `len` bytes each way through an exec channel and through `-L`,
/// then runs `ssh host true` `trips` times, against `target`.
fn measure(
    target: &Target,
    options: &[String],
    file: &Path,
    len: usize,
    trips: usize,
) -> anyhow::Result<Sample> {
    let ssh = || -> Command {
        let mut command = Command::new("ssh");
        command.args(options).args(&target.reach).arg("127.0.0.1");
        command
    };
    let cpu = || cpu_of(target.pid, target.children);
    let before = cpu()?;
    let up = timed(|| {
        let status = ssh()
            .arg("cat > /dev/null")
            .stdin(std::fs::File::open(file)?)
            .stdout(Stdio::null())
            .status()?;
        check(status, "upload")
    })?;
    let after_up = cpu()?;
    let down = timed(|| {
        let status = ssh()
            .arg(format!("cat {}", file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        check(status, "download")
    })?;
    let after_down = cpu()?;
    let (forward_up, forward_down) = through_forward(&mut ssh(), len)?;
    let before_trips = cpu()?;
    let trips = (0..trips)
        .map(|_| {
            timed(|| {
                let status = ssh().arg("true").stdin(Stdio::null()).status()?;
                check(status, "true")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after_trips = cpu()?;
    Ok(Sample {
        wall: [up, down, forward_up, forward_down],
        cpu: [
            after_up - before,
            after_down - after_up,
            after_trips - before_trips,
        ],
        trips,
    })
}

fn plain_port(addr: SocketAddr) -> u16 {
    addr.port()
}

/// Pushes `len` bytes up and then down through `ssh -L` to loopback
/// servers that sink and source them.
fn through_forward(ssh: &mut Command, len: usize) -> anyhow::Result<(Duration, Duration)> {
    let sink = TcpListener::bind("127.0.0.1:0")?;
    let sink_addr = sink.local_addr()?;
    std::thread::spawn(move || {
        for stream in sink.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
                let _ = stream.write_all(b"k");
            });
        }
    });
    let source = TcpListener::bind("127.0.0.1:0")?;
    let source_addr = source.local_addr()?;
    std::thread::spawn(move || {
        let block = vec![0x5a_u8; 1 << 16];
        for stream in source.incoming().flatten() {
            let block = block.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut left = len;
                while left > 0 {
                    let n = left.min(block.len());
                    if stream.write_all(&block[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    let up_port = free_port()?;
    let down_port = free_port()?;
    let mut forward = Forward(
        ssh.args(["-N", "-o", "ExitOnForwardFailure=yes"])
            .arg("-L")
            .arg(format!("{up_port}:{sink_addr}"))
            .arg("-L")
            .arg(format!("{down_port}:{source_addr}"))
            .stdin(Stdio::null())
            .spawn()?,
    );
    wait_listening(up_port)?;
    wait_listening(down_port)?;
    let up = timed(|| {
        let mut stream = TcpStream::connect(("127.0.0.1", up_port))?;
        let block = vec![0xa5_u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            stream.write_all(&block[..n])?;
            left -= n;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        // The sink's one byte says everything arrived.
        let mut done = [0u8; 1];
        stream.read_exact(&mut done)?;
        Ok(())
    })?;
    let down = timed(|| {
        let mut stream = TcpStream::connect(("127.0.0.1", down_port))?;
        let mut buffer = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < len {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                bail!("the forward ended after {got} bytes");
            }
            got += n;
        }
        Ok(())
    })?;
    forward.stop();
    Ok((up, down))
}

struct Forward(Child);

impl Forward {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The floor: `len` bytes over a loopback TCP connection, no SSH.
fn raw_tcp(len: usize) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        std::io::copy(&mut stream, &mut std::io::sink())
    });
    let took = timed(|| {
        let mut stream = TcpStream::connect(addr)?;
        let block = vec![0x33_u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            stream.write_all(&block[..n])?;
            left -= n;
        }
        drop(stream);
        let _ = sink.join();
        Ok(())
    })?;
    Ok(took)
}
