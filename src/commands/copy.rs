//! `datamig copy ARCHIVE URL`: an off-site copy of an archive and both its
//! sidecars, then proof that the copy is the archive.
//!
//! Order and rules:
//! 1. The local archive must be complete: both sidecars present, the
//!    manifest sidecar passing the manifest reader's checks, the `.sha256`
//!    line naming the archive.
//! 2. Unfinished uploads a dead run left at the location are aborted first
//!    (and reported), so a killed copy never costs storage for long.
//! 3. None of the three names may exist there: nothing is ever overwritten
//!    (exit 2, naming the object). The store enforces it again at commit.
//! 4. The archive is uploaded first, streaming in parts; its bytes are
//!    hashed on the way, and if they do not give the `.sha256` line (the file
//!    changed or rotted since it was written) the upload is aborted before it
//!    completes, so a wrong archive never appears under its name. Then the
//!    `.sha256`, then the manifest: a listing shows an archive as complete
//!    (both sidecars) only once it is.
//! 5. The remote archive is read back (ranged GETs) and its size and SHA-256
//!    compared with the `.sha256` sidecar; the sidecars are read back and
//!    compared byte for byte. Any difference is exit 1.
//!
//! Progress (a bar on a terminal, see `progress`) counts the archive's
//! bytes as they are handed to the upload, then as they are read back.
//! With `--encrypt-to` (a plain local archive), the archive is encrypted as
//! it is read for the upload (`NAME.tar.zst.age`: its size is known in
//! advance, nothing is written locally); the SHA-256 of the ciphertext is
//! taken on the way and becomes the remote `NAME.tar.zst.age.sha256`,
//! uploaded after it, then the manifest sidecar encrypted to the same
//! recipients (`NAME.tar.zst.manifest.jsonl.age`). The read-back proof
//! compares the remote archive with that hash. An archive that is already
//! encrypted is copied as it is.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{SHA_SIDECAR, sidecar};
use crate::entry::hex;
use crate::progress::{Progress, Silent};
use crate::remote::lock::{Lock, LockMode, rfc3339};
use crate::remote::{Location, PutError, Store, Tuning};

#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub archive: PathBuf,
    pub to: Location,
    pub tuning: Tuning,
    /// `--lock-days`/`--lock-mode`: S3 Object Lock retention set on each
    /// object right after its upload; the bucket must have Object Lock
    /// enabled, checked before anything is sent.
    pub lock: Option<Lock>,
    /// `--encrypt-to`, `--recipients-file`: encrypt a plain archive on its way out.
    pub recipients: Option<crate::crypt::Recipients>,
}

/// One object written.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub url: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    /// The location, as given.
    pub to: String,
    /// The archive's SHA-256, from its `.sha256` sidecar.
    pub archive_sha256: String,
    /// The copy is age-encrypted (a `.age` archive copied as is, or one
    /// encrypted on its way out by `--encrypt-to`).
    pub encrypted: bool,
    /// With `--encrypt-to`: how many recipients, and the SHA-256 of the
    /// ciphertext uploaded (what the remote `.sha256` records).
    pub recipients: usize,
    pub encrypted_sha256: Option<String>,
    /// Size of the archive.
    pub bytes: u64,
    /// What was written, in upload order (archive, `.sha256`, manifest).
    pub uploaded: Vec<Copied>,
    /// The remote archive's SHA-256, computed from its bytes read back.
    pub remote_sha256: String,
    /// Bytes of the remote archive read back to prove it.
    pub remote_bytes: u64,
    /// "passed": size, SHA-256 and both sidecars read back equal the local
    /// ones; "FAILED" otherwise (see `discrepancies`).
    pub remote_verify: &'static str,
    /// Unfinished uploads of a dead run found at the location and aborted.
    pub aborted_uploads: Vec<String>,
    pub discrepancies: Vec<String>,
    /// With `--lock-days`: the Object Lock mode and retain-until date set on
    /// all three objects.
    pub lock_mode: Option<LockMode>,
    pub locked_until: Option<String>,
    /// Seconds spent uploading the three objects (the part of `seconds`
    /// before the read-back).
    pub upload_seconds: f64,
    pub seconds: f64,
}

