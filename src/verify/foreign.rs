//! Reading a `.tar.zst` that datamig did not write (`tar --zstd`, `tar | zstd`,
//! bsdtar, several zstd frames concatenated): no manifest and no index, so
//! all there is to check is that the zstd stream decodes to its end and the
//! tar stream inside it is well formed. `list` and `verify` use this when an
//! archive has neither a sidecar manifest nor datamig's index.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Result, bail};
use serde::Serialize;
use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, get_error_name};

use crate::tarfmt::{Found, TarReader};

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Compressed bytes read from the file at a time (zstd's own recommended
/// input size is 128 KiB; larger reads mean fewer syscalls).
const IN_BUF: usize = 1 << 20;

/// Compressed bytes given to the decoder per call (zstd's recommended input
/// size).
const STEP: usize = 128 << 10;

/// Decompressed bytes handed to the tar reader at a time: its header and skip
/// reads are small, and each `decompress_stream` call has a fixed cost.
const OUT_BUF: usize = 256 << 10;

/// A zstd stream of any number of frames (skippable ones included) decoded
/// from a file, keeping the compressed offsets a report needs: where the
/// current frame began and how far decoding got.
pub struct ZstdStream<R> {
    inner: R,
    dctx: DCtx<'static>,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    eof: bool,
    /// Inside a frame whose end has not been decoded yet.
    mid_frame: bool,
    failed: bool,
    /// Compressed bytes consumed by the decoder.
    pub consumed: u64,
    /// Compressed offset where the current (or last) frame began.
    pub frame_start: u64,
    /// Frames decoded completely (skippable frames included).
    pub frames: u64,
    /// Bytes read from `inner` (ahead of `consumed` by what is buffered).
    pub read_bytes: u64,
}

impl<R: Read> ZstdStream<R> {
    pub fn new(inner: R) -> Result<Self> {
        let dctx = DCtx::try_create().ok_or_else(|| anyhow::anyhow!("zstd: out of memory"))?;
        Ok(ZstdStream {
            inner,
            dctx,
            inbuf: vec![0u8; IN_BUF],
            in_pos: 0,
            in_len: 0,
            eof: false,
            mid_frame: false,
            failed: false,
            consumed: 0,
            frame_start: 0,
            frames: 0,
            read_bytes: 0,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        loop {
            match self.inner.read(&mut self.inbuf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    (self.in_pos, self.in_len) = (0, n);
                    self.read_bytes += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Not `UnexpectedEof` even for a cut: the tar reader would replace the
    /// message (and its offsets) with its own.
    fn fail(&mut self, msg: String) -> io::Error {
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
}

impl<R: Read> Read for ZstdStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("reading stopped at damaged zstd data"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_pos == self.in_len && !self.eof {
                self.fill()?;
            }
            if self.in_pos == self.in_len {
                if self.mid_frame {
                    let msg = format!(
                        "the file ends at byte {} inside the zstd frame that starts at byte {} (truncated archive)",
                        self.consumed, self.frame_start
                    );
                    return Err(self.fail(msg));
                }
                return Ok(0);
            }
            if !self.mid_frame {
                self.frame_start = self.consumed;
                self.mid_frame = true;
            }
            // At most `STEP` bytes per call: zstd leaves the input position
            // untouched on an error, so this bounds where the damage is.
            let end = self.in_len.min(self.in_pos + STEP);
            let mut input = InBuffer::around(&self.inbuf[self.in_pos..end]);
            let mut out = OutBuffer::around(&mut *buf);
            let r = self.dctx.decompress_stream(&mut out, &mut input);
            let used = input.pos();
            let produced = out.pos();
            self.in_pos += used;
            self.consumed += used as u64;
            match r {
                Err(code) => {
                    let msg = format!(
                        "the zstd frame that starts at byte {} is damaged (found decoding its compressed bytes {}..{}): {}",
                        self.frame_start,
                        self.consumed,
                        self.consumed + (end - self.in_pos) as u64,
                        get_error_name(code)
                    );
                    return Err(self.fail(msg));
                }
                Ok(0) => {
                    self.mid_frame = false;
                    self.frames += 1;
                }
                Ok(_) => {}
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}

/// Decoded bytes per hand-over between the threads of `Decoded`.
const CHUNK: usize = 1 << 20;

/// Chunks in flight: with the one being read and the one being decoded, at
/// most four chunk buffers exist at once.
const AHEAD: usize = 2;

enum Chunk {
    Data(Vec<u8>, u64),
    End(u64),
    Failed(io::Error, u64),
}

/// A `ZstdStream` decoded on a second thread, a few MiB ahead of the reader,
/// as `tar --zstd` runs `zstd -d` in a child process: a whole-archive restore
/// of a foreign single-frame archive then decodes while it writes files,
/// as datamig's own frames do (`frames::Prefetched`).
pub struct Decoded {
    rx: Receiver<Chunk>,
    /// Buffers handed back to the decoder for reuse.
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    ended: bool,
    failed: bool,
    /// Bytes read from the archive file so far.
    pub read_bytes: u64,
    worker: Option<JoinHandle<()>>,
}

impl Decoded {
    pub fn new(file: File) -> Result<Decoded> {
        let mut z = ZstdStream::new(file)?;
        let (tx, rx) = sync_channel::<Chunk>(AHEAD);
        let (back, spare) = sync_channel::<Vec<u8>>(AHEAD + 2);
        let worker = std::thread::Builder::new()
            .name("datamig-zstd".into())
            .spawn(move || {
                loop {
                    let mut buf = spare.try_recv().unwrap_or_default();
                    buf.resize(CHUNK, 0);
                    let (n, err) = fill_chunk(&mut z, &mut buf);
                    buf.truncate(n);
                    let at = z.read_bytes;
                    if n > 0 && tx.send(Chunk::Data(buf, at)).is_err() {
                        return; // the reader stopped early
                    }
                    let last = match err {
                        Some(e) => Chunk::Failed(e, at),
                        None if n < CHUNK => Chunk::End(at),
                        None => continue,
                    };
                    let _ = tx.send(last);
                    return;
                }
            })?;
        Ok(Decoded {
            rx,
            back,
            cur: Vec::new(),
            at: 0,
            ended: false,
            failed: false,
            read_bytes: 0,
            worker: Some(worker),
        })
    }
}

/// Fill `buf` from `z`: the bytes placed, and the error that stopped it.
fn fill_chunk(z: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match z.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            if self.failed {
                return Err(io::Error::other("reading stopped at damaged zstd data"));
            }
            match self.rx.recv() {
                Ok(Chunk::Data(data, n)) => {
                    let used = std::mem::replace(&mut self.cur, data);
                    let _ = self.back.try_send(used);
                    self.at = 0;
                    self.read_bytes = n;
                }
                Ok(Chunk::End(n)) => {
                    self.read_bytes = n;
                    self.ended = true;
                }
                Ok(Chunk::Failed(e, n)) => {
                    self.read_bytes = n;
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other("the decoding thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        // Unblock a decoder waiting to send, then wait for it.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// What walking a foreign archive found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamCheck {
    /// zstd frames decoded completely (skippable frames included).
    pub frames: u64,
    /// Compressed bytes decoded (the whole file when `complete`).
    pub compressed_bytes: u64,
    /// Bytes of the decompressed tar stream read.
    pub tar_bytes: u64,
    pub members: u64,
    /// Both the zstd stream and the tar stream ended properly.
    pub complete: bool,
    /// Non-zero bytes after the tar end-of-archive marker (tar ignores them).
    pub after_end_bytes: u64,
    /// Why reading stopped early, with the offsets it stopped at.
    pub problem: Option<String>,
}

/// Whether the file starts like a zstd stream (a data or skippable frame).
pub fn is_zstd(path: &Path) -> Result<bool> {
    let mut f = crate::fsx::open_path(path)?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    let m = u32::from_le_bytes(magic);
    Ok(m == ZSTD_MAGIC || m & 0xFFFF_FFF0 == 0x184D_2A50)
}

/// Decode `file` to its end, reading every tar header (data is skipped) and
/// handing each member to `each`. Errors only when the file cannot be read at
/// all; damage is in `StreamCheck::problem`.
pub fn walk(file: File, mut each: impl FnMut(&Found)) -> Result<StreamCheck> {
    let z = ZstdStream::new(file)?;
    let mut tar = TarReader::new(BufReader::with_capacity(OUT_BUF, z));
    let mut check = StreamCheck::default();
    let mut last: Option<String> = None;
    let stopped = loop {
        match tar.next_member() {
            Ok(Some(found)) => {
                check.members += 1;
                last = Some(String::from_utf8_lossy(&found.header.path).into_owned());
                each(&found);
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    check.tar_bytes = tar.position();
    let mut rest = tar.into_inner();
    // After the end-of-archive marker: tar pads to its record size, and the
    // zstd stream must still end where the file ends.
    let stopped = stopped.or_else(|| match count_nonzero(&mut rest) {
        Ok(n) => {
            check.after_end_bytes = n;
            None
        }
        Err(e) => Some(e.into()),
    });
    let z = rest.into_inner();
    check.frames = z.frames;
    check.compressed_bytes = z.consumed;
    match stopped {
        None => check.complete = true,
        Some(e) => {
            check.problem = Some(format!(
                "{e:#} (decoded tar stream offset {}, compressed byte {}); last intact member: {}",
                check.tar_bytes,
                z.consumed,
                last.as_deref().unwrap_or("(none)")
            ))
        }
    }
    Ok(check)
}

fn count_nonzero(r: &mut impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += buf[..k].iter().filter(|&&b| b != 0).count() as u64;
    }
}

/// Open `archive` and walk it, refusing what is not a zstd stream at all.
pub fn walk_path(archive: &Path, each: impl FnMut(&Found)) -> Result<StreamCheck> {
    if !is_zstd(archive)? {
        bail!(
            "{} is not a zstd stream (empty, or not a .tar.zst)",
            archive.display()
        );
    }
    walk(crate::fsx::open_path(archive)?, each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarfmt::{END_OF_ARCHIVE, MemberHeader, MemberKind, encode_header, padding};

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut t = Vec::new();
        for n in names {
            let h = MemberHeader {
                path: n.as_bytes().to_vec(),
                kind: MemberKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: 3,
                link: None,
                sparse: None,
            };
            t.extend(encode_header(&h));
            t.extend(b"abc");
            t.extend(vec![0u8; padding(3)]);
        }
        t.extend(END_OF_ARCHIVE);
        t
    }

    fn walk_bytes(z: &[u8]) -> StreamCheck {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar.zst");
        std::fs::write(&p, z).unwrap();
        walk(File::open(&p).unwrap(), |_| {}).unwrap()
    }

    /// Several frames, a skippable frame between them: one stream.
    #[test]
    fn multi_frame_stream_is_read_to_its_end() {
        let t = tar_of(&["a", "b", "c"]);
        let mut z = zstd::encode_all(&t[..700], 3).unwrap();
        z.extend([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7]);
        z.extend(zstd::encode_all(&t[700..], 3).unwrap());
        let c = walk_bytes(&z);
        assert!(c.complete, "{c:?}");
        assert_eq!((c.members, c.frames), (3, 3), "{c:?}");
        assert_eq!(c.compressed_bytes, z.len() as u64);
    }

    /// Through the second thread: the same bytes (over several chunks), and
    /// a cut surfaces as the same error after the bytes before it.
    #[test]
    fn decoded_on_a_thread_matches_and_reports_the_cut() {
        let data: Vec<u8> = (0..(CHUNK * 5 + 777) as u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3] & 0x0f)
            .collect();
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.zst");
        std::fs::write(&p, &z).unwrap();
        let mut got = Vec::new();
        let mut d = Decoded::new(File::open(&p).unwrap()).unwrap();
        d.read_to_end(&mut got).unwrap();
        assert!(got == data, "decoded bytes differ");
        assert_eq!(d.read_bytes, z.len() as u64);

        std::fs::write(&p, &z[..z.len() / 2]).unwrap();
        let mut d = Decoded::new(File::open(&p).unwrap()).unwrap();
        let mut got = Vec::new();
        let e = d.read_to_end(&mut got).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(!got.is_empty() && data.starts_with(&got));
        assert!(
            d.read(&mut [0u8; 8]).is_err(),
            "reads after damage must fail"
        );
    }

    /// Cut inside a frame: the problem names where the file ends.
    #[test]
    fn truncated_stream_names_the_byte_offset() {
        let t = tar_of(&["a", "b", "c"]);
        let z = zstd::encode_all(&t[..], 3).unwrap();
        let cut = &z[..z.len() - 3];
        let c = walk_bytes(cut);
        assert!(!c.complete);
        let p = c.problem.unwrap();
        assert!(
            p.contains(&format!("ends at byte {}", cut.len())) && p.contains("truncated"),
            "{p}"
        );
    }
}
