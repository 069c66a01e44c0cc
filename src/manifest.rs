//! The manifest format (JSON Lines, version 1): header, entries sorted by path bytes,
//! and a trailer holding counts and the SHA-256 of every byte before it.
//!
//! This is a contract read by other programs; README.md documents it and
//! `tests/manifest_format.rs` pins it byte for byte.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::{AreaCache, AreaNames, Entry, FramePos, Kind, hex, parse_hex32};

pub const FORMAT_VERSION: u32 = 1;

/// The longest manifest line datamig reads (1 MiB, newline included). A real
/// entry line is a few hundred bytes (a 4 KiB path is under 6 KiB even as
/// base64), so anything longer is damage or a hostile file; reading stops at
/// the cap instead of taking the line whole into memory.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub datamig: String,
    pub version: u32,
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_b64: Option<String>,
    pub created: String,
    pub hash: String,
    pub layout: String,
    /// Paths the scan was limited to; empty means the whole root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// Exclude globs the scan skipped (relative to the root of the
    /// manifest's paths), so `verify --tree` skips them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Header {
    pub fn new(root: &Path, layout: &str, created: String, scope: Vec<String>) -> Header {
        let (root, root_b64) = split_name(root.as_os_str().as_encoded_bytes());
        Header {
            datamig: "manifest".into(),
            version: FORMAT_VERSION,
            tool: format!("datamig {}", env!("CARGO_PKG_VERSION")),
            root,
            root_b64,
            created,
            hash: "sha256".into(),
            layout: layout.into(),
            scope,
            exclude: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    #[serde(skip)]
    pub sha256: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct TrailerLine {
    datamig: String,
    entries: u64,
    files: u64,
    bytes: u64,
    sha256: String,
}

/// One entry as it appears on a manifest line. Field order here is the byte order
/// on disk. Strings borrow from the entry when writing (no copies per line) and
/// from the line when reading, where they have no escapes.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    path_b64: Option<Cow<'a, str>>,
    #[serde(rename = "type")]
    kind: Kind,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    #[serde(default)]
    ino: u64,
    #[serde(default)]
    ctime_ns: i64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    target_b64: Option<Cow<'a, str>>,
    #[serde(borrow)]
    area: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset_in_frame: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    problem: Option<Cow<'a, str>>,
}

/// A name as written on a line: borrowed when it is UTF-8, else base64 in `*_b64`.
fn name_fields(bytes: &[u8]) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(Cow::Borrowed(s)), None),
        Err(_) => (None, Some(Cow::Owned(B64.encode(bytes)))),
    }
}

/// A UTF-8 name goes in the plain field, anything else base64-encoded in `*_b64`.
fn split_name(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(B64.encode(bytes))),
    }
}

fn join_name(plain: Option<String>, b64: Option<String>, what: &str) -> Result<Option<Vec<u8>>> {
    match (plain, b64) {
        (Some(_), Some(_)) => bail!("both {what} and {what}_b64 are present"),
        (Some(s), None) => Ok(Some(s.into_bytes())),
        (None, Some(b)) => {
            Ok(Some(B64.decode(b.as_bytes()).map_err(|e| {
                anyhow!("{what}_b64 is not valid base64: {e}")
            })?))
        }
        (None, None) => Ok(None),
    }
}

/// Serialize one entry as its manifest line, newline included.
pub fn entry_line(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    write_entry_line(&mut v, e);
    v
}

/// Append one entry's manifest line, newline included, to `out`.
fn write_entry_line(out: &mut Vec<u8>, e: &Entry) {
    let (path, path_b64) = name_fields(&e.path);
    let (target, target_b64) = match &e.target {
        Some(t) => name_fields(t),
        None => (None, None),
    };
    let mut hex_buf = [0u8; 64];
    let line = Line {
        path,
        path_b64,
        kind: e.kind,
        size: e.size,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime_ns: e.mtime_ns,
        ino: e.ino,
        ctime_ns: e.ctime_ns,
        sha256: e
            .sha256
            .as_ref()
            .map(|h| Cow::Borrowed(hex_into(h, &mut hex_buf))),
        target,
        target_b64,
        area: Cow::Borrowed(e.area.as_str()),
        frame_offset: e.pos.map(|p| p.frame_offset),
        offset_in_frame: e.pos.map(|p| p.offset_in_frame),
        problem: e.problem.as_deref().map(Cow::Borrowed),
    };
    serde_json::to_writer(&mut *out, &line).expect("entry serializes");
    out.push(b'\n');
}

