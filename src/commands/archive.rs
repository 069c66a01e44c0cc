//! `datamig archive TARGET`: a dated, compressed, verified `.tar.zst` with its
//! manifest, replacing the runbook's `mv production archive/...`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::archive::check::{CheckReport, check_archive};
use crate::archive::gates::{
    self, Check, GateResult, Gates, Override, Overrides, PolicyInput, Verdict,
};
use crate::archive::remove::{BaseDir, Removal, remove_archived};
use crate::archive::write::{put_stream, resolve_positions, write_members};
use crate::archive::{
    EXTENSION, MANIFEST_MEMBER, SHA_SIDECAR, SUMS_MEMBER, Source, create_dest, date_stamp,
    resolve_source, sidecar,
};
use crate::atomic::AtomicFile;
use crate::crypt::Recipients;
use crate::crypt::writer::{ReadBack, Sealer};
use crate::entry::{Entry, hex};
use crate::frames::{ArchiveIndex, FrameWriter};
use crate::hashing::Hashing;
use crate::layout::{Layout, build_globset};
use crate::manifest::{Header, write_manifest};
use crate::progress::Progress;
use crate::render::sha256sum_line;
use crate::scan::{Excluded, ScanSpec, Tags, scan};
use crate::summary::PathNote;
use crate::tarfmt::END_OF_ARCHIVE;
use crate::verify::migration::Accepted;
use globset::GlobSet;

#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub root: PathBuf,
    pub layout: Layout,
    pub target: String,
    pub dest: Option<PathBuf>,
    /// YYYYMMDD; default today (local).
    pub date: Option<String>,
    /// Full stamp override (backup uses YYYYMMDD-HHMMSS).
    pub stamp: Option<String>,
    /// The manifest header's `created` (RFC 3339); default: now. `backup
    /// --now` sets it so that the header and the name tell the same time.
    pub created: Option<String>,
    pub level: i32,
    pub threads: usize,
    pub excludes: Vec<String>,
    /// `--exclude-caches`, `--exclude-if-present`.
    pub tags: Tags,
    pub verify: bool,
    pub remove_source: bool,
    /// Which failed removal gates `--remove-source` may pass anyway.
    pub overrides: Overrides,
    /// `--accept PATH`: legacy files decided obsolete, as in `verify --migration --accept`.
    pub migration_accept: Vec<String>,
    /// `--etc DIR` for the reference gate (default `/etc`).
    pub etc: Option<PathBuf>,
    /// `--encrypt-to`, `--recipients-file`: write `NAME.tar.zst.age` (see `crypt`).
    pub recipients: Option<Recipients>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub report: &'static str,
    pub version: u32,
    pub target: String,
    pub source: String,
    pub archive: String,
    pub manifest: String,
    pub sha256_file: String,
    /// The SHA-256 of the file written (of the ciphertext when encrypted):
    /// what the `.sha256` sidecar holds.
    pub archive_sha256: String,
    /// Written as an age-encrypted `.tar.zst.age` (issue 14).
    pub encrypted: bool,
    /// How many recipients it is encrypted to (0 when not encrypted; the
    /// run's own read-back key is not counted).
    pub recipients: usize,
    /// Size of the encrypted file; `compressed_bytes` stays the size of the
    /// `.tar.zst` inside it.
    pub encrypted_bytes: Option<u64>,
    pub members: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub tar_bytes: u64,
    pub compressed_bytes: u64,
    pub frames: u64,
    pub seconds: f64,
    pub secrets: Vec<String>,
    pub absent: Vec<String>,
    /// What the walk left out on purpose (exclude patterns of the command
    /// line and the layout target, tagged directories): each path where the
    /// walk stopped, nothing below it counted. `excluded_count` is its length.
    pub excluded_count: usize,
    pub excluded: Vec<PathNote>,
    /// Entries not captured cleanly (changed, unreadable).
    pub flagged: Vec<PathNote>,
    /// Entries left out by design, not problems: sockets (as GNU tar).
    pub notes: Vec<PathNote>,
    /// "passed", "failed" or "skipped".
    pub verify: &'static str,
    pub verify_report: Option<CheckReport>,
    pub removed: Option<Removal>,
    pub remove_refused: Option<String>,
    /// Every removal gate's result (empty without `--remove-source`).
    pub gates: Vec<GateResult>,
    /// Failed or skipped gates an override flag let through: never clean.
    pub overrides: Vec<Override>,
    /// With --remove-source: what the reference check (`datamig refs`) found.
    pub refs: Option<crate::refs::RefsGate>,
}

