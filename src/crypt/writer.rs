//! Encrypting as the archive is written (one pass: the plaintext archive never
//! reaches the disk), and reading the result back with the run's own key.
//!
//! The chain is `FrameWriter → Encrypting → age StreamWriter → Hashing →
//! file`: FrameWriter hashes the plaintext (the embedded checks), `Hashing`
//! the ciphertext (the `.sha256` sidecar).
//!
//! # The read-back key
//!
//! The writer holds only public keys, yet `archive --verify` must decode
//! every member again. So each run also encrypts to an X25519 identity made
//! in memory for that run ([`ReadBack`]); the check decrypts the temporary
//! archive with it, and it is dropped when the run ends — never written
//! anywhere. The header thus has one stanza more than there are recipients
//! (README: "what is and is not hidden"). Anyone who could read this
//! process's memory during the run could read the plaintext anyway.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::recipients::Recipients;
use crate::hashing::Hashing;
use anyhow::{Context, Result, anyhow};

type Stream<W> = age::stream::StreamWriter<Hashing<W>>;

/// The plaintext side of the encryption, handed to FrameWriter (which owns
/// its output as a `Box<dyn Write>`); [`Sealer`] keeps the other handle and
/// finishes the stream once FrameWriter is done.
pub struct Encrypting<W: Write>(Arc<Mutex<Option<Stream<W>>>>);

/// Finishes what [`Encrypting`] wrote.
pub struct Sealer<W: Write>(Arc<Mutex<Option<Stream<W>>>>);

/// What the sealed ciphertext was.
pub struct Sealed<W> {
    pub out: W,
    pub sha256: [u8; 32],
    pub bytes: u64,
}

/// Start an age stream to `recipients` (and `extra`) on `out`; the header is
/// written at once.
pub fn encrypt_to<W: Write>(
    recipients: &Recipients,
    extra: Option<&age::x25519::Recipient>,
    out: W,
) -> Result<(Encrypting<W>, Sealer<W>)> {
    let stream = recipients
        .encryptor(extra)?
        .wrap_output(Hashing::new(out))
        .context("cannot write the age header")?;
    let shared = Arc::new(Mutex::new(Some(stream)));
    Ok((Encrypting(Arc::clone(&shared)), Sealer(shared)))
}

fn closed() -> std::io::Error {
    std::io::Error::other("the age stream was already finished")
}

impl<W: Write> Write for Encrypting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.as_mut().ok_or_else(closed)?.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // age's flush writes nothing (a chunk is sealed only when full or
        // at finish); the file below is flushed at finish.
        Ok(())
    }
}

impl<W: Write> Sealer<W> {
    /// Write the last chunk (without it the file does not decrypt) and
    /// flush: every error of the file below surfaces here.
    pub fn finish(self) -> Result<Sealed<W>> {
        let stream = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(closed)?;
        let mut hashing = stream.finish()?;
        hashing.flush()?;
        let (out, sha256, bytes) = hashing.done();
        Ok(Sealed { out, sha256, bytes })
    }
}

/// `data` encrypted to `recipients`, in memory (a manifest sidecar).
pub fn encrypt_bytes(recipients: &Recipients, data: &[u8]) -> Result<Vec<u8>> {
    let (mut w, seal) = encrypt_to(recipients, None, Vec::new())?;
    w.write_all(data)?;
    Ok(seal.finish()?.out)
}

/// Bytes the age stream has written and the reader not yet taken.
#[derive(Clone, Default)]
struct Pipe(Arc<Mutex<std::collections::VecDeque<u8>>>);

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// age's plaintext chunk; each becomes this plus a 16-byte tag on disk.
const CHUNK: u64 = 64 << 10;
const TAG: u64 = 16;

/// The age encryption of `src` (of `len` bytes), as a reader: what `copy
/// --encrypt-to` uploads, so the plaintext is encrypted on its way out and
/// nothing is written locally. Its size is known before the first byte
/// ([`EncryptingReader::len`]), as a multipart upload needs; the SHA-256 of
/// the ciphertext once it is read to its end.
pub struct EncryptingReader<R> {
    src: R,
    left: u64,
    stream: Option<Stream<Pipe>>,
    pipe: Pipe,
    len: u64,
    sha256: Option<[u8; 32]>,
}

impl<R: Read> EncryptingReader<R> {
    pub fn new(recipients: &Recipients, src: R, len: u64) -> Result<Self> {
        let pipe = Pipe::default();
        let stream = recipients
            .encryptor(None)?
            .wrap_output(Hashing::new(pipe.clone()))
            .context("cannot make the age header")?;
        let head = pipe.0.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        let chunks = len.div_ceil(CHUNK).max(1);
        Ok(EncryptingReader {
            src,
            left: len,
            stream: Some(stream),
            pipe,
            len: head + len + chunks * TAG,
            sha256: None,
        })
    }

