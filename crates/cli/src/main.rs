//! `keyfold`: the command-line entry point.
#![forbid(unsafe_code)]

mod demo;
mod prime_dir;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keyfold: threshold-signing custody engine.
#[derive(Parser)]
#[command(name = "keyfold", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs, in one process, a 2-of-3 key generation for secp256k1 (ECDSA) and
    /// Ed25519 (FROST), signs a message with each and checks the signatures.
    Demo {
        /// Keeps safe primes and aux info here, so a second run skips the slow
        /// set-up (about a minute on a 2-core machine).
        #[arg(long, default_value = "keyfold-demo")]
        data_dir: PathBuf,
        /// The message to sign.
        #[arg(long, default_value = "Keyfold demo: pay 1.5 BTC to bc1q-merchant")]
        message: String,
        /// Also writes the public keys and signatures as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // round_based warns about late duplicates that the in-process
                // network delivers (a party's own broadcasts); not actionable.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,round_based=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            data_dir,
            message,
            out,
        } => demo::run(&data_dir, message.as_bytes(), out.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold: {e}");
            ExitCode::FAILURE
        }
    }
}
