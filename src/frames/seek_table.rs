//! The Zstandard Seekable Format's seek table (facebook/zstd
//! `contrib/seekable_format`, format 0.1.0): a skippable frame that must be
//! the last bytes of the file, listing the compressed and decompressed size
//! (and, with the checksum flag, the low 32 bits of the XXH64 of the
//! decompressed data) of every frame before it. Standard readers (pyzstd's
//! `SeekableZstdFile`, t2sz, zeekstd) use it to reach any frame directly;
//! `zstd -d`, `tar --zstd` and bsdtar skip it like any skippable frame.
//!
//! datamig writes the table itself rather than through `zeekstd` or
//! `zstd-framed`: their writers own the compression, while datamig's frames
//! are compressed on every core and placed by its own pipeline. Only the
//! hash comes from a crate (`xxhash-rust`).

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Result, anyhow, bail};

/// The seek table's skippable-frame magic (the spec's `Skippable_Magic_Number`).
pub const TABLE_MAGIC: u32 = 0x184D_2A5E;
/// `Seekable_Magic_Number`: the file's last four bytes.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// `Checksum_Flag`, bit 7 of `Seek_Table_Descriptor`.
const CHECKSUM_FLAG: u8 = 0x80;
/// Bits 6-2 of the descriptor: a compliant reader refuses them set.
const RESERVED_BITS: u8 = 0x7C;
/// `Number_Of_Frames` (4) + `Seek_Table_Descriptor` (1) + magic (4).
const FOOTER_LEN: u64 = 9;
/// Most entries read: libzstd's `ZSTD_SEEKABLE_MAXFRAMES`, so a damaged
/// count cannot make a reader allocate gigabytes.
const MAX_FRAMES: u32 = 0x0800_0000;

/// One frame as the seek table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekEntry {
    pub compressed: u32,
    pub decompressed: u32,
    pub checksum: Option<u32>,
}

impl SeekEntry {
    /// The entry of a frame of `compressed` bytes holding `data`; an error
    /// when either size does not fit the format's 32 bits (datamig's frames
    /// hold at most `FRAME_MAX` = 4 MiB, so only a bug gets there).
    pub fn of(compressed: usize, data: &[u8]) -> Result<SeekEntry> {
        let too_big = |what: &str, n: usize| {
            anyhow!("a {what} of {n} bytes cannot be listed in the seek table (limit 4 GiB)")
        };
        Ok(SeekEntry {
            compressed: u32::try_from(compressed).map_err(|_| too_big("frame", compressed))?,
            decompressed: u32::try_from(data.len())
                .map_err(|_| too_big("frame's content", data.len()))?,
            checksum: Some(xxhash_rust::xxh64::xxh64(data, 0) as u32),
        })
    }

    /// The entry of `frame`, a zstd frame written with its content checksum
    /// and holding `decompressed` bytes. Both formats define the checksum as
    /// the low 32 bits of XXH64(content, seed 0), little-endian, so the
    /// frame's last four bytes are the entry's: the content is not hashed a
    /// second time.
    pub fn of_frame(frame: &[u8], decompressed: usize) -> Result<SeekEntry> {
        let tail = frame
            .len()
            .checked_sub(4)
            .map(|at| &frame[at..])
            .ok_or_else(|| anyhow!("a zstd frame of {} bytes has no checksum", frame.len()))?;
        let mut e = SeekEntry::of(frame.len(), &[])?;
        e.decompressed = u32::try_from(decompressed).map_err(|_| {
            anyhow!("a frame's content of {decompressed} bytes cannot be listed in the seek table (limit 4 GiB)")
        })?;
        e.checksum = Some(u32::from_le_bytes(tail.try_into().expect("four bytes")));
        Ok(e)
    }
}

/// A frame located by the seek table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekFrame {
    /// Compressed offset of the frame in the file.
    pub offset: u64,
    /// Decompressed offset of its first byte in the whole stream.
    pub start: u64,
    pub entry: SeekEntry,
}

/// A seek table read from the end of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekTable {
    pub entries: Vec<SeekEntry>,
    /// Where the seek-table frame itself starts (the end of the listed frames).
    pub table_offset: u64,
}

/// The whole seek-table frame for `entries`, with the checksum flag set
/// (every entry must carry its checksum).
pub fn encode(entries: &[SeekEntry]) -> Result<Vec<u8>> {
    let count = u32::try_from(entries.len())
        .ok()
        .filter(|&n| n <= MAX_FRAMES)
        .ok_or_else(|| anyhow!("{} frames are too many for a seek table", entries.len()))?;
    let body = entries.len() * 12 + FOOTER_LEN as usize;
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body as u32).to_le_bytes());
    for e in entries {
        let sum = e
            .checksum
            .ok_or_else(|| anyhow!("a seek-table entry has no checksum"))?;
        out.extend_from_slice(&e.compressed.to_le_bytes());
        out.extend_from_slice(&e.decompressed.to_le_bytes());
        out.extend_from_slice(&sum.to_le_bytes());
    }
    out.extend_from_slice(&count.to_le_bytes());
    out.push(CHECKSUM_FLAG);
    out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    Ok(out)
}

