//! A fast reader for manifest entry lines in the exact form datamig writes
//! them (`serde_json` of `manifest::Line`: fixed field order, no spaces,
//! strings without escapes, integers without leading zeros). Anything else —
//! another field order, whitespace, an escaped or base64 name, a value out
//! of range — is left to the general `serde_json` parse, which gives the
//! same entry or the error message. Reading a 50,000-line manifest was a
//! quarter of the CPU of `inventory --since` on a tree of small files
//! (issue 15 item 2); this form is what every datamig manifest holds.

use crate::entry::{AreaCache, Entry, FramePos, Kind, parse_hex32};

/// The entry a canonical line holds, or `None` when the line is in any
/// other form (or invalid): the caller then parses it in full.
pub fn parse_canonical(text: &[u8], areas: &mut AreaCache) -> Option<Entry> {
    let mut c = Cursor { b: text, i: 0 };
    c.lit(b"{\"path\":")?;
    let path = c.str()?;
    c.lit(b",\"type\":")?;
    let kind = kind_of(c.str()?)?;
    c.lit(b",\"size\":")?;
    let size = c.u64()?;
    c.lit(b",\"mode\":")?;
    let mode = u32::try_from(c.u64()?).ok()?;
    c.lit(b",\"uid\":")?;
    let uid = u32::try_from(c.u64()?).ok()?;
    c.lit(b",\"gid\":")?;
    let gid = u32::try_from(c.u64()?).ok()?;
    c.lit(b",\"mtime_ns\":")?;
    let mtime_ns = c.i64()?;
    c.lit(b",\"ino\":")?;
    let ino = c.u64()?;
    c.lit(b",\"ctime_ns\":")?;
    let ctime_ns = c.i64()?;
    let sha256 = match c.eat(b",\"sha256\":") {
        true => Some(parse_hex32(c.str()?)?),
        false => None,
    };
    let target = match c.eat(b",\"target\":") {
        true => Some(c.str()?.as_bytes().to_vec()),
        false => None,
    };
    c.lit(b",\"area\":")?;
    let area = areas.get(c.str()?);
    let pos = match c.eat(b",\"frame_offset\":") {
        true => {
            let frame_offset = c.u64()?;
            c.lit(b",\"offset_in_frame\":")?;
            Some(FramePos {
                frame_offset,
                offset_in_frame: c.u64()?,
            })
        }
        false => None,
    };
    let problem = match c.eat(b",\"problem\":") {
        true => Some(c.str()?.to_owned()),
        false => None,
    };
    c.lit(b"}")?;
    if c.i != text.len() {
        return None;
    }
    Some(Entry {
        path: path.as_bytes().to_vec(),
        kind,
        size,
        mode,
        uid,
        gid,
        mtime_ns,
        ino,
        ctime_ns,
        sha256,
        target,
        area,
        problem,
        pos,
    })
}

fn kind_of(s: &str) -> Option<Kind> {
    Some(match s {
        "file" => Kind::File,
        "dir" => Kind::Dir,
        "symlink" => Kind::Symlink,
        "hardlink" => Kind::Hardlink,
        "fifo" => Kind::Fifo,
        "socket" => Kind::Socket,
        "char" => Kind::Char,
        "block" => Kind::Block,
        _ => return None,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Consume `s` if the input continues with it.
    fn eat(&mut self, s: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(s);
        if hit {
            self.i += s.len();
        }
        hit
    }

    fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.eat(s).then_some(())
    }

    /// A string with no escape and no control character (JSON's plain
    /// form), valid UTF-8.
    fn str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = &self.b[self.i..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' || rest[..end].iter().any(|&b| b < 0x20) {
            return None;
        }
        let s = std::str::from_utf8(&rest[..end]).ok()?;
        self.i += end + 1;
        Some(s)
    }

    /// Digits as JSON writes an unsigned integer: `0`, or no leading zero.
    fn u64(&mut self) -> Option<u64> {
        let rest = &self.b[self.i..];
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || (n > 1 && rest[0] == b'0') {
            return None;
        }
        let mut v: u64 = 0;
        for &d in &rest[..n] {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.i += n;
        Some(v)
    }

    /// An optional `-` then digits; `-0` is left to the full parse.
    fn i64(&mut self) -> Option<i64> {
        if self.eat(b"-") {
            let v = self.u64()?;
            if v == 0 {
                return None;
            }
            0i64.checked_sub_unsigned(v)
        } else {
            i64::try_from(self.u64()?).ok()
        }
    }
}
