//! Nightly backups of the live V2 data: which files in the destination are
//! datamig's backups (and so may ever be deleted), their names and stamps, how
//! one is deleted, and whether the tree changed since the newest.
//!
//! Retention itself is the pure policy in `retention`; the lock in `lock`.

pub mod coverage;
pub mod lock;
pub mod remote_retention;
pub mod retention;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::archive::{EXTENSION, MANIFEST_SIDECAR, SHA_SIDECAR, sidecar};
use crate::entry::{Entry, Kind};
use crate::manifest::Manifest;
use crate::summary::PathNote;

/// `YYYYMMDD-HHMMSS`, UTC: the stamp in a backup's name.
pub fn stamp_of(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%Y%m%d-%H%M%S")
        .to_string()
}

/// The time in `<prefix>-YYYYMMDD-HHMMSS.tar.zst` (or its encrypted
/// `….tar.zst.age`), when the name is exactly that and the stamp is a real
/// UTC date and time.
pub fn parse_name(prefix: &str, name: &str) -> Option<Timestamp> {
    let name = name.strip_suffix(crate::crypt::AGE_SUFFIX).unwrap_or(name);
    let stamp = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(EXTENSION)?;
    let b = stamp.as_bytes();
    let shape = b.len() == 15
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let dt = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", stamp).ok()?;
    let t = dt.to_zoned(TimeZone::UTC).ok()?.timestamp();
    (stamp_of(t) == stamp).then_some(t)
}

/// A backup datamig made: a name with a valid stamp, a regular file, and both
/// sidecars, the manifest one readable and intact.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub path: PathBuf,
    pub time: Timestamp,
    /// Entries its manifest records as not captured cleanly (its run exited
    /// 1): more than 0 makes it a flagged backup, never a complete copy.
    /// Always 0 for an encrypted backup: its manifest is not readable here.
    pub flagged: usize,
    /// A `.tar.zst.age`: the backup host holds no key to read it.
    pub encrypted: bool,
}

#[derive(Debug, Default)]
pub struct Existing {
    /// Candidates for retention, in no particular order.
    pub backups: Vec<Found>,
    /// Files named like an archive of this prefix that are not datamig's
    /// backups, with why; they are never touched.
    pub ignored: Vec<PathNote>,
}

impl Existing {
    pub fn newest(&self) -> Option<&Found> {
        self.backups
            .iter()
            .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)))
    }
}

/// The backups in `dest` (none when it does not exist). Everything that is
/// not provably a datamig backup is left out.
pub fn discover(dest: &Path, prefix: &str) -> Result<Existing> {
    let mut found = Existing::default();
    let rd = match std::fs::read_dir(dest) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot list {}", dest.display()));
        }
    };
    for de in rd {
        let de = de.with_context(|| format!("cannot list {}", dest.display()))?;
        let raw = de.file_name();
        let Some(name) = raw.to_str() else { continue };
        let plain_name = name.strip_suffix(crate::crypt::AGE_SUFFIX).unwrap_or(name);
        if !name.starts_with(prefix) || !plain_name.ends_with(EXTENSION) {
            continue;
        }
        let path = de.path();
        match candidate(&path, prefix, name) {
            Ok((time, flagged)) => found.backups.push(Found {
                name: name.to_string(),
                path,
                time,
                flagged,
                encrypted: crate::crypt::is_encrypted(name),
            }),
            Err(why) => found.ignored.push(PathNote {
                path: name.to_string(),
                note: why,
            }),
        }
    }
    found.ignored.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The backup's time and how many of its entries are flagged.
fn candidate(
    path: &Path,
    prefix: &str,
    name: &str,
) -> std::result::Result<(Timestamp, usize), String> {
    let time = parse_name(prefix, name)
        .ok_or_else(|| format!("not named {prefix}-YYYYMMDD-HHMMSS{EXTENSION}"))?;
    let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file());
    if !is_file(path) {
        return Err("not a regular file".into());
    }
    let manifest = crate::archive::manifest_sidecar(path);
    if !is_file(&manifest) {
        return Err(format!("no {MANIFEST_SIDECAR} sidecar"));
    }
    if !is_file(&sidecar(path, SHA_SIDECAR)) {
        return Err(format!("no {SHA_SIDECAR} sidecar"));
    }
    if crate::crypt::is_encrypted(name) {
        // Without a key the manifest cannot be read: how many entries it
        // flags is unknown, so the backup counts as complete (README).
        if !crate::crypt::quick::is_age_file(path) || !crate::crypt::quick::is_age_file(&manifest) {
            return Err("named .age, but it or its manifest sidecar is not an age file".into());
        }
        return Ok((time, 0));
    }
    let m = Manifest::read_file(&manifest).map_err(|e| format!("{e:#}"))?;
    let flagged = m.entries.iter().filter(|e| e.problem.is_some()).count();
    Ok((time, flagged))
}

/// Delete a backup: the archive first (the space), then its sidecars. Every
/// file is attempted; failures are returned.
pub fn remove_backup(archive: &Path) -> Vec<PathNote> {
    let mut failed = Vec::new();
    for p in [
        archive.to_path_buf(),
        crate::archive::manifest_sidecar(archive),
        sidecar(archive, SHA_SIDECAR),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(PathNote {
                path: p.display().to_string(),
                note: format!("cannot remove: {e}"),
            }),
        }
    }
    if let Some(dir) = archive.parent() {
        let _ = crate::atomic::sync_dir(dir);
    }
    failed
}

