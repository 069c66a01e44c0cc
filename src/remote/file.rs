//! A remote archive as a random-access file: every `read_at` is one ranged
//! GET (a directory: one `pread`), so the frame reader, the index and seek
//! table readers and PATH restores fetch only the bytes they need, exactly
//! as they read a local file.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow};

use super::Store;

#[derive(Clone)]
pub struct RemoteFile {
    store: Arc<Store>,
    name: String,
    len: u64,
    /// The cursor for `Read` / `Seek` (`read_at` ignores it).
    pos: u64,
    /// Bytes fetched so far, by this handle and its clones.
    fetched: Arc<AtomicU64>,
}

impl RemoteFile {
    /// `name` at the store's location; an error naming it when absent.
    pub fn open(store: Arc<Store>, name: &str) -> Result<RemoteFile> {
        let len = store
            .stat(name)?
            .ok_or_else(|| anyhow!("{} does not exist", store.location().url_of(name)))?;
        Ok(RemoteFile {
            store,
            name: name.to_string(),
            len,
            pos: 0,
            fetched: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes fetched from the store so far (all clones together).
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    pub fn url(&self) -> String {
        self.store.location().url_of(&self.name)
    }
}

impl FileExt for RemoteFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.len - offset);
        let got = self
            .store
            .read_range(&self.name, offset, want)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let n = got.len().min(buf.len());
        buf[..n].copy_from_slice(&got[..n]);
        self.fetched.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a remote archive is read-only",
        ))
    }
}

impl Read for RemoteFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RemoteFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = at.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
