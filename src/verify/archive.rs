//! `datamig verify ARCHIVE`: the archive against its embedded manifest, with the
//! sidecar manifest and `.sha256` cross-checked when present.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::check::{CheckReport, check_source};
use crate::archive::{MANIFEST_MEMBER, SHA_SIDECAR, sidecar};
use crate::entry::{Entry, Problem, hex};
use crate::frames::{FrameReader, read_index};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::tarfmt::TarReader;
use crate::verify::foreign::StreamCheck;

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveVerifyReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    pub quick: bool,
    /// "embedded" or "sidecar": which manifest the members were checked against.
    pub checked_against: &'static str,
    /// "ok", or why the embedded manifest could not be used.
    pub embedded_manifest: String,
    /// "absent", "agrees", "differs", or why it could not be read.
    pub sidecar_manifest: String,
    /// "absent", "ok", "mismatch", or why it could not be read.
    pub sidecar_sha256: String,
    pub archive_sha256: String,
    pub members: Option<CheckReport>,
    /// Entries the manifest itself records as not captured cleanly (not
    /// archived, unreadable, changed while read, special files): the archive
    /// is not a complete copy, so each is also a discrepancy.
    pub flagged: Vec<FlaggedEntry>,
    /// Every discrepancy in one list, for monitoring.
    pub discrepancies: Vec<String>,
    /// The discrepancies no other field names (sidecars, seek table, a
    /// manifest that cannot be used): the human report lists only these under
    /// their own heading, so each finding appears there once.
    #[serde(skip)]
    pub unlisted: Vec<String>,
    /// An archive with no manifest at all (not made by datamig): what
    /// decoding the whole stream found. `None` when there was a manifest.
    pub foreign: Option<StreamCheck>,
    /// The archive is age-encrypted (`NAME.tar.zst.age`): the members were
    /// read through its decryption, `archive_sha256` is the ciphertext's.
    pub encrypted: bool,
}

/// One manifest entry that carries a problem.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedEntry {
    pub path: String,
    pub problem: Problem,
    /// The problem as the manifest records it.
    pub note: String,
    /// Whether a member holds it at all (a file changed while read is archived
    /// as read; an unreadable one or a FIFO is not).
    pub archived: bool,
}

/// The entries of `entries` that carry a problem.
/// [`flagged_entries`], each also a finding: an archive of them is not a
/// complete copy.
pub(crate) fn flagged_findings(entries: &[Entry], disc: &mut Findings) -> Vec<FlaggedEntry> {
    let flagged = flagged_entries(entries);
    for f in &flagged {
        disc.listed(format!(
            "not a complete copy: {}: {} (recorded in the manifest)",
            f.path, f.note
        ));
    }
    flagged
}

/// The sidecar manifest's verdict, from what reading it gave: absent, not
/// usable (the error), or read — and then whether it equals the embedded
/// manifest (`None` when that one is unusable).
pub(crate) fn sidecar_manifest_status(
    shown: &str,
    agreement: Option<Result<Option<bool>, String>>,
    disc: &mut Findings,
) -> String {
    match agreement {
        None => {
            disc.push(format!("sidecar manifest {shown} is missing"));
            "absent".to_string()
        }
        Some(Err(e)) => {
            disc.push(format!("sidecar manifest: {e}"));
            e
        }
        Some(Ok(Some(true))) => "agrees".to_string(),
        Some(Ok(Some(false))) => {
            disc.push(format!(
                "sidecar manifest {shown} differs from the manifest inside the archive"
            ));
            "differs".to_string()
        }
        Some(Ok(None)) => "ok (embedded manifest unusable)".to_string(),
    }
}

pub fn flagged_entries(entries: &[Entry]) -> Vec<FlaggedEntry> {
    entries
        .iter()
        .filter_map(|e| {
            let note = e.problem.as_ref()?;
            Some(FlaggedEntry {
                path: e.path_lossy(),
                problem: Problem::of(note),
                note: note.clone(),
                archived: e.pos.is_some(),
            })
        })
        .collect()
}

