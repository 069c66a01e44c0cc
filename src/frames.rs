//! The compressed stream: a tar stream cut into independent zstd frames of at
//! most `FRAME_MAX` input bytes, compressed on all cores, written in order.
//! Independent frames keep the file one ordinary `.zst` stream for `zstd -d`
//! while letting restore and verify start decoding at any frame.
//!
//! After the data frames come two zstd *skippable* frames (ignored by
//! `zstd -d`): datamig's small JSON index, so `datamig list` finds the
//! embedded manifest from the tail, and last the standard Zstandard Seekable
//! Format seek table listing every frame before it (archive layout 2). Layout 1
//! archives (written before the seek table) end with the index in a
//! 0x184D2A5E frame instead; `read_index` reads both.

mod prefetch;
pub mod seek_table;
pub use prefetch::Prefetched;
pub use seek_table::{SeekEntry, SeekTable};

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Input bytes per frame. Small enough that reaching one member reads little,
/// large enough that compression ratio stays close to one continuous stream.
pub const FRAME_MAX: usize = 4 << 20;

/// Layout 1's index frame magic: the one the seek table also uses, which is
/// why layout 2 moved the index to `INDEX_MAGIC`. Only read, never written.
const LEGACY_INDEX_MAGIC: u32 = 0x184D_2A5E;
/// Layout 2's index frame: a skippable magic of its own (0x184D2A50 is
/// avoided too: pzstd writes it before every frame), so no reader of the seek
/// table mistakes the index for it.
pub const INDEX_MAGIC: u32 = 0x184D_2A5D;
const FOOTER_MAGIC: &[u8; 8] = b"DMIGIDX1";
/// The archive layout `ArchiveIndex::version` records (see the README's
/// "Archive layout" section); readers accept this and layout 1.
pub const LAYOUT_VERSION: u32 = 2;

/// The writer thread's result: the output and the SHA-256 of every byte written.
type WriterDone = (Box<dyn Write + Send>, [u8; 32]);

enum Job {
    Compress(u64, Vec<u8>),
    /// A skippable frame, written as is (listed with decompressed size 0).
    Raw(u64, Vec<u8>),
    /// The seek table of every frame before it: built by the writer thread,
    /// the only one that knows them all.
    SeekTable(u64),
}

/// Frame buffers handed back for reuse once compressed or written: a fresh
/// 4 MiB allocation is fresh pages, each one faulted in and zeroed by the
/// kernel, twice per frame (input and output) — ~3% of an archive's CPU.
#[derive(Default)]
struct Spares {
    inputs: Mutex<Vec<Vec<u8>>>,
    outputs: Mutex<Vec<Vec<u8>>>,
}

impl Spares {
    fn take(pool: &Mutex<Vec<Vec<u8>>>, capacity: usize) -> Vec<u8> {
        let spare = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        spare.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Kept only up to `limit`: the frames alive at once never need more.
    fn give(pool: &Mutex<Vec<Vec<u8>>>, mut buf: Vec<u8>, limit: usize) {
        buf.clear();
        let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < limit {
            p.push(buf);
        }
    }
}

/// What a compressor hands the writer thread.
enum Ready {
    Frame(Vec<u8>, SeekEntry),
    SeekTable,
}

/// Where every frame landed in the output file.
#[derive(Debug, Default)]
struct Landed {
    offsets: Vec<u64>,
    written: u64,
    error: Option<String>,
}

pub struct FrameWriter {
    buf: Vec<u8>,
    /// Uncompressed bytes already sent in earlier frames.
    sent_in: u64,
    next_index: u64,
    jobs: Option<SyncSender<Job>>,
    tokens: Receiver<()>,
    landed: Arc<(Mutex<Landed>, std::sync::Condvar)>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Result<WriterDone>>>,
    spares: Arc<Spares>,
}

/// A member's place: frame index (resolved to a compressed offset later) and
/// the number of decompressed bytes of that frame before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub frame: u64,
    pub offset_in_frame: u64,
}

pub struct Finished {
    pub out: Box<dyn Write + Send>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: [u8; 32],
    pub frames: u64,
}

