//! The tar format datamig writes and reads: GNU headers, written by hand so that
//! long and non-UTF-8 names (`L`/`K` members), old-GNU sparse files (`S`),
//! hard links, and sizes over 8 GiB (base-256 numbers) are all under our control.
//! FIFOs (`6`) and devices (`3`/`4` with devmajor/devminor) are written as
//! GNU tar writes them; xattrs and ACLs go in a PAX `x` header before the
//! member (`SCHILY.xattr.*`, `SCHILY.acl.*`, see [`encode_member`]), which
//! GNU tar and bsdtar read in GNU-format archives too.
//!
//! The reader reads what GNU tar (every `--format`, every `--sparse-version`)
//! and bsdtar write: PAX local and global records (`path`, `linkpath`, `size`,
//! `mtime` to the nanosecond, `uid`, `gid`, `uname`, `gname`, `GNU.sparse.*`,
//! `SCHILY.xattr.*`), GNU `L`/`K`, old-GNU sparse maps, V7 directories, FIFOs
//! and devices. What it cannot take as written it still reads past whenever
//! the stream position allows: unknown typeflags become regular files (as
//! POSIX says) and over-large records refuse only their own member, each with
//! a note in [`Found`], so one odd member never ends a restore. Names are not
//! judged here; restore checks them. It is datamig's own reader rather than
//! `tar::Archive::entries` because restore needs each member's stream offset,
//! the old-GNU and PAX 1.0 sparse maps as regions, and bounded allocation on
//! untrusted input, all of which it already had.

use std::io::{self, Read};

use anyhow::{Result, anyhow, bail};

pub const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberKind {
    #[default]
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Only in foreign archives (typeflags `6`, `3`, `4`).
    Fifo,
    CharDev,
    BlockDev,
}

/// A data region of a sparse file: `len` bytes at logical `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberHeader {
    pub path: Vec<u8>,
    pub kind: MemberKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Logical size (a sparse file's real size).
    pub size: u64,
    pub link: Option<Vec<u8>>,
    /// Data regions for a sparse file; `None` for a dense one.
    pub sparse: Option<Vec<Region>>,
}

impl MemberHeader {
    /// Bytes of data following the header(s) in the stream, before padding.
    pub fn stored_size(&self) -> u64 {
        match (&self.kind, &self.sparse) {
            (MemberKind::File, Some(r)) => r.iter().map(|r| r.len).sum(),
            (MemberKind::File, None) => self.size,
            _ => 0,
        }
    }
}

