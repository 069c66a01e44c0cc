//! `datamig verify A B C` and `verify --all DIR`: several archives checked
//! one after the other into one report (like `restic check`). Each archive
//! gets the single-archive check and a result line; one that cannot be
//! checked at all is named and the others are still checked. The exit code
//! is the worst of all.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::progress::Progress;
use crate::verify::archive::{ArchiveVerifyReport, verify_archive};

/// One archive's result.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveResult {
    pub archive: String,
    /// "clean", "discrepancies" or "error" (could not be checked).
    pub result: &'static str,
    /// This archive's own exit code: 0, 1 or 2.
    pub exit: u8,
    /// How many discrepancies its check found.
    pub discrepancies: u64,
    /// Why it could not be checked (result "error").
    pub error: Option<String>,
    /// The full single-archive report (`verify-archive`), when it ran.
    pub check: Option<ArchiveVerifyReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManyReport {
    pub report: &'static str,
    pub version: u32,
    pub quick: bool,
    /// In the order given (`--all DIR`: by name).
    pub archives: Vec<ArchiveResult>,
    pub clean: u64,
    pub with_discrepancies: u64,
    pub errors: u64,
    /// The worst exit of all: what the run exits with.
    pub exit: u8,
}

/// What to check: archives named on the command line and every archive in
/// the `--all` directories. A directory that holds none, or cannot be read,
/// becomes an error line of its own, so the named archives are still checked.
pub fn targets(paths: &[PathBuf], all: Option<&PathBuf>) -> Vec<Result<PathBuf, (String, String)>> {
    let mut v: Vec<Result<PathBuf, (String, String)>> = paths.iter().cloned().map(Ok).collect();
    if let Some(dir) = all {
        match crate::archive::dir::archives_in(dir) {
            Ok(found) if found.is_empty() => {
                let e = crate::archive::dir::none_in(dir);
                v.push(Err((dir.display().to_string(), e.to_string())));
            }
            Ok(found) => v.extend(found.into_iter().filter(|p| !paths.contains(p)).map(Ok)),
            Err(e) => v.push(Err((dir.display().to_string(), format!("{e:#}")))),
        }
    }
    v
}

pub fn verify_archives(
    targets: &[Result<PathBuf, (String, String)>],
    quick: bool,
    jobs: usize,
    progress: &dyn Progress,
) -> ManyReport {
    let archives: Vec<ArchiveResult> = targets
        .iter()
        .map(|t| match t {
            Ok(p) => check_one(p, quick, jobs, progress),
            Err((what, why)) => error(what.clone(), why.clone()),
        })
        .collect();
    let count = |r: &str| archives.iter().filter(|a| a.result == r).count() as u64;
    ManyReport {
        report: "verify-archives",
        version: crate::summary::REPORT_VERSION,
        quick,
        clean: count("clean"),
        with_discrepancies: count("discrepancies"),
        errors: count("error"),
        exit: archives.iter().map(|a| a.exit).max().unwrap_or(0),
        archives,
    }
}

fn check_one(p: &Path, quick: bool, jobs: usize, progress: &dyn Progress) -> ArchiveResult {
    match verify_archive(p, quick, jobs, progress) {
        Ok(r) => ArchiveResult {
            archive: p.display().to_string(),
            result: if r.clean() { "clean" } else { "discrepancies" },
            exit: if r.clean() { 0 } else { 1 },
            discrepancies: r.discrepancies.len() as u64,
            error: None,
            check: Some(r),
        },
        Err(e) => error(p.display().to_string(), format!("{e:#}")),
    }
}

fn error(archive: String, why: String) -> ArchiveResult {
    ArchiveResult {
        archive,
        result: "error",
        exit: 2,
        discrepancies: 0,
        error: Some(why),
        check: None,
    }
}