impl CopyReport {
    /// The report once the three uploads are done, before the read-back
    /// proof fills `remote_*` (and `remote_verify`, "FAILED" until then).
    fn uploaded(
        opts: &CopyOptions,
        local: &Local,
        uploaded: Vec<Copied>,
        aborted_uploads: Vec<String>,
        started: std::time::Instant,
    ) -> CopyReport {
        CopyReport {
            report: "copy",
            version: crate::summary::REPORT_VERSION,
            archive: local.archive.display().to_string(),
            to: opts.to.url(),
            archive_sha256: local.sha256.clone(),
            encrypted: false,
            recipients: 0,
            encrypted_sha256: None,
            bytes: local.size,
            uploaded,
            remote_sha256: String::new(),
            remote_bytes: 0,
            remote_verify: "FAILED",
            aborted_uploads,
            discrepancies: Vec::new(),
            lock_mode: opts.lock.map(|l| l.mode),
            locked_until: opts.lock.map(|l| rfc3339(l.until)),
            upload_seconds: started.elapsed().as_secs_f64(),
            seconds: 0.0,
        }
    }

    pub fn clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

/// The archive's three files and what its `.sha256` records.
struct Local {
    archive: PathBuf,
    name: String,
    size: u64,
    sha256: String,
    sidecars: [(String, PathBuf); 2],
}

fn check_local(archive: &Path) -> Result<Local> {
    crate::atomic::refuse_temp_name(archive)?;
    let meta = std::fs::metadata(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", archive.display());
    }
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the archive's name must be UTF-8", archive.display()))?
        .to_string();
    let sha_path = sidecar(archive, SHA_SIDECAR);
    let man_path = crate::archive::manifest_sidecar(archive);
    for p in [&sha_path, &man_path] {
        if !p.is_file() {
            bail!(
                "{} is missing: only a complete archive (with both sidecars) is copied; run `datamig verify {}`",
                p.display(),
                archive.display()
            );
        }
    }
    if crate::crypt::is_encrypted(&name) {
        // Not readable without a key; it must at least be an age file.
        if !crate::crypt::quick::is_age_file(&man_path) {
            bail!(
                "{} is not an age-encrypted file; nothing was copied",
                man_path.display()
            );
        }
    } else {
        crate::manifest::Manifest::read_file(&man_path)
            .with_context(|| format!("{} is damaged; nothing was copied", man_path.display()))?;
    }
    let line = std::fs::read_to_string(&sha_path)
        .with_context(|| format!("cannot read {}", sha_path.display()))?;
    let mut words = line.split_whitespace();
    let sha256 = words.next().unwrap_or("").to_string();
    let named = words.next().unwrap_or("").trim_start_matches('*');
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) || named != name {
        bail!(
            "{} is not the sha256sum line of {name}; nothing was copied",
            sha_path.display()
        );
    }
    Ok(Local {
        archive: archive.to_path_buf(),
        name: name.clone(),
        size: meta.len(),
        sha256: sha256.to_ascii_lowercase(),
        sidecars: [
            (format!("{name}{SHA_SIDECAR}"), sha_path),
            (crate::archive::manifest_sidecar_name(&name), man_path),
        ],
    })
}

/// The copy without progress (as `backup --to` runs it).
pub fn run(opts: &CopyOptions) -> Result<CopyReport> {
    run_with(opts, &Silent)
}