/// The discrepancies as they are found, in order; each either named by
/// another field too (`listed`) or only here (`push`).
#[derive(Default)]
pub(crate) struct Findings {
    pub(crate) all: Vec<String>,
    pub(crate) unlisted: Vec<String>,
}

impl Findings {
    pub(crate) fn push(&mut self, s: String) {
        self.unlisted.push(s.clone());
        self.all.push(s);
    }
    /// What reading the members back found: each also named in `members`.
    pub(crate) fn members(&mut self, r: &CheckReport, checked_against: &str) {
        for n in &r.mismatched {
            self.listed(format!("mismatched: {}: {}", n.path, n.note));
        }
        for n in &r.damaged {
            self.listed(format!("damaged: {}: {}", n.path, n.note));
        }
        for n in &r.missing {
            self.listed(format!("missing: {}", n.path));
        }
        if checked_against != "none" {
            for n in &r.unexpected {
                self.listed(format!("unexpected: {}: {}", n.path, n.note));
            }
        }
        for s in r.damaged_frames.iter().chain(&r.stream) {
            self.listed(s.clone());
        }
    }

    /// A finding that `members`, `flagged` or `foreign` already names.
    pub(crate) fn listed(&mut self, s: String) {
        self.all.push(s);
    }
}

impl ArchiveVerifyReport {
    pub fn clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

pub fn verify_archive(
    archive: &Path,
    quick: bool,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<ArchiveVerifyReport> {
    crate::atomic::refuse_temp_name(archive)?;
    let meta = std::fs::metadata(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", archive.display());
    }
    let raw = File::open(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let name = archive.display().to_string();
    let sealed = crate::crypt::source::sniff(&raw);
    if sealed == crate::crypt::Sealed::Age
        && quick
        && crate::crypt::identity::installed().is_empty()
    {
        return super::sealed::verify_quick_without_key(archive);
    }
    let mut f = crate::crypt::Opened::open(raw, meta.len(), &name)?;
    let encrypted = f.encrypted();
    let len = f.len(meta.len());
    let mut magic = [0u8; 4];
    let head = f.read_exact(&mut magic);
    if let (true, Err(e)) = (encrypted, &head) {
        bail!("{e}");
    }
    if head.is_err() || u32::from_le_bytes(magic) != 0xFD2F_B528 {
        bail!(
            "{} is not a zstd stream (empty, or not a datamig archive)",
            archive.display()
        );
    }
    let mut disc = Findings::default();
    let index = read_index(&mut f).ok().flatten();
    let side_path = crate::archive::manifest_sidecar(archive);
    if index.is_none() && !side_path.exists() && !encrypted {
        drop(f);
        return verify_foreign(archive, quick, progress);
    }
    if let Some(why) = crate::frames::seek_table::table_problem(&mut f) {
        disc.push(format!("seek table: {why}"));
    }

    // The embedded manifest, found from the tail when the index is intact.
    let embedded: Result<(Vec<u8>, Manifest)> = match &index {
        None => Err(anyhow::anyhow!(
            "no archive index at the end of the file (truncated, or not made by datamig)"
        )),
        Some(ix) => read_embedded_from(
            crate::archive::check::ArchiveSource::reopen(&f)?,
            len,
            ix.manifest_frame_offset,
            ix.manifest_offset_in_frame,
        )
        .and_then(|bytes| Manifest::read(&bytes[..]).map(|m| (bytes, m))),
    };
    let embedded_status = match &embedded {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            disc.push(format!("embedded manifest: {e:#}"));
            format!("{e:#}")
        }
    };

    // Streamed and hashed, never read whole: a damaged sidecar may be huge.
    let side: Option<Result<([u8; 32], Manifest)>> = side_path.exists().then(|| {
        let f = super::sealed::open_sidecar(&side_path, encrypted)?;
        let mut r = HashingReader {
            inner: f,
            hasher: Sha256::new(),
        };
        let m = Manifest::read(&mut r).with_context(|| format!("{}", side_path.display()))?;
        std::io::copy(&mut r, &mut std::io::sink())?;
        Ok((r.hasher.finalize().into(), m))
    });
    let agreement = side.as_ref().map(|s| {
        s.as_ref()
            .map(|(sh, _)| {
                let embedded = embedded.as_ref().ok();
                embedded.map(|(eb, _)| *sh == <[u8; 32]>::from(Sha256::digest(eb)))
            })
            .map_err(|e| format!("{e:#}"))
    });
    let sidecar_status =
        sidecar_manifest_status(&side_path.display().to_string(), agreement, &mut disc);

    // Without any manifest the members are still walked, so the report can
    // name the last intact one.
    let (checked_against, entries) = match (embedded, side) {
        (Ok((_, m)), _) => ("embedded", m.entries),
        (Err(_), Some(Ok((_, m)))) => ("sidecar", m.entries),
        (Err(_), _) => {
            disc.push("no usable manifest: members can only be listed, not checked".into());
            ("none", Vec::new())
        }
    };

    let flagged = flagged_findings(&entries, &mut disc);

    let (archive_sha256, members) = if quick {
        (hash_file(archive)?, None)
    } else {
        let extra: Vec<(u64, u64)> = index
            .iter()
            .map(|ix| (ix.manifest_frame_offset, ix.manifest_offset_in_frame))
            .collect();
        let r = check_source(f, len, &entries, &extra, jobs, progress)?;
        disc.members(&r, checked_against);
        // The `.sha256` sidecar of an encrypted archive covers the ciphertext.
        let sha = if encrypted {
            hash_file(archive)?
        } else {
            r.archive_sha256.clone()
        };
        (sha, Some(r))
    };

    let sidecar_sha256 = local_sha_sidecar(archive, &archive_sha256, &mut disc);

    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: archive.display().to_string(),
        quick,
        checked_against,
        embedded_manifest: embedded_status,
        sidecar_manifest: sidecar_status,
        sidecar_sha256,
        archive_sha256,
        members,
        flagged,
        discrepancies: disc.all,
        unlisted: disc.unlisted,
        foreign: None,
        encrypted,
    })
}