impl ArchiveReport {
    pub fn clean(&self) -> bool {
        self.flagged.is_empty()
            && self.verify != "failed"
            && self.remove_refused.is_none()
            && self.overrides.is_empty()
            && self.removed.as_ref().is_none_or(|r| r.kept.is_empty())
    }
}

pub fn run(opts: &ArchiveOptions, progress: &dyn Progress) -> Result<ArchiveReport> {
    let started = Instant::now();
    let root = &opts.root;
    if !root.is_dir() {
        bail!(
            "data root {} is not a readable directory (set --root or V2_DATA_ROOT)",
            root.display()
        );
    }
    let src = resolve_source(root, &opts.layout, &opts.target)?;
    let gated = opts.remove_source && src.requires_migration_check;
    if !opts.migration_accept.is_empty() && !gated {
        bail!(
            "--accept applies only to --remove-source of a target that requires the migration \
             check (v2-dev-data); drop --accept"
        );
    }
    let refs = opts
        .remove_source
        // Searched before anything is written, so the answer describes the
        // server as it was when removal was asked for.
        .then(|| {
            gates::search_refs(
                &opts.root,
                &opts.layout,
                opts.etc.as_deref(),
                &src.target,
                opts.overrides,
            )
        })
        .transpose()?;
    let stamp = match &opts.stamp {
        Some(s) => s.clone(),
        None => date_stamp(opts.date.as_deref())?,
    };
    let dest = opts.dest.clone().unwrap_or_else(|| root.join("archive"));
    // Removed again if the run stops before anything is written into it.
    let created_dest = create_dest(&dest)?;
    let suffix = if opts.recipients.is_some() {
        crate::crypt::AGE_SUFFIX
    } else {
        ""
    };
    let archive = dest.join(format!("{}-{stamp}{EXTENSION}{suffix}", src.prefix));
    // A run killed mid-commit left sidecars without their archive: recognised
    // (see archive::commit) and removed before its temporaries are swept.
    for p in crate::archive::commit::recover(&dest, &archive)? {
        eprintln!(
            "datamig: removed {}, a sidecar left without its archive by a datamig run that was killed while committing",
            p.display()
        );
    }
    for p in crate::atomic::sweep_stale_temps(&dest) {
        eprintln!(
            "datamig: removed {}, a temporary file left by a datamig run that was killed",
            p.display()
        );
    }
    let manifest_path = crate::archive::manifest_sidecar(&archive);
    let sha_path = sidecar(&archive, SHA_SIDECAR);
    for p in [&archive, &manifest_path, &sha_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            let lone = p != &archive && std::fs::symlink_metadata(&archive).is_err();
            // backup names its archives by the second and has no --date.
            let other = if opts.stamp.is_some() {
                "--now"
            } else {
                "--date"
            };
            // The source of an archive already written is removed against it.
            let retire = if opts.remove_source && !lone {
                format!(
                    "; to remove the source against that archive, run `datamig retire {}`",
                    archive.display()
                )
            } else {
                String::new()
            };
            bail!(
                "{} already exists{}; datamig never overwrites an archive (pick another {other} or --dest, or move the old one away){retire}",
                p.display(),
                if lone {
                    " without its archive, and no killed datamig run's archive matches it"
                } else {
                    ""
                }
            );
        }
    }

    // Opened before the scan, beneath the root: removal acts only through it.
    let base_dir = opts
        .remove_source
        .then(|| BaseDir::open(root, &src.base_rel, &src.scope));
    let excludes = source_excludes(&src, &opts.excludes, &dest)?;
    let (mut entries, identity, excluded) = scan_source(
        &opts.layout,
        &src,
        &excludes,
        &opts.tags,
        opts.threads,
        false,
        &crate::progress::Silent,
    )?;
    if entries
        .iter()
        .any(|e| e.path == b".datamig" || e.path.starts_with(b".datamig/"))
    {
        bail!(
            "{} contains a .datamig entry, which is where datamig puts its own manifest; exclude it with --exclude '.datamig/**'",
            src.base.display()
        );
    }

    let mut out = AtomicFile::create(&archive, 0o600, true)?;
    let file = out
        .file()
        .try_clone()
        .context("cannot reopen the temporary archive")?;
    let file = NamedWriter {
        inner: file,
        what: format!(
            "{} (written as {})",
            archive.display(),
            out.temp_path().display()
        ),
        written: 0,
        queued: 0,
    };
    let readback = opts.recipients.as_ref().map(|_| ReadBack::generate());
    let (sink, sealer) = output(file, opts.recipients.as_ref(), readback.as_ref())?;
    let mut fw = FrameWriter::new(sink, opts.level, opts.threads);
    let members = write_members(&src.dir, &mut entries, &identity, &mut fw, progress)?;
    let offsets = fw.sync()?;
    resolve_positions(&mut entries, &offsets);

    let created = opts
        .created
        .clone()
        .unwrap_or_else(crate::commands::inventory::now_rfc3339);
    let scope = src
        .scope
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let mut header = Header::new(&src.base, &opts.layout.name, created, scope);
    header.exclude = src.excludes.iter().chain(&opts.excludes).cloned().collect();
    // The manifest and SHA256SUMS are written out twice each (sized and
    // hashed first, for their tar headers) instead of held in memory; the
    // manifest's first writing is its sidecar.
    let manifest = |w: &mut dyn Write| write_manifest(w, &header, &entries).map(|(_, t)| t);
    let (m, trailer, manifest_hashed) =
        write_manifest_sidecar(&manifest_path, opts.recipients.as_ref(), &manifest)?;
    let mut count = Hashing::counting();
    write_sums(&entries, &mut count)?;
    let (_, sums_hashed) = count.hashed();
    let now = jiff::Timestamp::now().as_second();
    let mmark = put_stream(
        &mut fw,
        MANIFEST_MEMBER.as_bytes(),
        manifest_hashed,
        now,
        |w| manifest(w).map(drop),
    )?;
    put_stream(&mut fw, SUMS_MEMBER.as_bytes(), sums_hashed, now, |w| {
        write_sums(&entries, w)
    })?;
    fw.write_all(&END_OF_ARCHIVE)?;
    let offsets = fw.sync()?;
    let index = ArchiveIndex {
        datamig: "archive-index".into(),
        version: crate::frames::LAYOUT_VERSION,
        manifest_frame_offset: offsets[mmark.frame as usize],
        manifest_offset_in_frame: mmark.offset_in_frame,
        manifest_size: manifest_hashed.size,
        index_offset: 0,
        frames: offsets.len() as u64,
    };
    // A plaintext offset, also when the file holds its encryption.
    let index = ArchiveIndex {
        index_offset: fw.written(),
        ..index
    };
    let finished = fw.finish(&index)?;
    drop(finished.out);
    let sealed = sealer.map(Sealer::finish).transpose()?;
    let file_sha256 = sealed.as_ref().map_or(finished.sha256, |s| s.sha256);

    let archive_sha256 = hex(&finished.sha256);
    let (verify, verify_report) = if opts.verify {
        let mut r = read_back(&out, readback.as_ref(), &entries, opts.threads, progress)?;
        if r.embedded_manifest != Some(manifest_hashed) {
            r.stream
                .push("the embedded manifest differs from the one written".into());
        }
        if r.embedded_sums != Some(sums_hashed) {
            r.stream
                .push("the embedded SHA256SUMS differs from the one written".into());
        }
        if r.archive_sha256 != archive_sha256 {
            r.stream.push(format!(
                "the archive on disk hashes to {} but {} was written",
                r.archive_sha256, archive_sha256
            ));
        }
        if !r.passed() {
            bail!(
                "the archive failed its read-back check, so it was not kept ({}); the source is untouched",
                describe_failure(&r)
            );
        }
        ("passed", Some(r))
    } else {
        ("skipped", None)
    };

    // Sidecars first, the archive last (see archive::commit for the order
    // and how a run killed in between is recovered).
    let name = archive
        .file_name()
        .expect("archive has a name")
        .as_bytes()
        .to_vec();
    let mut s = AtomicFile::create(&sha_path, 0o600, true)?;
    s.write_all(&sha256sum_line(&file_sha256, &name))?;
    // All three appear together or not at all, even if a signal arrives now.
    crate::archive::commit::commit(out, m, s)
        .with_context(|| format!("cannot put {} in place", archive.display()))?;
    created_dest.keep();

    let secrets = secrets_in(&opts.layout, &src, &entries)?;
    let flagged: Vec<PathNote> = entries
        .iter()
        .filter_map(|e| {
            e.problem.as_ref().map(|p| PathNote {
                path: e.path_lossy(),
                note: p.clone(),
            })
        })
        .collect();
    let notes = skipped_notes(&entries);
    let mut report = ArchiveReport {
        report: "archive",
        version: 1,
        target: src.target.clone(),
        source: src.base.display().to_string(),
        archive: archive.display().to_string(),
        manifest: manifest_path.display().to_string(),
        sha256_file: sha_path.display().to_string(),
        archive_sha256: hex(&file_sha256),
        encrypted: sealed.is_some(),
        recipients: opts.recipients.as_ref().map_or(0, Recipients::len),
        encrypted_bytes: sealed.as_ref().map(|s| s.bytes),
        members,
        files: trailer.files,
        file_bytes: trailer.bytes,
        tar_bytes: finished.uncompressed_bytes,
        compressed_bytes: finished.compressed_bytes,
        frames: finished.frames,
        seconds: 0.0,
        secrets,
        absent: src.absent.clone(),
        excluded_count: excluded.len(),
        excluded: excluded_notes(&excluded),
        flagged,
        notes,
        verify,
        verify_report,
        removed: None,
        remove_refused: None,
        gates: Vec::new(),
        overrides: Vec::new(),
        refs,
    };
    if let Some(base_dir) = base_dir {
        let (gates, accepted) = removal_gates(opts, &src, &report);
        report.notes.extend(accepted_as_notes(&accepted));
        report.gates = gates.0.clone();
        report.overrides = gates.overrides();
        match (gates.refusal(), base_dir) {
            (Some(why), _) | (None, Err(why)) => report.remove_refused = Some(why),
            (None, Ok(b)) => {
                let remove_base = src.scope.is_empty();
                report.removed = Some(remove_archived(&b, &entries, &identity, remove_base))
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The manifest sidecar, written (not yet in place), with the manifest's
/// trailer and the size and SHA-256 of its plaintext: what the embedded copy,
/// written from the same entries next, must come out as.
fn write_manifest_sidecar(
    path: &std::path::Path,
    recipients: Option<&Recipients>,
    manifest: &dyn Fn(&mut dyn Write) -> Result<crate::manifest::Trailer>,
) -> Result<(AtomicFile, crate::manifest::Trailer, crate::hashing::Hashed)> {
    let mut m = AtomicFile::create(path, 0o600, true)?;
    let (trailer, hashed) = match recipients {
        // File names are sensitive: the sidecar is encrypted to the same
        // recipients (not to the read-back key, which nothing reads it with).
        Some(r) => {
            let (w, seal) = crate::crypt::writer::encrypt_to(r, None, &mut m)?;
            let mut w = Hashing::new(w);
            let t = manifest(&mut w)?;
            seal.finish()?;
            (t, w.hashed().1)
        }
        None => {
            let mut w = Hashing::new(std::io::BufWriter::with_capacity(1 << 16, &mut m));
            let t = manifest(&mut w)?;
            let (mut b, h) = w.hashed();
            b.flush()?;
            (t, h)
        }
    };
    Ok((m, trailer, hashed))
}

/// Puts the archive's name into write errors (e.g. a full disk), and says
/// what happens to the partial file.
struct NamedWriter {
    inner: std::fs::File,
    what: String,
    /// Bytes written, and how many of them were handed to writeback.
    written: u64,
    queued: u64,
}

/// Writeback is started every this many bytes: large enough to be one
/// efficient request, small enough that the final fsync has little left.
const WRITEBACK_STEP: u64 = 8 << 20;

impl NamedWriter {
    fn name(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!(
                "{}: {e}; the temporary file is removed and nothing is left under the final name (free space on that filesystem or pick another --dest)",
                self.what
            ),
        )
    }
}

impl Write for NamedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).map_err(|e| self.name(e))?;
        self.written += n as u64;
        if self.written - self.queued >= WRITEBACK_STEP {
            crate::fsx::start_writeback(&self.inner, self.queued, self.written - self.queued);
            self.queued = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.name(e))
    }
}

