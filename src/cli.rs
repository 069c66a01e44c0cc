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
    /// Private key for encrypted archives (.tar.zst.age): an age identity file
    /// (age-keygen) or an SSH private key; repeatable [env: DATAMIG_IDENTITY,
    /// one FILE]. Used by verify, list, restore and retire.
    #[arg(long = "identity", global = true, value_name = "FILE")]
    pub identities: Vec<PathBuf>,
}

impl Global {
    /// The `--identity` files, else `DATAMIG_IDENTITY`'s.
    fn identity_files(&self) -> Vec<PathBuf> {
        if !self.identities.is_empty() {
            return self.identities.clone();
        }
        match std::env::var_os("DATAMIG_IDENTITY") {
            Some(v) if !v.is_empty() => vec![PathBuf::from(v)],
            _ => Vec::new(),
        }
    }
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
    /// Remove the source of an archive already written: verify it, audit the tree against it, then remove what matches
    #[command(after_help = EXIT_CODES)]
    Retire(RetireArgs),
    /// List an archive's members from its manifest (without decompressing it), or the archives in a directory
    List(ListArgs),
    /// The nightly job: a verified, UTC-stamped archive of the V2 data in <root>/backups/, then retention
    #[command(after_help = EXIT_CODES)]
    Backup(BackupArgs),
    /// Copy an archive and its sidecars off-site (s3://BUCKET/PREFIX or a directory), never overwriting, then read the copy back
    #[command(after_help = COPY_HELP)]
    Copy(CopyArgs),
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
            Command::Verify(a) if a.many() => "verify-archives",
            Command::Verify(a) => verify_report_name(a.tree.is_some(), a.migration),
            Command::List(a) if a.target.is_dir() => "list-archives",
            Command::Restore(_) => "restore",
            Command::Retire(_) => "retire",
            Command::List(_) => "list",
            Command::Backup(_) => "backup",
            Command::Copy(_) => "copy",
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
        Some("verify") if has("--all") => "verify-archives",
        Some("verify") => verify_report_name(has("--tree"), has("--migration")),
        Some("inventory") => "inventory",
        Some("archive") => "archive",
        Some("restore") => "restore",
        Some("retire") => "retire",
        Some("list") => "list",
        Some("backup") => "backup",
        Some("copy") => "copy",
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
    /// The .tar.zst archive to restore from (or s3://BUCKET/PREFIX/NAME.tar.zst)
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

const COPY_HELP: &str = "\
S3 configuration (as every S3 tool reads it):
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or AWS_PROFILE
  with ~/.aws/config and ~/.aws/credentials; AWS_REGION; AWS_ENDPOINT_URL for a
  non-AWS store (MinIO, Ceph RGW, Garage: path-style, http:// allowed)

Exit codes:
  0  copied, and the copy read back equals the archive
  1  copied, but the copy read back differs (listed)
  2  could not run (incomplete archive, a name already taken there, store errors)";

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The .tar.zst archive to copy (its .sha256 and .manifest.jsonl sidecars go with it)
    pub archive: PathBuf,
    /// Where to: s3://BUCKET/PREFIX, or a local directory
    #[arg(value_name = "URL")]
    pub to: String,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// S3 Object Lock on what is uploaded.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Lock each uploaded object (archive and both sidecars) for N days with S3 Object Lock;
    /// the bucket must have been created with Object Lock enabled (checked before uploading)
    #[arg(long, value_name = "N", env = "DATAMIG_LOCK_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub lock_days: Option<u32>,
    /// governance: a user with s3:BypassGovernanceRetention can still remove or shorten the lock;
    /// compliance: nobody can, not even the account's root user, until the date
    #[arg(
        long,
        value_name = "MODE",
        env = "DATAMIG_LOCK_MODE",
        default_value = "governance",
        requires = "lock_days"
    )]
    pub lock_mode: LockModeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockModeArg {
    Governance,
    Compliance,
}

impl LockArgs {
    fn spec(&self) -> Option<crate::remote::lock::LockSpec> {
        use crate::remote::lock::LockMode;
        self.lock_days.map(|days| crate::remote::lock::LockSpec {
            days,
            mode: match self.lock_mode {
                LockModeArg::Governance => LockMode::Governance,
                LockModeArg::Compliance => LockMode::Compliance,
            },
        })
    }
}

/// The public keys an archive is encrypted to (issue 14; see `crypt`).
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Encrypt to this age (age1…) or SSH (ssh-ed25519/ssh-rsa) public key; the result is NAME.tar.zst.age (repeatable)
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt to every public key in FILE (one per line, # comments), as `age -R` (repeatable)
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Vec<PathBuf>,
}