impl FrameWriter {
    pub fn new(out: Box<dyn Write + Send>, level: i32, threads: usize) -> FrameWriter {
        let threads = threads.max(1);
        let in_flight = threads * 2 + 2;
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(in_flight);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = sync_channel::<(u64, Result<Ready>)>(in_flight);
        // Tokens bound the frames alive at once, whatever order they finish in.
        let (tok_tx, tok_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            tok_tx.send(()).expect("fresh channel");
        }
        let landed = Arc::new((Mutex::new(Landed::default()), std::sync::Condvar::new()));
        let spares = Arc::new(Spares::default());
        let mut workers = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&jobs_rx);
            let tx = done_tx.clone();
            let sp = Arc::clone(&spares);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("datamig-zstd-{i}"))
                    .spawn(move || compress_worker(rx, tx, level, &sp, in_flight))
                    .expect("spawn compressor"),
            );
        }
        drop(done_tx);
        let landed2 = Arc::clone(&landed);
        let sp = Arc::clone(&spares);
        let writer = std::thread::Builder::new()
            .name("datamig-writer".into())
            .spawn(move || write_in_order(out, done_rx, tok_tx, landed2, &sp, in_flight))
            .expect("spawn writer");
        FrameWriter {
            buf: Vec::with_capacity(FRAME_MAX),
            sent_in: 0,
            next_index: 0,
            jobs: Some(jobs_tx),
            tokens: tok_rx,
            landed,
            workers,
            writer: Some(writer),
            spares,
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            frame: self.next_index,
            offset_in_frame: self.buf.len() as u64,
        }
    }

    /// Uncompressed bytes written so far.
    pub fn position(&self) -> u64 {
        self.sent_in + self.buf.len() as u64
    }

    /// Start a new frame if `upcoming` bytes would not fit in the current one,
    /// so a member begins at a frame boundary where possible.
    pub fn boundary_for(&mut self, upcoming: u64) -> Result<()> {
        if !self.buf.is_empty() && self.buf.len() as u64 + upcoming > FRAME_MAX as u64 {
            self.flush_frame()?;
        }
        Ok(())
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = FRAME_MAX - self.buf.len();
            let k = room.min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.buf.len() == FRAME_MAX {
                self.flush_frame()?;
            }
        }
        Ok(())
    }

    fn send(&mut self, job: Job) -> Result<()> {
        self.tokens.recv().map_err(|_| self.failure())?;
        self.jobs
            .as_ref()
            .expect("open")
            .send(job)
            .map_err(|_| self.failure())
    }

    fn failure(&self) -> anyhow::Error {
        let l = self.landed.0.lock().unwrap_or_else(|e| e.into_inner());
        anyhow!(
            l.error
                .clone()
                .unwrap_or_else(|| "the archive writer stopped".into())
        )
    }

    pub fn flush_frame(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let fresh = Spares::take(&self.spares.inputs, FRAME_MAX);
        let data = std::mem::replace(&mut self.buf, fresh);
        self.sent_in += data.len() as u64;
        let i = self.next_index;
        self.next_index += 1;
        self.send(Job::Compress(i, data))
    }

    /// Wait until every frame sent so far is on disk; returns their offsets.
    pub fn sync(&mut self) -> Result<Vec<u64>> {
        self.flush_frame()?;
        let (lock, cv) = &*self.landed;
        let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
        while (l.offsets.len() as u64) < self.next_index && l.error.is_none() {
            l = cv.wait(l).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(e) = &l.error {
            bail!("{e}");
        }
        Ok(l.offsets.clone())
    }

    /// Compressed bytes of the frames on disk so far: after `sync`, the
    /// offset the next frame lands at. (The archive's own offset, also when
    /// its file holds the age encryption of it.)
    pub fn written(&self) -> u64 {
        self.landed
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written
    }

    /// Append the skippable index frame and the seek table, and stop the
    /// pipeline.
    pub fn finish(mut self, index: &ArchiveIndex) -> Result<Finished> {
        self.flush_frame()?;
        let uncompressed_bytes = self.sent_in;
        let frames = self.next_index;
        let i = self.next_index;
        self.next_index += 2;
        self.send(Job::Raw(i, encode_index(index)?))?;
        self.send(Job::SeekTable(i + 1))?;
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let (out, sha256) = self
            .writer
            .take()
            .expect("writer present")
            .join()
            .map_err(|_| anyhow!("archive writer thread panicked"))??;
        let compressed_bytes = self
            .landed
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written;
        Ok(Finished {
            out,
            compressed_bytes,
            uncompressed_bytes,
            sha256,
            frames,
        })
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn compress_worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    tx: SyncSender<(u64, Result<Ready>)>,
    level: i32,
    spares: &Spares,
    limit: usize,
) {
    // The content checksum is required: the seek table's entry is taken from it.
    let made = zstd::bulk::Compressor::new(level).and_then(|mut c| {
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        Ok(c)
    });
    let mut c = match made {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send((u64::MAX, Err(anyhow!("zstd: {e}"))));
            return;
        }
    };
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let (i, out) = match job {
            Ok(Job::Compress(i, data)) => {
                let frame =
                    Spares::take(&spares.outputs, zstd::zstd_safe::compress_bound(FRAME_MAX));
                let out = compress_frame(&mut c, &data, frame);
                Spares::give(&spares.inputs, data, limit);
                (i, out)
            }
            Ok(Job::Raw(i, data)) => (
                i,
                SeekEntry::of(data.len(), &[]).map(|e| Ready::Frame(data, e)),
            ),
            Ok(Job::SeekTable(i)) => (i, Ok(Ready::SeekTable)),
            Err(_) => return,
        };
        if tx.send((i, out)).is_err() {
            return;
        }
    }
}

