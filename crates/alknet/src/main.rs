//! `alknet`: the node's command-line interface.

mod call;
mod data_dir;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use alknet_core::NodeId;
use clap::{ArgGroup, Parser, Subcommand};

/// alknet: one port, many protocols, routed by ALPN.
#[derive(Debug, Parser)]
#[command(name = "alknet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: node key, certificates and a commented alknet.toml.
    Init {
        /// The directory to create.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Run the node (initialising the data directory first if it is missing).
    Serve {
        /// The data directory.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Listen address for QUIC (UDP) and TLS (TCP); overrides `listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Configuration file [default: DATA_DIR/alknet.toml when present].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Call one operation on a node and print its output as JSON
    /// (a subscription prints one line per item).
    #[command(group(ArgGroup::new("trust").required(true).args(["pin", "insecure"])))]
    Call {
        /// The node's address.
        #[arg(long)]
        connect: SocketAddr,
        /// A bearer token, sent with the request.
        #[arg(long, env = "ALKNET_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Accept only the node with this id (`ed25519:<hex>`).
        #[arg(long)]
        pin: Option<NodeId>,
        /// Accept any node certificate.
        #[arg(long)]
        insecure: bool,
        /// Dial TLS over TCP instead of QUIC.
        #[arg(long)]
        tcp: bool,
        /// The operation, e.g. `services/list`.
        operation: String,
        /// The input as JSON [default: {}].
        input: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { data_dir } => data_dir::init(&data_dir).map(|created| {
            created.print();
            ExitCode::SUCCESS
        }),
        Command::Serve {
            data_dir,
            listen,
            config,
        } => serve::run(serve::ServeArgs {
            data_dir,
            listen,
            config,
        }),
        Command::Call {
            connect,
            token,
            pin,
            insecure: _,
            tcp,
            operation,
            input,
        } => call::run(call::CallArgs {
            connect,
            token,
            pin,
            tcp,
            operation,
            input,
        }),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