impl SeekTable {
    /// The seek table at the end of `r`, if its last four bytes are the
    /// seekable magic; an error when they are but the table is malformed.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<Option<SeekTable>> {
        let len = r.seek(SeekFrom::End(0))?;
        if len < 8 + FOOTER_LEN {
            return Ok(None);
        }
        let mut foot = [0u8; FOOTER_LEN as usize];
        r.seek(SeekFrom::End(-(FOOTER_LEN as i64)))?;
        r.read_exact(&mut foot)?;
        if foot[5..] != SEEKABLE_MAGIC.to_le_bytes() {
            return Ok(None);
        }
        let count = u32::from_le_bytes(foot[..4].try_into().expect("4 bytes"));
        let descriptor = foot[4];
        if descriptor & RESERVED_BITS != 0 {
            bail!(
                "the seek table uses reserved descriptor bits ({descriptor:#04x}): a newer format"
            );
        }
        if count > MAX_FRAMES {
            bail!("the seek table claims {count} frames (damaged)");
        }
        let width: u64 = if descriptor & CHECKSUM_FLAG != 0 {
            12
        } else {
            8
        };
        let body = u64::from(count) * width + FOOTER_LEN;
        if body + 8 > len {
            bail!("the seek table is longer than the file (damaged or truncated)");
        }
        let table_offset = len - body - 8;
        r.seek(SeekFrom::Start(table_offset))?;
        let mut raw = vec![0u8; (body + 8) as usize];
        r.read_exact(&mut raw)?;
        let magic = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
        if magic != TABLE_MAGIC || u64::from(size) != body {
            bail!("the seek table's frame header does not match its footer (damaged)");
        }
        let word = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let entries = (0..count as usize)
            .map(|i| {
                let at = 8 + i * width as usize;
                SeekEntry {
                    compressed: word(at),
                    decompressed: word(at + 4),
                    checksum: (width == 12).then(|| word(at + 8)),
                }
            })
            .collect();
        Ok(Some(SeekTable {
            entries,
            table_offset,
        }))
    }

    /// Every listed frame with its compressed and decompressed offsets.
    pub fn frames(&self) -> Vec<SeekFrame> {
        let (mut offset, mut start) = (0u64, 0u64);
        self.entries
            .iter()
            .map(|&entry| {
                let f = SeekFrame {
                    offset,
                    start,
                    entry,
                };
                offset += u64::from(entry.compressed);
                start += u64::from(entry.decompressed);
                f
            })
            .collect()
    }

    /// Whether the listed frames exactly fill the file before the table, as
    /// the spec requires; a table that does not cannot be trusted to seek.
    pub fn covers_file(&self) -> bool {
        self.entries
            .iter()
            .map(|e| u64::from(e.compressed))
            .sum::<u64>()
            == self.table_offset
    }
}

/// What is wrong with the seek table at the end of `r`, if there is one:
/// `verify` reports it, since seekable readers would otherwise read the
/// wrong bytes without noticing.
pub fn table_problem<R: Read + Seek>(r: &mut R) -> Option<String> {
    match SeekTable::read(r) {
        Ok(Some(t)) if !t.covers_file() => {
            let sum: u64 = t.entries.iter().map(|e| u64::from(e.compressed)).sum();
            Some(format!(
                "its frames add up to {sum} bytes but the table starts at offset {}",
                t.table_offset
            ))
        }
        Ok(_) => None,
        Err(e) => Some(format!("{e:#}")),
    }
}

/// Largest frame a `SeekStream` decodes into memory: libzstd's seekable
/// format caps frames at 1 GiB; 256 MiB keeps a restore's memory modest and
/// is far above what t2sz, pyzstd or datamig write.
pub const MAX_STREAM_FRAME: u32 = 256 << 20;

/// The decompressed stream of a seekable file, read frame by frame through
/// its seek table: `seek_to` jumps to any decompressed offset, and only the
/// frames actually read are fetched and decoded.
pub struct SeekStream<F> {
    file: F,
    /// Frames with content (skippable ones are left out), by `start`.
    frames: Vec<SeekFrame>,
    /// Index in `frames` of the frame held in `out`.
    loaded: Option<usize>,
    out: Vec<u8>,
    /// Decompressed offset of the next byte `read` returns.
    pos: u64,
    dctx: zstd::bulk::Decompressor<'static>,
    /// Compressed bytes fetched from the file.
    pub read_bytes: u64,
}

impl<F: std::os::unix::fs::FileExt> SeekStream<F> {
    /// A stream over `table`'s frames; an error when a frame is larger than
    /// `MAX_STREAM_FRAME`.
    pub fn new(file: F, table: &SeekTable) -> Result<SeekStream<F>> {
        let frames: Vec<SeekFrame> = table
            .frames()
            .into_iter()
            .filter(|f| f.entry.decompressed > 0)
            .collect();
        // Both sizes bound what one frame allocates, whatever the table says.
        let max_compressed = zstd::zstd_safe::compress_bound(MAX_STREAM_FRAME as usize) as u64;
        if let Some(f) = frames.iter().find(|f| {
            f.entry.decompressed > MAX_STREAM_FRAME
                || u64::from(f.entry.compressed) > max_compressed
        }) {
            bail!(
                "the seek table lists a frame of {} MiB ({} MiB compressed) at offset {}, larger than the {} MiB datamig decodes at once",
                f.entry.decompressed >> 20,
                f.entry.compressed >> 20,
                f.offset,
                MAX_STREAM_FRAME >> 20
            );
        }
        Ok(SeekStream {
            file,
            frames,
            loaded: None,
            out: Vec::new(),
            pos: 0,
            dctx: zstd::bulk::Decompressor::new()?,
            read_bytes: 0,
        })
    }

