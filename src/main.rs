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
        // `datamig list A | head -1`: the reader has all it wanted.
        Err(e) if stdout_reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            datamig::atomic::remove_live_temps();
            eprintln!("datamig: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The run failed only because stdout is a pipe (or socket) whose reader
/// closed it, as `| head` does. Rust ignores SIGPIPE, so the write returned
/// EPIPE instead of ending the process; like the tools that die of SIGPIPE,
/// that is a quiet end, not an error to print. A broken pipe anywhere else
/// (stdout a file or a terminal) is still an error.
fn stdout_reader_gone(e: &anyhow::Error) -> bool {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    });
    broken
        && rustix::fs::fstat(std::io::stdout()).is_ok_and(|st| {
            matches!(
                rustix::fs::FileType::from_raw_mode(st.st_mode),
                rustix::fs::FileType::Fifo | rustix::fs::FileType::Socket
            )
        })
}