fn hex_into<'b>(bytes: &[u8; 32], buf: &'b mut [u8; 64]) -> &'b str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = DIGITS[(b >> 4) as usize];
        buf[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    std::str::from_utf8(buf).expect("hex is ASCII")
}

fn owned(c: Option<Cow<'_, str>>) -> Option<String> {
    c.map(Cow::into_owned)
}

fn parse_entry(text: &[u8], areas: &mut AreaCache) -> Result<Entry> {
    if let Some(e) = crate::manifest_line::parse_canonical(text, areas) {
        check_entry_path(&e.path)?;
        return Ok(e);
    }
    parse_entry_full(text, areas)
}

/// Any valid form of an entry line (see `manifest_line` for the fast one).
fn parse_entry_full(text: &[u8], areas: &mut AreaCache) -> Result<Entry> {
    let l: Line = serde_json::from_slice(text)?;
    let path =
        join_name(owned(l.path), owned(l.path_b64), "path")?.ok_or_else(|| anyhow!("no path"))?;
    check_entry_path(&path)?;
    let sha256 = match l.sha256 {
        Some(s) => Some(
            parse_hex32(&s)
                .ok_or_else(|| anyhow!("sha256 {s:?} is not 64 lowercase hex digits"))?,
        ),
        None => None,
    };
    let pos = match (l.frame_offset, l.offset_in_frame) {
        (Some(frame_offset), Some(offset_in_frame)) => Some(FramePos {
            frame_offset,
            offset_in_frame,
        }),
        (None, None) => None,
        _ => bail!("frame_offset and offset_in_frame must come together"),
    };
    Ok(Entry {
        path,
        kind: l.kind,
        size: l.size,
        mode: l.mode,
        uid: l.uid,
        gid: l.gid,
        mtime_ns: l.mtime_ns,
        ino: l.ino,
        ctime_ns: l.ctime_ns,
        sha256,
        target: join_name(owned(l.target), owned(l.target_b64), "target")?,
        area: areas.get(&l.area),
        problem: owned(l.problem),
        pos,
    })
}

/// Entry paths are relative and clean: a manifest can never name `/x` or `a/../b`.
pub fn check_entry_path(p: &[u8]) -> Result<()> {
    if p.is_empty() {
        bail!("empty path");
    }
    if p[0] == b'/' {
        bail!("path starts with `/`");
    }
    if p.contains(&0) {
        bail!("path contains a NUL byte");
    }
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => bail!("path has an empty component"),
            b"." | b".." => bail!("path has a `{}` component", String::from_utf8_lossy(c)),
            _ => {}
        }
    }
    Ok(())
}

/// Streams a manifest: header first, entries in strictly increasing path order,
/// then `finish` writes the trailer.
pub struct ManifestWriter<W: Write> {
    out: W,
    hasher: Sha256,
    entries: u64,
    files: u64,
    bytes: u64,
    last: Option<Vec<u8>>,
    /// Reused for every line.
    line: Vec<u8>,
}

impl<W: Write> ManifestWriter<W> {
    pub fn new(mut out: W, header: &Header) -> Result<Self> {
        let mut line = serde_json::to_vec(header)?;
        line.push(b'\n');
        out.write_all(&line)?;
        let mut hasher = Sha256::new();
        hasher.update(&line);
        Ok(ManifestWriter {
            out,
            hasher,
            entries: 0,
            files: 0,
            bytes: 0,
            last: None,
            line: Vec::with_capacity(512),
        })
    }

