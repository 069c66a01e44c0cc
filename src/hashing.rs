//! A writer that counts and hashes what passes through it: the `.sha256` of
//! ciphertext, and the size and digest of the `.datamig/` members, which are
//! written twice (once to learn their size for the tar header, once for real)
//! rather than held in memory.

use std::io::Write;

use sha2::{Digest, Sha256};

/// Counts and hashes what goes to `inner`.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The writer, the SHA-256 and the number of bytes written.
    pub fn done(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Hashing<std::io::Sink> {
    /// Counts and hashes only.
    pub fn counting() -> Self {
        Hashing::new(std::io::sink())
    }
}

/// The size and SHA-256 of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl<W: Write> Hashing<W> {
    /// The writer, and what went through it.
    pub fn hashed(self) -> (W, Hashed) {
        let (w, sha256, size) = self.done();
        (w, Hashed { size, sha256 })
    }
}