    /// Continue reading at decompressed offset `pos` (nothing is read yet).
    pub fn seek_to(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// Fetch and decode frame `i`, checking its size and seek-table checksum.
    fn load(&mut self, i: usize) -> std::io::Result<()> {
        let f = self.frames[i];
        let bad = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("zstd frame at offset {}: {why}", f.offset),
            )
        };
        let mut raw = vec![0u8; f.entry.compressed as usize];
        self.file.read_exact_at(&mut raw, f.offset)?;
        self.read_bytes += raw.len() as u64;
        self.loaded = None;
        self.out.clear();
        self.out.reserve(f.entry.decompressed as usize);
        self.dctx
            .decompress_to_buffer(&raw, &mut self.out)
            .map_err(|_| bad("its compressed data does not decode (damaged bytes)".into()))?;
        if self.out.len() != f.entry.decompressed as usize {
            return Err(bad(format!(
                "it holds {} bytes where the seek table says {}",
                self.out.len(),
                f.entry.decompressed
            )));
        }
        if let Some(sum) = f.entry.checksum
            && xxhash_rust::xxh64::xxh64(&self.out, 0) as u32 != sum
        {
            return Err(bad(
                "its content does not match the seek table's checksum".into()
            ));
        }
        self.loaded = Some(i);
        Ok(())
    }
}

impl<F: std::os::unix::fs::FileExt> Read for SeekStream<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let i = self.frames.partition_point(|f| f.start <= self.pos);
        let Some(i) = i.checked_sub(1) else {
            return Ok(0);
        };
        let f = self.frames[i];
        let within = self.pos - f.start;
        if within >= u64::from(f.entry.decompressed) {
            return Ok(0); // past the last frame
        }
        if self.loaded != Some(i) {
            self.load(i)?;
        }
        let avail = &self.out[within as usize..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_written_table_reads_back_and_covers_its_frames() {
        let a = SeekEntry::of(10, b"hello").unwrap();
        let b = SeekEntry::of(7, b"").unwrap();
        let mut file = vec![0u8; 17];
        file.extend(encode(&[a, b]).unwrap());
        let t = SeekTable::read(&mut Cursor::new(&file)).unwrap().unwrap();
        assert_eq!(t.entries, vec![a, b]);
        assert_eq!(t.table_offset, 17);
        assert!(t.covers_file());
        assert_eq!(t.frames()[1].offset, 10);
        assert_eq!(t.frames()[1].start, 5);
        // XXH64("") = 0xEF46DB3751D8E999: the checksum is its low 32 bits.
        assert_eq!(b.checksum, Some(0x51D8_E999));
    }

    #[test]
    fn the_entry_of_a_checksummed_frame_is_the_entry_of_its_content() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.include_checksum(true).unwrap();
        for data in [&b""[..], b"x", &[7u8; 100_000]] {
            let frame = c.compress(data).unwrap();
            assert_eq!(
                SeekEntry::of_frame(&frame, data.len()).unwrap(),
                SeekEntry::of(frame.len(), data).unwrap()
            );
        }
        assert!(SeekEntry::of_frame(b"abc", 0).is_err());
    }

    #[test]
    fn a_file_without_the_seekable_magic_has_no_table() {
        let file = vec![7u8; 64];
        assert_eq!(SeekTable::read(&mut Cursor::new(&file)).unwrap(), None);
    }

    #[test]
    fn damaged_or_cut_tables_never_panic() {
        let entries = [
            SeekEntry::of(3, b"abc").unwrap(),
            SeekEntry::of(5, b"").unwrap(),
        ];
        let mut file = vec![0u8; 8];
        file.extend(encode(&entries).unwrap());
        for cut in 0..file.len() {
            let _ = SeekTable::read(&mut Cursor::new(&file[cut..]));
            let _ = SeekTable::read(&mut Cursor::new(&file[..cut]));
        }
        for i in 0..file.len() {
            for bit in 0..8 {
                let mut f = file.clone();
                f[i] ^= 1 << bit;
                if let Ok(Some(t)) = SeekTable::read(&mut Cursor::new(&f)) {
                    let _ = t.frames();
                    let _ = t.covers_file();
                }
            }
        }
    }

    #[test]
    fn a_count_longer_than_the_file_is_damage() {
        let mut file = encode(&[SeekEntry::of(1, b"x").unwrap()]).unwrap();
        let n = file.len();
        file[n - 9..n - 5].copy_from_slice(&1000u32.to_le_bytes());
        assert!(SeekTable::read(&mut Cursor::new(&file)).is_err());
    }
}
