//! One recorded filesystem entry: what a scan produces and a manifest line holds.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Socket,
    Char,
    Block,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::Char => "char",
            Kind::Block => "block",
        }
    }

    /// Special files are recorded but never opened.
    pub fn is_special(self) -> bool {
        matches!(self, Kind::Fifo | Kind::Socket | Kind::Char | Kind::Block)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a member starts inside a `.tar.zst` archive: the compressed offset of the
/// zstd frame holding its tar header, and how many decompressed bytes of that frame
/// precede the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FramePos {
    pub frame_offset: u64,
    pub offset_in_frame: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Relative to the scanned root, `/`-separated, raw bytes (may be non-UTF-8).
    pub path: Vec<u8>,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Recorded so `--since` can trust an unchanged file's old hash.
    pub ino: u64,
    pub ctime_ns: i64,
    pub sha256: Option<[u8; 32]>,
    /// Symlink target, or the first path of a hard-link group.
    pub target: Option<Vec<u8>>,
    pub area: AreaName,
    pub problem: Option<String>,
    /// Archive manifests only.
    pub pos: Option<FramePos>,
}

/// An entry's area name. A tree has a few areas and many entries, so entries
/// share one allocation per name (an `Arc<str>`; see [`AreaNames`]) instead
/// of holding a `String` each: 16 bytes in the entry, none on the heap
/// (issue 15 item 6: a `String` was 24 + a 32-byte heap block per entry).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaName(Arc<str>);

impl AreaName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AreaName {
    fn default() -> AreaName {
        AreaName::from("")
    }
}

impl From<&str> for AreaName {
    fn from(s: &str) -> AreaName {
        AreaName(Arc::from(s))
    }
}

impl From<String> for AreaName {
    fn from(s: String) -> AreaName {
        AreaName(Arc::from(s))
    }
}

impl std::ops::Deref for AreaName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for AreaName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for AreaName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Debug for AreaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for AreaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The area names seen so far, shared by the threads of one scan or read:
/// each distinct name is allocated once.
#[derive(Default)]
pub struct AreaNames(Mutex<Vec<AreaName>>);

impl AreaNames {
    pub fn get(&self, name: &str) -> AreaName {
        let mut names = self.0.lock().expect("area names");
        if let Some(a) = names.iter().find(|a| **a == *name) {
            return a.clone();
        }
        let a = AreaName::from(name);
        names.push(a.clone());
        a
    }
}

/// One thread's view of [`AreaNames`]: entries come in runs of one area (a
/// directory's children, a sorted manifest), so the last name answers most
/// lookups without the lock.
pub struct AreaCache<'a> {
    names: &'a AreaNames,
    last: Option<AreaName>,
}

impl<'a> AreaCache<'a> {
    pub fn new(names: &'a AreaNames) -> AreaCache<'a> {
        AreaCache { names, last: None }
    }

    pub fn get(&mut self, name: &str) -> AreaName {
        match &self.last {
            Some(a) if **a == *name => a.clone(),
            _ => {
                let a = self.names.get(name);
                self.last = Some(a.clone());
                a
            }
        }
    }
}

impl Entry {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|h| hex(h))
    }

    /// Attach a problem, keeping any earlier one.
    pub fn add_problem(&mut self, p: impl Into<String>) {
        let p = p.into();
        self.problem = Some(match self.problem.take() {
            Some(old) => format!("{old}; {p}"),
            None => p,
        });
    }
}

/// What is wrong with a flagged entry, by class. A manifest records the
/// problem as text (that is the format); this is its one reading, so reports
/// never decide by string prefix themselves. Any class means the entry is not
/// a faithful copy of what was on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The entry could not be opened or read (permissions, I/O error).
    Unreadable,
    /// It changed while it was read.
    Changed,
    /// It disappeared between listing and reading.
    Vanished,
    /// Read whole, but its content is not the JSON its name promises.
    InvalidJson,
    /// Not captured for another reason: a FIFO, socket or device, or a hard
    /// link whose first path failed.
    NotArchived,
    /// A problem text this version does not know.
    Other,
}

impl Problem {
    /// The class of a recorded problem text (the first clause decides:
    /// "unreadable: ...; not archived" is unreadable).
    pub fn of(text: &str) -> Problem {
        use crate::archive::write::NOT_ARCHIVED;
        use crate::scan::problem as p;
        let classes = [
            (p::UNREADABLE, Problem::Unreadable),
            (p::CHANGED, Problem::Changed),
            (p::VANISHED, Problem::Vanished),
            (p::INVALID_JSON, Problem::InvalidJson),
            (NOT_ARCHIVED, Problem::NotArchived),
        ];
        classes
            .iter()
            .find(|(prefix, _)| text.starts_with(prefix))
            .map_or(Problem::Other, |&(_, class)| class)
    }
}

/// Seconds + nanoseconds as i64 nanoseconds, saturating: a timestamp past
/// 2262 (or before 1677) clamps instead of overflowing.
pub fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        if chunk.iter().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_classified_by_their_first_clause() {
        for (text, class) in [
            (
                "unreadable: Permission denied (os error 13); not archived",
                Problem::Unreadable,
            ),
            ("changed during scan: size 3 -> 4", Problem::Changed),
            ("vanished during scan; not archived", Problem::Vanished),
            (
                "invalid JSON: expected value at line 1",
                Problem::InvalidJson,
            ),
            (
                "not archived: fifo files cannot be archived",
                Problem::NotArchived,
            ),
            ("something new", Problem::Other),
        ] {
            assert_eq!(Problem::of(text), class, "{text}");
        }
    }

    #[test]
    fn equal_area_names_share_one_allocation() {
        let names = AreaNames::default();
        let mut one = AreaCache::new(&names);
        let mut two = AreaCache::new(&names);
        let a = one.get("instances");
        let b = two.get(&String::from("instances"));
        let c = one.get("projects");
        let d = one.get("instances");
        assert!(Arc::ptr_eq(&a.0, &b.0) && Arc::ptr_eq(&a.0, &d.0));
        assert_eq!(c, "projects");
        assert_eq!(a.to_string(), "instances");
        assert_eq!(names.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hex32(&hex(&h)), Some(h));
        assert_eq!(parse_hex32(&hex(&h).to_uppercase()), None);
        assert_eq!(parse_hex32("ab"), None);
    }
}