pub fn padding(n: u64) -> usize {
    ((BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64) as usize
}

// ---------------------------------------------------------------- writing

fn put_num(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if digits < 22 && v < (1u64 << (3 * digits)) {
        let s = format!("{v:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        // GNU base-256: high bit set, big-endian value.
        field.fill(0);
        field[0] = 0x80;
        let be = v.to_be_bytes();
        let n = be.len().min(field.len() - 1);
        let flen = field.len();
        field[flen - n..].copy_from_slice(&be[be.len() - n..]);
    }
}

fn put_signed(field: &mut [u8], v: i64) {
    if v >= 0 {
        put_num(field, v as u64);
    } else {
        field.fill(0xff);
        let be = v.to_be_bytes();
        let flen = field.len();
        field[flen - 8..].copy_from_slice(&be);
    }
}

#[allow(clippy::too_many_arguments)] // one argument per tar header field
fn header_block(
    name: &[u8],
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &[u8],
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    put_num(&mut h[100..108], mode as u64);
    put_num(&mut h[108..116], uid);
    put_num(&mut h[116..124], gid);
    put_num(&mut h[124..136], size);
    put_signed(&mut h[136..148], mtime);
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    h
}

fn seal(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

fn long_member(out: &mut Vec<u8>, typeflag: u8, value: &[u8]) {
    let mut h = header_block(
        b"././@LongLink",
        typeflag,
        0o644,
        0,
        0,
        value.len() as u64 + 1,
        0,
        b"",
    );
    seal(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(value);
    out.push(0);
    out.resize(out.len() + padding(value.len() as u64 + 1), 0);
}

/// What a member carries beyond [`MemberHeader`] when datamig writes it: a
/// device's numbers and PAX extended records (`SCHILY.xattr.*`,
/// `SCHILY.acl.*`, as GNU tar `--xattrs --acls` writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub rdev: Option<(u32, u32)>,
    /// PAX records, key then value, written in this order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One PAX record: `"%d %s=%s\n"`, the length counting its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Encode the header block(s) for a member; its data (stored_size bytes, then
/// padding) follows.
pub fn encode_header(m: &MemberHeader) -> Vec<u8> {
    encode_member(m, &Extra::default())
}

/// [`encode_header`] with device numbers and PAX records: the records go in
/// an `x` member before the GNU `L`/`K` ones, which GNU tar and bsdtar both
/// apply to the next real header.
pub fn encode_member(m: &MemberHeader, extra: &Extra) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK * 2);
    if !extra.pax.is_empty() {
        let mut recs = Vec::new();
        for (k, v) in &extra.pax {
            pax_record(&mut recs, k, v);
        }
        let mut h = header_block(
            b"././@PaxHeader",
            b'x',
            0o644,
            0,
            0,
            recs.len() as u64,
            m.mtime,
            b"",
        );
        seal(&mut h);
        out.extend_from_slice(&h);
        let n = recs.len() as u64;
        out.extend_from_slice(&recs);
        out.resize(out.len() + padding(n), 0);
    }
    let mut name = m.path.clone();
    if m.kind == MemberKind::Dir && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let link = m.link.clone().unwrap_or_default();
    if link.len() > 100 {
        long_member(&mut out, b'K', &link);
    }
    if name.len() > 100 {
        long_member(&mut out, b'L', &name);
    }
    let (typeflag, size) = match (m.kind, &m.sparse) {
        (MemberKind::File, Some(_)) => (b'S', m.stored_size()),
        (MemberKind::File, None) => (b'0', m.size),
        (MemberKind::Dir, _) => (b'5', 0),
        (MemberKind::Symlink, _) => (b'2', 0),
        (MemberKind::Hardlink, _) => (b'1', 0),
        (MemberKind::Fifo, _) => (b'6', 0),
        (MemberKind::CharDev, _) => (b'3', 0),
        (MemberKind::BlockDev, _) => (b'4', 0),
    };
    let mut h = header_block(&name, typeflag, m.mode, m.uid, m.gid, size, m.mtime, &link);
    if let Some((major, minor)) = extra.rdev {
        put_num(&mut h[329..337], major as u64);
        put_num(&mut h[337..345], minor as u64);
    }
    let mut ext: Vec<[u8; BLOCK]> = Vec::new();
    if let Some(regions) = &m.sparse {
        let mut map = regions.clone();
        // GNU tar ends a map on a hole with a zero-length region at the real size.
        if map.last().is_none_or(|r| r.offset + r.len < m.size) {
            map.push(Region {
                offset: m.size,
                len: 0,
            });
        }
        put_num(&mut h[483..495], m.size);
        let (first, rest) = map.split_at(map.len().min(4));
        for (i, r) in first.iter().enumerate() {
            let at = 386 + i * 24;
            put_num(&mut h[at..at + 12], r.offset);
            put_num(&mut h[at + 12..at + 24], r.len);
        }
        for chunk in rest.chunks(21) {
            let mut b = [0u8; BLOCK];
            for (i, r) in chunk.iter().enumerate() {
                put_num(&mut b[i * 24..i * 24 + 12], r.offset);
                put_num(&mut b[i * 24 + 12..i * 24 + 24], r.len);
            }
            ext.push(b);
        }
        if !ext.is_empty() {
            h[482] = 1;
        }
        let n = ext.len();
        for (i, b) in ext.iter_mut().enumerate() {
            if i + 1 < n {
                b[504] = 1;
            }
        }
    }
    seal(&mut h);
    out.extend_from_slice(&h);
    for b in &ext {
        out.extend_from_slice(b);
    }
    out
}

/// Two zero blocks end a tar stream.
pub const END_OF_ARCHIVE: [u8; BLOCK * 2] = [0u8; BLOCK * 2];

// ---------------------------------------------------------------- reading

fn parse_num(field: &[u8]) -> Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] == 0xff {
            bail!("negative number where none is allowed");
        }
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            if v >> 56 != 0 {
                bail!("number too large");
            }
            v = (v << 8) | b as u64;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|&b| b != b' ')
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&s).map_err(|_| anyhow!("number field is not octal"))?;
    u64::from_str_radix(s, 8).map_err(|_| anyhow!("number field {s:?} is not octal"))
}

fn parse_signed(field: &[u8]) -> Result<i64> {
    if field.first() == Some(&0xff) {
        let mut b = [0xffu8; 8];
        let n = field.len().min(8);
        b[8 - n..].copy_from_slice(&field[field.len() - n..]);
        return Ok(i64::from_be_bytes(b));
    }
    let v = parse_num(field)?;
    i64::try_from(v).map_err(|_| anyhow!("time out of range"))
}

fn cstr(field: &[u8]) -> &[u8] {
    let n = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..n]
}

/// Refuse declared sizes that no honest archive of this tool has: bounds the
/// memory a hostile `L`/`K`/`x` member can make us allocate.
const MAX_META: u64 = 1 << 20;

/// Largest extended header (`x` or `g` member) read: a hostile size cannot
/// make us allocate more, yet an honest 8 MB record (a big xattr) is read.
pub const MAX_PAX: u64 = 64 << 20;

/// Most regions accepted in one sparse map.
const MAX_REGIONS: usize = 1 << 20;

/// A member as found in the stream, with where its first header block began.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub header: MemberHeader,
    /// Offset of the member's first block (an `L`/`K`/`x` block if present).
    pub offset: u64,
    /// The PAX `mtime` in nanoseconds (sub-second, pre-1970), when given.
    pub mtime_ns: Option<i64>,
    /// (major, minor) of a character or block device.
    pub rdev: Option<(u32, u32)>,
    pub uname: Option<Vec<u8>>,
    pub gname: Option<Vec<u8>>,
    /// `SCHILY.xattr.NAME` / `LIBARCHIVE.xattr.NAME` records (the latter
    /// decoded), in order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `SCHILY.acl.access` / `SCHILY.acl.default`: ACLs in text form.
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    /// How this member was read differently from what its header says
    /// (unknown typeflag taken as a file, V7 directory, ...), in words.
    pub notes: Vec<String>,
    /// Why the member cannot be restored at all; its data is skipped.
    pub refused: Option<String>,
}