impl EncryptArgs {
    fn typed(&self) -> Result<Option<crate::crypt::Recipients>> {
        crate::crypt::Recipients::parse(&self.encrypt_to, &self.recipients_file)
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The .tar.zst archive whose members to list, or a directory: list the archives and backups in it;
    /// or s3://BUCKET/PREFIX/NAME.tar.zst, or s3://BUCKET/PREFIX for the archives there
    #[arg(value_name = "ARCHIVE|DIR|URL")]
    pub target: PathBuf,
    /// Only these members, or the members under these directories (with ARCHIVE)
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// ARCHIVEs to check (several: one report, exit = the worst); with --tree, the MANIFEST to compare against
    #[arg(value_name = "ARCHIVE|MANIFEST")]
    pub paths: Vec<PathBuf>,
    /// Check every archive (*.tar.zst) in DIR, with any ARCHIVEs named, as one report
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tree", "migration"])]
    pub all: Option<PathBuf>,
    /// Audit the live tree DIR against MANIFEST (matched, modified, metadata, missing, new, moved)
    #[arg(long, value_name = "DIR", conflicts_with = "migration")]
    pub tree: Option<PathBuf>,
    /// Check that every legacy file has an identical copy at its consolidated place
    #[arg(long)]
    pub migration: bool,
    /// Migration: a legacy file (or directory) decided obsolete, listed as accepted
    /// instead of failing the check; relative to the root (repeatable)
    #[arg(long, value_name = "PATH", requires = "migration")]
    pub accept: Vec<String>,
    /// Archive: only check its SHA-256 against the sidecar and the manifests' trailers
    #[arg(long)]
    pub quick: bool,
    /// Tree: compare size and mtime only (no hashing)
    #[arg(long)]
    pub fast: bool,
}

impl VerifyArgs {
    /// Several archives (or `--all`): the `verify-archives` report. One
    /// archive keeps the single `verify-archive` report.
    fn many(&self) -> bool {
        self.tree.is_none() && !self.migration && (self.all.is_some() || self.paths.len() > 1)
    }
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
    #[command(flatten)]
    pub tags: TagArgs,
    /// Do not read the archive back before reporting success
    #[arg(long)]
    pub no_verify: bool,
    /// After a verified, clean capture, delete what was archived
    #[arg(long)]
    pub remove_source: bool,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Replaced by --allow-live and --skip-migration-check (refused, exit 2)
    #[arg(long, hide = true)]
    pub force: bool,
    /// With --remove-source of v2-dev-data: a legacy file (or directory) decided
    /// obsolete, as in `verify --migration --accept` (repeatable)
    #[arg(long, value_name = "PATH", requires = "remove_source")]
    pub accept: Vec<String>,
    /// Directory standing for /etc in the reference check before --remove-source (see `datamig refs`)
    #[arg(long, value_name = "DIR", requires = "remove_source")]
    pub etc: Option<PathBuf>,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// The flags that let a removal past a failed gate; each is named in the report.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Remove live V2 data (a target marked live, e.g. v2); the report records it and exits 1
    #[arg(long)]
    pub allow_live: bool,
    /// Remove a target that needs the migration check although it fails; the report records it and exits 1
    #[arg(long)]
    pub skip_migration_check: bool,
    /// Remove although services, timers or cron entries still point into the target (see `datamig refs`); recorded, exit 1
    #[arg(long)]
    pub ignore_refs: bool,
}

impl OverrideArgs {
    fn typed(&self) -> crate::archive::gates::Overrides {
        crate::archive::gates::Overrides {
            allow_live: self.allow_live,
            skip_migration_check: self.skip_migration_check,
            ignore_refs: self.ignore_refs,
        }
    }
}

/// What `archive --force` answers: the flag was split so that scripts must
/// say what they override instead of silently getting a new meaning.
pub const FORCE_SPLIT: &str = "--force was split in two, so that the report says what was overridden: \
     --allow-live removes live V2 data, --skip-migration-check removes a target although \
     `datamig verify --migration` fails; use the one you mean (with --remove-source)";

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The archive (written by `datamig archive`, with its sidecars) whose source to remove
    pub archive: PathBuf,
    /// Leave paths matching GLOB alone (relative to the archived directory; repeatable), as given to `archive --exclude`
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// With v2-dev-data: a legacy file (or directory) decided obsolete, as in
    /// `verify --migration --accept` (repeatable)
    #[arg(long, value_name = "PATH")]
    pub accept: Vec<String>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Directory standing for /etc in the reference check (see `datamig refs`)
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
    /// Skip paths matching GLOB (relative to the root; repeatable), on top of the target's `exclude`
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub tags: TagArgs,
    /// After the backup verifies, copy it off-site (s3://BUCKET/PREFIX or a directory; see `datamig copy`)
    #[arg(long, value_name = "URL", env = "DATAMIG_BACKUP_TO")]
    pub to: Option<String>,
    /// With --to: the remote keeps the N newest copies [default: as --keep-last]
    #[arg(long, value_name = "N", env = "DATAMIG_REMOTE_KEEP_LAST")]
    pub remote_keep_last: Option<u32>,
    /// With --to: the remote keeps one copy for each of the last N days [default: as --keep-daily]
    #[arg(long, value_name = "N", env = "DATAMIG_REMOTE_KEEP_DAILY")]
    pub remote_keep_daily: Option<u32>,
    /// With --to: the remote keeps one copy for each of the last N ISO weeks [default: as --keep-weekly]
    #[arg(long, value_name = "N", env = "DATAMIG_REMOTE_KEEP_WEEKLY")]
    pub remote_keep_weekly: Option<u32>,
    /// With --to: the remote keeps one copy for each of the last N months [default: as --keep-monthly]
    #[arg(long, value_name = "N", env = "DATAMIG_REMOTE_KEEP_MONTHLY")]
    pub remote_keep_monthly: Option<u32>,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Encrypt each backup to this age or SSH public key (repeatable; in the environment, comma-separated);
    /// the backups are then NAME.tar.zst.age and this host cannot read them
    #[arg(
        long,
        value_name = "RECIPIENT",
        env = "DATAMIG_ENCRYPT_TO",
        value_delimiter = ','
    )]
    pub encrypt_to: Vec<String>,
    /// Encrypt each backup to every public key in FILE (one per line, # comments)
    #[arg(long, value_name = "FILE", env = "DATAMIG_RECIPIENTS_FILE")]
    pub recipients_file: Vec<PathBuf>,
}