type Sink = Box<dyn Write + Send>;

/// What FrameWriter writes into: the temporary file, or with recipients an
/// age stream on it (to them and to the run's read-back key), whose sealer
/// must be finished once FrameWriter is.
fn output(
    file: NamedWriter,
    recipients: Option<&Recipients>,
    readback: Option<&ReadBack>,
) -> Result<(Sink, Option<Sealer<NamedWriter>>)> {
    match recipients {
        None => Ok((Box::new(file), None)),
        Some(r) => {
            let key = readback.map(ReadBack::recipient);
            let (w, seal) = crate::crypt::writer::encrypt_to(r, key.as_ref(), file)?;
            Ok((Box::new(w), Some(seal)))
        }
    }
}

/// The read-back check of the temporary archive; an encrypted one is
/// decrypted (in memory, chunk by chunk) with the run's read-back key.
fn read_back(
    out: &AtomicFile,
    readback: Option<&ReadBack>,
    entries: &[Entry],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let Some(key) = readback else {
        return check_archive(out.temp_path(), entries, jobs, progress);
    };
    let file = crate::fsx::open_path(out.temp_path())
        .with_context(|| format!("cannot open {}", out.temp_path().display()))?;
    let plain = key.open(file).with_context(|| {
        format!(
            "cannot decrypt the temporary archive {} for its read-back check",
            out.temp_path().display()
        )
    })?;
    let len = plain.len;
    crate::archive::check::check_source(plain, len, entries, &[], jobs, progress)
}