    pub fn write_entry(&mut self, e: &Entry) -> Result<()> {
        if let Some(last) = &self.last
            && last.as_slice() >= e.path.as_slice()
        {
            bail!(
                "internal error: manifest entries out of order at {:?}",
                e.path_lossy()
            );
        }
        let bytes = if e.kind == Kind::File {
            self.bytes.checked_add(e.size).ok_or_else(|| {
                anyhow!(
                    "file sizes add up to more than 2^64 bytes at {:?}",
                    e.path_lossy()
                )
            })?
        } else {
            self.bytes
        };
        self.line.clear();
        write_entry_line(&mut self.line, e);
        self.out.write_all(&self.line)?;
        self.hasher.update(&self.line);
        self.entries += 1;
        if e.kind == Kind::File {
            self.files += 1;
        }
        self.bytes = bytes;
        match &mut self.last {
            Some(last) => {
                last.clear();
                last.extend_from_slice(&e.path);
            }
            None => self.last = Some(e.path.clone()),
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(W, Trailer)> {
        let sha256: [u8; 32] = self.hasher.finalize().into();
        let t = TrailerLine {
            datamig: "trailer".into(),
            entries: self.entries,
            files: self.files,
            bytes: self.bytes,
            sha256: hex(&sha256),
        };
        let mut line = serde_json::to_vec(&t)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()?;
        let trailer = Trailer {
            entries: self.entries,
            files: self.files,
            bytes: self.bytes,
            sha256,
        };
        Ok((self.out, trailer))
    }
}

/// Write a whole manifest; entries must already be sorted by path bytes.
pub fn write_manifest<W: Write>(
    out: W,
    header: &Header,
    entries: &[Entry],
) -> Result<(W, Trailer)> {
    let mut w = ManifestWriter::new(out, header)?;
    for e in entries {
        w.write_entry(e)?;
    }
    w.finish()
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub header: Header,
    pub entries: Vec<Entry>,
    pub trailer: Trailer,
}

impl Manifest {
    pub fn read_file(path: &Path) -> Result<Manifest> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open manifest {}", path.display()))?;
        Manifest::read(f).with_context(|| format!("manifest {} cannot be used", path.display()))
    }

    /// Read and check a manifest: known version, sorted unique clean paths, and a
    /// trailer whose counts and hash match what precedes it.
    pub fn read<R: Read>(r: R) -> Result<Manifest> {
        let mut r = BufReader::with_capacity(1 << 16, r);
        let mut hasher = Sha256::new();
        let mut buf = Vec::new();
        let mut lineno = 0u64;

        let mut next_line = |buf: &mut Vec<u8>, lineno: &mut u64| -> Result<bool> {
            *lineno += 1;
            read_line_capped(&mut r, buf, *lineno)
        };

        if !next_line(&mut buf, &mut lineno)? {
            bail!("file is empty (not a datamig manifest)");
        }
        let header = parse_header(&buf).context("line 1 (header)")?;
        hasher.update(&buf);

        let mut entries: Vec<Entry> = Vec::new();
        let names = AreaNames::default();
        let mut areas = AreaCache::new(&names);
        let (mut files, mut bytes) = (0u64, 0u64);
        loop {
            if !next_line(&mut buf, &mut lineno)? {
                bail!(
                    "no trailer line: the manifest is truncated (it ends after line {})",
                    lineno - 1
                );
            }
            if !buf.ends_with(b"\n") {
                bail!("line {lineno} is cut short: the manifest is truncated");
            }
            if buf.starts_with(br#"{"datamig":"trailer""#) {
                break;
            }
            let e = parse_entry(&buf[..buf.len() - 1], &mut areas)
                .with_context(|| format!("line {lineno}"))?;
            if let Some(prev) = entries.last() {
                if prev.path == e.path {
                    bail!("line {lineno}: path {:?} appears twice", e.path_lossy());
                }
                if prev.path > e.path {
                    bail!(
                        "line {lineno}: path {:?} is out of order (entries must be sorted by path bytes)",
                        e.path_lossy()
                    );
                }
            }
            if e.kind == Kind::File {
                files += 1;
                bytes = bytes.checked_add(e.size).ok_or_else(|| {
                    anyhow!("line {lineno}: file sizes add up to more than 2^64 bytes")
                })?;
            }
            hasher.update(&buf);
            entries.push(e);
        }
        let t: TrailerLine = serde_json::from_slice(&buf)
            .with_context(|| format!("line {lineno} (trailer) is not valid"))?;
        let recorded = parse_hex32(&t.sha256).ok_or_else(|| {
            anyhow!("line {lineno} (trailer): sha256 is not 64 lowercase hex digits")
        })?;
        let actual: [u8; 32] = hasher.finalize().into();
        if recorded != actual {
            bail!(
                "trailer checksum mismatch: the manifest was damaged or edited after it was written \
                 (trailer says {}, content hashes to {}); make a new one with `datamig inventory -o`",
                t.sha256,
                hex(&actual)
            );
        }
        if (t.entries, t.files, t.bytes) != (entries.len() as u64, files, bytes) {
            bail!(
                "trailer counts ({} entries, {} files, {} bytes) do not match the content ({} entries, {} files, {} bytes)",
                t.entries,
                t.files,
                t.bytes,
                entries.len(),
                files,
                bytes
            );
        }
        if read_line_capped(&mut r, &mut buf, lineno + 1)? {
            bail!("unexpected data after the trailer (line {})", lineno + 1);
        }
        Ok(Manifest {
            header,
            entries,
            trailer: Trailer {
                entries: t.entries,
                files: t.files,
                bytes: t.bytes,
                sha256: actual,
            },
        })
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn root_bytes(&self) -> Option<Vec<u8>> {
        join_name(
            self.header.root.clone(),
            self.header.root_b64.clone(),
            "root",
        )
        .ok()
        .flatten()
    }
}

/// Read one line (up to and including `\n`) into `buf`, reading at most
/// [`MAX_LINE`] bytes of it: a longer line is refused without being held
/// whole. False at the end of the input.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, lineno: u64) -> Result<bool> {
    buf.clear();
    let n = Read::take(&mut *r, MAX_LINE as u64).read_until(b'\n', buf)?;
    if n == MAX_LINE && !buf.ends_with(b"\n") {
        bail!(
            "line {lineno} is longer than {} MiB, the most a manifest line may hold: \
             the file is damaged or is not a datamig manifest",
            MAX_LINE >> 20
        );
    }
    Ok(n > 0)
}

fn parse_header(line: &[u8]) -> Result<Header> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| anyhow!("not JSON ({e}): this is not a datamig manifest"))?;
    if v.get("datamig").and_then(|x| x.as_str()) != Some("manifest") {
        bail!("missing \"datamig\": \"manifest\": this is not a datamig manifest");
    }
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(1) => {}
        Some(n) => bail!(
            "format version {n} is not supported by datamig {} (it reads version {FORMAT_VERSION}); use a newer datamig",
            env!("CARGO_PKG_VERSION")
        ),
        None => bail!("header has no numeric \"version\""),
    }
    let h: Header = serde_json::from_value(v)?;
    if h.hash != "sha256" {
        bail!("hash {:?} is not supported (only sha256)", h.hash);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(
            Path::new("/r"),
            "test",
            "2025-12-25T00:00:00Z".into(),
            vec![],
        )
    }

    fn file(p: &[u8]) -> Entry {
        Entry {
            path: p.to_vec(),
            size: 3,
            sha256: Some([7; 32]),
            area: "a".into(),
            ..Default::default()
        }
    }

    /// The fast reader gives exactly what the general parse gives for every
    /// line datamig writes, and leaves every other form to it.
    #[test]
    fn canonical_lines_read_fast_and_the_same_as_the_full_parse() {
        use crate::manifest_line::parse_canonical;
        let names = AreaNames::default();
        let mut areas = AreaCache::new(&names);
        let mut cases = vec![file(b"a/b.txt"), file("caf\u{e9} \u{1f600}/x y".as_bytes())];
        let mut e = file(b"l");
        e.kind = Kind::Symlink;
        e.sha256 = None;
        e.target = Some(b"../t/\xc3\xa9".to_vec());
        cases.push(e);
        let mut e = file(b"h");
        e.kind = Kind::Hardlink;
        e.target = Some(b"a/b.txt".to_vec());
        e.mtime_ns = -1_500_000_000_123;
        e.ctime_ns = i64::MIN;
        e.size = u64::MAX;
        e.mode = 0o7777;
        e.uid = u32::MAX;
        e.ino = u64::MAX;
        e.pos = Some(FramePos {
            frame_offset: 0,
            offset_in_frame: 1 << 40,
        });
        e.problem = Some("unreadable: Permission denied (os error 13)".into());
        cases.push(e);
        let mut e = file(b"d");
        e.kind = Kind::Dir;
        e.sha256 = None;
        e.area = "".into();
        cases.push(e);
        for e in &cases {
            let line = entry_line(e);
            let text = &line[..line.len() - 1];
            assert_eq!(parse_canonical(text, &mut areas).as_ref(), Some(e), "{e:?}");
            assert_eq!(&parse_entry_full(text, &mut areas).unwrap(), e);
        }
        // Escapes, base64 names, other orders, spaces, leading zeros, -0,
        // out-of-range values: not the fast form; the full parse decides.
        let mut escaped = file(b"q\"uote");
        escaped.problem = Some("tab\there".into());
        let mut b64 = file(b"bad\xffname");
        b64.target = Some(b"\xfe".to_vec());
        for e in [escaped, b64] {
            let line = entry_line(&e);
            let text = &line[..line.len() - 1];
            assert_eq!(parse_canonical(text, &mut areas), None);
            assert_eq!(parse_entry(text, &mut areas).unwrap(), e);
        }
        let good = String::from_utf8(entry_line(&cases[0])).unwrap();
        let good = good.trim_end();
        for other in [
            good.replacen("{\"path\":", "{ \"path\":", 1),
            good.replacen("\"size\":3", "\"size\":03", 1),
            good.replacen("\"mtime_ns\":0", "\"mtime_ns\":-0", 1),
            good.replacen("\"mode\":0", "\"mode\":4294967296", 1),
            good.replacen("\"size\":3", "\"size\":3.0", 1),
            good.replacen("\"type\":\"file\"", "\"type\":\"door\"", 1),
            good.replacen(",\"area\":\"a\"", "", 1) + ",\"area\":\"a\"",
            good.replacen("\"path\":\"a/b.txt\",", "", 1).replacen(
                "{",
                "{\"path\":\"a/b.txt\",\"x\":1,",
                1,
            ),
            good.replacen("\"path\":\"a/b.txt\"", "\"path\":\"/abs\"", 1),
            good.to_string() + " ",
        ] {
            let fast = parse_canonical(other.as_bytes(), &mut areas);
            let full = parse_entry_full(other.as_bytes(), &mut areas);
            let got = parse_entry(other.as_bytes(), &mut areas);
            if other.contains("/abs") {
                assert!(fast.is_some() && got.is_err() && full.is_err(), "{other}");
                continue;
            }
            assert_eq!(fast, None, "{other}");
            assert_eq!(
                got.map_err(|e| e.to_string()),
                full.map_err(|e| e.to_string()),
                "{other}"
            );
        }
    }

    #[test]
    fn non_utf8_names_use_b64_and_round_trip() {
        let mut e = file(b"bad\xffname");
        e.kind = Kind::Symlink;
        e.sha256 = None;
        e.target = Some(b"t\xfe".to_vec());
        let line = entry_line(&e);
        let s = String::from_utf8(line.clone()).unwrap();
        assert!(s.contains("\"path_b64\":\"YmFk/25hbWU=\""), "{s}");
        assert!(!s.contains("\"path\":"));
        assert_eq!(
            parse_entry(
                &line[..line.len() - 1],
                &mut AreaCache::new(&AreaNames::default())
            )
            .unwrap(),
            e
        );
    }

    #[test]
    fn write_then_read_round_trips() {
        let entries = vec![file(b"a"), file(b"a b"), file(b"a/b"), file(b"new\nline")];
        let (buf, t) = write_manifest(Vec::new(), &header(), &entries).unwrap();
        let m = Manifest::read(&buf[..]).unwrap();
        assert_eq!(m.entries, entries);
        assert_eq!(m.trailer, t);
        assert_eq!((t.entries, t.files, t.bytes), (4, 4, 12));
    }

    #[test]
    fn writer_refuses_unsorted_or_duplicate_paths() {
        assert!(write_manifest(Vec::new(), &header(), &[file(b"b"), file(b"a")]).is_err());
        assert!(write_manifest(Vec::new(), &header(), &[file(b"a"), file(b"a")]).is_err());
    }

    #[test]
    fn a_line_over_the_cap_is_refused_with_its_number() {
        let (mut buf, _) = write_manifest(Vec::new(), &header(), &[file(b"a")]).unwrap();
        let at = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        let long = format!("{{\"path\":\"{}\"}}\n", "x".repeat(MAX_LINE));
        buf.splice(at..at, long.bytes());
        let err = format!("{:#}", Manifest::read(&buf[..]).unwrap_err());
        assert!(err.contains("line 2 is longer than 1 MiB"), "{err}");

        // Just under the cap is read (and then judged on its content).
        let mut line = vec![b'y'; MAX_LINE - 1];
        line.push(b'\n');
        let mut r = &line[..];
        let mut got = Vec::new();
        assert!(read_line_capped(&mut r, &mut got, 1).unwrap());
        assert_eq!(got.len(), MAX_LINE);
    }

    #[test]
    fn bad_paths_are_refused_on_read() {
        for bad in [&b"/abs"[..], b"a/../b", b"./a", b"a//b", b"..", b"a/"] {
            let mut line = entry_line(&file(bad));
            line.pop();
            let err = parse_entry(&line, &mut AreaCache::new(&AreaNames::default()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("path"), "{bad:?}: {err}");
        }
    }
}
