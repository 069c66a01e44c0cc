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

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{SHA_SIDECAR, sidecar};
use crate::entry::hex;
use crate::remote::{Location, PutError, Store, Tuning};

#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub archive: PathBuf,
    pub to: Location,
    pub tuning: Tuning,
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
    pub seconds: f64,
}

impl CopyReport {
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
    // An encrypted archive's manifest cannot be read without a key (which
    // the copying host need not hold): it must at least be an age file.
    if name.ends_with(crate::crypt::AGE_SUFFIX) {
        let f = std::fs::File::open(&man_path)
            .with_context(|| format!("cannot read {}", man_path.display()))?;
        if crate::crypt::source::sniff(&f) != crate::crypt::Sealed::Age {
            bail!(
                "{} is not an age-encrypted manifest; nothing was copied",
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

pub fn run(opts: &CopyOptions) -> Result<CopyReport> {
    let started = std::time::Instant::now();
    let local = check_local(&opts.archive)?;
    let store = Store::open(&opts.to, opts.tuning)?;
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
    };
    store.put_new(&local.name, &mut checked, local.size)?;
    uploaded.push(Copied {
        url: opts.to.url_of(&local.name),
        bytes: local.size,
    });
    for (n, p) in &local.sidecars {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        store.put_new(n, &mut &bytes[..], bytes.len() as u64)?;
        uploaded.push(Copied {
            url: opts.to.url_of(n),
            bytes: bytes.len() as u64,
        });
    }
    let mut report = CopyReport {
        report: "copy",
        version: crate::summary::REPORT_VERSION,
        archive: local.archive.display().to_string(),
        to: opts.to.url(),
        archive_sha256: local.sha256.clone(),
        bytes: local.size,
        uploaded,
        remote_sha256: String::new(),
        remote_bytes: 0,
        remote_verify: "FAILED",
        aborted_uploads,
        discrepancies: Vec::new(),
        seconds: 0.0,
    };
    prove(&store, &local, &mut report)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Read the copy back: the archive's size and SHA-256 against the local
/// `.sha256`, each sidecar byte for byte.
fn prove(store: &Store, local: &Local, r: &mut CopyReport) -> Result<()> {
    let mut h = Sha256::new();
    r.remote_bytes = store.read_all(&local.name, &mut |b| h.update(b))?;
    r.remote_sha256 = hex(&h.finalize());
    if r.remote_bytes != local.size {
        r.discrepancies.push(format!(
            "{} holds {} bytes, the archive {}",
            store.location().url_of(&local.name),
            r.remote_bytes,
            local.size
        ));
    }
    if r.remote_sha256 != local.sha256 {
        r.discrepancies.push(format!(
            "{} has SHA-256 {}, the .sha256 sidecar records {}",
            store.location().url_of(&local.name),
            r.remote_sha256,
            local.sha256
        ));
    }
    for (n, p) in &local.sidecars {
        let mine = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        let mut theirs = Vec::new();
        store.read_all(n, &mut |b| theirs.extend_from_slice(b))?;
        if theirs != mine {
            r.discrepancies.push(format!(
                "{} differs from {}",
                store.location().url_of(n),
                p.display()
            ));
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
struct Checked {
    inner: File,
    hasher: Sha256,
    expected: String,
    path: PathBuf,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
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