    /// The ciphertext's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ciphertext's SHA-256, once it was read to its end.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    /// Encrypt the next piece of `src` into the pipe (or seal the stream).
    fn refill(&mut self) -> std::io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if self.left == 0 {
            let (_, sha, _) = self.stream.take().expect("open").finish()?.done();
            self.sha256 = Some(sha);
            return Ok(());
        }
        let mut buf = vec![0u8; self.left.min(4 * CHUNK) as usize];
        let n = self.src.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ended {} bytes early while it was encrypted",
                    self.left
                ),
            ));
        }
        stream.write_all(&buf[..n])?;
        self.left -= n as u64;
        Ok(())
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            {
                let mut q = self.pipe.0.lock().unwrap_or_else(|e| e.into_inner());
                if !q.is_empty() || self.stream.is_none() {
                    let n = buf.len().min(q.len());
                    for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
                        *b = v;
                    }
                    return Ok(n);
                }
            }
            self.refill()?;
        }
    }
}

/// The run's own read-back key (module doc): held in memory only.
pub struct ReadBack(Arc<age::x25519::Identity>);

impl ReadBack {
    pub fn generate() -> Self {
        ReadBack(Arc::new(age::x25519::Identity::generate()))
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.0.to_public()
    }

    /// The plaintext of the encrypted `file`, for `check_source`.
    pub fn open(&self, file: std::fs::File) -> Result<Plaintext> {
        Plaintext::open(Arc::new(file), Arc::clone(&self.0))
    }
}

/// A file read by offset, as `Read + Seek` for age's seekable reader (two
/// readers of one file never share an offset).
struct At {
    file: Arc<std::fs::File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for At {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.file.metadata()?.len();
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => len.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

struct Cursor {
    reader: age::stream::StreamReader<At>,
    pos: u64,
}

/// The decrypted bytes of an age file, by offset.
pub struct Plaintext {
    file: Arc<std::fs::File>,
    identity: Arc<age::x25519::Identity>,
    cursor: Mutex<Cursor>,
    pub len: u64,
}

impl Plaintext {
    fn open(file: Arc<std::fs::File>, identity: Arc<age::x25519::Identity>) -> Result<Self> {
        let at = At {
            file: Arc::clone(&file),
            pos: 0,
        };
        let d = age::Decryptor::new(at).map_err(|e| anyhow!("age header: {e}"))?;
        let mut reader = d
            .decrypt(std::iter::once(&*identity as &dyn age::Identity))
            .map_err(|e| anyhow!("age: {e}"))?;
        let len = reader.seek(SeekFrom::End(0))?;
        reader.seek(SeekFrom::Start(0))?;
        Ok(Plaintext {
            file,
            identity,
            cursor: Mutex::new(Cursor { reader, pos: 0 }),
            len,
        })
    }
}

impl FileExt for Plaintext {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        if offset >= self.len {
            return Ok(0);
        }
        if c.pos != offset {
            c.reader.seek(SeekFrom::Start(offset))?;
            c.pos = offset;
        }
        let n = c.reader.read(buf)?;
        c.pos += n as u64;
        Ok(n)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a decrypted archive is read-only",
        ))
    }
}

impl crate::archive::check::ArchiveSource for Plaintext {
    fn reopen(&self) -> std::io::Result<Self> {
        Plaintext::open(Arc::clone(&self.file), Arc::clone(&self.identity))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_encrypting_reader_knows_its_size_and_hash_and_decrypts() {
        let user = age::x25519::Identity::generate();
        let r = Recipients::parse(&[user.to_public().to_string()], &[])
            .unwrap()
            .unwrap();
        for len in [0usize, 1, 65_536, 65_537, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let mut rd = EncryptingReader::new(&r, &data[..], len as u64).unwrap();
            let mut out = Vec::new();
            rd.read_to_end(&mut out).unwrap();
            assert_eq!(out.len() as u64, rd.len(), "{len}");
            assert_eq!(rd.sha256(), Some(<[u8; 32]>::from(Sha256::digest(&out))));
            let mut back = Vec::new();
            age::Decryptor::new(&out[..])
                .unwrap()
                .decrypt(std::iter::once(&user as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn a_stream_encrypted_here_decrypts_by_offset_with_the_readback_key() {
        let d = tempfile::tempdir().unwrap();
        let user = age::x25519::Identity::generate();
        let r = Recipients::parse(&[user.to_public().to_string()], &[])
            .unwrap()
            .unwrap();
        let rb = ReadBack::generate();
        let path = d.path().join("a.age");
        let f = std::fs::File::create(&path).unwrap();
        let (mut w, seal) = encrypt_to(&r, Some(&rb.recipient()), f).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&data).unwrap();
        let sealed = seal.finish().unwrap();
        drop(sealed.out);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(sealed.bytes, on_disk.len() as u64);
        assert_eq!(sealed.sha256, <[u8; 32]>::from(Sha256::digest(&on_disk)));

        let p = rb.open(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(p.len, data.len() as u64);
        let mut buf = vec![0u8; 1000];
        let n = p.read_at(&mut buf, 200_000).unwrap();
        assert_eq!(&buf[..n], &data[200_000..200_000 + n]);
        // The user's key opens it too; a stranger's does not.
        let whole = age::Decryptor::new(&on_disk[..]).unwrap();
        let mut out = Vec::new();
        whole
            .decrypt(std::iter::once(&user as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let other = age::x25519::Identity::generate();
        let d2 = age::Decryptor::new(&on_disk[..]).unwrap();
        assert!(
            d2.decrypt(std::iter::once(&other as &dyn age::Identity))
                .is_err()
        );
    }
}
