//! The command line: clap definitions (doc comments are the help text) and the
//! dispatch that turns flags into typed options and reports into output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::layout::Layout;
use crate::progress;
use crate::render;
use crate::report::Report;

pub const DEFAULT_ROOT: &str = "/mnt/coordinaton_mcp_data/";

const EXIT_CODES: &str = "\
Exit codes:
  0  complete and clean
  1  complete, with problems or discrepancies (listed in the report)
  2  could not run (bad arguments, missing root, unreadable manifest, ...)";

/// Inventory, verify, archive, restore and back up the coordination server's data root.
#[derive(Debug, Parser)]
#[command(name = "datamig", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Data root [default: $V2_DATA_ROOT, else /mnt/coordinaton_mcp_data/]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Layout file replacing the built-in one (see `datamig layout`)
    #[arg(long, global = true, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Worker threads [default: all cores]
    #[arg(short = 'j', long = "jobs", global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// Quiet: no progress; nothing on stdout when the run is clean, else only the
    /// problems and the result line (`--json` still prints its one line)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Machine-readable result (one JSON object) on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan the root area by area, hashing every file; optionally write a manifest
    #[command(after_help = EXIT_CODES)]
    Inventory(InventoryArgs),
    /// Write a dated, verified .tar.zst of a layout target (production, v2-dev-data, v2) or a directory
    #[command(after_help = EXIT_CODES)]
    Archive(ArchiveArgs),
    /// Check an archive, a live tree against a manifest (--tree), or the migration (--migration)
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Restore an archive (or some paths of it) into a directory, checking every file
    #[command(after_help = EXIT_CODES)]
    Restore(RestoreArgs),
    /// List an archive's members from its manifest, without decompressing it
    List(ListArgs),
    /// The nightly job: a verified, UTC-stamped archive of the V2 data in <root>/backups/, then retention
    #[command(after_help = EXIT_CODES)]
    Backup(BackupArgs),
    /// What on this server (systemd, cron, nginx, logrotate, code checkouts) still points at the paths being retired
    #[command(after_help = EXIT_CODES)]
    Refs(RefsArgs),
    /// Print the effective layout (TOML) so it can be copied and edited
    Layout,
    /// Print a shell completion script (e.g. `datamig completions bash > /etc/bash_completion.d/datamig`)
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `datamig man > /usr/local/share/man/man1/datamig.1`)
    Man,
}

impl Command {
    /// The `report` name the run's JSON carries (also on a run that cannot start).
    pub fn report_name(&self) -> &'static str {
        match self {
            Command::Inventory(_) => "inventory",
            Command::Archive(_) => "archive",
            Command::Verify(a) => verify_report_name(a.tree.is_some(), a.migration),
            Command::Restore(_) => "restore",
            Command::List(_) => "list",
            Command::Backup(_) => "backup",
            Command::Refs(_) => "refs",
            Command::Layout => "layout",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

fn verify_report_name(tree: bool, migration: bool) -> &'static str {
    match (tree, migration) {
        (_, true) => "verify-migration",
        (true, false) => "verify-tree",
        (false, false) => "verify-archive",
    }
}

/// The `report` name for a command line clap refused: the subcommand is looked
/// up in the raw arguments, since there is no parsed `Cli` to ask.
pub fn report_name_of_args(args: &[std::ffi::OsString]) -> &'static str {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let verb = args.iter().skip(1).find_map(|a| {
        let a = a.to_str()?;
        Cli::command()
            .get_subcommands()
            .find(|c| c.get_name() == a)
            .map(|c| c.get_name().to_string())
    });
    match verb.as_deref() {
        Some("verify") => verify_report_name(has("--tree"), has("--migration")),
        Some("inventory") => "inventory",
        Some("archive") => "archive",
        Some("restore") => "restore",
        Some("list") => "list",
        Some("backup") => "backup",
        Some("refs") => "refs",
        Some("layout") => "layout",
        Some("completions") => "completions",
        Some("man") => "man",
        _ => "datamig",
    }
}

/// What `--json` prints on stdout when the run cannot start (exit 2): the same
/// one-line shape as a report, so monitoring reads every run the same way.
#[derive(serde::Serialize)]
struct JsonError<'a> {
    report: &'a str,
    version: u32,
    error: ErrorMessage<'a>,
    exit: u8,
}

#[derive(serde::Serialize)]
struct ErrorMessage<'a> {
    message: &'a str,
}