/// One data frame and its seek-table entry (hashed here, on the worker).
fn compress_frame(
    c: &mut zstd::bulk::Compressor,
    data: &[u8],
    mut frame: Vec<u8>,
) -> Result<Ready> {
    // Room for the worst case, as `Compressor::compress` reserves.
    frame.reserve(zstd::zstd_safe::compress_bound(data.len()));
    c.compress_to_buffer(data, &mut frame)
        .map_err(|e| anyhow!("zstd compression failed: {e}"))?;
    let entry = SeekEntry::of_frame(&frame, data.len())?;
    Ok(Ready::Frame(frame, entry))
}

fn write_in_order(
    mut out: Box<dyn Write + Send>,
    rx: Receiver<(u64, Result<Ready>)>,
    tokens: SyncSender<()>,
    landed: Arc<(Mutex<Landed>, std::sync::Condvar)>,
    spares: &Spares,
    limit: usize,
) -> Result<WriterDone> {
    let mut pending: BTreeMap<u64, Ready> = BTreeMap::new();
    let mut entries: Vec<SeekEntry> = Vec::new();
    let mut next = 0u64;
    let mut pos = 0u64;
    let mut hasher = Sha256::new();
    let fail = |msg: String| {
        let (lock, cv) = &*landed;
        lock.lock().unwrap_or_else(|e| e.into_inner()).error = Some(msg.clone());
        cv.notify_all();
        anyhow!(msg)
    };
    for (i, r) in rx {
        let ready = r.map_err(|e| fail(e.to_string()))?;
        pending.insert(i, ready);
        while let Some(ready) = pending.remove(&next) {
            let frame = match ready {
                Ready::Frame(frame, entry) => {
                    entries.push(entry);
                    frame
                }
                Ready::SeekTable => {
                    seek_table::encode(&entries).map_err(|e| fail(e.to_string()))?
                }
            };
            out.write_all(&frame)
                .map_err(|e| fail(format!("cannot write the archive: {e}")))?;
            hasher.update(&frame);
            let (lock, cv) = &*landed;
            let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
            l.offsets.push(pos);
            pos += frame.len() as u64;
            l.written = pos;
            cv.notify_all();
            drop(l);
            next += 1;
            Spares::give(&spares.outputs, frame, limit);
            let _ = tokens.send(());
        }
    }
    out.flush()
        .map_err(|e| fail(format!("cannot write the archive: {e}")))?;
    Ok((out, hasher.finalize().into()))
}

/// Found from the archive's tail without decompressing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveIndex {
    pub datamig: String,
    /// The archive layout (`LAYOUT_VERSION` when written now; 1 before the
    /// seek table).
    pub version: u32,
    /// The embedded `.datamig/MANIFEST.jsonl` member.
    pub manifest_frame_offset: u64,
    pub manifest_offset_in_frame: u64,
    pub manifest_size: u64,
    /// Compressed offset where the index frame itself starts.
    pub index_offset: u64,
    pub frames: u64,
}

/// The index frame: `INDEX_MAGIC`, then the JSON, its length and
/// `DMIGIDX1`, so the frame's own tail says what it is.
fn encode_index(index: &ArchiveIndex) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(index)?;
    let payload_len = json.len() + 16;
    let mut out = Vec::with_capacity(payload_len + 8);
    out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    Ok(out)
}

