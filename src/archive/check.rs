//! Reading an archive back: decompress, walk every tar member, hash its data
//! (holes of sparse files included as zeros), and compare with the manifest.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod segments;

use crate::archive::write::hash_zeros;
use crate::archive::{MANIFEST_MEMBER, SUMS_MEMBER};
use crate::entry::{Entry, Kind, hex};
use crate::frames::Damage;
use crate::hashing::Hashed;
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::tarfmt::{MemberKind, TarReader};

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub ok: u64,
    pub mismatched: Vec<PathNote>,
    pub missing: Vec<PathNote>,
    pub unexpected: Vec<PathNote>,
    /// Members lost to a damaged zstd frame.
    pub damaged: Vec<PathNote>,
    pub damaged_frames: Vec<String>,
    /// Problems with the archive as a whole (truncation, damaged stream, embedded manifest).
    pub stream: Vec<String>,
    pub archive_sha256: String,
    /// Size and SHA-256 of the `.datamig/` members as read back: the
    /// archive command compares them with what it wrote, without holding
    /// either in memory (tens of MiB at 200,000 entries).
    #[serde(skip)]
    pub embedded_manifest: Option<Hashed>,
    #[serde(skip)]
    pub embedded_sums: Option<Hashed>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.stream.is_empty()
    }
}

/// Where the stream can be entered again after a damaged frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Restart {
    pub frame_offset: u64,
    pub offset_in_frame: u64,
}

/// Check every member of `archive` against `entries` (sorted manifest entries;
/// those with a recorded position are expected in the archive, in that order),
/// on up to `jobs` threads. A damaged frame costs only the members it holds:
/// reading resumes at the first member recorded after it.
pub fn check_archive(
    archive: &Path,
    entries: &[Entry],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let file = crate::fsx::open_path(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let len = file.metadata()?.len();
    check_source(file, len, entries, &[], jobs, progress)
}

/// Random access to an archive's bytes that can be opened again: a local
/// file, or a remote archive read with ranged GETs.
pub trait ArchiveSource: FileExt + Send + Sized + 'static {
    fn reopen(&self) -> std::io::Result<Self>;

    /// Whether `check_source` hashes these bytes whole for `archive_sha256`:
    /// not the plaintext of an encrypted archive, whose `.sha256` covers the
    /// ciphertext (hashed by the caller) and whose damaged chunks cannot be
    /// read at all.
    fn hash_whole(&self) -> bool {
        true
    }
}

