//! Putting a finished archive in place, and recovering from a run killed while
//! it did so.
//!
//! # Commit order
//!
//! The archive and its two sidecars are written under temporary names
//! (`.NAME.datamig-tmp-PID-N`, see `atomic`), fsynced, then renamed with
//! `renameat2(RENAME_NOREPLACE)` in this order:
//!
//! 1. `NAME.sha256` — its content names the archive and its SHA-256
//!    (`HASH  NAME`, as `sha256sum` writes it);
//! 2. `NAME.manifest.jsonl` — byte for byte the manifest inside the archive;
//! 3. `NAME` — the archive, LAST.
//!
//! So an archive under its final name always has both sidecars, and a kill
//! (SIGKILL, power loss) at any instant leaves one of these states:
//!
//! | renames done | final names        | temporaries of the dead run  |
//! |--------------|--------------------|------------------------------|
//! | 0            | none               | archive, manifest, sha256    |
//! | 1            | sha256             | archive, manifest            |
//! | 2            | sha256, manifest   | archive                      |
//! | 3            | all three          | none (complete)              |
//!
//! (SIGINT/SIGTERM cannot split the set: `commit_all` renames under the lock
//! the signal handler takes, and undoes a partial set on error.)
//!
//! # Recovery rules ([`recover`], run before a new archive of NAME is made)
//!
//! - A final `NAME` exists: nothing is touched; the run refuses ("already
//!   exists") as it always did. A user's file that merely looks like a
//!   sidecar of a present archive is never deleted.
//! - `NAME` is absent but one or both sidecars exist: they are a dead run's
//!   orphans only when a temporary archive `.NAME.datamig-tmp-PID-N` of a
//!   dead PID is there whose SHA-256 gives exactly the `.sha256` line (the
//!   final one, or else that run's own temporary one), and the manifest
//!   sidecar, if present, equals the manifest inside that temporary archive.
//!   Then the sidecars are removed — manifest first, `.sha256` last, so a kill
//!   during recovery still leaves a recognisable state — and the temporaries
//!   go with the usual sweep of dead runs' temporaries. A complete archive is
//!   thus never deleted while its sidecars are kept.
//! - An encrypted `NAME.tar.zst.age` (issue 14): its temporary is the
//!   ciphertext, which this host cannot decrypt, so the manifest sidecar
//!   cannot be compared with the manifest inside. The `.sha256` match alone
//!   decides, and the manifest sidecar must be a regular file that is an age
//!   file. That is still proof: age encryption is randomised (a fresh file
//!   key each run), so a ciphertext whose hash the `.sha256` names was made
//!   by that dead run and no other, and its manifest sidecar was written by
//!   the same run, beside it, just before.
//! - Anything else (sidecars without any dead run's archive, or not matching
//!   it) is not provably ours: it is left alone and the run refuses with a
//!   message saying what to move away.
//!
//! The next run then writes a fresh archive of the source as it is now (the
//! dead run had removed nothing: `--remove-source` runs after the commit).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::hashing::Hashing;
use anyhow::{Context, Result};

use crate::archive::SHA_SIDECAR;
use crate::atomic::{AtomicFile, TMP_INFIX, commit_all, pid_alive, stale_temp_pid};
use crate::frames::read_index;
use crate::fsx::Dir;
use crate::render::sha256sum_line;

/// Put `archive` and its sidecars in place in the documented order (archive
/// last); all three or none, as far as a signal can tell.
pub fn commit(archive: AtomicFile, manifest: AtomicFile, sha: AtomicFile) -> Result<()> {
    commit_all(vec![sha, manifest, archive])
}

/// A temporary file of a run that is no longer alive.
struct DeadTemp {
    name: Vec<u8>,
    pid: i32,
}

/// The dead runs' temporaries for the final name `of` in `dir`.
fn dead_temps(dir: &Dir, of: &[u8]) -> Vec<DeadTemp> {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(of);
    prefix.extend_from_slice(TMP_INFIX.as_bytes());
    let Ok(entries) = dir.entries() else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|n| n.name.starts_with(&prefix))
        .filter_map(|n| {
            let pid = stale_temp_pid(&n.name)?;
            let is_file = dir.stat(&n.name).is_ok_and(|m| m.is_file());
            (is_file && !pid_alive(pid)).then_some(DeadTemp { name: n.name, pid })
        })
        .collect()
}