/// The copy, reporting the upload and the read-back to `progress`.
pub fn run_with(opts: &CopyOptions, progress: &dyn Progress) -> Result<CopyReport> {
    let started = std::time::Instant::now();
    if opts.recipients.is_some() && crate::crypt::is_encrypted(&opts.archive.to_string_lossy()) {
        bail!(
            "{} is already encrypted; copy it without --encrypt-to/--recipients-file (it is uploaded as it is)",
            opts.archive.display()
        );
    }
    let local = check_local(&opts.archive)?;
    if let Some(r) = &opts.recipients {
        return run_encrypted(opts, &local, r, started, progress);
    }
    let store = Store::open(&opts.to, opts.tuning)?;
    if opts.lock.is_some() {
        store.check_lockable()?;
    }
    let aborted_uploads = store.abort_unfinished()?;
    let names = [&local.name, &local.sidecars[0].0, &local.sidecars[1].0];
    for n in names {
        if store.stat(n)?.is_some() {
            return Err(PutError::Exists(opts.to.url_of(n)).into());
        }
    }
    let mut uploaded = Vec::new();
    let file = File::open(&local.archive)
        .with_context(|| format!("cannot open archive {}", local.archive.display()))?;
    let mut checked = Checked {
        inner: file,
        hasher: Sha256::new(),
        expected: local.sha256.clone(),
        path: local.archive.clone(),
        progress,
    };
    progress.phase("uploading", Some(local.size));
    store.put_new(&local.name, &mut checked, local.size)?;
    lock(&store, &local.name, opts.lock.as_ref())?;
    uploaded.push(Copied {
        url: opts.to.url_of(&local.name),
        bytes: local.size,
    });
    for (n, p) in &local.sidecars {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        store.put_new(n, &mut &bytes[..], bytes.len() as u64)?;
        lock(&store, n, opts.lock.as_ref())?;
        uploaded.push(Copied {
            url: opts.to.url_of(n),
            bytes: bytes.len() as u64,
        });
    }
    let mut report = CopyReport::uploaded(opts, &local, uploaded, aborted_uploads, started);
    report.encrypted = crate::crypt::is_encrypted(&local.name);
    progress.phase("proving", Some(local.size));
    prove(&store, &local, &mut report, progress)?;
    progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Set the retention right after the upload, so an object is unlocked only
/// between its upload and this request. A failure leaves the object there,
/// unlocked, and ends the copy (exit 2; the message says so).
fn lock(store: &Store, name: &str, lock: Option<&Lock>) -> Result<()> {
    if let Some(l) = lock {
        store.set_retention(name, l).with_context(|| {
            format!(
                "{} was uploaded but is not locked",
                store.location().url_of(name)
            )
        })?;
    }
    Ok(())
}

/// Read the copy back: the archive's size and SHA-256 against the local
/// `.sha256`, each sidecar byte for byte.
fn prove(store: &Store, local: &Local, r: &mut CopyReport, progress: &dyn Progress) -> Result<()> {
    let mut sidecars = Vec::new();
    for (n, p) in &local.sidecars {
        let mine = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        sidecars.push((n.clone(), mine, p.display().to_string()));
    }
    let expect = Expected {
        name: &local.name,
        size: local.size,
        sha256: &local.sha256,
        sidecars,
    };
    prove_against(store, &expect, r, progress)
}

/// What the remote copy must hold: the archive's size and SHA-256, and each
/// sidecar's bytes (with where they came from, for the report).
struct Expected<'a> {
    name: &'a str,
    size: u64,
    sha256: &'a str,
    sidecars: Vec<(String, Vec<u8>, String)>,
}

fn prove_against(
    store: &Store,
    local: &Expected,
    r: &mut CopyReport,
    progress: &dyn Progress,
) -> Result<()> {
    let mut h = Sha256::new();
    r.remote_bytes = store.read_all(local.name, &mut |b| {
        h.update(b);
        progress.advance(0, b.len() as u64);
    })?;
    r.remote_sha256 = hex(&h.finalize());
    if r.remote_bytes != local.size {
        r.discrepancies.push(format!(
            "{} holds {} bytes, the archive {}",
            store.location().url_of(local.name),
            r.remote_bytes,
            local.size
        ));
    }
    if r.remote_sha256 != local.sha256 {
        r.discrepancies.push(format!(
            "{} has SHA-256 {}, the .sha256 sidecar records {}",
            store.location().url_of(local.name),
            r.remote_sha256,
            local.sha256
        ));
    }
    for (n, mine, p) in &local.sidecars {
        let mut theirs = Vec::new();
        store.read_all(n, &mut |b| theirs.extend_from_slice(b))?;
        if &theirs != mine {
            r.discrepancies
                .push(format!("{} differs from {p}", store.location().url_of(n),));
        }
    }
    if r.discrepancies.is_empty() {
        r.remote_verify = "passed";
    }
    Ok(())
}

