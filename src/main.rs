//! Entry point: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use datamig::cli::{Cli, Outcome, json_error, report_name_of_args, run};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            // `--json` promised one object on stdout, even for a bad command line.
            if code == 2 && args.iter().any(|a| a == "--json") {
                let text = e.render().to_string();
                let msg = text.trim().trim_start_matches("error: ");
                print_line(&json_error(report_name_of_args(&args), msg));
            }
            return ExitCode::from(code);
        }
    };
    datamig::signals::install();
    let json = cli.global.json.then(|| cli.command.report_name());
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Ok(Outcome::CouldNotRun) => ExitCode::from(2),
        // `datamig list A | head -1`: the reader has all it wanted.
        Err(e) if stdout_reader_gone(&e) => {
            datamig::atomic::remove_live_temps();
            ExitCode::SUCCESS
        }
        Err(e) => {
            datamig::atomic::remove_live_temps();
            eprintln!("datamig: error: {e:#}");
            if let Some(report) = json {
                print_line(&json_error(report, &format!("{e:#}")));
            }
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

/// The error object on stdout; a closed stdout must not turn exit 2 into a panic.
fn print_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