/// Read a small file whole, or None when it is absent, not a regular file or
/// larger than `max` (then it is not what datamig wrote).
fn read_small(dir: &Dir, name: &[u8], max: u64) -> Option<Vec<u8>> {
    if !dir.stat(name).ok()?.is_file() {
        return None;
    }
    let mut v = Vec::new();
    let f = dir.open_file(name).ok()?;
    f.take(max + 1).read_to_end(&mut v).ok()?;
    (v.len() as u64 <= max).then_some(v)
}

fn sha256_of(dir: &Dir, name: &[u8]) -> Option<[u8; 32]> {
    let mut f = dir.open_file(name).ok()?;
    let mut h = Hashing::counting();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(h.done().1)
}

/// The manifest stored inside a temporary archive, found through its index.
fn embedded_manifest(dir: &Dir, dest: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let mut f = dir.open_file(name).ok()?;
    let len = f.metadata().ok()?.len();
    let ix = read_index(&mut f).ok()??;
    let path = dest.join(OsStr::from_bytes(name));
    crate::verify::archive::read_embedded(
        &path,
        len,
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )
    .ok()
}

/// Whether the dead run's temporary archive `tmp` is the one the present
/// sidecars of `name` were written for.
fn sidecars_belong_to(dir: &Dir, dest: &Path, name: &[u8], tmp: &DeadTemp) -> bool {
    let sha_name = [name, SHA_SIDECAR.as_bytes()].concat();
    let man_name = crate::archive::manifest_sidecar_bytes(name);
    let written_line = match read_small(dir, &sha_name, 64 << 10) {
        Some(line) => Some(line),
        // The .sha256 rename never happened (older datamig renamed the
        // manifest first): that run's own temporary .sha256 says it.
        None => dead_temps(dir, &sha_name)
            .iter()
            .filter(|t| t.pid == tmp.pid)
            .find_map(|t| read_small(dir, &t.name, 64 << 10)),
    };
    let Some(written_line) = written_line else {
        return false;
    };
    let Some(hash) = sha256_of(dir, &tmp.name) else {
        return false;
    };
    if written_line != sha256sum_line(&hash, name) {
        return false;
    }
    match dir.stat(&man_name) {
        Err(_) => true,
        Ok(m) if !m.is_file() => false,
        Ok(m) if name.ends_with(crate::crypt::AGE_SUFFIX.as_bytes()) => {
            let magic = crate::crypt::quick::AGE_MAGIC;
            read_small(dir, &man_name, m.size).is_some_and(|side| side.starts_with(magic))
        }
        Ok(m) => match embedded_manifest(dir, dest, &tmp.name) {
            Some(inside) if inside.len() as u64 == m.size => {
                read_small(dir, &man_name, m.size).is_some_and(|side| side == inside)
            }
            _ => false,
        },
    }
}

/// Apply the recovery rules (module doc) for the archive `archive` in `dest`
/// before a run writes it. Returns the sidecars removed as a dead run's
/// orphans; the dead run's temporaries are left to `sweep_stale_temps`.
pub fn recover(dest: &Path, archive: &Path) -> Result<Vec<PathBuf>> {
    let name = archive
        .file_name()
        .context("archive has no file name")?
        .as_bytes();
    let Ok(dir) = Dir::open(dest) else {
        return Ok(vec![]);
    };
    if dir.stat(name).is_ok() {
        return Ok(vec![]);
    }
    let sidecars = [
        crate::archive::manifest_sidecar_bytes(name),
        [name, SHA_SIDECAR.as_bytes()].concat(),
    ];
    if sidecars.iter().all(|s| dir.stat(s).is_err()) {
        return Ok(vec![]);
    }
    let Some(_owner) = dead_temps(&dir, name)
        .into_iter()
        .find(|t| sidecars_belong_to(&dir, dest, name, t))
    else {
        return Ok(vec![]);
    };
    let mut removed = Vec::new();
    for s in &sidecars {
        match dir.unlink(s) {
            Ok(()) => removed.push(dest.join(OsStr::from_bytes(s))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot remove {}, left by a killed datamig run",
                        dest.join(OsStr::from_bytes(s)).display()
                    )
                });
            }
        }
    }
    dir.sync()
        .with_context(|| format!("cannot fsync directory {}", dest.display()))?;
    Ok(removed)
}