/// What the PAX records (global ones first, then the member's own) say.
#[derive(Debug, Clone, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    mtime_ns: Option<i64>,
    uid: Option<u64>,
    gid: Option<u64>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    acl_access: Option<Vec<u8>>,
    acl_default: Option<Vec<u8>>,
    sparse: SparsePax,
    /// Records that could not be used, in words.
    bad: Vec<String>,
}

/// `GNU.sparse.*` records of the three PAX sparse formats.
#[derive(Debug, Clone, Default)]
struct SparsePax {
    /// 0.0: `GNU.sparse.offset`/`numbytes` pairs; 0.1: `GNU.sparse.map`.
    map: Vec<u64>,
    /// `GNU.sparse.size` (0.x) or `GNU.sparse.realsize` (1.0).
    size: Option<u64>,
    name: Option<Vec<u8>>,
    major: Option<u64>,
    minor: Option<u64>,
    any: bool,
}

fn dec<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A PAX `mtime` record's value for `ns` (`1700000000.123456789`, `-1.5`),
/// or none when the header's whole seconds already say it all.
pub fn pax_mtime(ns: i64) -> Option<Vec<u8>> {
    if ns % 1_000_000_000 == 0 {
        return None;
    }
    let abs = ns.unsigned_abs();
    let frac = format!("{:09}", abs % 1_000_000_000);
    let sign = if ns < 0 { "-" } else { "" };
    let v = format!(
        "{sign}{}.{}",
        abs / 1_000_000_000,
        frac.trim_end_matches('0')
    );
    Some(v.into_bytes())
}

/// A PAX time (`-12.5`, `1700000000.123456789`) in nanoseconds.
fn pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ns: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        ns += (d - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    let total = secs.checked_mul(1_000_000_000)?.checked_add(ns)?;
    Some(if neg { -total } else { total })
}

/// libarchive's form: the name %-encoded, the value base64.
fn libarchive_xattr(name: &[u8], v: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    let mut n = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = std::str::from_utf8(name.get(i + 1..i + 3)?).ok()?;
            n.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            n.push(name[i]);
            i += 1;
        }
    }
    let trimmed: Vec<u8> = v.iter().copied().filter(|&b| b != b'=').collect();
    let value = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&trimmed)
        .ok()?;
    Some((n, value))
}

impl Pax {
    fn apply(&mut self, k: &[u8], v: Vec<u8>) {
        let num = |v: &[u8], bad: &mut Vec<String>, what: &str| {
            let n = dec::<u64>(v);
            if n.is_none() {
                bad.push(format!(
                    "PAX {what} {:?} is not a number; ignored",
                    String::from_utf8_lossy(v)
                ));
            }
            n
        };
        match k {
            b"path" => self.path = Some(v),
            b"linkpath" => self.linkpath = Some(v),
            b"size" => self.size = num(&v, &mut self.bad, "size").or(self.size),
            b"uid" => self.uid = num(&v, &mut self.bad, "uid").or(self.uid),
            b"gid" => self.gid = num(&v, &mut self.bad, "gid").or(self.gid),
            b"uname" => self.uname = Some(v),
            b"gname" => self.gname = Some(v),
            b"mtime" => match pax_time(&v) {
                Some(t) => self.mtime_ns = Some(t),
                None => self.bad.push(format!(
                    "PAX mtime {:?} is not a time; the header's seconds were used",
                    String::from_utf8_lossy(&v)
                )),
            },
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                self.sparse.any = true;
                match dec::<u64>(&v) {
                    Some(n) if self.sparse.map.len() < 2 * MAX_REGIONS => self.sparse.map.push(n),
                    _ => self
                        .bad
                        .push("bad GNU.sparse.offset/numbytes record".into()),
                }
            }
            b"GNU.sparse.map" => {
                self.sparse.any = true;
                let nums: Option<Vec<u64>> = v
                    .split(|&b| b == b',')
                    .filter(|x| !x.is_empty())
                    .map(dec::<u64>)
                    .collect();
                match nums {
                    Some(n) if n.len() <= 2 * MAX_REGIONS => self.sparse.map = n,
                    _ => self.bad.push("bad GNU.sparse.map record".into()),
                }
            }
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                self.sparse.any = true;
                self.sparse.size = num(&v, &mut self.bad, "GNU.sparse.size");
            }
            b"GNU.sparse.name" => {
                self.sparse.any = true;
                self.sparse.name = Some(v);
            }
            b"GNU.sparse.major" => {
                self.sparse.any = true;
                self.sparse.major = dec(&v);
            }
            b"GNU.sparse.minor" => self.sparse.minor = dec(&v),
            b"GNU.sparse.numblocks" => self.sparse.any = true,
            b"SCHILY.acl.access" => self.acl_access = Some(v),
            b"SCHILY.acl.default" => self.acl_default = Some(v),
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    self.xattrs.push((name.to_vec(), v));
                } else if let Some(name) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                    match libarchive_xattr(name, &v) {
                        Some(kv) => self.xattrs.push(kv),
                        None => self.bad.push(format!(
                            "LIBARCHIVE.xattr record for {:?} cannot be decoded; ignored",
                            String::from_utf8_lossy(name)
                        )),
                    }
                }
            }
        }
    }
}