/// No sidecar manifest and no datamig index: nothing to check the content
/// against, so the archive can never be verified complete (exit 1, as the
/// README's verify section says). What can be checked is that the zstd
/// stream decodes to its end and the tar stream in it is well formed.
fn verify_foreign(
    archive: &Path,
    quick: bool,
    progress: &dyn Progress,
) -> Result<ArchiveVerifyReport> {
    progress.phase("decoding (no manifest)", None);
    // The whole-file hash runs beside the decode, as for datamig archives.
    let owned = archive.to_path_buf();
    let hasher = std::thread::spawn(move || hash_file(&owned));
    let check = if quick {
        None
    } else {
        Some(super::foreign::walk_path(archive, |_| {
            progress.advance(1, 0)
        })?)
    };
    let archive_sha256 = hasher
        .join()
        .map_err(|_| anyhow::anyhow!("hashing thread panicked"))??;
    progress.finish();
    let why = format!(
        "no manifest: no sidecar {} and no datamig index at the end of the archive (not made by datamig, or truncated), so its content cannot be checked against anything",
        crate::archive::manifest_sidecar(archive).display()
    );
    let mut disc = Findings::default();
    match &check {
        None => disc.push(format!("{why}; --quick: the stream was not decoded")),
        Some(c) => match &c.problem {
            None => disc.push(format!(
                "{why}; the stream decodes end to end, {} members ({} zstd frame(s), tar end-of-archive marker present)",
                c.members, c.frames
            )),
            Some(p) => {
                disc.push(why);
                disc.listed(format!(
                    "the stream does not decode end to end: {p} ({} members read before that)",
                    c.members
                ));
            }
        },
    }
    let sha_path = sidecar(archive, SHA_SIDECAR);
    // A foreign archive rarely has a `.sha256`: its absence is no extra
    // discrepancy, a mismatch is.
    let sidecar_sha256 = match std::fs::read(&sha_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".to_string(),
        Err(e) => {
            disc.push(format!("cannot read {}: {e}", sha_path.display()));
            format!("unreadable: {e}")
        }
        Ok(text)
            if String::from_utf8_lossy(&text).split_whitespace().next()
                == Some(&archive_sha256) =>
        {
            "ok".to_string()
        }
        Ok(_) => {
            disc.push(format!(
                "archive SHA-256 {archive_sha256} does not match {}",
                sha_path.display()
            ));
            "mismatch".to_string()
        }
    };
    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: archive.display().to_string(),
        quick,
        checked_against: "none",
        embedded_manifest: "absent: no datamig index at the end of the archive".into(),
        sidecar_manifest: "absent".into(),
        sidecar_sha256,
        archive_sha256,
        members: None,
        flagged: Vec::new(),
        discrepancies: disc.all,
        unlisted: disc.unlisted,
        foreign: check,
        encrypted: false,
    })
}

