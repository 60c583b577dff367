//! `payrail`: serve the engine, or talk to a running one.
//!
//! Usage and exit codes are in `payrail --help` and [`cli::run`].

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::run::main(cli::Cli::parse())
}