/// Read the index of an archive, if it has one: through the seek table
/// (layout 2) or from the file's last bytes (layout 1).
pub fn read_index<R: Read + Seek>(r: &mut R) -> Result<Option<ArchiveIndex>> {
    match SeekTable::read(r)? {
        Some(table) => index_before_table(r, &table),
        None => read_legacy_index(r),
    }
}

/// Largest index frame read: the JSON is a few hundred bytes.
const MAX_INDEX_FRAME: u64 = (1 << 20) + 24;

/// Layout 2: the index is the last frame the table lists, found from that
/// entry alone so a damaged earlier frame does not hide it. A seek table
/// whose last frame is not datamig's index (a foreign seekable `.tar.zst`)
/// means no index.
fn index_before_table<R: Read + Seek>(
    r: &mut R,
    table: &SeekTable,
) -> Result<Option<ArchiveIndex>> {
    let Some(last) = table.entries.last() else {
        return Ok(None);
    };
    let size = u64::from(last.compressed);
    if last.decompressed != 0
        || !(24..=MAX_INDEX_FRAME).contains(&size)
        || size > table.table_offset
    {
        return Ok(None);
    }
    r.seek(SeekFrom::Start(table.table_offset - size))?;
    let mut frame = vec![0u8; size as usize];
    r.read_exact(&mut frame)?;
    if frame[..4] != INDEX_MAGIC.to_le_bytes() {
        return Ok(None);
    }
    let body = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let jlen = u64::from_le_bytes(
        frame[frame.len() - 16..frame.len() - 8]
            .try_into()
            .expect("8 bytes"),
    );
    if u64::from(body) + 8 != size || &frame[frame.len() - 8..] != FOOTER_MAGIC || jlen + 24 != size
    {
        bail!("archive index frame is damaged");
    }
    decode_index(&frame[8..8 + jlen as usize], LAYOUT_VERSION).map(Some)
}

/// Layout 1: the index frame is the file's last bytes, ending in `DMIGIDX1`.
fn read_legacy_index<R: Read + Seek>(r: &mut R) -> Result<Option<ArchiveIndex>> {
    let len = r.seek(SeekFrom::End(0))?;
    if len < 24 {
        return Ok(None);
    }
    let mut tail = [0u8; 16];
    r.seek(SeekFrom::End(-16))?;
    r.read_exact(&mut tail)?;
    if &tail[8..] != FOOTER_MAGIC {
        return Ok(None);
    }
    let jlen = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if jlen > 1 << 20 || jlen + 24 > len {
        bail!("archive index footer is damaged");
    }
    r.seek(SeekFrom::End(-(jlen as i64) - 24))?;
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    if head[..4] != LEGACY_INDEX_MAGIC.to_le_bytes() {
        bail!("archive index footer is damaged");
    }
    let mut json = vec![0u8; jlen as usize];
    r.read_exact(&mut json)?;
    decode_index(&json, 1).map(Some)
}

/// The index JSON, which must record the layout its place implies.
fn decode_index(json: &[u8], layout: u32) -> Result<ArchiveIndex> {
    let idx: ArchiveIndex =
        serde_json::from_slice(json).context("archive index footer is damaged")?;
    if idx.datamig != "archive-index" || idx.version != layout {
        bail!(
            "archive index has an unknown format (version {}, expected {layout} where it was found)",
            idx.version
        );
    }
    Ok(idx)
}

/// Largest compressed frame a datamig archive holds (an incompressible
/// `FRAME_MAX` input plus zstd's block overhead).
const MAX_COMPRESSED_FRAME: usize = FRAME_MAX + (FRAME_MAX >> 7) + 4096;

/// A damaged frame found while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub frame_offset: u64,
    pub reason: String,
}

/// Decodes an archive frame by frame from a given compressed offset. Each frame
/// is decoded on its own (checksum checked), so a damaged frame is reported as
/// such and a reader can start again at a later frame.
pub struct FrameReader<F> {
    file: F,
    len: u64,
    next: u64,
    window: Vec<u8>,
    /// Bytes at the start of `window` already read from the file at `next`
    /// (what the previous read fetched beyond its frame).
    carried: usize,
    out: Vec<u8>,
    at: usize,
    dctx: zstd::bulk::Decompressor<'static>,
    /// Compressed offset of the frame whose bytes are being returned.
    pub current_frame: u64,
    pub damage: Option<Damage>,
    /// Compressed bytes consumed so far.
    pub consumed: u64,
    /// Bytes actually read from the file (windows included).
    pub read_bytes: u64,
}

