//! `datamig backup`: the nightly job. Under a lock in the destination, archive
//! what a rebuilt server needs (the layout's `backup` target: the V2 areas,
//! secrets and server files; `v2` in a layout without one) as a verified,
//! UTC-stamped `v2-data-YYYYMMDD-HHMMSS.tar.zst`, then apply retention to the
//! backups datamig made there. A run that fails before its archive is in place
//! deletes nothing. Every report names what the backup leaves out.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use jiff::Timestamp;
use serde::Serialize;

use crate::archive::{EXTENSION, ensure_dest, resolve_source};
use crate::backup::coverage::{backup_target, not_covered};
use crate::backup::remote_retention::{RemoteRetention, RemoteRetentionOptions};
use crate::backup::retention::{self, Action, Decision, Policy};
use crate::backup::{self, Existing, file_name, lock};
use crate::commands::archive::{ArchiveOptions, ArchiveReport, source_excludes};
use crate::layout::Layout;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::scan::{ScanSpec, Tags, scan};
use crate::summary::PathNote;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub root: PathBuf,
    pub layout: Layout,
    /// Default `<root>/backups`.
    pub dest: Option<PathBuf>,
    pub policy: Policy,
    /// Make nothing, remove nothing: report the retention plan as of `now`.
    pub dry_run: bool,
    /// Skip the run when the tree matches the newest backup's manifest.
    pub if_changed: bool,
    /// The run's clock (default: the system's); also the new archive's stamp.
    pub now: Option<Timestamp>,
    pub level: i32,
    pub threads: usize,
    /// `--exclude` (relative to the root), on top of the target's `exclude`.
    pub excludes: Vec<String>,
    /// `--exclude-caches`, `--exclude-if-present`.
    pub tags: Tags,
    /// `--to URL`: after tonight's backup verifies, copy it there
    /// (`datamig copy`).
    pub to: Option<crate::remote::Location>,
    /// With `to`: the policy for the remote copies (the local one, with
    /// `--remote-keep-*` replacing rules).
    pub remote_policy: Policy,
    /// With `to`: `--lock-days`/`--lock-mode`, counted from `now`.
    pub lock: Option<crate::remote::lock::LockSpec>,
    /// `--encrypt-to`, `--recipients-file` (or `DATAMIG_ENCRYPT_TO`,
    /// `DATAMIG_RECIPIENTS_FILE`): each backup is a `.tar.zst.age`.
    pub recipients: Option<crate::crypt::Recipients>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub report: &'static str,
    pub version: u32,
    pub root: String,
    pub dest: String,
    pub now: String,
    pub dry_run: bool,
    /// The layout target backed up (`backup`, or `v2` when the layout has
    /// no `backup` target; then `target_note` says so).
    pub target: String,
    pub target_note: Option<String>,
    /// The run was skipped (`--if-changed` and nothing changed); `skip_reason` says why.
    pub skipped: bool,
    pub skip_reason: Option<String>,
    /// With `--if-changed`: the first change found since the newest backup,
    /// or why the newest backup cannot stand in for this run.
    pub changed: Option<String>,
    /// With `--if-changed`: "passed", or why the newest backup failed
    /// `verify --quick` (then a new backup is made whatever the tree says).
    pub newest_verify: Option<String>,
    /// The archive made by this run.
    pub archive: Option<String>,
    pub archive_sha256: Option<String>,
    /// Size of the new archive on disk (compressed).
    pub bytes: u64,
    pub files: u64,
    /// Bytes of file data captured.
    pub file_bytes: u64,
    pub seconds: f64,
    /// "passed", or "not run" when no archive was made.
    pub verify: &'static str,
    /// Entries of the new archive not captured cleanly (exit 1).
    pub flagged: Vec<PathNote>,
    /// Entries left out by design (sockets), not problems.
    pub notes: Vec<PathNote>,
    pub secrets: usize,
    pub policy: Policy,
    pub policy_text: String,
    /// With --dry-run: the name of the backup the real run would make; it
    /// takes part in the retention plan as the newest backup, as it will.
    pub would_make: Option<String>,
    /// Backup names kept / removed (with --dry-run: that would be removed).
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    /// Every retention decision with its reasons, newest first.
    pub decisions: Vec<Decision>,
    /// Files named like backups that are not datamig's, never touched.
    pub ignored: Vec<PathNote>,
    /// Files of removed backups that could not be deleted (exit 1).
    pub remove_errors: Vec<PathNote>,
    /// What the walk of the new archive left out on purpose (exclude
    /// patterns, tagged directories), where it stopped; and how many.
    pub excluded_count: usize,
    pub excluded: Vec<PathNote>,
    /// Each top-level entry of the root the backup does not cover, and why
    /// (e.g. `production/`: "V1, retired: archive target production").
    pub not_covered: Vec<PathNote>,
    /// With `--to`: the off-site copy of tonight's backup (the `copy`
    /// report), or `remote_error` when it failed (exit 1, the local backup
    /// is kept).
    pub remote: Option<crate::commands::copy::CopyReport>,
    pub remote_error: Option<String>,
    /// With `--to`: retention of the remote copies of this target (also
    /// run when tonight's copy failed: see `remote_retention`).
    pub remote_retention: Option<RemoteRetention>,
}

