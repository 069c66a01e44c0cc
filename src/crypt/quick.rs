//! What can be checked of an encrypted archive without any key: the file is
//! an age file, its SHA-256 is the one its `.sha256` sidecar records, and the
//! encrypted manifest sidecar is there. This is `verify --quick` of a
//! `.tar.zst.age` and what `backup` asks of its newest encrypted backup (the
//! backup host holds only public keys).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::archive::{SHA_SIDECAR, sidecar};
use crate::verify::archive::ArchiveVerifyReport;

/// The first line of every age v1 file (binary, not armored).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Whether `path` is a regular file that begins like an age v1 file.
pub fn is_age_file(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let mut head = [0u8; AGE_MAGIC.len()];
    meta.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && head == AGE_MAGIC
}

/// What an encrypted report field says where only a key could tell more.
pub const NEEDS_KEY: &str = "encrypted (not read without --identity)";

/// `verify --quick` of an encrypted archive (the `verify-archive` report).
pub fn verify_quick(archive: &Path) -> Result<ArchiveVerifyReport> {
    let meta = std::fs::metadata(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", archive.display());
    }
    if !is_age_file(archive) {
        bail!(
            "{} is not an age-encrypted file (its name ends in .age but it does not begin with {:?})",
            archive.display(),
            String::from_utf8_lossy(AGE_MAGIC).trim_end()
        );
    }
    let mut disc = Vec::new();
    let side = crate::archive::manifest_sidecar(archive);
    let sidecar_manifest = if !side.exists() {
        disc.push(format!("sidecar manifest {} is missing", side.display()));
        "absent".to_string()
    } else if !is_age_file(&side) {
        disc.push(format!(
            "sidecar manifest {} is not an age-encrypted file",
            side.display()
        ));
        "not encrypted".to_string()
    } else {
        NEEDS_KEY.to_string()
    };
    let archive_sha256 = crate::verify::archive::hash_file(archive)?;
    let sha_path = sidecar(archive, SHA_SIDECAR);
    let sidecar_sha256 = match std::fs::read(&sha_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            disc.push(format!("{} is missing", sha_path.display()));
            "absent".to_string()
        }
        Err(e) => {
            disc.push(format!("cannot read {}: {e}", sha_path.display()));
            format!("unreadable: {e}")
        }
        Ok(text) => {
            let text = String::from_utf8_lossy(&text);
            let recorded = text.split_whitespace().next().unwrap_or("");
            if recorded == archive_sha256 {
                "ok".to_string()
            } else {
                disc.push(format!(
                    "archive SHA-256 {archive_sha256} does not match {} ({recorded})",
                    sha_path.display()
                ));
                "mismatch".to_string()
            }
        }
    };
    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: archive.display().to_string(),
        quick: true,
        checked_against: "none",
        embedded_manifest: NEEDS_KEY.to_string(),
        sidecar_manifest,
        sidecar_sha256,
        archive_sha256,
        members: None,
        flagged: Vec::new(),
        discrepancies: disc.clone(),
        unlisted: disc,
        foreign: None,
    })
}