pub fn json_error(report: &str, message: &str) -> String {
    let e = JsonError {
        report,
        version: crate::summary::REPORT_VERSION,
        error: ErrorMessage { message },
        exit: 2,
    };
    serde_json::to_string(&e).expect("error object serializes")
}

/// `datamig layout --json`: the effective layout inside the usual report envelope.
#[derive(serde::Serialize)]
struct LayoutReport<'a> {
    report: &'static str,
    version: u32,
    layout: &'a Layout,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The .tar.zst archive to restore from
    pub archive: PathBuf,
    /// Directory to restore into (created if missing; must be empty unless --overwrite)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Only these files or directories (paths inside the archive)
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    /// Restore into a non-empty DIR, replacing files that are in the way and
    /// removing temporary files a killed datamig run left there
    #[arg(long)]
    pub overwrite: bool,
    /// Do not restore owners (they are restored by default when run as root)
    #[arg(long)]
    pub no_same_owner: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The .tar.zst archive whose members to list
    pub archive: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// ARCHIVE to check; with --tree, the MANIFEST to compare against
    #[arg(value_name = "ARCHIVE|MANIFEST")]
    pub path: Option<PathBuf>,
    /// Audit the live tree DIR against MANIFEST (matched, modified, metadata, missing, new, moved)
    #[arg(long, value_name = "DIR", conflicts_with = "migration")]
    pub tree: Option<PathBuf>,
    /// Check that every legacy file has an identical copy at its consolidated place
    #[arg(long)]
    pub migration: bool,
    /// Archive: only check its SHA-256 against the sidecar and the manifests' trailers
    #[arg(long)]
    pub quick: bool,
    /// Tree: compare size and mtime only (no hashing)
    #[arg(long)]
    pub fast: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// A target from the layout (production, v2-dev-data, v2) or a directory under the root
    pub target: String,
    /// Directory for the archive and its sidecars [default: <root>/archive/, created 0700]
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Date in the archive name, YYYYMMDD [default: today, local time]
    #[arg(long, value_name = "YYYYMMDD")]
    pub date: Option<String>,
    /// zstd compression level, 1 (fastest) to 19 (smallest)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Skip paths matching GLOB (relative to the archived directory; repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Do not read the archive back before reporting success
    #[arg(long)]
    pub no_verify: bool,
    /// After a verified, clean capture, delete what was archived
    #[arg(long)]
    pub remove_source: bool,
    /// Allow --remove-source on live V2 data or without the migration check
    #[arg(long)]
    pub force: bool,
    /// Allow --remove-source while services, timers or cron entries still point into the target
    #[arg(long)]
    pub ignore_refs: bool,
    /// Directory standing for /etc in the reference check before --remove-source (see `datamig refs`)
    #[arg(long, value_name = "DIR")]
    pub etc: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RefsArgs {
    /// Targets of the layout or paths under the root [default: every target whose removal the layout allows]
    #[arg(value_name = "TARGET|PATH")]
    pub targets: Vec<String>,
    /// Directory standing for /etc; /lib/systemd/system, /run/systemd/system and
    /// /var/spool/cron/crontabs are then looked up under it too
    #[arg(long, value_name = "DIR")]
    pub etc: Option<PathBuf>,
    /// Also search this file or directory (repeatable)
    #[arg(long = "in", value_name = "DIR")]
    pub extra: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory for the backups [default: <root>/backups/, created 0700]
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Keep the N newest backups
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days that have backups
    /// [default: 7 when no --keep-* is given]
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have backups
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have backups
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Make no archive and remove nothing: print what retention would keep and remove, and why
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the run (exit 0) when no path, size, mtime or mode changed since the newest backup
    #[arg(long)]
    pub if_changed: bool,
    /// The run's clock, RFC 3339 (for tests and dry runs); also stamps the new archive
    #[arg(long, value_name = "RFC3339", value_parser = commands::backup::parse_now)]
    pub now: Option<jiff::Timestamp>,
    /// zstd compression level, 1 (fastest) to 19 (smallest)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InventoryFormat {
    /// Per-area summary (text, or JSON with --json)
    Summary,
    /// Only `sha256sum -c --strict` lines for regular files, relative to the root
    Sha256sum,
    /// Only NUL-separated relative paths of regular files (tar --null -T -, rsync --from0)
    Files0,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Areas or archive targets (names from `datamig layout`) or paths relative to the root; none: everything
    #[arg(value_name = "AREA|PATH")]
    pub targets: Vec<String>,
    /// Write the manifest (JSON Lines, format version 1) to FILE, atomically
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip paths matching GLOB (relative to the root; repeatable), e.g. 'instances/*/.npm/**'
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Reuse hashes from OLD_MANIFEST for files whose size, mtime, inode and ctime are unchanged
    #[arg(long, value_name = "OLD_MANIFEST")]
    pub since: Option<PathBuf>,
    /// What to print on stdout
    #[arg(long, value_enum, default_value_t = InventoryFormat::Summary)]
    pub format: InventoryFormat,
}