impl ArchiveSource for std::fs::File {
    fn reopen(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

impl ArchiveSource for crate::remote::RemoteFile {
    fn reopen(&self) -> std::io::Result<Self> {
        Ok(self.clone())
    }
}

/// `check_archive` on any source of `len` bytes. `extra_restarts` adds entry
/// points for the `.datamig/` members (from the archive index).
///
/// With `jobs` > 1 the archive is cut at recorded member starts into
/// segments checked on their own threads (`segments`); the report is the
/// one a single thread gives, byte for byte.
pub fn check_source<F: ArchiveSource>(
    file: F,
    len: u64,
    entries: &[Entry],
    extra_restarts: &[(u64, u64)],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let total: u64 = entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.pos.is_some())
        .map(|e| e.size)
        .sum();
    progress.phase("verifying", Some(total));

    // The whole-file hash runs beside the decode: both read the same cached
    // pages of the one file opened above (positional reads, so the decoder's
    // offset is not disturbed).
    let f = file.reopen()?;
    let whole = file.hash_whole();
    let hasher = std::thread::spawn(move || -> std::io::Result<String> {
        if !whole {
            return Ok(String::new());
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        loop {
            let n = f.read_at(&mut buf, at)?;
            if n == 0 {
                break;
            }
            at += n as u64;
            h.update(&buf[..n]);
        }
        Ok(hex(&h.finalize()))
    });

    let restarts = restarts_of(entries, extra_restarts);
    let mut report = segments::check(&file, len, entries, &restarts, jobs, progress)?;
    report.archive_sha256 = hasher
        .join()
        .map_err(|_| anyhow::anyhow!("hashing thread panicked"))?
        .context("cannot read the archive")?;
    progress.finish();
    Ok(report)
}

/// Every recorded member start, in stream order.
fn restarts_of(entries: &[Entry], extra: &[(u64, u64)]) -> Vec<Restart> {
    let mut restarts: Vec<Restart> = entries
        .iter()
        .filter_map(|e| {
            e.pos.map(|p| Restart {
                frame_offset: p.frame_offset,
                offset_in_frame: p.offset_in_frame,
            })
        })
        .chain(extra.iter().map(|&(f, o)| Restart {
            frame_offset: f,
            offset_in_frame: o,
        }))
        .collect();
    restarts.sort();
    restarts.dedup();
    restarts
}

/// The first recorded member start after the damaged frame `d`: where
/// reading resumes, if anywhere.
fn resume_after(restarts: &[Restart], d: &Damage, len: u64) -> Option<Restart> {
    restarts
        .iter()
        .copied()
        .find(|r| r.frame_offset > d.frame_offset && r.frame_offset < len)
}

/// Every member not yet seen that starts before `resume` is lost to a
/// damaged frame: marked seen and handed to `lost`; returns how many.
fn mark_lost(
    entries: &[Entry],
    seen: &mut [bool],
    resume: Option<Restart>,
    mut lost: impl FnMut(&Entry),
) -> usize {
    let mut n = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let Some(p) = e.pos else { continue };
        let at = Restart {
            frame_offset: p.frame_offset,
            offset_in_frame: p.offset_in_frame,
        };
        if !seen[i] && resume.is_none_or(|r| at < r) {
            seen[i] = true;
            n += 1;
            lost(e);
        }
    }
    n
}

/// What one member of the stream turned out to be.
enum Member {
    /// `.datamig/MANIFEST.jsonl` (`manifest`) or `.datamig/SHA256SUMS`.
    Embedded {
        manifest: bool,
        data: Hashed,
    },
    Unexpected(PathNote),
    /// The manifest's entry `idx`, with what differs (nothing when it matches).
    Checked {
        idx: usize,
        diffs: Vec<String>,
    },
}

/// Check one member; `Ok(None)` at the end-of-archive marker. `seen` says
/// which entries were already met (a second member for one is unexpected).
fn check_next<R: Read>(
    tar: &mut TarReader<R>,
    entries: &[Entry],
    seen: &[bool],
    progress: &dyn Progress,
) -> Result<Option<Member>> {
    let Some(found) = tar.next_member()? else {
        return Ok(None);
    };
    let h = found.header;
    let name = String::from_utf8_lossy(&h.path).into_owned();
    if h.path == MANIFEST_MEMBER.as_bytes() || h.path == SUMS_MEMBER.as_bytes() {
        let mut hasher = Sha256::new();
        tar.read_data(&h, |_, b| {
            hasher.update(b);
            Ok(())
        })?;
        let data = Hashed {
            size: h.size,
            sha256: hasher.finalize().into(),
        };
        let manifest = h.path == MANIFEST_MEMBER.as_bytes();
        return Ok(Some(Member::Embedded { manifest, data }));
    }
    let idx = entries
        .binary_search_by(|e| e.path.as_slice().cmp(&h.path))
        .ok();
    let Some(i) = idx.filter(|&i| entries[i].pos.is_some()) else {
        return Ok(Some(Member::Unexpected(PathNote {
            path: name,
            note: "member not in the manifest".into(),
        })));
    };
    if seen[i] {
        return Ok(Some(Member::Unexpected(PathNote {
            path: name,
            note: "member appears twice".into(),
        })));
    }
    let e = &entries[i];
    let mut diffs = metadata_diffs(e, &h);
    if h.kind == MemberKind::File {
        let mut hasher = Sha256::new();
        let mut logical = 0u64;
        tar.read_data(&h, |off, b| {
            hash_zeros(&mut hasher, off - logical);
            hasher.update(b);
            logical = off + b.len() as u64;
            Ok(())
        })?;
        hash_zeros(&mut hasher, h.size - logical);
        let got: [u8; 32] = hasher.finalize().into();
        if Some(got) != e.sha256 {
            diffs.push(format!(
                "content: sha256 {} in archive, {} in manifest",
                hex(&got),
                e.sha256_hex().unwrap_or_else(|| "none".into())
            ));
        }
    }
    progress.advance(1, h.size);
    Ok(Some(Member::Checked { idx: i, diffs }))
}

fn metadata_diffs(e: &Entry, h: &crate::tarfmt::MemberHeader) -> Vec<String> {
    let mut d = Vec::new();
    let want = match e.kind {
        Kind::File => MemberKind::File,
        Kind::Dir => MemberKind::Dir,
        Kind::Symlink => MemberKind::Symlink,
        Kind::Hardlink => MemberKind::Hardlink,
        // No content to hash: presence, kind and metadata are what is checked
        // (device numbers are in the tar header only; the manifest does not
        // record them).
        Kind::Fifo => MemberKind::Fifo,
        Kind::Char => MemberKind::CharDev,
        Kind::Block => MemberKind::BlockDev,
        Kind::Socket => {
            d.push(format!("{} entry has an archive member", e.kind));
            return d;
        }
    };
    if want != h.kind {
        d.push(format!(
            "type {:?} in archive, {} in manifest",
            h.kind, e.kind
        ));
        return d;
    }
    if want == MemberKind::File && h.size != e.size {
        d.push(format!(
            "size {} in archive, {} in manifest",
            h.size, e.size
        ));
    }
    if h.mode != e.mode {
        d.push(format!(
            "mode {:o} in archive, {:o} in manifest",
            h.mode, e.mode
        ));
    }
    if h.mtime != e.mtime_ns.div_euclid(1_000_000_000) {
        d.push(format!(
            "mtime {} in archive, {} in manifest",
            h.mtime,
            e.mtime_ns.div_euclid(1_000_000_000)
        ));
    }
    if (h.uid, h.gid) != (e.uid as u64, e.gid as u64) {
        d.push(format!(
            "owner {}:{} in archive, {}:{} in manifest",
            h.uid, h.gid, e.uid, e.gid
        ));
    }
    if matches!(want, MemberKind::Symlink | MemberKind::Hardlink) && h.link != e.target {
        d.push("link target differs".into());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarfmt::MemberHeader;

    /// Issue 11: a special member has no content to hash; its kind and
    /// metadata are what the read-back checks.
    #[test]
    fn special_members_are_checked_for_kind_and_metadata() {
        let e = Entry {
            path: b"p".to_vec(),
            kind: Kind::Fifo,
            mode: 0o640,
            mtime_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let mut h = MemberHeader {
            path: b"p".to_vec(),
            kind: MemberKind::Fifo,
            mode: 0o640,
            mtime: 1_700_000_000,
            ..Default::default()
        };
        assert!(metadata_diffs(&e, &h).is_empty());
        h.kind = MemberKind::CharDev;
        assert_eq!(
            metadata_diffs(&e, &h),
            vec!["type CharDev in archive, fifo in manifest".to_string()]
        );
        h.kind = MemberKind::Fifo;
        h.mode = 0o600;
        assert_eq!(
            metadata_diffs(&e, &h),
            vec!["mode 600 in archive, 640 in manifest".to_string()]
        );
        let sock = Entry {
            kind: Kind::Socket,
            ..e
        };
        assert_eq!(
            metadata_diffs(&sock, &h),
            vec!["socket entry has an archive member".to_string()]
        );
    }
}