/// Streaming reader over an uncompressed tar stream.
pub struct TarReader<R: Read> {
    r: R,
    pos: u64,
    /// Data bytes (plus padding) of the current member not yet consumed.
    pending: u64,
    pending_pad: usize,
    done: bool,
    buf: Vec<u8>,
    /// Records of the `g` headers met so far: they apply to every later member.
    global: Pax,
    /// Whether a `g` header was applied: a reader that starts mid-stream
    /// cannot know those records (verify's parallel check falls back then).
    saw_global: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            pending: 0,
            pending_pad: 0,
            done: false,
            buf: Vec::new(),
            global: Pax::default(),
            saw_global: false,
        }
    }

    /// Start at a known stream offset (e.g. a member decoded from a frame).
    pub fn at(r: R, pos: u64) -> Self {
        TarReader {
            r,
            pos,
            pending: 0,
            pending_pad: 0,
            done: false,
            buf: Vec::new(),
            global: Pax::default(),
            saw_global: false,
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn into_inner(self) -> R {
        self.r
    }

    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// Whether a global (`g`) PAX header has been applied so far.
    pub fn saw_global(&self) -> bool {
        self.saw_global
    }

    fn read_block(&mut self, b: &mut [u8; BLOCK]) -> Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut b[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += got as u64;
        match got {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => bail!("stream ends inside a header at offset {}", self.pos),
        }
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                anyhow!("stream ends inside a member's data (truncated archive)")
            } else {
                anyhow!(e)
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.read_exact_counted(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>> {
        if size > MAX_META {
            bail!(
                "metadata member of {size} bytes is larger than any name or record datamig accepts"
            );
        }
        let mut v = vec![0u8; size as usize];
        self.read_exact_counted(&mut v)?;
        self.skip(padding(size) as u64)?;
        Ok(v)
    }

    /// Bytes (data and padding) of the current member not yet consumed: a
    /// reader that can seek jumps over them instead of reading them.
    pub fn data_left(&self) -> u64 {
        self.pending + self.pending_pad as u64
    }

    /// Skip whatever is left of the current member's data.
    pub fn skip_data(&mut self) -> Result<()> {
        let (n, pad) = (self.pending, self.pending_pad);
        self.pending = 0;
        self.pending_pad = 0;
        self.skip(n + pad as u64)
    }

    /// Skip an `x`/`g` member's data without reading it into memory.
    fn skip_meta(&mut self, size: u64) -> Result<()> {
        self.skip(size)?;
        self.skip(padding(size) as u64)
    }

    /// The next member, or `None` at the end-of-archive marker. A stream that
    /// simply stops without the marker is an error (truncation).
    pub fn next_member(&mut self) -> Result<Option<Found>> {
        if self.done {
            return Ok(None);
        }
        self.skip_data()?;
        let start = self.pos;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax = self.global.clone();
        pax.bad.clear();
        let mut refused: Option<String> = None;
        let mut b = [0u8; BLOCK];
        loop {
            if !self.read_block(&mut b)? {
                bail!(
                    "stream ends at offset {} without the end-of-archive marker (truncated archive)",
                    self.pos
                );
            }
            if b.iter().all(|&x| x == 0) {
                if !self.read_block(&mut b)? || b.iter().any(|&x| x != 0) {
                    bail!(
                        "a single zero block at offset {} where the end-of-archive marker needs two",
                        self.pos - BLOCK as u64
                    );
                }
                self.done = true;
                return Ok(None);
            }
            check_sum(&b)
                .map_err(|e| anyhow!("header at offset {}: {e}", self.pos - BLOCK as u64))?;
            let typeflag = b[156];
            let size = parse_num(&b[124..136])?;
            match typeflag {
                b'L' => long_name = Some(trim_nul(self.read_meta(size)?)),
                b'K' => long_link = Some(trim_nul(self.read_meta(size)?)),
                b'x' | b'g' | b'X' if size > MAX_PAX => {
                    self.skip_meta(size)?;
                    refused = Some(format!(
                        "its PAX extended header is {size} bytes, over datamig's limit of {MAX_PAX} bytes; member not restored"
                    ));
                }
                b'x' | b'X' => {
                    let rec = self.read_pax_meta(size)?;
                    match parse_pax(&rec) {
                        Ok(kvs) => kvs.into_iter().for_each(|(k, v)| pax.apply(&k, v)),
                        Err(e) => refused = Some(format!("its PAX extended header: {e}")),
                    }
                }
                b'g' => {
                    let rec = self.read_pax_meta(size)?;
                    // Each global header's xattrs replace the last one's, so
                    // a stream of them cannot pile up memory.
                    self.global.xattrs.clear();
                    self.saw_global = true;
                    if let Ok(kvs) = parse_pax(&rec) {
                        for (k, v) in kvs {
                            self.global.apply(&k, v.clone());
                            pax.apply(&k, v);
                        }
                    }
                }
                _ => break,
            }
        }
        let mut found = self.decode(&b, long_name, long_link, pax)?;
        found.offset = start;
        if refused.is_some() {
            found.refused = refused;
        }
        Ok(Some(found))
    }

    fn read_pax_meta(&mut self, size: u64) -> Result<Vec<u8>> {
        let mut v = vec![0u8; size as usize];
        self.read_exact_counted(&mut v)?;
        self.skip(padding(size) as u64)?;
        Ok(v)
    }

    /// The member whose header block is `b`, with the names and records
    /// gathered before it; sets how much data follows.
    fn decode(
        &mut self,
        b: &[u8; BLOCK],
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Pax,
    ) -> Result<Found> {
        let typeflag = b[156];
        let ustar = &b[257..263] == b"ustar\0";
        let header_name = || {
            let mut p = cstr(&b[345..500]).to_vec();
            let name = cstr(&b[..100]);
            // ustar prefix field (only in POSIX ustar headers, not GNU ones).
            if ustar && !p.is_empty() {
                p.push(b'/');
                p.extend_from_slice(name);
                p
            } else {
                name.to_vec()
            }
        };
        let mut path = pax.path.clone().or(long_name).unwrap_or_else(header_name);
        let link = pax
            .linkpath
            .clone()
            .or(long_link)
            .unwrap_or_else(|| cstr(&b[157..257]).to_vec());
        let mut f = Found {
            mtime_ns: pax.mtime_ns,
            uname: pax
                .uname
                .clone()
                .or_else(|| Some(cstr(&b[265..297]).to_vec())),
            gname: pax
                .gname
                .clone()
                .or_else(|| Some(cstr(&b[297..329]).to_vec())),
            xattrs: pax.xattrs.clone(),
            acl_access: pax.acl_access.clone(),
            acl_default: pax.acl_default.clone(),
            notes: pax.bad.clone(),
            ..Default::default()
        };
        f.uname = f.uname.filter(|n| !n.is_empty());
        f.gname = f.gname.filter(|n| !n.is_empty());
        let mode = (parse_num(&b[100..108])? & 0o7777) as u32;
        let uid = match pax.uid {
            Some(u) => u,
            None => parse_num(&b[108..116])?,
        };
        let gid = match pax.gid {
            Some(g) => g,
            None => parse_num(&b[116..124])?,
        };
        let mtime = match pax.mtime_ns {
            Some(ns) => ns.div_euclid(1_000_000_000),
            None => parse_signed(&b[136..148])?,
        };
        let stored = match pax.size {
            Some(s) => s,
            None => parse_num(&b[124..136])?,
        };
        let v7_dir = matches!(typeflag, b'0' | 0) && path.ends_with(b"/");
        let (kind, size, sparse, data) = match typeflag {
            _ if v7_dir => {
                f.notes.push(format!(
                    "pre-POSIX directory (type {:?}, name ending in '/'{}); restored as a directory",
                    typeflag as char,
                    if stored > 0 { ", with data skipped" } else { "" }
                ));
                (MemberKind::Dir, 0, None, stored)
            }
            b'0' | 0 | b'7' if pax.sparse.any => {
                let (real, regions, data) = self.pax_sparse(&pax.sparse, stored)?;
                if let Some(n) = &pax.sparse.name {
                    path = n.clone();
                }
                (MemberKind::File, real, Some(regions), data)
            }
            b'0' | 0 | b'7' => (MemberKind::File, stored, None, stored),
            b'5' => (MemberKind::Dir, 0, None, 0),
            b'D' => {
                f.notes.push(
                    "GNU dumpdir (incremental listing); restored as a plain directory".into(),
                );
                (MemberKind::Dir, 0, None, stored)
            }
            b'2' => (MemberKind::Symlink, 0, None, 0),
            b'1' => (MemberKind::Hardlink, 0, None, 0),
            b'6' => (MemberKind::Fifo, 0, None, 0),
            b'3' | b'4' => {
                let major = parse_num(&b[329..337])? as u32;
                let minor = parse_num(&b[337..345])? as u32;
                f.rdev = Some((major, minor));
                let k = if typeflag == b'3' {
                    MemberKind::CharDev
                } else {
                    MemberKind::BlockDev
                };
                (k, 0, None, 0)
            }
            b'S' => {
                let (real, regions) = self.old_gnu_sparse(b, stored)?;
                (MemberKind::File, real, Some(regions), stored)
            }
            t => {
                f.notes.push(format!(
                    "unknown tar type {:?}; restored as a regular file (as POSIX says)",
                    t as char
                ));
                (MemberKind::File, stored, None, stored)
            }
        };
        if kind == MemberKind::Dir {
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
        }
        self.pending = data;
        self.pending_pad = padding(data);
        let link = matches!(kind, MemberKind::Symlink | MemberKind::Hardlink).then_some(link);
        f.header = MemberHeader {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            link,
            sparse,
        };
        Ok(f)
    }

    /// An old-GNU (`S`) sparse map: four regions in the header, more in
    /// extension blocks while their last byte says so.
    fn old_gnu_sparse(&mut self, b: &[u8; BLOCK], stored: u64) -> Result<(u64, Vec<Region>)> {
        let real = parse_num(&b[483..495])?;
        let mut regions = Vec::new();
        for i in 0..4 {
            let at = 386 + i * 24;
            push_region(&mut regions, &b[at..at + 24])?;
        }
        let mut more = b[482] != 0;
        let mut ext = [0u8; BLOCK];
        while more {
            if !self.read_block(&mut ext)? {
                bail!("stream ends inside a sparse map (truncated archive)");
            }
            for i in 0..21 {
                push_region(&mut regions, &ext[i * 24..i * 24 + 24])?;
            }
            more = ext[504] != 0;
            if regions.len() > MAX_REGIONS {
                bail!("sparse map with over a million regions");
            }
        }
        check_regions(&regions, real, stored)?;
        regions.retain(|r| r.len > 0);
        Ok((real, regions))
    }

    /// A PAX sparse file (GNU formats 0.0, 0.1 and 1.0): the real size, the
    /// data regions and how many data bytes follow (after a 1.0 map).
    fn pax_sparse(&mut self, sp: &SparsePax, stored: u64) -> Result<(u64, Vec<Region>, u64)> {
        let (map, data) = if sp.major == Some(1) {
            let (map, used) = self.sparse_map_v1(stored)?;
            (map, stored - used)
        } else {
            (sp.map.clone(), stored)
        };
        if map.len() % 2 != 0 {
            bail!("PAX sparse map has an odd number of values");
        }
        let real = sp
            .size
            .ok_or_else(|| anyhow!("PAX sparse member without GNU.sparse.size/realsize"))?;
        let mut regions: Vec<Region> = map
            .chunks(2)
            .map(|p| Region {
                offset: p[0],
                len: p[1],
            })
            .collect();
        check_regions(&regions, real, data)?;
        regions.retain(|r| r.len > 0);
        Ok((real, regions, data))
    }

    /// The sparse 1.0 map at the start of the data: decimal numbers, one a
    /// line (the count, then offset/size pairs), padded to a block. Returns
    /// the numbers and the bytes the map took.
    fn sparse_map_v1(&mut self, stored: u64) -> Result<(Vec<u64>, u64)> {
        let mut nums: Vec<u64> = Vec::new();
        let mut cur: Option<u64> = None;
        let mut want: Option<usize> = None;
        let mut used = 0u64;
        let mut b = [0u8; BLOCK];
        loop {
            if used + BLOCK as u64 > stored {
                bail!("PAX sparse 1.0 map runs past the member's data");
            }
            if !self.read_block(&mut b)? {
                bail!("stream ends inside a sparse map (truncated archive)");
            }
            used += BLOCK as u64;
            for &c in b.iter() {
                if want.is_some_and(|w| nums.len() == w) {
                    break;
                }
                match c {
                    b'0'..=b'9' => {
                        let v = cur.unwrap_or(0);
                        cur = Some(
                            v.checked_mul(10)
                                .and_then(|v| v.checked_add((c - b'0') as u64))
                                .ok_or_else(|| anyhow!("PAX sparse 1.0 map number too large"))?,
                        );
                    }
                    b'\n' => {
                        let v = cur
                            .take()
                            .ok_or_else(|| anyhow!("bad PAX sparse 1.0 map"))?;
                        match want {
                            None if v as usize > MAX_REGIONS => {
                                bail!("sparse map with over a million regions")
                            }
                            None => want = Some(2 * v as usize),
                            Some(_) => nums.push(v),
                        }
                    }
                    _ => bail!("bad PAX sparse 1.0 map"),
                }
            }
            if want.is_some_and(|w| nums.len() == w) {
                return Ok((nums, used));
            }
        }
    }

    /// Read the current member's stored data in pieces, each with the logical
    /// offset it belongs at. Holes are not produced; callers fill them.
    pub fn read_data(
        &mut self,
        h: &MemberHeader,
        mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let regions = match &h.sparse {
            Some(r) => r.clone(),
            None => vec![Region {
                offset: 0,
                len: self.pending,
            }],
        };
        // One buffer per reader, sized to the largest piece asked for so far:
        // a fresh zeroed 256 KiB per member cost more than hashing small files.
        let mut buf = std::mem::take(&mut self.buf);
        let need = regions
            .iter()
            .map(|r| r.len)
            .max()
            .unwrap_or(0)
            .min(256 << 10) as usize;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let r = self.read_regions(&regions, &mut buf, &mut sink);
        self.buf = buf;
        r?;
        let pad = self.pending_pad;
        self.pending_pad = 0;
        self.skip(pad as u64)
    }

    fn read_regions(
        &mut self,
        regions: &[Region],
        buf: &mut [u8],
        sink: &mut impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        for r in regions.iter().copied() {
            let mut done = 0u64;
            while done < r.len {
                let k = (r.len - done).min(buf.len() as u64) as usize;
                self.read_exact_counted(&mut buf[..k])?;
                self.pending -= k as u64;
                sink(r.offset + done, &buf[..k])?;
                done += k as u64;
            }
        }
        Ok(())
    }
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn push_region(out: &mut Vec<Region>, f: &[u8]) -> Result<()> {
    if f.iter().all(|&b| b == 0) {
        return Ok(());
    }
    out.push(Region {
        offset: parse_num(&f[..12])?,
        len: parse_num(&f[12..24])?,
    });
    Ok(())
}

fn check_regions(regions: &[Region], real: u64, stored: u64) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for r in regions {
        let stop = r
            .offset
            .checked_add(r.len)
            .ok_or_else(|| anyhow!("sparse region overflows"))?;
        if r.offset < end || stop > real {
            bail!("sparse map is out of order or beyond the file's size");
        }
        end = stop;
        total += r.len;
    }
    if total != stored {
        bail!("sparse map holds {total} bytes but the header declares {stored}");
    }
    Ok(())
}

fn check_sum(b: &[u8; BLOCK]) -> Result<()> {
    let recorded = parse_num(&b[148..156])
        .map_err(|_| anyhow!("checksum field is not a number (not a tar header)"))?;
    let mut sum: u64 = 0;
    for (i, &x) in b.iter().enumerate() {
        sum += if (148..156).contains(&i) {
            b' ' as u64
        } else {
            x as u64
        };
    }
    if sum != recorded {
        bail!("header checksum mismatch (damaged or not a tar header)");
    }
    Ok(())
}

fn parse_pax(rec: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = rec;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| anyhow!("bad PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad PAX record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            bail!("bad PAX record");
        }
        let kv = &rest[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| anyhow!("bad PAX record"))?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(path: &[u8], kind: MemberKind) -> MemberHeader {
        MemberHeader {
            path: path.to_vec(),
            kind,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime: 1_700_000_000,
            size: 0,
            link: None,
            sparse: None,
        }
    }

    fn roundtrip(m: &MemberHeader, data: &[u8]) -> (MemberHeader, Vec<u8>) {
        let mut s = encode_header(m);
        s.extend_from_slice(data);
        s.resize(s.len() + padding(data.len() as u64), 0);
        s.extend_from_slice(&END_OF_ARCHIVE);
        let mut r = TarReader::new(&s[..]);
        let f = r.next_member().unwrap().unwrap();
        let mut got = vec![0u8; f.header.size as usize];
        r.read_data(&f.header.clone(), |off, b| {
            got[off as usize..off as usize + b.len()].copy_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert!(r.next_member().unwrap().is_none());
        (f.header, got)
    }

    #[test]
    fn devices_xattrs_and_acls_written_by_datamig_read_back() {
        let mut name = vec![b'n'; 120];
        name.extend_from_slice(b"/dev");
        let m = member(&name, MemberKind::CharDev);
        let extra = Extra {
            rdev: Some((1, 3)),
            pax: vec![
                (b"SCHILY.xattr.user.k".to_vec(), b"v\n=\0\xff".to_vec()),
                (
                    b"SCHILY.acl.access".to_vec(),
                    b"user::rw-\nuser:7:r--\n".to_vec(),
                ),
                // A record whose length gains a digit with its own length.
                (b"SCHILY.xattr.user.l".to_vec(), vec![b'x'; 76]),
            ],
        };
        let mut s = encode_member(&m, &extra);
        s.extend_from_slice(&END_OF_ARCHIVE);
        let mut r = TarReader::new(&s[..]);
        let f = r.next_member().unwrap().unwrap();
        assert_eq!(f.header, m);
        assert_eq!(f.rdev, Some((1, 3)));
        assert_eq!(
            f.xattrs,
            vec![
                (b"user.k".to_vec(), b"v\n=\0\xff".to_vec()),
                (b"user.l".to_vec(), vec![b'x'; 76]),
            ]
        );
        assert_eq!(
            f.acl_access.as_deref(),
            Some(&b"user::rw-\nuser:7:r--\n"[..])
        );
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn long_non_utf8_names_and_links_round_trip() {
        let mut name = vec![b'd'; 150];
        name.extend_from_slice(b"/\xff\xfe");
        let mut m = member(&name, MemberKind::Symlink);
        m.link = Some(vec![b'x'; 300]);
        let (h, _) = roundtrip(&m, b"");
        assert_eq!(h, m);
    }

    #[test]
    fn sparse_map_with_extension_blocks_round_trips() {
        let regions: Vec<Region> = (0..30)
            .map(|i| Region {
                offset: i * 8192,
                len: 10,
            })
            .collect();
        let mut m = member(b"sparse", MemberKind::File);
        m.size = 1 << 20;
        m.sparse = Some(regions.clone());
        let data = vec![7u8; 300];
        let (h, got) = roundtrip(&m, &data);
        assert_eq!(h.sparse.as_deref(), Some(&regions[..]));
        assert_eq!(h.size, 1 << 20);
        assert_eq!(&got[8192..8202], &[7u8; 10]);
        assert_eq!(got[8202], 0);
    }

    #[test]
    fn huge_sizes_and_negative_times_use_base256() {
        let mut f = [0u8; 12];
        put_num(&mut f, 9 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(parse_num(&f).unwrap(), 9 << 30);
        put_signed(&mut f, -5);
        assert_eq!(parse_signed(&f).unwrap(), -5);
        put_num(&mut f, 0o777);
        assert_eq!(&f, b"00000000777\0");
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let m = member(b"a", MemberKind::File);
        let mut s = encode_header(&MemberHeader { size: 5, ..m });
        s.extend_from_slice(b"hel");
        let mut r = TarReader::new(&s[..]);
        let f = r.next_member().unwrap().unwrap();
        assert!(r.read_data(&f.header, |_, _| Ok(())).is_err());
        let garbage = [0x41u8; 1024];
        let e = TarReader::new(&garbage[..])
            .next_member()
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum"), "{e}");
        let e = TarReader::new(&[][..])
            .next_member()
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    fn pax_member(out: &mut Vec<u8>, typeflag: u8, records: &[(&str, &str)]) {
        let mut rec = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut n = body + 1;
            while n.to_string().len() + body != n {
                n = n.to_string().len() + body;
            }
            rec.extend_from_slice(format!("{n} {k}={v}\n").as_bytes());
        }
        let mut h = header_block(b"pax", typeflag, 0o644, 0, 0, rec.len() as u64, 0, b"");
        seal(&mut h);
        out.extend_from_slice(&h);
        out.extend_from_slice(&rec);
        out.resize(out.len() + padding(rec.len() as u64), 0);
    }

    #[test]
    fn pax_times_are_nanoseconds_before_and_after_1970() {
        assert_eq!(
            pax_time(b"1700000000.123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(pax_time(b"-1.5"), Some(-1_500_000_000));
        assert_eq!(pax_time(b"-617716800"), Some(-617_716_800_000_000_000));
        assert_eq!(pax_time(b"12.1234567891234"), Some(12_123_456_789));
        assert_eq!(pax_time(b"1e5"), None);
        assert_eq!(pax_time(b""), None);
    }

    #[test]
    fn global_headers_apply_to_every_later_member_until_overridden() {
        let mut s = Vec::new();
        pax_member(&mut s, b'g', &[("uid", "4000000000"), ("mtime", "-10.25")]);
        s.extend_from_slice(&encode_header(&member(b"a", MemberKind::Dir)));
        pax_member(&mut s, b'x', &[("uid", "7"), ("path", "renamed")]);
        s.extend_from_slice(&encode_header(&member(b"b", MemberKind::Dir)));
        s.extend_from_slice(&END_OF_ARCHIVE);
        let mut r = TarReader::new(&s[..]);
        let a = r.next_member().unwrap().unwrap();
        assert_eq!(a.header.uid, 4_000_000_000);
        assert_eq!(a.mtime_ns, Some(-10_250_000_000));
        assert_eq!(a.header.mtime, -11);
        let b = r.next_member().unwrap().unwrap();
        assert_eq!((b.header.uid, &b.header.path[..]), (7, &b"renamed"[..]));
        assert_eq!(b.mtime_ns, Some(-10_250_000_000));
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn unknown_types_and_v7_directories_keep_the_stream_in_step() {
        let mut s = Vec::new();
        let mut h = header_block(b"v7/", b'0', 0o755, 0, 0, 600, 0, b"");
        seal(&mut h);
        s.extend_from_slice(&h);
        s.extend_from_slice(&[b'J'; 1024]);
        let mut h = header_block(b"acl", b'A', 0o644, 0, 0, 3, 0, b"");
        seal(&mut h);
        s.extend_from_slice(&h);
        s.extend_from_slice(&[b'x'; 512]);
        s.extend_from_slice(&encode_header(&member(b"next", MemberKind::Dir)));
        s.extend_from_slice(&END_OF_ARCHIVE);
        let mut r = TarReader::new(&s[..]);
        let d = r.next_member().unwrap().unwrap();
        assert_eq!(
            (d.header.kind, &d.header.path[..]),
            (MemberKind::Dir, &b"v7"[..])
        );
        assert!(d.notes[0].contains("pre-POSIX"), "{:?}", d.notes);
        let f = r.next_member().unwrap().unwrap();
        assert_eq!(f.header.kind, MemberKind::File);
        assert!(f.notes[0].contains("unknown tar type 'A'"), "{:?}", f.notes);
        let n = r.next_member().unwrap().unwrap();
        assert_eq!(&n.header.path[..], b"next");
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn huge_declared_long_name_is_refused_without_allocating() {
        let mut h = header_block(b"././@LongLink", b'L', 0o644, 0, 0, 1 << 40, 0, b"");
        seal(&mut h);
        let e = TarReader::new(&h[..])
            .next_member()
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn pax_mtime_round_trips_through_pax_time() {
        assert_eq!(pax_mtime(1_700_000_000_000_000_000), None);
        for ns in [
            1_700_000_000_123_456_789i64,
            1_700_000_000_100_000_000,
            -1_500_000_000,
            -1,
            1,
        ] {
            let v = pax_mtime(ns).unwrap();
            assert_eq!(pax_time(&v), Some(ns), "{}", String::from_utf8_lossy(&v));
        }
        assert_eq!(pax_mtime(-1_500_000_000).unwrap(), b"-1.5");
    }
}