/// What `main` turns into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Problems,
}

impl Global {
    pub fn root(&self) -> PathBuf {
        self.root
            .clone()
            .or_else(|| {
                std::env::var_os("V2_DATA_ROOT")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    pub fn threads(&self) -> usize {
        self.jobs.filter(|&n| n > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// Flag combinations that would otherwise be silently ignored.
fn check_flags(cli: &Cli) -> Result<()> {
    if !cli.global.json {
        return Ok(());
    }
    match &cli.command {
        Command::Inventory(a) if a.format != InventoryFormat::Summary => {
            let f = a
                .format
                .to_possible_value()
                .expect("every format has a name");
            anyhow::bail!(
                "--json and --format {} cannot be combined: --json prints the summary report; \
                 drop one of them",
                f.get_name()
            )
        }
        Command::Completions { .. } | Command::Man => anyhow::bail!(
            "--json does not apply to `datamig {}`, which prints a file; drop --json",
            cli.command.report_name()
        ),
        _ => Ok(()),
    }
}

pub fn run(cli: Cli) -> Result<Outcome> {
    check_flags(&cli)?;
    let g = &cli.global;
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "datamig", &mut stdout);
            return Ok(Outcome::Clean);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut stdout)?;
            return Ok(Outcome::Clean);
        }
        _ => {}
    }
    let layout = Layout::load(g.layout.as_deref())?;
    match &cli.command {
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
        Command::Layout if g.json => {
            let r = LayoutReport {
                report: "layout",
                version: crate::summary::REPORT_VERSION,
                layout: &layout,
            };
            write_json(&mut stdout, &r)?;
            Ok(Outcome::Clean)
        }
        Command::Layout => {
            stdout.write_all(layout.to_toml().as_bytes())?;
            Ok(Outcome::Clean)
        }
        Command::Inventory(a) => {
            let opts = commands::inventory::InventoryOptions {
                root: g.root(),
                layout,
                targets: a.targets.clone(),
                excludes: a.exclude.clone(),
                threads: g.threads(),
                since: a.since.clone(),
                output: a.output.clone(),
                now: None,
            };
            let progress = progress::for_cli(g.quiet);
            let inv = commands::inventory::run(&opts, progress.as_ref())?;
            if a.format == InventoryFormat::Summary {
                return finish(&mut stdout, g, &inv.summary);
            }
            // The other formats are data asked for, printed even with -q.
            let mut out = std::io::BufWriter::new(&mut stdout);
            match a.format {
                InventoryFormat::Summary => unreachable!("handled above"),
                InventoryFormat::Sha256sum => {
                    render::sha256sum_lines(&mut out, &inv.entries, |e| match e.kind {
                        crate::entry::Kind::Hardlink => {
                            let t = e.target.as_deref()?;
                            let i = inv
                                .entries
                                .binary_search_by(|x| x.path.as_slice().cmp(t))
                                .ok()?;
                            inv.entries[i].sha256
                        }
                        _ => e.sha256,
                    })?
                }
                InventoryFormat::Files0 => render::files0(&mut out, &inv.entries)?,
            }
            out.flush().context("cannot write to stdout")?;
            Ok(if inv.clean() {
                Outcome::Clean
            } else {
                Outcome::Problems
            })
        }
        Command::Verify(a) => {
            let progress = progress::for_cli(g.quiet);
            if a.migration {
                if a.path.is_some() {
                    anyhow::bail!("--migration takes no ARCHIVE or MANIFEST argument");
                }
                let r = crate::verify::migration::verify_migration(
                    &g.root(),
                    &layout,
                    g.threads(),
                    progress.as_ref(),
                )?;
                finish(&mut stdout, g, &r)
            } else if let Some(dir) = &a.tree {
                let manifest = a
                    .path
                    .clone()
                    .context("--tree DIR needs the MANIFEST to compare against")?;
                let opts = crate::verify::tree::TreeOptions {
                    tree: dir.clone(),
                    manifest,
                    fast: a.fast,
                    threads: g.threads(),
                };
                let r = crate::verify::tree::verify_tree(&opts, progress.as_ref())?;
                finish(&mut stdout, g, &r)
            } else {
                let archive = a.path.clone().context(
                    "name the ARCHIVE to verify (or use --tree DIR MANIFEST, or --migration)",
                )?;
                let r =
                    crate::verify::archive::verify_archive(&archive, a.quick, progress.as_ref())?;
                finish(&mut stdout, g, &r)
            }
        }
        Command::Restore(a) => {
            let opts = crate::restore::RestoreOptions {
                archive: a.archive.clone(),
                to: a.to.clone(),
                paths: a.paths.clone(),
                overwrite: a.overwrite,
                same_owner: !a.no_same_owner,
            };
            let progress = progress::for_cli(g.quiet);
            let r = crate::restore::restore(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
        }
        Command::List(a) => {
            let r = commands::list::run(&a.archive)?;
            finish(&mut stdout, g, &r)
        }
        Command::Archive(a) => {
            let opts = commands::archive::ArchiveOptions {
                root: g.root(),
                layout,
                target: a.target.clone(),
                dest: a.dest.clone(),
                date: a.date.clone(),
                stamp: None,
                created: None,
                level: a.level,
                threads: g.threads(),
                excludes: a.exclude.clone(),
                verify: !a.no_verify,
                remove_source: a.remove_source,
                force: a.force,
                ignore_refs: a.ignore_refs,
                etc: a.etc.clone(),
                migration_checked: false,
                threads_for_migration: g.threads(),
            };
            let progress = progress::for_cli(g.quiet);
            let report = commands::archive::run(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &report)
        }
        Command::Refs(a) => {
            let opts = crate::refs::RefsOptions {
                root: g.root(),
                layout,
                targets: a.targets.clone(),
                etc: a.etc.clone(),
                extra: a.extra.clone(),
            };
            let r = crate::refs::run(&opts)?;
            finish(&mut stdout, g, &r)
        }
        Command::Backup(a) => {
            let opts = commands::backup::BackupOptions {
                root: g.root(),
                layout,
                dest: a.dest.clone(),
                policy: crate::backup::retention::Policy::from_flags(
                    a.keep_last,
                    a.keep_daily,
                    a.keep_weekly,
                    a.keep_monthly,
                ),
                dry_run: a.dry_run,
                if_changed: a.if_changed,
                now: a.now,
                level: a.level,
                threads: g.threads(),
            };
            let progress = progress::for_cli(g.quiet);
            let r = commands::backup::run(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
        }
    }
}

/// Every report ends here: `--json` prints its one line whatever `-q` says
/// (monitoring reads it); otherwise a clean run under `-q` prints nothing, and
/// a run with problems prints only the problems and the result line. The exit
/// code follows `clean()`.
fn finish<R: Report>(stdout: &mut dyn Write, g: &Global, report: &R) -> Result<Outcome> {
    let mut out = std::io::BufWriter::new(stdout);
    if g.json {
        write_json(&mut out, report)?;
    } else if !(g.quiet && report.clean()) {
        report.human(&mut render::Out::new(&mut out, g.quiet))?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(if report.clean() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

/// `--json` output is one compact line, so `journalctl -n 1` or `tail -n 1` returns
/// the whole object; monitoring must never see half of a pretty-printed report.
fn write_json<T: serde::Serialize>(out: &mut dyn Write, report: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, report)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `datamig X --help` must explain every positional argument, not just name it.
    #[test]
    fn item_13_every_positional_argument_has_a_help_line() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_positionals() {
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "`datamig {} --help`: argument {} has no help line",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn item_3_json_error_object_is_one_line_with_report_and_version() {
        let line = json_error("archive", "no such target\n  targets: a, b");
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["report"], "archive");
        assert_eq!(v["version"], 1);
        assert_eq!(v["exit"], 2);
        assert_eq!(v["error"]["message"], "no such target\n  targets: a, b");
    }

    #[test]
    fn item_3_refused_command_lines_name_their_report() {
        let args = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(Into::into).collect() };
        assert_eq!(
            report_name_of_args(&args(&["datamig", "--json", "verify", "--tree", "d"])),
            "verify-tree"
        );
        assert_eq!(
            report_name_of_args(&args(&["datamig", "backup", "--bogus"])),
            "backup"
        );
        assert_eq!(
            report_name_of_args(&args(&["datamig", "--bogus"])),
            "datamig"
        );
    }
}