/// First read per frame; frames larger than this are read in a second step.
const FIRST_READ: usize = 128 << 10;

impl<F: std::os::unix::fs::FileExt> FrameReader<F> {
    pub fn new(file: F, len: u64, start: u64) -> Result<Self> {
        Ok(FrameReader {
            file,
            len,
            next: start,
            window: vec![0u8; MAX_COMPRESSED_FRAME],
            carried: 0,
            out: Vec::with_capacity(FRAME_MAX),
            at: 0,
            dctx: zstd::bulk::Decompressor::new()?,
            current_frame: start,
            damage: None,
            consumed: 0,
            read_bytes: 0,
        })
    }

    /// Load the next non-skippable frame; `Ok(false)` at the end of the file.
    fn load(&mut self) -> std::io::Result<bool> {
        loop {
            if self.next >= self.len {
                return Ok(false);
            }
            // Read a small window first and grow it only when the frame needs
            // more, so reaching one small member reads little of the file.
            let max = ((self.len - self.next) as usize).min(self.window.len());
            let mut got = std::mem::take(&mut self.carried).min(max);
            let mut want = max.min(FIRST_READ).max(got);
            // Bytes that cannot be read (an encrypted archive's chunk that
            // fails authentication) damage the frame holding them, as bytes
            // that do not decode do: reading can resume at a later frame.
            let mut unreadable = None;
            loop {
                while got < want {
                    let n = match self
                        .file
                        .read_at(&mut self.window[got..want], self.next + got as u64)
                    {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                            unreadable = Some(e.to_string());
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        break;
                    }
                    got += n;
                    self.read_bytes += n as u64;
                }
                let fits = matches!(zstd::zstd_safe::find_frame_compressed_size(&self.window[..got]), Ok(n) if n <= got);
                if fits || want == max || got < want {
                    break;
                }
                want = max;
            }
            let buf = &self.window[..got];
            let offset = self.next;
            let damaged = |this: &mut Self, reason: String| {
                this.damage = Some(Damage {
                    frame_offset: offset,
                    reason: reason.clone(),
                });
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("zstd frame at offset {offset} is corrupt: {reason}"),
                )
            };
            let size = match zstd::zstd_safe::find_frame_compressed_size(buf) {
                Ok(n) if n <= got && n >= 4 => n,
                _ => {
                    if let Some(why) = unreadable {
                        return Err(damaged(self, format!("its bytes cannot be read: {why}")));
                    }
                    let reason = if self.next + (got as u64) >= self.len {
                        "the file ends inside this frame (truncated archive)"
                    } else {
                        "frame header or block structure is damaged"
                    };
                    return Err(damaged(self, reason.to_string()));
                }
            };
            self.next += size as u64;
            self.consumed += size as u64;
            let magic = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
            let skippable = magic & 0xFFFF_FFF0 == 0x184D_2A50; // our index
            if !skippable {
                self.out.clear();
                // The decoder's own message ("Destination buffer is too
                // small", ...) means nothing to a reader: say what it implies.
                if self
                    .dctx
                    .decompress_to_buffer(&buf[..size], &mut self.out)
                    .is_err()
                {
                    let reason = "its compressed data does not decode (damaged bytes)";
                    return Err(damaged(self, reason.to_string()));
                }
            }
            // Keep what was read past this frame: the next frame starts there,
            // so a sequential read fetches every byte of the file once.
            self.window.copy_within(size..got, 0);
            self.carried = got - size;
            if skippable {
                continue;
            }
            self.current_frame = offset;
            self.at = 0;
            return Ok(true);
        }
    }

    /// Compressed offset where the next frame starts.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Where the next byte returned comes from: (frame offset, offset in frame).
    pub fn position(&self) -> (u64, u64) {
        if self.at == self.out.len() {
            (self.next, 0)
        } else {
            (self.current_frame, self.at as u64)
        }
    }
}

impl<F: std::os::unix::fs::FileExt> Read for FrameReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.damage.is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "reading stopped at a damaged frame",
            ));
        }
        while self.at == self.out.len() {
            if !self.load()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