/// The first difference between an archive's manifest and a fresh stat-only
/// scan of the same tree, or None when they match: the same paths, and for
/// each the same type, size, mode, owner, link target and — except for
/// directories, whose mtime moves with their contents — the same mtime to the
/// nanosecond. An entry flagged in either (not captured cleanly) counts as a
/// change, so the next run captures it again.
pub fn tree_change(old: &[Entry], now: &[Entry]) -> Option<String> {
    let ours = |e: &&Entry| !(e.path == b".datamig" || e.path.starts_with(b".datamig/"));
    let mut a = old.iter().filter(ours);
    let mut b = now.iter().filter(ours);
    loop {
        let (x, y) = match (a.next(), b.next()) {
            (None, None) => return None,
            (Some(x), None) => return Some(format!("{} was removed", x.path_lossy())),
            (None, Some(y)) => return Some(format!("{} is new", y.path_lossy())),
            (Some(x), Some(y)) => (x, y),
        };
        if x.path != y.path {
            let (first, what) = if x.path < y.path {
                (x, "was removed")
            } else {
                (y, "is new")
            };
            return Some(format!("{} {what}", first.path_lossy()));
        }
        let p = x.path_lossy();
        if let Some(why) = x.problem.as_ref().or(y.problem.as_ref()) {
            return Some(format!("{p} is flagged ({why})"));
        }
        if x.kind != y.kind {
            return Some(format!("{p} was a {}, now a {}", x.kind, y.kind));
        }
        if x.size != y.size {
            return Some(format!("{p} changed size"));
        }
        if x.kind != Kind::Dir && x.mtime_ns != y.mtime_ns {
            return Some(format!("{p} changed mtime"));
        }
        if (x.mode, x.uid, x.gid) != (y.mode, y.uid, y.gid) {
            return Some(format!("{p} changed mode or owner"));
        }
        if x.target != y.target {
            return Some(format!("{p} changed link target"));
        }
    }
}

/// A file name for reports (UTF-8, lossy).
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_stamps() {
        let t: Timestamp = "2025-12-20T02:03:04Z".parse().unwrap();
        assert_eq!(stamp_of(t), "20251220-020304");
        assert_eq!(
            parse_name("v2-data", "v2-data-20251220-020304.tar.zst"),
            Some(t)
        );
        assert_eq!(
            parse_name("v2-data", "v2-data-20251220-020304.tar.zst.age"),
            Some(t)
        );
        for bad in [
            "v2-data-garbage.tar.zst",
            "v2-data-20251220.tar.zst",
            "v2-data-20251320-020304.tar.zst",
            "v2-data-20251220-250000.tar.zst",
            "v2-data-20251220-020304.tar.zst.sha256",
            "v2-data-20251220-020304.tar.zst.age.sha256",
            "v2-data-20251220-020304.tar.zst.manifest.jsonl.age",
            "v2-data-20251220-020304.age",
            "v2-data-20251220-020304.tar.zst.manifest.jsonl",
            "v2-data-2025122-0020304.tar.zst",
            "v2-data-+0251220-020304.tar.zst",
            "v2-data--20251220-020304.tar.zst",
            "v1-production-20251220-020304.tar.zst",
            "x-v2-data-20251220-020304.tar.zst",
            ".v2-data-20251220-020304.tar.zst.datamig-tmp-1-2",
        ] {
            assert_eq!(parse_name("v2-data", bad), None, "{bad}");
        }
    }

    fn e(path: &str, kind: Kind, size: u64, mtime_ns: i64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns,
            ino: 1,
            ctime_ns: 0,
            sha256: None,
            target: None,
            area: Default::default(),
            problem: None,
            pos: None,
        }
    }

    #[test]
    fn tree_changes() {
        let base = vec![
            e("instances", Kind::Dir, 0, 5),
            e("instances/a.json", Kind::File, 10, 1_000_000_001),
            e("wisdom.md", Kind::File, 3, 7),
        ];
        assert_eq!(tree_change(&base, &base), None);

        let mut v = base.clone();
        v[0].mtime_ns = 99;
        v[0].ino = 9;
        v[1].ctime_ns = 12;
        assert_eq!(tree_change(&base, &v), None, "dir mtime, inode, ctime");

        let mut v = base.clone();
        v.push(e(".datamig/MANIFEST.jsonl", Kind::File, 1, 1));
        v.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(tree_change(&v, &base), None, "datamig's own members");

        let mut v = base.clone();
        v[1].mtime_ns += 1;
        assert_eq!(
            tree_change(&base, &v).as_deref(),
            Some("instances/a.json changed mtime"),
            "nanoseconds count"
        );
        let mut v = base.clone();
        v[2].size = 4;
        assert_eq!(
            tree_change(&base, &v).as_deref(),
            Some("wisdom.md changed size")
        );
        let mut v = base.clone();
        v[2].mode = 0o600;
        assert!(tree_change(&base, &v).is_some());
        let mut v = base.clone();
        v[1].problem = Some("changed during scan".into());
        assert!(tree_change(&v, &base).unwrap().contains("flagged"));
        let v = vec![base[0].clone(), base[2].clone()];
        assert_eq!(
            tree_change(&base, &v).as_deref(),
            Some("instances/a.json was removed")
        );
        assert_eq!(
            tree_change(&v, &base).as_deref(),
            Some("instances/a.json is new")
        );
        assert_eq!(
            tree_change(&base[..2], &base).as_deref(),
            Some("wisdom.md is new")
        );
    }
}