/// Directories skipped because of a file in them (as GNU tar, restic and borg).
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Skip the contents of directories holding a CACHEDIR.TAG with the standard signature (the tag itself is kept)
    #[arg(long)]
    pub exclude_caches: bool,
    /// Skip the contents of directories holding an entry named NAME (repeatable; NAME itself is kept)
    #[arg(long, value_name = "NAME", value_parser = tag_name)]
    pub exclude_if_present: Vec<String>,
}

impl TagArgs {
    pub fn tags(&self) -> crate::scan::Tags {
        crate::scan::Tags {
            caches: self.exclude_caches,
            if_present: self
                .exclude_if_present
                .iter()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
        }
    }
}

/// `--exclude-if-present NAME`: one file name, not a path.
fn tag_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(format!(
            "{s:?} is not a file name (give the name a tagged directory holds, e.g. .nobackup)"
        ));
    }
    Ok(s.to_string())
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
    #[command(flatten)]
    pub tags: TagArgs,
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
    /// The report was printed, but part of the work could not run (exit 2):
    /// e.g. one archive of several could not be opened.
    CouldNotRun,
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
    crate::crypt::identity::install(crate::crypt::Identities::load(&g.identity_files())?);
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
                tags: a.tags.tags(),
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
            if a.many() {
                let targets = crate::verify::many::targets(&a.paths, a.all.as_ref());
                let r = crate::verify::many::verify_archives(
                    &targets,
                    a.quick,
                    g.threads(),
                    progress.as_ref(),
                );
                let outcome = finish(&mut stdout, g, &r)?;
                return Ok(if r.exit == 2 {
                    Outcome::CouldNotRun
                } else {
                    outcome
                });
            }
            if a.migration {
                if !a.paths.is_empty() {
                    anyhow::bail!("--migration takes no ARCHIVE or MANIFEST argument");
                }
                let r = crate::verify::migration::verify_migration(
                    &g.root(),
                    &layout,
                    g.threads(),
                    &a.accept,
                    progress.as_ref(),
                )?;
                finish(&mut stdout, g, &r)
            } else if let Some(dir) = &a.tree {
                let manifest = match a.paths.as_slice() {
                    [m] => m.clone(),
                    [] => anyhow::bail!("--tree DIR needs the MANIFEST to compare against"),
                    _ => anyhow::bail!("--tree DIR takes one MANIFEST, not {}", a.paths.len()),
                };
                let opts = crate::verify::tree::TreeOptions {
                    tree: dir.clone(),
                    manifest,
                    fast: a.fast,
                    threads: g.threads(),
                };
                let r = crate::verify::tree::verify_tree(&opts, progress.as_ref())?;
                finish(&mut stdout, g, &r)
            } else {
                let archive = a.paths.first().cloned().context(
                    "name the ARCHIVE to verify (or several, or --all DIR; or use --tree DIR \
                     MANIFEST, or --migration)",
                )?;
                let r =
                    match crate::remote::Location::parse_archive_url(&archive.to_string_lossy())? {
                        Some((loc, name)) => crate::verify::remote::verify_remote(
                            &loc,
                            &name,
                            a.quick,
                            g.threads(),
                            progress.as_ref(),
                        )?,
                        None => crate::verify::archive::verify_archive(
                            &archive,
                            a.quick,
                            g.threads(),
                            progress.as_ref(),
                        )?,
                    };
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
                remote: crate::remote::Location::parse_archive_url(&a.archive.to_string_lossy())?,
                threads: g.threads(),
            };
            let progress = progress::for_cli(g.quiet);
            let r = crate::restore::restore(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
        }
        Command::List(a) if a.target.is_dir() => {
            if !a.paths.is_empty() {
                anyhow::bail!(
                    "{} is a directory: `datamig list DIR` lists its archives and takes no PATH; \
                     to list members, name one archive: datamig list ARCHIVE PATH...",
                    a.target.display()
                );
            }
            let r = commands::list_dir::run(&a.target, &layout)?;
            finish(&mut stdout, g, &r)
        }
        Command::Retire(a) => {
            let opts = commands::retire::RetireOptions {
                root: g.root(),
                layout,
                archive: a.archive.clone(),
                excludes: a.exclude.clone(),
                threads: g.threads(),
                overrides: a.overrides.typed(),
                accept: a.accept.clone(),
                etc: a.etc.clone(),
            };
            let progress = progress::for_cli(g.quiet);
            let r = commands::retire::run(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
        }
        Command::List(a) => {
            if let Some(r) = list_remote(a, g, &mut stdout)? {
                return Ok(r);
            }
            let r = commands::list::run(&a.target, &a.paths)?;
            finish(&mut stdout, g, &r)
        }
        Command::Archive(a) => {
            if a.force {
                anyhow::bail!(FORCE_SPLIT);
            }
            if a.overrides.typed().any() && !a.remove_source {
                anyhow::bail!(
                    "--allow-live, --skip-migration-check and --ignore-refs only apply to --remove-source; add it or drop them"
                );
            }
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
                tags: a.tags.tags(),
                verify: !a.no_verify,
                remove_source: a.remove_source,
                overrides: a.overrides.typed(),
                migration_accept: a.accept.clone(),
                etc: a.etc.clone(),
                recipients: a.encrypt.typed()?,
            };
            let progress = progress::for_cli(g.quiet);
            let report = commands::archive::run(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &report)
        }
        Command::Copy(a) => {
            let opts = commands::copy::CopyOptions {
                archive: a.archive.clone(),
                to: crate::remote::Location::parse(&a.to)?,
                tuning: crate::remote::Tuning::from_env()?,
                lock: a
                    .lock
                    .spec()
                    .map(|l| l.at(jiff::Timestamp::now()))
                    .transpose()?,
                recipients: a.encrypt.typed()?,
            };
            let progress = progress::for_cli(g.quiet);
            let r = commands::copy::run_with(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
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
            let policy = crate::backup::retention::Policy::from_flags(
                a.keep_last,
                a.keep_daily,
                a.keep_weekly,
                a.keep_monthly,
            );
            let opts = commands::backup::BackupOptions {
                root: g.root(),
                layout,
                dest: a.dest.clone(),
                policy,
                remote_policy: crate::backup::remote_retention::remote_policy(
                    policy,
                    [
                        a.remote_keep_last,
                        a.remote_keep_daily,
                        a.remote_keep_weekly,
                        a.remote_keep_monthly,
                    ],
                ),
                lock: a.lock.spec(),
                dry_run: a.dry_run,
                if_changed: a.if_changed,
                now: a.now,
                level: a.level,
                threads: g.threads(),
                excludes: a.exclude.clone(),
                tags: a.tags.tags(),
                to: a
                    .to
                    .as_deref()
                    .map(crate::remote::Location::parse)
                    .transpose()?,
                recipients: crate::crypt::Recipients::parse(&a.encrypt_to, &a.recipients_file)?,
            };
            let progress = progress::for_cli(g.quiet);
            let r = commands::backup::run(&opts, progress.as_ref())?;
            finish(&mut stdout, g, &r)
        }
    }
}

/// `datamig list s3://…`: a remote archive's members, or the archives at a
/// location. None for a local path.
fn list_remote(a: &ListArgs, g: &Global, stdout: &mut dyn Write) -> Result<Option<Outcome>> {
    let arg = a.target.to_string_lossy();
    if let Some((loc, name)) = crate::remote::Location::parse_archive_url(&arg)? {
        let r = commands::remote_list::archive(&loc, &name)?.select(&a.paths);
        return finish(stdout, g, &r).map(Some);
    }
    if !arg.starts_with("s3://") {
        return Ok(None);
    }
    if !a.paths.is_empty() {
        anyhow::bail!(
            "{arg} is a location: `datamig list URL` lists its archives and takes no PATH; \
             to list members, name one archive: datamig list URL/NAME.tar.zst PATH..."
        );
    }
    let loc = crate::remote::Location::parse(&arg)?;
    let r = commands::remote_list::location(&loc)?;
    finish(stdout, g, &r).map(Some)
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
