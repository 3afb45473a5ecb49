//! Side-by-side benchmarks: each runs alknet and a bare baseline in one process,
//! interleaving the two so that machine noise hits both equally, and prints a
//! table with the ratio. Results and the commands that produced them are kept
//! in `docs/benchmarks.md`.

mod calls;
mod chaos;
mod connect;
mod dns;
mod gateway;
mod git;
mod openssh;
mod sftp;
mod soak;
mod ssh;
mod websocket;

use alknet_bench::support;

use clap::{Parser, Subcommand};

/// The node's allocator, as `alknet serve` runs it (see
/// `crates/alknet/src/main.rs`, whose options these repeat).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// SAFETY: as in `crates/alknet/src/main.rs`: jemalloc's weak
// `const char *malloc_conf`, defined once, as a pointer to a NUL-terminated
// `'static` literal that is never written.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a C string literal's pointer is valid for its `'static` life.
    unsafe { &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr() },
);

#[derive(Debug, Parser)]
#[command(
    name = "alknet-bench",
    about = "alknet benchmarks against bare baselines"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Sequential QUIC connects + one echo round trip: through alknet's listener,
    /// router and supervision tree vs a bare quinn server with the same TLS config.
    Connect(connect::Args),
    /// Concurrent echo calls over the call protocol (QUIC and TCP+TLS) at
    /// several session counts, with a raw ractor message-rate baseline.
    Calls(calls::Args),
    /// `POST /call` (the gateway) against a bare axum JSON echo route served
    /// by the same HTTP handler on the same TLS listener, interleaved.
    Gateway(gateway::Args),
    /// Echo calls over the WebSocket session at `/alknet/call` against a
    /// jsonrpsee 0.26 WebSocket server with an equivalent echo method.
    Ws(websocket::Args),
    /// The node's memory per idle WebSocket session, with many open.
    WsMemory(websocket::MemoryArgs),
    /// The real binary under faults: connection panics and supervisor crash
    /// loops while another protocol takes calls, then escalation.
    Chaos(chaos::Args),
    /// The real binary under mixed steady load: RSS, fds, actors and p99
    /// over time, then connect/close cycles and an exact `admin/tree`.
    Soak(soak::Args),
    /// Stock `ssh` against alknet's SSH server (plain listener, and `alknet
    /// proxy` over QUIC) and against OpenSSH `sshd` on loopback: streams
    /// through exec channels and `-L`, and `ssh host true` round trips.
    Ssh(ssh::Args),
    /// Stock `sftp` against alknet's SFTP (the SSH subsystem over plain
    /// TCP, TCP+TLS and QUIC; `alknet/sftp` over QUIC) and against OpenSSH
    /// `sshd` with `sftp-server`: one large file and many small ones, each
    /// way.
    Sftp(sftp::Args),
    /// Stock `git` clones and pushes a generated repository (5,000 commits,
    /// 55 MiB) over alknet (smart HTTP over HTTPS; SSH on the plain
    /// listener and over QUIC) and over `git daemon` (git://) and OpenSSH
    /// `sshd`: wall time and server CPU per operation.
    Git(git::Args),
    /// Debian's `dnsperf` (UDP, TCP, DoT) and a DoQ client against
    /// alknet's DNS, hickory-dns and Knot (`knotd`) answering one zone,
    /// beside a floor server that does no DNS work: queries per second, p99
    /// and server CPU per query.
    Dns(dns::Args),
    /// The floor server of `dns`: answers every query with itself.
    #[command(hide = true)]
    DnsFloor(dns::FloorArgs),
    /// The child process of `ws-memory`, which holds the sessions open.
    #[command(hide = true)]
    WsMemoryClient(websocket::ClientArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.bench {
        Bench::Connect(args) => runtime.block_on(connect::run(args)),
        Bench::Calls(args) => runtime.block_on(calls::run(args)),
        Bench::Gateway(args) => runtime.block_on(gateway::run(args)),
        Bench::Ws(args) => runtime.block_on(websocket::run(args)),
        Bench::WsMemory(args) => runtime.block_on(websocket::memory(args)),
        Bench::Chaos(args) => runtime.block_on(chaos::run(args)),
        Bench::Soak(args) => runtime.block_on(soak::run(args)),
        Bench::Ssh(args) => runtime.block_on(ssh::run(args)),
        Bench::Sftp(args) => runtime.block_on(sftp::run(args)),
        Bench::Git(args) => runtime.block_on(git::run(args)),
        Bench::Dns(args) => runtime.block_on(dns::run(args)),
        Bench::DnsFloor(args) => runtime.block_on(dns::floor(args)),
        Bench::WsMemoryClient(args) => runtime.block_on(websocket::client(args)),
    }
}
