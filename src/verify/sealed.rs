//! What `verify` does with an age-encrypted archive that the plain path does
//! not: the key-less `--quick` check (the ciphertext against its `.sha256`)
//! and the encrypted manifest sidecar, decrypted in memory.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use super::archive::{ArchiveVerifyReport, Findings, hash_file};

/// What the report says of each check that needs the key.
pub const NOT_CHECKED: &str = "not checked without a key";

/// `verify --quick` of an encrypted archive with no identity: the SHA-256 of
/// the ciphertext against the `.sha256` sidecar, which is all that can be
/// checked; the embedded trailers and the manifests are reported as not
/// checked, never as failures.
pub fn verify_quick_without_key(archive: &Path) -> Result<ArchiveVerifyReport> {
    let mut disc = Findings::default();
    let archive_sha256 = hash_file(archive)?;
    let side_path = crate::archive::manifest_sidecar(archive);
    let sidecar_manifest = if !side_path.exists() {
        disc.push(format!(
            "sidecar manifest {} is missing",
            side_path.display()
        ));
        "absent".to_string()
    } else if !crate::crypt::quick::is_age_file(&side_path) {
        // A plaintext manifest beside an encrypted archive would give away
        // every file name the encryption hides.
        disc.push(format!(
            "sidecar manifest {} is not an age-encrypted file",
            side_path.display()
        ));
        "not encrypted".to_string()
    } else {
        NOT_CHECKED.to_string()
    };
    let sidecar_sha256 = super::archive::local_sha_sidecar(archive, &archive_sha256, &mut disc);
    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: archive.display().to_string(),
        quick: true,
        checked_against: "none",
        embedded_manifest: NOT_CHECKED.to_string(),
        sidecar_manifest,
        sidecar_sha256,
        archive_sha256,
        members: None,
        flagged: Vec::new(),
        discrepancies: disc.all,
        unlisted: disc.unlisted,
        foreign: None,
        encrypted: true,
    })
}

/// The manifest sidecar's bytes as a reader: decrypted in memory when the
/// archive is encrypted (its sidecar is `NAME.tar.zst.manifest.jsonl.age`).
pub fn open_sidecar(path: &Path, encrypted: bool) -> Result<Box<dyn Read>> {
    if !encrypted {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Box::new(f));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plain = crate::crypt::source::decrypt_small(
        &bytes,
        &path.display().to_string(),
        &crate::crypt::identity::installed(),
    )?;
    Ok(Box::new(std::io::Cursor::new(plain)))
}
