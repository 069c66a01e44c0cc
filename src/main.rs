//! Entry point: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use datamig::cli::{Cli, Outcome, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    datamig::signals::install();
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(e) => {
            datamig::atomic::remove_live_temps();
            eprintln!("datamig: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
