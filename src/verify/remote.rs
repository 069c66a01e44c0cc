//! `datamig verify [--quick] URL/NAME`: a remote archive's size and SHA-256
//! (computed from its bytes, read back with ranged GETs) against its remote
//! `.sha256` sidecar, both manifests' trailers (the sidecar, and the one
//! inside the archive found through its tail index) and the entries they
//! flag; without `--quick`, also every member decoded and hashed against the
//! manifest. The same report as a local `verify`.

use std::sync::Arc;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::archive::{ArchiveVerifyReport, flagged_findings, sidecar_manifest_status};
use crate::archive::SHA_SIDECAR;
use crate::archive::check::{CheckReport, check_source};
use crate::commands::remote_list::embedded_manifest;
use crate::entry::hex;
use crate::frames::read_index;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::remote::{Location, RemoteFile, Store, Tuning};

pub fn verify_remote(
    loc: &Location,
    name: &str,
    quick: bool,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<ArchiveVerifyReport> {
    let store = Arc::new(Store::open(loc, Tuning::from_env()?)?);
    let size = store
        .stat(name)?
        .ok_or_else(|| anyhow::anyhow!("{} does not exist", loc.url_of(name)))?;
    let encrypted = crate::crypt::source::sniff(&RemoteFile::open(Arc::clone(&store), name)?)
        == crate::crypt::Sealed::Age;
    if encrypted && crate::crypt::identity::installed().is_empty() {
        if !quick {
            return Err(crate::crypt::source::no_identity(&loc.url_of(name)));
        }
        return quick_without_key(&store, loc, name, size, progress);
    }
    if encrypted {
        // A wrong key or a damaged header: refused (exit 2) before any check.
        let f = RemoteFile::open(Arc::clone(&store), name)?;
        let url = f.url();
        crate::crypt::Opened::open(f, size, &url)?;
    }
    let mut disc = crate::verify::archive::Findings::default();

    let embedded = embedded_manifest(&store, name);
    let embedded_status = match &embedded {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            disc.push(format!("embedded manifest: {e:#}"));
            format!("{e:#}")
        }
    };

    let side_name = crate::archive::manifest_sidecar_name(name);
    let side = fetch(&store, &side_name)?.map(|bytes| {
        let bytes = if encrypted {
            crate::crypt::source::decrypt_small(
                &bytes,
                &loc.url_of(&side_name),
                &crate::crypt::identity::installed(),
            )?
        } else {
            bytes
        };
        Manifest::read(&bytes[..])
            .map(|m| (bytes.clone(), m))
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", loc.url_of(&side_name)))
    });
    let agreement = side.as_ref().map(|s| {
        s.as_ref()
            .map(|(sb, _)| embedded.as_ref().ok().map(|(_, eb, _)| sb == eb))
            .map_err(|e| format!("{e:#}"))
    });
    let sidecar_status = sidecar_manifest_status(&loc.url_of(&side_name), agreement, &mut disc);
    let (checked_against, entries) = match (embedded, side) {
        (Ok((m, _, _)), _) => ("embedded", m.entries),
        (Err(_), Some(Ok((_, m)))) => ("sidecar", m.entries),
        (Err(_), _) => {
            disc.push("no usable manifest".into());
            ("none", Vec::new())
        }
    };
    let flagged = flagged_findings(&entries, &mut disc);

    let (archive_sha256, members) = if quick {
        (remote_sha256(&store, name, size, progress)?, None)
    } else {
        let r = check_members(
            &store,
            name,
            &entries,
            checked_against,
            jobs,
            progress,
            &mut disc,
        )?;
        // The `.sha256` of an encrypted archive covers the ciphertext.
        let sha = if encrypted {
            remote_sha256(&store, name, size, progress)?
        } else {
            r.archive_sha256.clone()
        };
        (sha, Some(r))
    };

    let sidecar_sha256 = sha_sidecar(&store, loc, name, &archive_sha256, &mut disc)?;
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
        members,
        flagged,
        discrepancies: disc.all,
        unlisted: disc.unlisted,
        foreign: None,
        encrypted,
    })
}

/// The SHA-256 of the remote object's bytes, read whole.
fn remote_sha256(store: &Store, name: &str, size: u64, progress: &dyn Progress) -> Result<String> {
    progress.phase("reading the remote archive", Some(size));
    let mut h = Sha256::new();
    store.read_all(name, &mut |b| {
        h.update(b);
        progress.advance(0, b.len() as u64);
    })?;
    progress.finish();
    Ok(hex(&h.finalize()))
}

/// `verify --quick` of an encrypted remote archive without a key: the
/// ciphertext against its `.sha256`; what needs the key is "not checked".
fn quick_without_key(
    store: &Arc<Store>,
    loc: &Location,
    name: &str,
    size: u64,
    progress: &dyn Progress,
) -> Result<ArchiveVerifyReport> {
    let mut disc = crate::verify::archive::Findings::default();
    let archive_sha256 = remote_sha256(store, name, size, progress)?;
    let side_name = crate::archive::manifest_sidecar_name(name);
    let sidecar_manifest = if store.stat(&side_name)?.is_some() {
        super::sealed::NOT_CHECKED.to_string()
    } else {
        disc.push(format!(
            "sidecar manifest {} is missing",
            loc.url_of(&side_name)
        ));
        "absent".to_string()
    };
    let sidecar_sha256 = sha_sidecar(store, loc, name, &archive_sha256, &mut disc)?;
    Ok(ArchiveVerifyReport {
        report: "verify-archive",
        version: 1,
        archive: loc.url_of(name),
        quick: true,
        checked_against: "none",
        embedded_manifest: super::sealed::NOT_CHECKED.to_string(),
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

/// The remote `.sha256` sidecar against `archive_sha256`.
fn sha_sidecar(
    store: &Store,
    loc: &Location,
    name: &str,
    archive_sha256: &str,
    disc: &mut crate::verify::archive::Findings,
) -> Result<String> {
    let sha_name = format!("{name}{SHA_SIDECAR}");
    let read =
        fetch(store, &sha_name)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound));
    Ok(crate::verify::archive::sha_sidecar_status(
        read,
        archive_sha256,
        &loc.url_of(&sha_name),
        disc,
    ))
}

/// Every member decoded and hashed against the manifest, as a local verify
/// does, reading the remote archive with ranged GETs (its whole-file SHA-256
/// is computed beside the decode, so the archive is fetched twice).
fn check_members(
    store: &Arc<Store>,
    name: &str,
    entries: &[crate::entry::Entry],
    checked_against: &str,
    jobs: usize,
    progress: &dyn Progress,
    disc: &mut crate::verify::archive::Findings,
) -> Result<CheckReport> {
    let file = RemoteFile::open(Arc::clone(store), name)?;
    let url = file.url();
    let cipher_len = file.len();
    let file = crate::crypt::Opened::open(file, cipher_len, &url)?;
    let len = file.len(cipher_len);
    let mut probe = crate::archive::check::ArchiveSource::reopen(&file)?;
    let extra: Vec<(u64, u64)> = read_index(&mut probe)
        .ok()
        .flatten()
        .iter()
        .map(|ix| (ix.manifest_frame_offset, ix.manifest_offset_in_frame))
        .collect();
    let r = check_source(file, len, entries, &extra, jobs, progress)?;
    disc.members(&r, checked_against);
    Ok(r)
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
