//! Reading an encrypted archive as if it were the plain one: `Decrypted`
//! serves plaintext offsets (`FileExt::read_at`, and `Read + Seek`) from any
//! positional source of ciphertext (a local file, a `RemoteFile`), through
//! age's seekable `StreamReader`. Only the header and the 64 KiB chunks that
//! cover what is read are fetched, so a PATH restore reads what it would
//! read of the plain archive, plus at most a chunk at each end.
//!
//! A chunk that fails authentication is a read error for the bytes it covers
//! only: the reader behind it is dropped (age's reader cannot continue after a
//! failed chunk) and the next read elsewhere opens a fresh one, so verify
//! resumes at the next frame as it does after a damaged zstd frame.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use age::stream::StreamReader;
use anyhow::{Result, bail};

use super::identity::Identities;

/// The first bytes of a binary age file.
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The first bytes of an armored (ASCII) one.
pub const ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Plaintext bytes per age chunk, and what each takes on disk.
const CHUNK: u64 = 64 << 10;
const SEALED_CHUNK: u64 = CHUNK + 16;
/// Ciphertext fetched at once while parsing the header (age reads it in small
/// pieces; each would be a ranged GET on a remote archive).
const HEAD_AHEAD: usize = 4 << 10;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    Plain,
    Age,
    Armored,
}

/// Look at the first bytes of `f`.
pub fn sniff<F: FileExt>(f: &F) -> Sealed {
    let mut head = [0u8; 34];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    if head[..n].starts_with(MAGIC) {
        Sealed::Age
    } else if head[..n].starts_with(ARMOR) {
        Sealed::Armored
    } else {
        Sealed::Plain
    }
}

/// The refusal for an armored file: datamig writes and seeks binary age only.
pub fn armored(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{name} is ASCII-armored age (age -a); datamig reads binary age files only: \
         dearmor it with `age -d -i KEY {name} | age -r RECIPIENT -o NAME.tar.zst.age`, or restore it with `age -d -i KEY {name} | tar --zstd -x`"
    )
}

/// The refusal when no key was given.
pub fn no_identity(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{name} is encrypted to age recipients; give --identity FILE (the private key matching one of them)"
    )
}

struct Shared<F> {
    file: F,
    cipher_len: u64,
    ids: Identities,
    name: String,
    /// Where the first chunk starts (after the header and the nonce).
    payload_start: u64,
    plain_len: u64,
    /// Ciphertext bytes read, by every handle together.
    read: AtomicU64,
}

/// Positional ciphertext as the `Read + Seek` age's reader wants, with a
/// little read-ahead for the header's small reads.
struct Cipher<F> {
    shared: Arc<Shared<F>>,
    pos: u64,
    ahead: Vec<u8>,
    ahead_at: u64,
}

