//! An archive's plaintext, whether the file holds it as is or encrypted: the
//! one handle verify, list and restore read through, so everything after the
//! opening reads both the same way.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

use super::identity;
use super::source::{Decrypted, Sealed, armored, sniff};
use crate::archive::check::ArchiveSource;

// One per open archive: the size of the decrypting variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Opened<F> {
    Plain(F),
    Age(Decrypted<F>),
}

impl<F: ArchiveSource + Sync> Opened<F> {
    /// `file` (`cipher_len` bytes, called `name` in messages) as plaintext:
    /// an age file is opened with the installed identities.
    pub fn open(file: F, cipher_len: u64, name: &str) -> Result<Opened<F>> {
        match sniff(&file) {
            Sealed::Plain => Ok(Opened::Plain(file)),
            Sealed::Armored => Err(armored(name)),
            Sealed::Age => Ok(Opened::Age(Decrypted::open(
                file,
                cipher_len,
                name,
                identity::installed(),
            )?)),
        }
    }

    /// The plaintext length.
    pub fn len(&self, cipher_len: u64) -> u64 {
        match self {
            Opened::Plain(_) => cipher_len,
            Opened::Age(d) => d.len(),
        }
    }

    pub fn encrypted(&self) -> bool {
        matches!(self, Opened::Age(_))
    }

    /// Ciphertext bytes read through the decrypting readers (0 when plain).
    pub fn cipher_read(&self) -> u64 {
        match self {
            Opened::Plain(_) => 0,
            Opened::Age(d) => d.cipher_read(),
        }
    }
}

impl Opened<std::fs::File> {
    /// The local archive at `path`.
    pub fn open_path(path: &std::path::Path) -> Result<(Opened<std::fs::File>, u64)> {
        let file = crate::fsx::open_path(path)
            .with_context(|| format!("cannot open archive {}", path.display()))?;
        let len = file.metadata()?.len();
        let o = Opened::open(file, len, &path.display().to_string())?;
        let plain = o.len(len);
        Ok((o, plain))
    }
}

impl<F: ArchiveSource + Sync> FileExt for Opened<F> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Opened::Plain(f) => f.read_at(buf, offset),
            Opened::Age(d) => d.read_at(buf, offset),
        }
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "an archive is read-only here",
        ))
    }
}

impl<F: ArchiveSource + Sync> ArchiveSource for Opened<F> {
    fn reopen(&self) -> std::io::Result<Self> {
        Ok(match self {
            Opened::Plain(f) => Opened::Plain(f.reopen()?),
            Opened::Age(d) => Opened::Age(d.reopen()),
        })
    }

    fn hash_whole(&self) -> bool {
        !self.encrypted()
    }
}

impl<F: FileExt + Send + Sync + 'static> ArchiveSource for Decrypted<F> {
    fn reopen(&self) -> std::io::Result<Self> {
        Ok(Decrypted::reopen(self))
    }

    fn hash_whole(&self) -> bool {
        false
    }
}

impl<F: ArchiveSource + Sync + Read + Seek> Read for Opened<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Opened::Plain(f) => f.read(buf),
            Opened::Age(d) => d.read(buf),
        }
    }
}

impl<F: ArchiveSource + Sync + Read + Seek> Seek for Opened<F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Opened::Plain(f) => f.seek(to),
            Opened::Age(d) => d.seek(to),
        }
    }
}
