//! Reading an archive back: decompress, walk every tar member, hash its data
//! (holes of sparse files included as zeros), and compare with the manifest.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::write::hash_zeros;
use crate::archive::{MANIFEST_MEMBER, SUMS_MEMBER};
use crate::entry::{Entry, Kind, hex};
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::tarfmt::{MemberKind, TarReader};

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub ok: u64,
    pub mismatched: Vec<PathNote>,
    pub missing: Vec<PathNote>,
    pub unexpected: Vec<PathNote>,
    /// Problems with the archive as a whole (truncation, damaged stream, embedded manifest).
    pub stream: Vec<String>,
    pub archive_sha256: String,
    #[serde(skip)]
    pub embedded_manifest: Option<Vec<u8>>,
    #[serde(skip)]
    pub embedded_sums: Option<Vec<u8>>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.stream.is_empty()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

const MAX_EMBEDDED: u64 = 4 << 30;

/// Check every member of `archive` against `entries` (sorted manifest entries;
/// only those with a recorded position are expected in the archive).
pub fn check_archive(
    archive: &Path,
    entries: &[Entry],
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let f = File::open(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let total: u64 = entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.pos.is_some())
        .map(|e| e.size)
        .sum();
    progress.phase("verifying", Some(total));
    let mut hr = HashingReader {
        inner: f,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut report = CheckReport::default();
    let mut seen = vec![false; entries.len()];
    {
        let dec =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, &mut hr))
                .with_context(|| format!("{} is not a zstd stream", archive.display()))?;
        let mut tar = TarReader::new(dec);
        let mut last_good: Option<String> = None;
        loop {
            let found = match tar.next_member() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    report.stream.push(format!(
                        "{e:#}; last intact member: {}",
                        last_good.as_deref().unwrap_or("(none)")
                    ));
                    break;
                }
            };
            let h = found.header;
            let name = String::from_utf8_lossy(&h.path).into_owned();
            if h.path == MANIFEST_MEMBER.as_bytes() || h.path == SUMS_MEMBER.as_bytes() {
                if h.size > MAX_EMBEDDED {
                    report.stream.push(format!(
                        "{name} declares {} bytes; refusing to load it",
                        h.size
                    ));
                    break;
                }
                let mut data = Vec::with_capacity(h.size as usize);
                if let Err(e) = tar.read_data(&h, |_, b| {
                    data.extend_from_slice(b);
                    Ok(())
                }) {
                    report.stream.push(format!(
                        "{e:#}; last intact member: {}",
                        last_good.as_deref().unwrap_or("(none)")
                    ));
                    break;
                }
                if h.path == MANIFEST_MEMBER.as_bytes() {
                    report.embedded_manifest = Some(data);
                } else {
                    report.embedded_sums = Some(data);
                }
                last_good = Some(name);
                continue;
            }
            let idx = entries
                .binary_search_by(|e| e.path.as_slice().cmp(&h.path))
                .ok();
            let Some(i) = idx.filter(|&i| entries[i].pos.is_some()) else {
                report.unexpected.push(PathNote {
                    path: name.clone(),
                    note: "member not in the manifest".into(),
                });
                last_good = Some(name);
                continue;
            };
            if seen[i] {
                report.unexpected.push(PathNote {
                    path: name.clone(),
                    note: "member appears twice".into(),
                });
                continue;
            }
            seen[i] = true;
            let e = &entries[i];
            let mut diffs = metadata_diffs(e, &h);
            if h.kind == MemberKind::File {
                let mut hasher = Sha256::new();
                let mut logical = 0u64;
                let r = tar.read_data(&h, |off, b| {
                    hash_zeros(&mut hasher, off - logical);
                    hasher.update(b);
                    logical = off + b.len() as u64;
                    Ok(())
                });
                if let Err(err) = r {
                    report.stream.push(format!(
                        "{err:#} (in member {name}); last intact member: {}",
                        last_good.as_deref().unwrap_or("(none)")
                    ));
                    report.mismatched.push(PathNote {
                        path: name,
                        note: "member data is cut short".into(),
                    });
                    break;
                }
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
            if diffs.is_empty() {
                report.ok += 1;
            } else {
                report.mismatched.push(PathNote {
                    path: name.clone(),
                    note: diffs.join("; "),
                });
            }
            last_good = Some(name);
        }
        // Drain what follows the tar end marker so the whole file is hashed and
        // a damaged tail is still noticed.
        if report.stream.is_empty() {
            let mut dec = tar.into_inner();
            let mut sink = [0u8; 64 << 10];
            loop {
                match dec.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        report
                            .stream
                            .push(format!("zstd stream after the last member is damaged: {e}"));
                        break;
                    }
                }
            }
        }
    }
    let _ = std::io::copy(&mut hr, &mut std::io::sink());
    report.archive_sha256 = hex(&hr.hasher.finalize());
    for (i, e) in entries.iter().enumerate() {
        if e.pos.is_some() && !seen[i] {
            report.missing.push(PathNote {
                path: e.path_lossy(),
                note: "in the manifest but not in the archive".into(),
            });
        }
    }
    progress.finish();
    Ok(report)
}

fn metadata_diffs(e: &Entry, h: &crate::tarfmt::MemberHeader) -> Vec<String> {
    let mut d = Vec::new();
    let want = match e.kind {
        Kind::File => MemberKind::File,
        Kind::Dir => MemberKind::Dir,
        Kind::Symlink => MemberKind::Symlink,
        Kind::Hardlink => MemberKind::Hardlink,
        _ => {
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
