//! `alknet`: the node's command-line interface.

mod data_dir;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
