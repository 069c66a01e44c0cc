//! `datamig list URL` (the archives at a location, with dates, sizes and
//! whether both sidecars are there) and `datamig list URL/NAME` (one remote
//! archive's members, from its sidecar manifest, else from the manifest
//! inside it, reached through its tail index with ranged reads only).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::archive::{EXTENSION, MANIFEST_SIDECAR, SHA_SIDECAR};
use crate::commands::list::{ListReport, from_manifest};
use crate::frames::read_index;
use crate::manifest::Manifest;
use crate::remote::{Location, RemoteFile, Store, Tuning};

/// One archive at a location.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteArchive {
    pub name: String,
    pub url: String,
    pub size: u64,
    /// When the store last wrote it (RFC 3339), when it says.
    pub modified: Option<String>,
    pub sha256_sidecar: bool,
    pub manifest_sidecar: bool,
    /// Both sidecars are there: `copy` uploads them after the archive, so an
    /// archive without them is an unfinished (or foreign) copy.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationReport {
    pub report: &'static str,
    pub version: u32,
    pub location: String,
    pub archives: Vec<RemoteArchive>,
    /// Sidecars whose archive is not there.
    pub orphan_sidecars: Vec<String>,
}

impl LocationReport {
    /// Exit 1 when an archive lacks a sidecar or a sidecar its archive.
    pub fn clean(&self) -> bool {
        self.orphan_sidecars.is_empty() && self.archives.iter().all(|a| a.complete)
    }
}

pub fn location(loc: &Location) -> Result<LocationReport> {
    let store = Store::open(loc, Tuning::from_env()?)?;
    let objects = store.list()?;
    let has = |n: &str| objects.iter().any(|o| o.name == n);
    let archives: Vec<RemoteArchive> = objects
        .iter()
        .filter(|o| o.name.ends_with(EXTENSION) && o.name.len() > EXTENSION.len())
        .map(|o| {
            let sha = has(&format!("{}{SHA_SIDECAR}", o.name));
            let man = has(&crate::archive::manifest_sidecar_name(&o.name));
            RemoteArchive {
                name: o.name.clone(),
                url: loc.url_of(&o.name),
                size: o.size,
                modified: o.modified.clone(),
                sha256_sidecar: sha,
                manifest_sidecar: man,
                complete: sha && man,
            }
        })
        .collect();
    let orphan_sidecars = objects
        .iter()
        .filter_map(|o| {
            let base = o
                .name
                .strip_suffix(SHA_SIDECAR)
                .or_else(|| o.name.strip_suffix(MANIFEST_SIDECAR))?;
            (base.ends_with(EXTENSION) && !has(base)).then(|| loc.url_of(&o.name))
        })
        .collect();
    Ok(LocationReport {
        report: "list-location",
        version: crate::summary::REPORT_VERSION,
        location: loc.url(),
        archives,
        orphan_sidecars,
    })
}

/// The manifest of the remote archive `name`: its sidecar when present, else
/// the one inside the archive. Returns it with "sidecar" or "embedded", its
/// bytes, and the compressed bytes fetched from the archive to get it.
pub fn remote_manifest(
    store: &Arc<Store>,
    name: &str,
) -> Result<(Manifest, &'static str, Vec<u8>, u64)> {
    let side = crate::archive::manifest_sidecar_name(name);
    if store.stat(&side)?.is_some() {
        let mut bytes = Vec::new();
        store.read_all(&side, &mut |b| bytes.extend_from_slice(b))?;
        let archive = RemoteFile::open(Arc::clone(store), name)?;
        if crate::crypt::source::sniff(&archive) == crate::crypt::Sealed::Age {
            // The key is needed for the archive too: refuse naming the archive.
            crate::crypt::Decrypted::open(
                archive.clone(),
                archive.len(),
                &archive.url(),
                crate::crypt::identity::installed(),
            )?;
            bytes = crate::crypt::source::decrypt_small(
                &bytes,
                &store.location().url_of(&side),
                &crate::crypt::identity::installed(),
            )?;
        }
        let m = Manifest::read(&bytes[..]).with_context(|| store.location().url_of(&side))?;
        return Ok((m, "sidecar", bytes, 0));
    }
    let (m, bytes, cost) = embedded_manifest(store, name)?;
    Ok((m, "embedded", bytes, cost))
}

/// The manifest inside the remote archive, through its tail index.
pub fn embedded_manifest(store: &Arc<Store>, name: &str) -> Result<(Manifest, Vec<u8>, u64)> {
    let file = RemoteFile::open(Arc::clone(store), name)?;
    // Clones share the count of bytes fetched, through the decryption too.
    let counted = file.clone();
    let mut f = crate::crypt::Opened::open(file, counted.len(), &counted.url())?;
    let len = f.len(counted.len());
    let Some(ix) = read_index(&mut f)? else {
        bail!(
            "{} has no sidecar manifest and no datamig index at its end (not made by datamig, or truncated); fetch it and use `datamig list` on the file",
            counted.url()
        );
    };
    let bytes = crate::verify::archive::read_embedded_from(
        f,
        len,
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )?;
    let m = Manifest::read(&bytes[..]).context("the manifest inside the archive is damaged")?;
    Ok((m, bytes, counted.fetched()))
}

pub fn archive(loc: &Location, name: &str) -> Result<ListReport> {
    let store = Arc::new(Store::open(loc, Tuning::from_env()?)?);
    if store.stat(name)?.is_none() {
        bail!("{} does not exist", loc.url_of(name));
    }
    let (m, source, _, _) = remote_manifest(&store, name)?;
    let mut r = from_manifest(loc.url_of(name), &m, source);
    r.encrypted = crate::crypt::source::sniff(&RemoteFile::open(Arc::clone(&store), name)?)
        == crate::crypt::Sealed::Age;
    Ok(r)
}
