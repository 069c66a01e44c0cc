//! Where an archive's compressed bytes are read from: a local file, or a
//! remote object read with ranged GETs (`remote::RemoteFile`). Everything
//! after the opening (frame readers, PATH restores) reads both the same way.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::manifest::Manifest;
use crate::remote::{Location, RemoteFile, Store, Tuning};

pub(super) enum Bytes {
    Local(fs::File),
    Remote(RemoteFile),
    /// An age-encrypted archive (local or remote): plaintext offsets, served
    /// by decrypting only the chunks read.
    Age(crate::crypt::Decrypted<Bytes>),
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
            Bytes::Age(d) => Bytes::Age(d.reopen()),
        })
    }

    pub(super) fn local(&self) -> Option<&fs::File> {
        match self {
            Bytes::Local(f) => Some(f),
            Bytes::Remote(_) | Bytes::Age(_) => None,
        }
    }
}

impl FileExt for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Bytes::Local(f) => f.read_at(buf, offset),
            Bytes::Remote(r) => r.read_at(buf, offset),
            Bytes::Age(d) => d.read_at(buf, offset),
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
    match crate::crypt::source::sniff(&file) {
        crate::crypt::Sealed::Plain => {}
        crate::crypt::Sealed::Armored => return Err(crate::crypt::source::armored(&file.url())),
        crate::crypt::Sealed::Age => return open_remote_sealed(&store, file, name),
    }
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

/// An encrypted remote archive: its header opened with the installed keys,
/// its manifest the decrypted sidecar object, else the embedded one read
/// through the decryption (its ciphertext counted in the cost).
fn open_remote_sealed(
    store: &Arc<Store>,
    file: RemoteFile,
    name: &str,
) -> Result<(Bytes, u64, Loaded)> {
    let url = file.url();
    let cipher_len = file.len();
    let d = crate::crypt::Decrypted::open(
        Bytes::Remote(file),
        cipher_len,
        &url,
        crate::crypt::identity::installed(),
    )?;
    let len = d.len();
    let bytes = Bytes::Age(d);
    let side_name = crate::archive::manifest_sidecar_name(name);
    let side = match store.stat(&side_name)? {
        None => None,
        Some(_) => {
            let mut b = Vec::new();
            store.read_all(&side_name, &mut |c| b.extend_from_slice(c))?;
            Some(b)
        }
    };
    let (m, source) = sealed_manifest(side, &store.location().url_of(&side_name), &bytes, len)?;
    Ok((bytes, len, (Some(m), source, 0, None)))
}

/// The manifest of an encrypted archive: `side` (the encrypted sidecar's
/// bytes, called `side_name`) decrypted in memory, else the embedded one.
pub(super) fn sealed_manifest(
    side: Option<Vec<u8>>,
    side_name: &str,
    bytes: &Bytes,
    len: u64,
) -> Result<(Manifest, &'static str)> {
    let Bytes::Age(d) = bytes else {
        bail!("not an encrypted archive");
    };
    if let Some(sealed) = side {
        let plain = crate::crypt::source::decrypt_small(
            &sealed,
            side_name,
            &crate::crypt::identity::installed(),
        )?;
        let m = Manifest::read(&plain[..])
            .with_context(|| format!("manifest {side_name} cannot be used"))?;
        return Ok((m, "sidecar"));
    }
    let mut r = d.reopen();
    let Some(ix) = crate::frames::read_index(&mut r)? else {
        bail!(
            "the encrypted archive has no sidecar manifest and no datamig index at its end (truncated?); nothing was restored"
        );
    };
    let embedded = crate::verify::archive::read_embedded_from(
        r,
        len,
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )?;
    let m = Manifest::read(&embedded[..]).context("the manifest inside the archive is damaged")?;
    Ok((m, "embedded"))
}