/// What the walk records as left out, as a report lists it.
pub fn excluded_notes(excluded: &[Excluded]) -> Vec<PathNote> {
    excluded
        .iter()
        .map(|x| PathNote {
            path: String::from_utf8_lossy(&x.path).into_owned(),
            note: x.note(),
        })
        .collect()
}

/// The exclude patterns of an archive of `src` into `dest`: the layout
/// target's, the command line's, and the destination itself when it lies
/// inside the tree being archived (an archive must not archive itself).
/// A destination that is the archived directory is refused.
pub fn source_excludes(src: &Source, extra: &[String], dest: &std::path::Path) -> Result<GlobSet> {
    let mut excludes = src.excludes.clone();
    excludes.extend_from_slice(extra);
    if let (Ok(b), Ok(d)) = (src.base.canonicalize(), dest.canonicalize())
        && let Ok(rel) = d.strip_prefix(&b)
    {
        if rel.as_os_str().is_empty() {
            bail!(
                "the destination {} is the directory being archived; choose another --dest",
                dest.display()
            );
        }
        let rel = rel.to_string_lossy().into_owned();
        excludes.push(globset::escape(&rel));
        excludes.push(format!("{}/**", globset::escape(&rel)));
    }
    build_globset(&excludes)
}

/// The scanned entries, per entry the identity the writer and removal
/// check, and what the walk left out. `hash_files` for `retire`'s audit
/// (the writer hashes as it reads).
pub(crate) fn scan_source(
    layout: &Layout,
    src: &Source,
    excludes: &GlobSet,
    tags: &crate::scan::Tags,
    threads: usize,
    hash_files: bool,
    progress: &dyn Progress,
) -> Result<(Vec<Entry>, Vec<crate::scan::Identity>, Vec<Excluded>)> {
    let classifier = layout.classifier();
    let area_of = |rel: &[u8]| classifier.name_of(&src.root_rel(rel)).to_string();
    let no_json = |_: &[u8]| false;
    let spec = ScanSpec {
        root: &src.base,
        root_dir: Some(&src.dir),
        scope: &src.scope,
        excludes,
        tags,
        area_of: &area_of,
        check_json: &no_json,
        threads,
        hash_files,
    };
    let s = scan(&spec, progress)?;
    Ok((s.entries, s.identity, s.excluded))
}