/// Decode the `.datamig/MANIFEST.jsonl` member starting at a known place.
pub fn read_embedded(
    archive: &Path,
    len: u64,
    frame_offset: u64,
    offset_in_frame: u64,
) -> Result<Vec<u8>> {
    read_embedded_from(File::open(archive)?, len, frame_offset, offset_in_frame)
}

/// `read_embedded` from any random-access source (a local file, or a remote
/// archive read by ranged GETs).
pub fn read_embedded_from<F: std::os::unix::fs::FileExt>(
    f: F,
    len: u64,
    frame_offset: u64,
    offset_in_frame: u64,
) -> Result<Vec<u8>> {
    let mut fr = FrameReader::new(f, len, frame_offset)?;
    std::io::copy(&mut (&mut fr).take(offset_in_frame), &mut std::io::sink())?;
    let mut tar = TarReader::new(fr);
    let found = tar
        .next_member()?
        .context("no member where the index points")?;
    if found.header.path != MANIFEST_MEMBER.as_bytes() {
        bail!(
            "the index points at {:?}, not the manifest",
            String::from_utf8_lossy(&found.header.path)
        );
    }
    if found.header.size > 4 << 30 {
        bail!("embedded manifest declares {} bytes", found.header.size);
    }
    let mut data = Vec::with_capacity(found.header.size as usize);
    tar.read_data(&found.header, |_, b| {
        data.extend_from_slice(b);
        Ok(())
    })?;
    Ok(data)
}

/// Hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub fn hash_file(p: &Path) -> Result<String> {
    let mut f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The local `.sha256` sidecar's verdict on `archive_sha256` (see
/// [`sha_sidecar_status`]).
pub(crate) fn local_sha_sidecar(
    archive: &Path,
    archive_sha256: &str,
    disc: &mut Findings,
) -> String {
    let sha_path = sidecar(archive, SHA_SIDECAR);
    sha_sidecar_status(
        std::fs::read(&sha_path),
        archive_sha256,
        &sha_path.display().to_string(),
        disc,
    )
}

/// What a `.sha256` sidecar (its bytes as read, shown as `shown`) says of an
/// archive hashing to `archive_sha256`: "ok", or "absent", "unreadable: …"
/// or "mismatch", each of those also a finding.
pub(crate) fn sha_sidecar_status(
    read: std::io::Result<Vec<u8>>,
    archive_sha256: &str,
    shown: &str,
    disc: &mut Findings,
) -> String {
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            disc.push(format!("{shown} is missing"));
            "absent".to_string()
        }
        Err(e) => {
            disc.push(format!("cannot read {shown}: {e}"));
            format!("unreadable: {e}")
        }
        Ok(text) => {
            let text = String::from_utf8_lossy(&text);
            let recorded = text.split_whitespace().next().unwrap_or("");
            if recorded == archive_sha256 {
                "ok".to_string()
            } else {
                disc.push(format!(
                    "archive SHA-256 {archive_sha256} does not match {shown} ({recorded})"
                ));
                "mismatch".to_string()
            }
        }
    }
}
