//! `datamig list DIR`: the archives and backups in a directory, one row each
//! (like `restic snapshots` or `borg list`): date, size, member count and
//! what the sidecars say, oldest first. Only sidecars and archive tails are
//! read; nothing is decompressed or hashed (that is `verify`'s job).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::archive::dir::{archives_in, none_in};
use crate::archive::{MANIFEST_SIDECAR, SHA_SIDECAR, sidecar};
use crate::layout::Layout;
use crate::manifest::Manifest;
use crate::summary::rfc3339_ns;

/// One archive as its sidecars describe it.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveRow {
    /// File name.
    pub name: String,
    pub path: String,
    /// "backup" (a nightly `datamig backup`), "archive" (any other datamig
    /// archive) or "foreign" (no datamig manifest: tar --zstd, bsdtar, or a
    /// datamig archive that lost its tail and sidecar).
    pub kind: &'static str,
    /// When it was made: the manifest header's `created`, else the file's mtime.
    pub date: String,
    /// "manifest" or "mtime": where `date` comes from.
    pub date_from: &'static str,
    /// The archive's size in bytes.
    pub size: u64,
    /// Members in the archive (manifest entries that were archived); absent
    /// for a foreign archive, which would have to be decompressed to count.
    pub members: Option<u64>,
    /// Regular files and their bytes, from the manifest trailer.
    pub files: Option<u64>,
    pub file_bytes: Option<u64>,
    /// "sidecar" (the `.manifest.jsonl` reads and its trailer matches),
    /// "embedded" (no sidecar; the copy inside the archive does), "none",
    /// "damaged", or "encrypted" (a `.tar.zst.age`: its manifest is not read
    /// without a key, so members, files and flagged are unknown).
    pub manifest: &'static str,
    /// "present" (names this archive), "missing", or "wrong" (unreadable, or
    /// names another file).
    pub sha256_sidecar: &'static str,
    /// Entries the manifest records as not captured cleanly.
    pub flagged: u64,
    /// The row in one word: "ok", "flagged", "incomplete" (a sidecar is
    /// missing or wrong), "foreign" or "damaged".
    pub state: &'static str,
    /// Why the state is not "ok", in words.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchivesReport {
    pub report: &'static str,
    pub version: u32,
    pub dir: String,
    /// Oldest first.
    pub archives: Vec<ArchiveRow>,
}

impl ArchivesReport {
    /// A listing is clean unless an archive's manifest could not be read:
    /// flagged, foreign or incomplete rows are states, shown, not failures.
    pub fn clean(&self) -> bool {
        self.archives.iter().all(|a| a.state != "damaged")
    }
}

pub fn run(dir: &Path, layout: &Layout) -> Result<ArchivesReport> {
    let found = archives_in(dir)?;
    if found.is_empty() {
        return Err(none_in(dir));
    }
    let backup_prefix = crate::backup::coverage::backup_target(layout)
        .ok()
        .map(|(t, _)| t.prefix.clone());
    let mut archives: Vec<ArchiveRow> = found
        .iter()
        .map(|p| row(p, backup_prefix.as_deref()))
        .collect();
    // By the instant, not the string: a `created` written with a fraction or
    // an offset must still sort where it belongs.
    let when = |a: &ArchiveRow| a.date.parse::<jiff::Timestamp>().ok();
    archives.sort_by(|a, b| when(a).cmp(&when(b)).then_with(|| a.name.cmp(&b.name)));
    Ok(ArchivesReport {
        report: "list-archives",
        version: crate::summary::REPORT_VERSION,
        dir: dir.display().to_string(),
        archives,
    })
}