impl<F: FileExt> Read for Cipher<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let end = self.ahead_at + self.ahead.len() as u64;
        if self.pos >= self.ahead_at && self.pos < end {
            let from = (self.pos - self.ahead_at) as usize;
            let n = buf.len().min(self.ahead.len() - from);
            buf[..n].copy_from_slice(&self.ahead[from..from + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let n = if buf.len() < HEAD_AHEAD {
            let mut ahead = vec![0u8; HEAD_AHEAD];
            let got = self.shared.file.read_at(&mut ahead, self.pos)?;
            ahead.truncate(got);
            self.shared.read.fetch_add(got as u64, Ordering::Relaxed);
            let n = got.min(buf.len());
            buf[..n].copy_from_slice(&ahead[..n]);
            self.ahead = ahead;
            self.ahead_at = self.pos;
            n
        } else {
            let n = self.shared.file.read_at(buf, self.pos)?;
            self.shared.read.fetch_add(n as u64, Ordering::Relaxed);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F> Seek for Cipher<F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.shared.cipher_len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = at.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// One reader of the plaintext; `reopen` gives another with its own position.
pub struct Decrypted<F> {
    shared: Arc<Shared<F>>,
    /// The age reader and its plaintext position; None after a failed chunk.
    state: Mutex<Option<(StreamReader<Cipher<F>>, u64)>>,
    /// The cursor for `Read` / `Seek` (`read_at` ignores it).
    pos: u64,
}

impl<F: FileExt + Send + Sync + 'static> Decrypted<F> {
    /// Open the age file `file` of `cipher_len` bytes called `name` with the
    /// installed identities: exit-2 errors for no key, the wrong key and a
    /// damaged header.
    pub fn open(file: F, cipher_len: u64, name: &str, ids: Identities) -> Result<Decrypted<F>> {
        if ids.is_empty() {
            return Err(no_identity(name));
        }
        let mut shared = Shared {
            file,
            cipher_len,
            ids,
            name: name.to_string(),
            payload_start: 0,
            plain_len: 0,
            read: AtomicU64::new(0),
        };
        // The header's length: parse it once from the first bytes.
        let head_len = header_len(&shared.file, &shared.name)?;
        shared.payload_start = head_len + 16;
        let payload = cipher_len.saturating_sub(shared.payload_start);
        let chunks = payload.div_ceil(SEALED_CHUNK).max(1);
        shared.plain_len = payload.saturating_sub(16 * chunks);
        let d = Decrypted {
            shared: Arc::new(shared),
            state: Mutex::new(None),
            pos: 0,
        };
        // Unwrap the file key now, so a wrong key or a damaged header is
        // refused before anything is read or written.
        let reader = d.fresh().map_err(|e| anyhow::anyhow!("{e}"))?;
        *d.state.lock().expect("fresh lock") = Some((reader, 0));
        Ok(d)
    }

    /// A second reader of the same plaintext (the file key is unwrapped again:
    /// one X25519 or SSH operation).
    pub fn reopen(&self) -> Decrypted<F> {
        Decrypted {
            shared: Arc::clone(&self.shared),
            state: Mutex::new(None),
            pos: 0,
        }
    }

    /// The plain archive's length.
    pub fn len(&self) -> u64 {
        self.shared.plain_len
    }

    pub fn is_empty(&self) -> bool {
        self.shared.plain_len == 0
    }

    /// The encrypted file's length.
    pub fn cipher_len(&self) -> u64 {
        self.shared.cipher_len
    }

    /// Ciphertext bytes read so far, by this reader and every reopened one.
    pub fn cipher_read(&self) -> u64 {
        self.shared.read.load(Ordering::Relaxed)
    }

    fn fresh(&self) -> std::io::Result<StreamReader<Cipher<F>>> {
        let c = Cipher {
            shared: Arc::clone(&self.shared),
            pos: 0,
            ahead: Vec::new(),
            ahead_at: 0,
        };
        let name = &self.shared.name;
        let dec = age::Decryptor::new(c).map_err(|e| header_error(name, e))?;
        dec.decrypt(self.shared.ids.iter()).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => std::io::Error::other(format!(
                "none of the given identities ({}) matches {name}: it is encrypted to other recipients; give the private key of one of them",
                self.shared.ids.named()
            )),
            e => header_error(name, e),
        })
    }

    /// Plaintext at `offset`, as many bytes as `buf` holds or the file has.
    fn read_plain(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.shared.plain_len || buf.is_empty() {
            return Ok(0);
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let result = self.read_locked(&mut state, buf, offset);
        if matches!(result, Err(_) | Ok((_, Some(_)))) {
            // age's reader is stuck on a failed chunk: the next read starts a
            // new one.
            *state = None;
        }
        match result {
            Ok((n, None)) => return Ok(n),
            // The bytes before the failed chunk; the next read fails there.
            Ok((n, Some(_))) if n > 0 => return Ok(n),
            _ => {}
        }
        let e = match result {
            Err(e) | Ok((_, Some(e))) => e,
            Ok((n, None)) => return Ok(n),
        };
        // InvalidData: to a frame reader, the frame holding it is damaged.
        Err({
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: cannot decrypt the age chunk holding plaintext offset {offset} ({e}): the file is damaged or truncated there",
                    self.shared.name
                ),
            )
        })
    }

    /// The bytes read, and the error that stopped the read short, if any.
    fn read_locked(
        &self,
        state: &mut Option<(StreamReader<Cipher<F>>, u64)>,
        buf: &mut [u8],
        offset: u64,
    ) -> std::io::Result<(usize, Option<std::io::Error>)> {
        if state.as_ref().is_none_or(|(_, at)| *at != offset) {
            let mut r = match state.take() {
                Some((r, _)) if offset != 0 => r,
                _ => self.fresh()?,
            };
            position(&mut r, offset)?;
            *state = Some((r, offset));
        }
        let (r, at) = state.as_mut().expect("set above");
        let want = buf.len().min((self.shared.plain_len - offset) as usize);
        let mut n = 0;
        let mut stopped = None;
        while n < want {
            match r.read(&mut buf[n..want]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        *at += n as u64;
        Ok((n, stopped))
    }
}

/// Put `r` at plaintext `offset`. age's seek to a chunk boundary first
/// authenticates the last chunk (to know the length), which fails on every
/// seek of a truncated file; seeking one byte short and reading it avoids
/// that and costs nothing extra when the chunk before is the one just read.
fn position<R: Read + Seek>(r: &mut R, offset: u64) -> std::io::Result<()> {
    if offset == 0 {
        return Ok(());
    }
    if offset.is_multiple_of(CHUNK) {
        r.seek(SeekFrom::Start(offset - 1))?;
        let mut one = [0u8; 1];
        r.read_exact(&mut one)?;
    } else {
        r.seek(SeekFrom::Start(offset))?;
    }
    Ok(())
}

fn header_error(name: &str, e: age::DecryptError) -> std::io::Error {
    std::io::Error::other(format!(
        "{name}: the age header cannot be used ({e}): it is damaged, or belongs to another file; nothing was read"
    ))
}

/// The length of the age header (up to and including its MAC line), read
/// from the first bytes; the 16-byte nonce follows it.
fn header_len<F: FileExt>(file: &F, name: &str) -> Result<u64> {
    let mut head = vec![0u8; 64 << 10];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    // The header ends with the line "--- MAC" after a newline.
    let text = &head[..n];
    let Some(at) = memchr::memmem::find(text, b"\n--- ") else {
        bail!("{name}: the age header has no MAC line: the file is damaged or truncated");
    };
    let Some(nl) = memchr::memchr(b'\n', &text[at + 1..]) else {
        bail!("{name}: the age header is cut short: the file is damaged or truncated");
    };
    Ok((at + 1 + nl + 1) as u64)
}

impl<F: FileExt + Send + Sync + 'static> FileExt for Decrypted<F> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.read_plain(buf, offset)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "an encrypted archive is read-only",
        ))
    }
}

impl<F: FileExt + Send + Sync + 'static> Read for Decrypted<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.read_plain(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F> Seek for Decrypted<F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.shared.plain_len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = at.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// Decrypt a small encrypted file (the manifest sidecar) in memory.
pub fn decrypt_small(bytes: &[u8], name: &str, ids: &Identities) -> Result<Vec<u8>> {
    if ids.is_empty() {
        return Err(no_identity(name));
    }
    let dec = age::Decryptor::new_buffered(bytes).map_err(|e| header_error(name, e))?;
    let mut r = dec.decrypt(ids.iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => anyhow::anyhow!(
            "none of the given identities ({}) matches {name}: it is encrypted to other recipients; give the private key of one of them",
            ids.named()
        ),
        e => header_error(name, e).into(),
    })?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| {
        anyhow::anyhow!("{name}: cannot decrypt ({e}): the file is damaged or truncated")
    })?;
    Ok(out)
}
