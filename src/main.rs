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

/// The error object on stdout; a closed stdout must not turn exit 2 into a panic.
fn print_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