fn row(path: &PathBuf, backup_prefix: Option<&str>) -> ArchiveRow {
    let name = crate::backup::file_name(path);
    let meta = std::fs::metadata(path).ok();
    let mut r = ArchiveRow {
        name: name.clone(),
        path: path.display().to_string(),
        kind: "archive",
        date: meta
            .as_ref()
            .map(|m| rfc3339_ns(crate::entry::nanos(m.mtime(), m.mtime_nsec())))
            .unwrap_or_default(),
        date_from: "mtime",
        size: meta.as_ref().map_or(0, |m| m.len()),
        members: None,
        files: None,
        file_bytes: None,
        manifest: "none",
        sha256_sidecar: sha256_sidecar_state(path, &name),
        flagged: 0,
        state: "ok",
        note: None,
    };
    if crate::crypt::is_encrypted(&name) {
        encrypted_row(&mut r, path);
    } else {
        match crate::commands::list::load_manifest(path) {
            Ok(Some((m, source))) => describe(&mut r, &m, source),
            Ok(None) => {
                r.kind = "foreign";
                r.state = "foreign";
                r.note = Some("no manifest: `datamig verify` checks the stream only".into());
                return r;
            }
            Err(e) => {
                r.manifest = "damaged";
                r.state = "damaged";
                r.note = Some(format!("{e:#}"));
                return r;
            }
        }
    }
    if backup_prefix.is_some_and(|p| crate::backup::parse_name(p, &name).is_some()) {
        r.kind = "backup";
    }
    r
}

/// An encrypted archive as far as it can be told without a key: its
/// sidecars are there, and are age files.
fn encrypted_row(r: &mut ArchiveRow, path: &Path) {
    r.manifest = "encrypted";
    let side = crate::archive::manifest_sidecar(path);
    let mut why = Vec::new();
    if !crate::crypt::quick::is_age_file(path) {
        why.push("the archive is not an age file".to_string());
    }
    if !crate::crypt::quick::is_age_file(&side) {
        why.push(format!("no encrypted {MANIFEST_SIDECAR}.age sidecar"));
    }
    match r.sha256_sidecar {
        "missing" => why.push(format!("no {SHA_SIDECAR} sidecar")),
        "wrong" => why.push(format!(
            "the {SHA_SIDECAR} sidecar does not name this archive"
        )),
        _ => {}
    }
    r.state = if why.is_empty() { "ok" } else { "incomplete" };
    why.push("encrypted: members and date need the key (the date is the file's mtime)".into());
    r.note = Some(why.join("; "));
}

fn describe(r: &mut ArchiveRow, m: &Manifest, source: &'static str) {
    r.manifest = source;
    r.date = m.header.created.clone();
    r.date_from = "manifest";
    r.members = Some(m.entries.iter().filter(|e| e.pos.is_some()).count() as u64);
    r.files = Some(m.trailer.files);
    r.file_bytes = Some(m.trailer.bytes);
    r.flagged = m.entries.iter().filter(|e| e.problem.is_some()).count() as u64;
    let mut why = Vec::new();
    if source != "sidecar" {
        why.push(format!("no {MANIFEST_SIDECAR} sidecar"));
    }
    match r.sha256_sidecar {
        "missing" => why.push(format!("no {SHA_SIDECAR} sidecar")),
        "wrong" => why.push(format!(
            "the {SHA_SIDECAR} sidecar does not name this archive"
        )),
        _ => {}
    }
    if r.flagged > 0 {
        r.state = "flagged";
        why.insert(
            0,
            format!("{} entries were not captured cleanly", r.flagged),
        );
    } else if !why.is_empty() {
        r.state = "incomplete";
    }
    r.note = (!why.is_empty()).then(|| why.join("; "));
}

/// The `.sha256` sidecar's one line must name this archive; its hash is not
/// checked here (that reads the whole archive: `verify --quick`).
fn sha256_sidecar_state(archive: &Path, name: &str) -> &'static str {
    match std::fs::read(sidecar(archive, SHA_SIDECAR)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        Err(_) => "wrong",
        Ok(text) => {
            let text = String::from_utf8_lossy(&text);
            let named = text
                .lines()
                .next()
                .and_then(|l| l.split_once(char::is_whitespace))
                .map(|(_, rest)| rest.trim_start_matches([' ', '*']).trim_end());
            if named == Some(name) {
                "present"
            } else {
                "wrong"
            }
        }
    }
}