impl BackupReport {
    pub fn clean(&self) -> bool {
        self.flagged.is_empty()
            && self.remove_errors.is_empty()
            && self.remote_error.is_none()
            && self.remote.as_ref().is_none_or(|r| r.clean())
            && self.remote_retention.as_ref().is_none_or(|r| r.clean())
    }
}

/// `--now`: an RFC 3339 time, e.g. 2025-12-25T02:00:00Z.
pub fn parse_now(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2025-12-25T02:00:00Z: {e}"))
}

pub fn run(opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupReport> {
    let started = Instant::now();
    let now = opts.now.unwrap_or_else(Timestamp::now);
    let root = &opts.root;
    let (target, target_note) = backup_target(&opts.layout)?;
    let prefix = target.prefix.clone();
    let dest = opts.dest.clone().unwrap_or_else(|| root.join("backups"));
    let mut report = BackupReport {
        report: "backup",
        version: 1,
        root: root.display().to_string(),
        dest: dest.display().to_string(),
        now: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        dry_run: opts.dry_run,
        target: target.name.clone(),
        target_note,
        skipped: false,
        skip_reason: None,
        changed: None,
        newest_verify: None,
        archive: None,
        archive_sha256: None,
        bytes: 0,
        files: 0,
        file_bytes: 0,
        seconds: 0.0,
        verify: "not run",
        flagged: vec![],
        notes: vec![],
        secrets: 0,
        policy: opts.policy,
        policy_text: opts.policy.describe(),
        would_make: None,
        kept: vec![],
        removed: vec![],
        decisions: vec![],
        ignored: vec![],
        remove_errors: vec![],
        excluded_count: 0,
        excluded: vec![],
        not_covered: vec![],
        remote: None,
        remote_error: None,
        remote_retention: None,
    };

    if opts.dry_run {
        report.not_covered = not_covered(root, &opts.layout, target)?;
        let existing = backup::discover(&dest, &prefix)?;
        let suffix = if opts.recipients.is_some() {
            crate::crypt::AGE_SUFFIX
        } else {
            ""
        };
        let tonight = format!("{prefix}-{}{EXTENSION}{suffix}", backup::stamp_of(now));
        // A name already taken makes the real run fail (and remove nothing);
        // otherwise tonight's backup is the newest one retention sees.
        let new =
            (!existing.backups.iter().any(|b| b.name == tonight)).then(|| retention::Backup {
                name: tonight.clone(),
                time: now,
                flagged: false,
            });
        report.would_make = new.as_ref().map(|_| tonight);
        plan_with(&mut report, &existing, new, &opts.policy, now);
        if let Some(to) = &opts.to {
            let o = remote_options(opts, &prefix, now, None, report.would_make.clone());
            report.remote_retention = Some(crate::backup::remote_retention::run(to, &o));
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    if !root.is_dir() {
        bail!(
            "data root {} is not a readable directory (set --root or V2_DATA_ROOT)",
            root.display()
        );
    }
    report.not_covered = not_covered(root, &opts.layout, target)?;
    ensure_dest(&dest)?;
    let _lock = lock::acquire(&dest, &crate::commands::inventory::now_rfc3339())?;
    let existing = backup::discover(&dest, &prefix)?;

    if opts.if_changed
        && let Some(newest) = existing.newest()
    {
        // Skipping trusts the newest backup to be tonight's copy, so it must
        // pass `verify --quick` first (size and SHA-256 against its .sha256,
        // manifest trailers, nothing flagged).
        let failed = newest_fails_verify(newest);
        report.newest_verify = Some(failed.clone().unwrap_or_else(|| "passed".into()));
        let change = match failed {
            Some(why) => Some(format!(
                "the newest backup {} fails `verify --quick` ({why}), so a new one is made",
                newest.name
            )),
            // Its manifest is encrypted to keys this host does not hold.
            None if newest.encrypted => Some(format!(
                "the newest backup {} is encrypted and this host holds no key to read its manifest, so a new one is made",
                newest.name
            )),
            None => change_since(opts, &report.target, newest, &dest)?,
        };
        match change {
            Some(what) => report.changed = Some(what),
            None => {
                report.skipped = true;
                report.skip_reason = Some(format!(
                    "--if-changed: the tree is unchanged since {} (same paths, sizes, mtimes, modes), which passes verify --quick",
                    newest.name
                ));
                report.seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
        }
    }

    let aopts = ArchiveOptions {
        root: root.clone(),
        layout: opts.layout.clone(),
        target: report.target.clone(),
        dest: Some(dest.clone()),
        date: None,
        stamp: Some(backup::stamp_of(now)),
        created: opts
            .now
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        level: opts.level,
        threads: opts.threads,
        excludes: opts.excludes.clone(),
        tags: opts.tags.clone(),
        verify: true,
        remove_source: false,
        overrides: Default::default(),
        migration_accept: Vec::new(),
        etc: None,
        recipients: opts.recipients.clone(),
    };
    // Any error here (nothing to archive, name taken, failed read-back) ends
    // the run before retention: a failed run deletes nothing.
    let made = crate::commands::archive::run(&aopts, progress)?;
    if made.verify != "passed" {
        bail!(
            "the new archive {} was not verified; no backup was removed",
            made.archive
        );
    }
    take_archive(&mut report, &made);

    let existing = backup::discover(&dest, &prefix)?;
    let new_name = file_name(std::path::Path::new(&made.archive));
    if !existing.backups.iter().any(|b| b.name == new_name) {
        bail!(
            "the new archive {} is not among the backups found in {}; no backup was removed",
            made.archive,
            dest.display()
        );
    }
    plan(&mut report, &existing, &opts.policy, now);
    let mut removed = Vec::new();
    for d in &report.decisions {
        // The archive just made is the newest; never remove it whatever the plan says.
        if d.action != Action::Remove || d.name == new_name {
            continue;
        }
        let Some(b) = existing.backups.iter().find(|b| b.name == d.name) else {
            continue;
        };
        let failed = backup::remove_backup(&b.path);
        if failed.is_empty() {
            removed.push(d.name.clone());
        }
        report.remove_errors.extend(failed);
    }
    report.removed = removed;
    if let Some(to) = &opts.to {
        copy_offsite(&mut report, &made.archive, to, opts, now);
        // Retention runs whether or not tonight's copy succeeded: it counts
        // copies, not their age, so without a new copy it decides what the
        // last run decided (and never removes the newest verified copy); it
        // still finishes a killed removal and frees copies whose lock has
        // expired — which is what a store refusing uploads for lack of
        // space needs.
        let proved = report
            .remote
            .as_ref()
            .filter(|c| c.remote_verify == "passed")
            .map(|_| new_name.clone());
        let o = remote_options(opts, &prefix, now, proved, None);
        report.remote_retention = Some(crate::backup::remote_retention::run(to, &o));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn remote_options(
    opts: &BackupOptions,
    prefix: &str,
    now: Timestamp,
    proved: Option<String>,
    would_copy: Option<String>,
) -> RemoteRetentionOptions {
    RemoteRetentionOptions {
        prefix: prefix.to_string(),
        policy: opts.remote_policy,
        now,
        dry_run: opts.dry_run,
        proved,
        would_copy,
    }
}

/// Tonight's verified backup, copied to `to` (locked with `--lock-days`). A
/// failure is recorded, not raised: the local backup is made and kept
/// either way (exit 1).
fn copy_offsite(
    report: &mut BackupReport,
    archive: &str,
    to: &crate::remote::Location,
    opts: &BackupOptions,
    now: Timestamp,
) {
    let copied = crate::remote::Tuning::from_env().and_then(|tuning| {
        crate::commands::copy::run(&crate::commands::copy::CopyOptions {
            archive: PathBuf::from(archive),
            to: to.clone(),
            tuning,
            lock: opts.lock.map(|l| l.at(now)).transpose()?,
            // Tonight's archive is already encrypted when it should be.
            recipients: None,
        })
    });
    match copied {
        Ok(r) => report.remote = Some(r),
        Err(e) => report.remote_error = Some(format!("{e:#}; the local backup {archive} is kept")),
    }
}

/// Fill in the retention plan for `existing` as of `now`.
fn plan(report: &mut BackupReport, existing: &Existing, policy: &Policy, now: Timestamp) {
    plan_with(report, existing, None, policy, now);
}

/// [`plan`] with `new` (the backup a dry run stands in for) among the backups.
fn plan_with(
    report: &mut BackupReport,
    existing: &Existing,
    new: Option<retention::Backup>,
    policy: &Policy,
    now: Timestamp,
) {
    let input: Vec<retention::Backup> = existing
        .backups
        .iter()
        .map(|b| retention::Backup {
            name: b.name.clone(),
            time: b.time,
            flagged: b.flagged > 0,
        })
        .chain(new)
        .collect();
    let decisions = retention::apply(&input, policy, now);
    let names = |a: Action| {
        decisions
            .iter()
            .filter(|d| d.action == a)
            .map(|d| d.name.clone())
            .collect()
    };
    report.kept = names(Action::Keep);
    report.removed = names(Action::Remove);
    report.decisions = decisions;
    report.ignored = existing.ignored.clone();
}

fn take_archive(report: &mut BackupReport, made: &ArchiveReport) {
    report.archive = Some(made.archive.clone());
    report.archive_sha256 = Some(made.archive_sha256.clone());
    report.bytes = made.encrypted_bytes.unwrap_or(made.compressed_bytes);
    report.files = made.files;
    report.file_bytes = made.file_bytes;
    report.verify = made.verify;
    report.flagged = made.flagged.clone();
    report.notes = made.notes.clone();
    report.secrets = made.secrets.len();
    report.excluded_count = made.excluded_count;
    report.excluded = made.excluded.clone();
}

/// Why `newest` fails `verify --quick`, or None when it passes.
fn newest_fails_verify(newest: &backup::Found) -> Option<String> {
    match crate::verify::archive::verify_archive(&newest.path, true, 1, &crate::progress::Silent) {
        Err(e) => Some(format!("{e:#}")),
        Ok(r) if r.clean() => None,
        Ok(r) => {
            let n = r.discrepancies.len();
            let first = r.discrepancies.into_iter().next().unwrap_or_default();
            Some(match n {
                1 => first,
                _ => format!("{first}; and {} more", n - 1),
            })
        }
    }
}

/// `--if-changed`: the first difference between the tree and the newest
/// backup's manifest, or None when they match and the run can be skipped.
fn change_since(
    opts: &BackupOptions,
    target: &str,
    newest: &backup::Found,
    dest: &std::path::Path,
) -> Result<Option<String>> {
    let manifest = Manifest::read_file(&crate::archive::manifest_sidecar(&newest.path))?;
    let src = resolve_source(&opts.root, &opts.layout, target)?;
    // Scan exactly what the archive would: the same base, scope, excludes
    // and tags, listing and stat only.
    let excludes = source_excludes(&src, &opts.excludes, dest)?;
    let area = |_: &[u8]| String::new();
    let no_json = |_: &[u8]| false;
    let spec = ScanSpec {
        root: &src.base,
        root_dir: Some(&src.dir),
        scope: &src.scope,
        excludes: &excludes,
        tags: &opts.tags,
        area_of: &area,
        check_json: &no_json,
        threads: opts.threads,
        hash_files: false,
    };
    let now = scan(&spec, &crate::progress::Silent)?.entries;
    Ok(backup::tree_change(&manifest.entries, &now))
}
