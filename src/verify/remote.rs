//! `datamig verify --quick URL/NAME`: a remote archive's size and SHA-256
//! (computed from its bytes, read back with ranged GETs) against its remote
//! `.sha256` sidecar, both manifests' trailers (the sidecar, and the one
//! inside the archive found through its tail index) and the entries they
//! flag. The same report as a local `verify --quick`.

use std::sync::Arc;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use super::archive::{ArchiveVerifyReport, flagged_entries};
use crate::archive::{MANIFEST_SIDECAR, SHA_SIDECAR};
use crate::commands::remote_list::embedded_manifest;
use crate::entry::hex;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::remote::{Location, Store, Tuning};

pub fn verify_quick(
    loc: &Location,
    name: &str,
    quick: bool,
    progress: &dyn Progress,
) -> Result<ArchiveVerifyReport> {
    if !quick {
        bail!(
            "a full verify of a remote archive is not built yet: run `datamig verify --quick {}`, or fetch it and verify the file",
            loc.url_of(name)
        );
    }
    let store = Arc::new(Store::open(loc, Tuning::from_env()?)?);
    let size = store
        .stat(name)?
        .ok_or_else(|| anyhow::anyhow!("{} does not exist", loc.url_of(name)))?;
    let mut disc = Vec::new();

    let embedded = embedded_manifest(&store, name);
    let embedded_status = match &embedded {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            disc.push(format!("embedded manifest: {e:#}"));
            format!("{e:#}")
        }
    };

    let side_name = format!("{name}{MANIFEST_SIDECAR}");
    let side = fetch(&store, &side_name)?.map(|bytes| {
        Manifest::read(&bytes[..])
            .map(|m| (bytes.clone(), m))
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", loc.url_of(&side_name)))
    });
    let sidecar_status = match (&side, &embedded) {
        (None, _) => {
            disc.push(format!(
                "sidecar manifest {} is missing",
                loc.url_of(&side_name)
            ));
            "absent".to_string()
        }
        (Some(Err(e)), _) => {
            disc.push(format!("sidecar manifest: {e:#}"));
            format!("{e:#}")
        }
        (Some(Ok((sb, _))), Ok((_, eb, _))) if sb == eb => "agrees".to_string(),
        (Some(Ok(_)), Ok(_)) => {
            disc.push(format!(
                "sidecar manifest {} differs from the manifest inside the archive",
                loc.url_of(&side_name)
            ));
            "differs".to_string()
        }
        (Some(Ok(_)), Err(_)) => "ok (embedded manifest unusable)".to_string(),
    };
    let (checked_against, entries) = match (embedded, side) {
        (Ok((m, _, _)), _) => ("embedded", m.entries),
        (Err(_), Some(Ok((_, m)))) => ("sidecar", m.entries),
        (Err(_), _) => {
            disc.push("no usable manifest".into());
            ("none", Vec::new())
        }
    };
    let flagged = flagged_entries(&entries);
    for f in &flagged {
        disc.push(format!(
            "not a complete copy: {}: {} (recorded in the manifest)",
            f.path, f.note
        ));
    }

    progress.phase("reading the remote archive", Some(size));
    let mut h = Sha256::new();
    store.read_all(name, &mut |b| {
        h.update(b);
        progress.advance(0, b.len() as u64);
    })?;
    progress.finish();
    let archive_sha256 = hex(&h.finalize());

    let sha_name = format!("{name}{SHA_SIDECAR}");
    let sidecar_sha256 = match fetch(&store, &sha_name)? {
        None => {
            disc.push(format!("{} is missing", loc.url_of(&sha_name)));
            "absent".to_string()
        }
        Some(text) => {
            let recorded = String::from_utf8_lossy(&text)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            if recorded == archive_sha256 {
                "ok".to_string()
            } else {
                disc.push(format!(
                    "archive SHA-256 {archive_sha256} does not match {} ({recorded})",
                    loc.url_of(&sha_name)
                ));
                "mismatch".to_string()
            }
        }
    };
    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: loc.url_of(name),
        quick,
        checked_against,
        embedded_manifest: embedded_status,
        sidecar_manifest: sidecar_status,
        sidecar_sha256,
        archive_sha256,
        members: None,
        flagged,
        discrepancies: disc,
        foreign: None,
    })
}

/// A small object whole, or None when absent.
fn fetch(store: &Store, name: &str) -> Result<Option<Vec<u8>>> {
    if store.stat(name)?.is_none() {
        return Ok(None);
    }
    let mut v = Vec::new();
    store.read_all(name, &mut |b| v.extend_from_slice(b))?;
    Ok(Some(v))
}