/// Legacy files the operator accepted as obsolete: they pass the migration
/// gate, so the report says which, and that the archive is their only copy.
pub(crate) fn accepted_as_notes(accepted: &[Accepted]) -> Vec<PathNote> {
    accepted
        .iter()
        .map(|a| PathNote {
            path: a.legacy.clone(),
            note: format!(
                "accepted as obsolete by --accept {} ({}); kept only in this archive",
                a.accepted_by,
                a.was.replace('_', " ")
            ),
        })
        .collect()
}

/// What the archive leaves out on purpose (issue 11): sockets.
fn skipped_notes(entries: &[Entry]) -> Vec<PathNote> {
    entries
        .iter()
        .filter(|e| e.kind == crate::entry::Kind::Socket && e.problem.is_none())
        .map(|e| PathNote {
            path: e.path_lossy(),
            note: crate::archive::write::SOCKET_NOTE.into(),
        })
        .collect()
}

/// The SHA256SUMS member: `sha256sum -c` lines for every archived file.
fn write_sums(entries: &[Entry], out: &mut dyn Write) -> Result<()> {
    use crate::entry::Kind;
    let hash_of = |e: &Entry| match e.kind {
        Kind::File => e.sha256,
        Kind::Hardlink => {
            let t = e.target.as_deref()?;
            let i = entries
                .binary_search_by(|x| x.path.as_slice().cmp(t))
                .ok()?;
            entries[i].sha256
        }
        _ => None,
    };
    for e in entries.iter().filter(|e| e.pos.is_some()) {
        if let Some(h) = hash_of(e) {
            out.write_all(&sha256sum_line(&h, &e.path))?;
        }
    }
    Ok(())
}

