//! Where an archive's compressed bytes are read from: a local file, or a
//! remote object read with ranged GETs (`remote::RemoteFile`). Everything
//! after the opening (frame readers, PATH restores) reads both the same way.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::manifest::Manifest;
use crate::remote::{Location, RemoteFile, Store, Tuning};

pub(super) enum Bytes {
    Local(fs::File),
    Remote(RemoteFile),
}

/// What `load_manifest` returns: the manifest, its source, the archive
/// bytes read to find it, and why an embedded one could not be used.
pub(super) type Loaded = (Option<Manifest>, &'static str, u64, Option<String>);

impl Bytes {
    /// Another handle on the same bytes (a frame reader owns its handle).
    pub(super) fn dup(&self) -> std::io::Result<Bytes> {
        Ok(match self {
            Bytes::Local(f) => Bytes::Local(f.try_clone()?),
            Bytes::Remote(r) => Bytes::Remote(r.clone()),
        })
    }

    pub(super) fn local(&self) -> Option<&fs::File> {
        match self {
            Bytes::Local(f) => Some(f),
            Bytes::Remote(_) => None,
        }
    }
}

impl FileExt for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Bytes::Local(f) => f.read_at(buf, offset),
            Bytes::Remote(r) => r.read_at(buf, offset),
        }
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "restore never writes to the archive",
        ))
    }
}

/// The remote archive `name` at `loc`, and its manifest: the sidecar object
/// when there is one, else the manifest inside the archive (its tail index,
/// then the manifest's frames, each a ranged read counted in the cost).
pub(super) fn open_remote(loc: &Location, name: &str) -> Result<(Bytes, u64, Loaded)> {
    let store = Arc::new(Store::open(loc, Tuning::from_env()?)?);
    let file = RemoteFile::open(Arc::clone(&store), name)?;
    let mut magic = [0u8; 4];
    let is_zstd =
        file.read_exact_at(&mut magic, 0).is_ok() && u32::from_le_bytes(magic) == 0xFD2F_B528;
    if !is_zstd {
        bail!(
            "{} is not a zstd-compressed archive (empty, or not made by datamig); nothing was restored",
            file.url()
        );
    }
    let (m, source, _, cost) = crate::commands::remote_list::remote_manifest(&store, name)?;
    let len = file.len();
    Ok((Bytes::Remote(file), len, (Some(m), source, cost, None)))
}