/// The archive's bytes as they are uploaded, hashed; at the end of the file
/// the hash must give the `.sha256` line, or the read fails and the upload
/// is aborted before it completes.
struct Checked<'p> {
    inner: File,
    hasher: Sha256,
    expected: String,
    path: PathBuf,
    progress: &'p dyn Progress,
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.progress.advance(0, n as u64);
            return Ok(n);
        }
        let got = hex(&self.hasher.clone().finalize());
        if got != self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} has SHA-256 {got}, but its .sha256 sidecar records {}: the archive changed since it was written; the upload was aborted (run `datamig verify` on it)",
                    self.path.display(),
                    self.expected
                ),
            ));
        }
        Ok(0)
    }
}

/// `copy --encrypt-to` of a plain archive (module doc).
fn run_encrypted(
    opts: &CopyOptions,
    local: &Local,
    recipients: &crate::crypt::Recipients,
    started: std::time::Instant,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let name = format!("{}{}", local.name, crate::crypt::AGE_SUFFIX);
    let sha_name = format!("{name}{SHA_SIDECAR}");
    let man_name = crate::archive::manifest_sidecar_name(&name);
    let manifest_path = &local.sidecars[1].1;
    let manifest = std::fs::read(manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = crate::crypt::writer::encrypt_bytes(recipients, &manifest)?;
    let store = Store::open(&opts.to, opts.tuning)?;
    if opts.lock.is_some() {
        store.check_lockable()?;
    }
    let aborted_uploads = store.abort_unfinished()?;
    for n in [&name, &sha_name, &man_name] {
        if store.stat(n)?.is_some() {
            return Err(PutError::Exists(opts.to.url_of(n)).into());
        }
    }
    let file = File::open(&local.archive)
        .with_context(|| format!("cannot open archive {}", local.archive.display()))?;
    // The plaintext is still checked against its own .sha256 as it is read.
    let checked = Checked {
        inner: file,
        hasher: Sha256::new(),
        expected: local.sha256.clone(),
        path: local.archive.clone(),
        progress,
    };
    let mut enc = crate::crypt::writer::EncryptingReader::new(recipients, checked, local.size)?;
    let size = enc.len();
    progress.phase("uploading", Some(local.size));
    store.put_new(&name, &mut enc, size)?;
    lock(&store, &name, opts.lock.as_ref())?;
    let sha = enc
        .sha256()
        .context("the encrypted upload ended before the archive was read to its end")?;
    let sha_line = crate::render::sha256sum_line(&sha, name.as_bytes());
    let mut uploaded = vec![Copied {
        url: opts.to.url_of(&name),
        bytes: size,
    }];
    for (n, bytes) in [(&sha_name, &sha_line), (&man_name, &manifest)] {
        store.put_new(n, &mut &bytes[..], bytes.len() as u64)?;
        lock(&store, n, opts.lock.as_ref())?;
        uploaded.push(Copied {
            url: opts.to.url_of(n),
            bytes: bytes.len() as u64,
        });
    }
    let sha_hex = hex(&sha);
    let mut report = CopyReport::uploaded(opts, local, uploaded, aborted_uploads, started);
    report.encrypted = true;
    report.recipients = recipients.len();
    report.encrypted_sha256 = Some(sha_hex.clone());
    let expect = Expected {
        name: &name,
        size,
        sha256: &sha_hex,
        sidecars: vec![
            (
                sha_name,
                sha_line,
                "the .sha256 line of the ciphertext".into(),
            ),
            (man_name, manifest, "the encrypted manifest uploaded".into()),
        ],
    };
    progress.phase("proving", Some(size));
    prove_against(&store, &expect, &mut report, progress)?;
    progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