fn secrets_in(layout: &Layout, src: &Source, entries: &[Entry]) -> Result<Vec<String>> {
    let set = layout.secret_set()?;
    Ok(entries
        .iter()
        .filter(|e| e.pos.is_some() && e.kind != crate::entry::Kind::Dir)
        .map(|e| src.root_rel(&e.path))
        .filter(|p| set.is_match(std::ffi::OsStr::from_bytes(p)))
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .collect())
}

fn describe_failure(r: &CheckReport) -> String {
    let mut parts: Vec<String> = r.stream.clone();
    for (what, list) in [
        ("mismatched", &r.mismatched),
        ("missing", &r.missing),
        ("unexpected", &r.unexpected),
    ] {
        if let Some(first) = list.first() {
            parts.push(format!(
                "{} {what}, first {}: {}",
                list.len(),
                first.path,
                first.note
            ));
        }
    }
    parts.join("; ")
}

/// The gates `--remove-source` passes: a verified, clean capture (no
/// override), then the target's own (live data, migration check).
fn removal_gates(
    opts: &ArchiveOptions,
    src: &Source,
    report: &ArchiveReport,
) -> (Gates, Vec<Accepted>) {
    let verify = match report.verify {
        "passed" => GateResult::passed(
            Check::Verify,
            "every member read back and matched its manifest entry",
        ),
        _ => GateResult::not_passed(
            Check::Verify,
            Verdict::Skipped,
            "--no-verify",
            format!(
                "the archive was not verified (--no-verify); `datamig retire {}` verifies it and then removes the source",
                report.archive
            ),
            None,
        ),
    };
    let n = report.flagged.len();
    let capture = if n == 0 {
        GateResult::passed(Check::Capture, "every entry was captured cleanly")
    } else {
        GateResult::not_passed(
            Check::Capture,
            Verdict::Failed,
            format!("{n} entries not captured cleanly"),
            format!(
                "{n} entries were not captured cleanly (listed above); fix them and archive again"
            ),
            None,
        )
    };
    let policy = gates::policy(&PolicyInput {
        root: &opts.root,
        layout: &opts.layout,
        threads: opts.threads,
        source: src,
        overrides: opts.overrides,
        accept: &opts.migration_accept,
    });
    let mut gates = vec![verify, capture];
    gates.extend(policy.gates);
    if let Some(found) = &report.refs {
        gates.push(gates::refs(found, &src.target, opts.overrides));
    }
    (Gates(gates), policy.accepted)
}
