//! `--remove-source`: delete exactly what the verified archive holds. Anything
//! that changed since it was archived, or was never archived (excluded paths,
//! the destination itself), stays on disk and is reported.
//!
//! Every check and every unlink goes through directory handles. The base was
//! opened beneath the data root before the scan ([`BaseDir`]); each parent is
//! opened from its own parent with `O_NOFOLLOW|O_DIRECTORY` and must be the
//! directory the scan listed (dev, ino); each entry is `lstat`ed through that
//! handle and must still be what was archived (dev, ino, size, mtime, ctime,
//! nlink) right before `unlinkat` removes it. A directory swapped for a
//! symlink, or for another directory, is never entered: nothing outside the
//! base can be reached, so nothing outside it can be deleted.
//!
//! What no handle closes: a name replaced between its check and its
//! `unlinkat`. The unlink then removes whatever was put there — something
//! whoever put it there could have unlinked themselves (moving an entry into a
//! directory and unlinking it there need the same rights), inside the base;
//! the archived inode, when pinned, shows it and it is reported.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::FileType;
use serde::Serialize;

use crate::entry::{Entry, Kind};
use crate::fsx::{Dir, Meta};
use crate::scan::Identity;
use crate::summary::PathNote;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Removal {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub kept: Vec<PathNote>,
}

/// The directory that was archived, opened before the scan, with what is
/// needed to remove it at the end.
#[derive(Debug)]
pub struct BaseDir {
    dir: Dir,
    dev: u64,
    ino: u64,
    /// The directory holding the base, and the base's name in it.
    parent: Option<(Dir, Vec<u8>)>,
    /// (dev, ino) of the directories above a target's scope paths (which the
    /// scan does not list), seen when the base was opened.
    above_scope: HashMap<Vec<u8>, (u64, u64)>,
    display: String,
}

impl BaseDir {
    /// Open the base `rel` (relative to the data root, empty for the root
    /// itself) beneath the root, following no symlink under the root, and
    /// note the directories above the `scope` paths under it. The error says
    /// why removal cannot go ahead.
    pub fn open(root: &Path, rel: &[u8], scope: &[Vec<u8>]) -> Result<BaseDir, String> {
        let display = if rel.is_empty() {
            root.display().to_string()
        } else {
            root.join(OsStr::from_bytes(rel)).display().to_string()
        };
        let refuse = |e: io::Error| {
            // O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR, openat2 with
            // RESOLVE_NO_SYMLINKS says ELOOP; resolve_source saw a directory.
            let through_link =
                crate::fsx::is_symlink_error(&e) || e.raw_os_error() == Some(libc::ENOTDIR);
            let how = if through_link {
                "is a symbolic link, or is reached through one, under the data root".to_string()
            } else {
                format!("cannot be opened: {e}")
            };
            format!(
                "{display} {how}; --remove-source only removes a directory it reached without following links; the source was kept"
            )
        };
        let (dir, parent) = if rel.is_empty() {
            let dir = Dir::open(root).map_err(refuse)?;
            // The root was named by the operator: its parent is opened by path.
            let parent = match (root.parent(), root.file_name()) {
                (Some(p), Some(n)) => {
                    let p = if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    };
                    Dir::open(p).ok().map(|d| (d, n.as_bytes().to_vec()))
                }
                _ => None,
            };
            (dir, parent)
        } else {
            let root_dir = Dir::open(root).map_err(refuse)?;
            let (parent_rel, name) = split_parent(rel);
            let parent = root_dir.open_dir_beneath(parent_rel).map_err(refuse)?;
            let dir = parent.open_dir(name).map_err(refuse)?;
            (dir, Some((parent, name.to_vec())))
        };
        let m = dir.meta().map_err(refuse)?;
        let above_scope = above_scope(&dir, scope);
        Ok(BaseDir {
            dir,
            dev: m.dev,
            ino: m.ino,
            parent,
            above_scope,
            display,
        })
    }
}

/// (dev, ino) of each directory strictly above a scope path, opened one
/// component at a time without following links. One that cannot be opened
/// is left out: removal then finds it is not a directory, or has nothing to
/// compare it with.
fn above_scope(base: &Dir, scope: &[Vec<u8>]) -> HashMap<Vec<u8>, (u64, u64)> {
    let mut seen = HashMap::new();
    for path in scope {
        let (parent, _) = split_parent(path);
        if parent.is_empty() {
            continue;
        }
        let mut here: Option<Dir> = None;
        let mut rel: Vec<u8> = Vec::new();
        for c in parent.split(|&b| b == b'/') {
            let from = here.as_ref().unwrap_or(base);
            let Ok(d) = from.open_dir(c) else { break };
            let Ok(m) = d.meta() else { break };
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(c);
            seen.insert(rel.clone(), (m.dev, m.ino));
            here = Some(d);
        }
    }
    seen
}

/// Why an entry was kept. Rendered as the note next to its path.
#[derive(Debug, Clone)]
enum Keep {
    /// Gone before it could be checked (moved or deleted by something else).
    Vanished,
    /// The check itself failed.
    Unchecked(String),
    /// Same inode, but these of (size, mtime, ctime, nlink) differ.
    Changed(Vec<&'static str>),
    /// Another inode, or another kind of entry, is at its name now.
    Replaced(String),
    /// A directory above it is no longer the one that was scanned.
    Blocked { dir: String, how: String },
    /// A directory still holding entries that were kept.
    HoldsKept,
    /// A directory still holding entries the archive does not have.
    HoldsUnarchived,
    /// `unlinkat` failed.
    RemoveFailed(String),
    /// The unlinked name held another inode at that instant.
    NameReused,
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Vanished => f.write_str(
                "no longer there when it was to be removed (moved or deleted by something else)",
            ),
            Keep::Unchecked(e) => write!(f, "cannot check it before removal: {e}; left alone"),
            Keep::Changed(what) => write!(
                f,
                "changed since it was archived ({} differ); left alone — archive it again to retire it",
                what.join(", ")
            ),
            Keep::Replaced(what) => write!(
                f,
                "replaced by {what} since it was archived; left alone"
            ),
            Keep::Blocked { dir, how } => write!(
                f,
                "left alone: the directory {dir} {how} after it was archived, so nothing was removed through it"
            ),
            Keep::HoldsKept => f.write_str("holds entries that were kept (listed); left in place"),
            Keep::HoldsUnarchived => {
                f.write_str("holds entries that were not archived; left in place")
            }
            Keep::RemoveFailed(e) => write!(f, "cannot remove: {e}"),
            Keep::NameReused => f.write_str(
                "its name held another file at the instant of removal, which was removed instead; the archived file is still on disk under another name",
            ),
        }
    }
}

/// What a multi-link inode should look like after our own unlinks of some of
/// its names: each one moves its ctime and lowers its link count.
#[derive(Debug, Clone, Copy)]
struct Expect {
    ctime_ns: i64,
    nlink: u64,
}

/// Remove archived entries (those with an archive position), children before
/// parents (reverse byte order puts `a/b` before `a`), then the base
/// directory itself when `remove_base` and empty. `identity[i]` belongs to
/// `entries[i]` (both in scan order).
pub fn remove_archived(
    base: &BaseDir,
    entries: &[Entry],
    identity: &[Identity],
    remove_base: bool,
) -> Removal {
    assert_eq!(entries.len(), identity.len(), "one identity per entry");
    crate::fsx::raise_fd_limit();
    let mut r = Remover {
        base: &base.dir,
        above_scope: &base.above_scope,
        entries,
        identity,
        chain: Vec::new(),
        blocked: None,
        links: HashMap::new(),
        holding: HashSet::new(),
        out: Removal::default(),
    };
    for i in (0..entries.len()).rev() {
        if entries[i].pos.is_some() {
            r.entry(i);
        }
    }
    r.chain.clear();
    let mut out = r.out;
    if remove_base {
        match remove_base_dir(base, !out.kept.is_empty()) {
            Ok(()) => out.dirs += 1,
            Err(why) => out.kept.push(PathNote {
                path: base.display.clone(),
                note: format!("archived directory not removed: {why}"),
            }),
        }
    }
    out
}

struct Remover<'a> {
    base: &'a Dir,
    above_scope: &'a HashMap<Vec<u8>, (u64, u64)>,
    entries: &'a [Entry],
    identity: &'a [Identity],
    /// Open directories from just below the base down to the parent of the
    /// current entry, each with its path; reverse byte order keeps the
    /// entries of one directory together, so this is a stack.
    chain: Vec<(Vec<u8>, Dir)>,
    /// A directory that was not the scanned one: every entry below is kept.
    blocked: Option<(Vec<u8>, Keep)>,
    /// Multi-link inodes we already unlinked a name of, by (dev, ino).
    links: HashMap<(u64, u64), Expect>,
    /// Directories below which something was kept.
    holding: HashSet<Vec<u8>>,
    out: Removal,
}

impl Remover<'_> {
    fn entry(&mut self, i: usize) {
        let entries = self.entries;
        let e = &entries[i];
        let id = self.identity[i];
        let (parent, name) = split_parent(&e.path);
        let res = self.enter(parent).and_then(|()| {
            let dir = self.chain.last().map_or(self.base, |(_, d)| d);
            if e.kind == Kind::Dir {
                remove_dir(dir, name, e, id, self.holding.contains(&e.path))
            } else {
                remove_other(dir, name, e, id, &mut self.links)
            }
        });
        match res {
            Ok(()) if e.kind == Kind::Dir => self.out.dirs += 1,
            Ok(()) => {
                self.out.files += 1;
                if e.kind == Kind::File {
                    self.out.bytes += e.size;
                }
            }
            Err(k) => self.keep(e, k),
        }
    }

    /// Make the top of `chain` the directory `parent`, opening each missing
    /// component from the one above it and checking it is the scanned one.
    fn enter(&mut self, parent: &[u8]) -> Result<(), Keep> {
        if let Some((dir, why)) = &self.blocked {
            if is_within(parent, dir) {
                return Err(why.clone());
            }
            self.blocked = None;
        }
        let still = self
            .chain
            .iter()
            .take_while(|(p, _)| is_within(parent, p))
            .count();
        self.chain.truncate(still);
        loop {
            let start = match self.chain.last() {
                Some((p, _)) if p.len() == parent.len() => return Ok(()),
                Some((p, _)) => p.len() + 1,
                None if parent.is_empty() => return Ok(()),
                None => 0,
            };
            let end = parent[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |k| start + k);
            let (rel, name) = (&parent[..end], &parent[start..end]);
            let from = self.chain.last().map_or(self.base, |(_, d)| d);
            match open_checked(from, name, self.scanned_dir(rel)) {
                Ok(d) => self.chain.push((rel.to_vec(), d)),
                Err(how) => {
                    let k = Keep::Blocked {
                        dir: String::from_utf8_lossy(rel).into_owned(),
                        how,
                    };
                    self.blocked = Some((rel.to_vec(), k.clone()));
                    return Err(k);
                }
            }
        }
    }

    /// What the directory `rel` was when it was captured: listed by the
    /// scan, or above a target's scope paths (seen when the base was opened).
    fn scanned_dir(&self, rel: &[u8]) -> Scanned {
        match self
            .entries
            .binary_search_by(|e| e.path.as_slice().cmp(rel))
        {
            Ok(i) if self.entries[i].kind == Kind::Dir => {
                Scanned::Dir(self.identity[i].dev, self.entries[i].ino)
            }
            Ok(_) => Scanned::NotDir,
            Err(_) => match self.above_scope.get(rel) {
                Some(&(dev, ino)) => Scanned::Dir(dev, ino),
                None => Scanned::Unknown,
            },
        }
    }

    fn keep(&mut self, e: &Entry, why: Keep) {
        let mut p = e.path.as_slice();
        while let Some(k) = p.iter().rposition(|&b| b == b'/') {
            p = &p[..k];
            if !self.holding.insert(p.to_vec()) {
                break;
            }
        }
        self.out.kept.push(PathNote {
            path: e.path_lossy(),
            note: why.to_string(),
        });
    }
}

/// What a parent directory was when it was captured.
enum Scanned {
    Dir(u64, u64),
    /// Captured as something else: nothing below it can be archived.
    NotDir,
    /// Never seen (it could not be opened when the base was): opened without
    /// following links, with nothing to compare it with.
    Unknown,
}

/// Open the directory `name` in `from` without following a symlink, and
/// check it is the inode that was captured; the error says how it is not.
fn open_checked(from: &Dir, name: &[u8], scanned: Scanned) -> Result<Dir, String> {
    if let Scanned::NotDir = scanned {
        return Err("was not a directory when it was archived".into());
    }
    let d = from.open_dir(name).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => match from.stat(name) {
            Ok(m) => format!("was replaced by {}", kind_words(&m)),
            Err(_) => "was replaced by something that is not a directory".into(),
        },
        Some(libc::ENOENT) => "was moved away or removed".into(),
        _ => format!("could not be opened ({e})"),
    })?;
    if let Scanned::Dir(dev, ino) = scanned {
        let m = d
            .meta()
            .map_err(|e| format!("could not be checked ({e})"))?;
        if !m.same_inode(dev, ino) {
            return Err("was replaced by another directory".into());
        }
    }
    Ok(d)
}

fn remove_dir(
    dir: &Dir,
    name: &[u8],
    e: &Entry,
    id: Identity,
    holds_kept: bool,
) -> Result<(), Keep> {
    let m = dir.stat(name).map_err(lookup_error)?;
    if !m.is_dir() {
        return Err(Keep::Replaced(kind_words(&m)));
    }
    if !m.same_inode(id.dev, e.ino) {
        return Err(Keep::Replaced("another directory".into()));
    }
    // An empty directory swapped in between the check and this call would be
    // removed instead: it holds nothing, so nothing is lost.
    dir.rmdir(name).map_err(|err| match err.raw_os_error() {
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) if holds_kept => Keep::HoldsKept,
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => Keep::HoldsUnarchived,
        Some(libc::ENOTDIR) => Keep::Replaced("something that is not a directory".into()),
        _ => Keep::RemoveFailed(err.to_string()),
    })
}

/// Check and unlink a file, symlink or hard link. An inode with more than one
/// link is pinned across the unlink, so that the ctime and link count it has
/// afterwards become what its remaining names are checked against: our own
/// unlink is not taken for somebody else's change, and a later change by
/// somebody else still shows.
fn remove_other(
    dir: &Dir,
    name: &[u8],
    e: &Entry,
    id: Identity,
    links: &mut HashMap<(u64, u64), Expect>,
) -> Result<(), Keep> {
    let key = (id.dev, e.ino);
    let expect = links.get(&key).copied().unwrap_or(Expect {
        ctime_ns: e.ctime_ns,
        nlink: id.nlink,
    });
    if id.nlink <= 1 {
        let m = dir.stat(name).map_err(lookup_error)?;
        check(e, id, expect, &m)?;
        return dir.unlink(name).map_err(unlink_error);
    }
    let pin = dir.pin(name).map_err(lookup_error)?;
    let before = pin.meta().map_err(|err| Keep::Unchecked(err.to_string()))?;
    check(e, id, expect, &before)?;
    dir.unlink(name).map_err(unlink_error)?;
    let after = pin.meta().map_err(|err| Keep::Unchecked(err.to_string()))?;
    if after.nlink >= before.nlink {
        return Err(Keep::NameReused);
    }
    links.insert(
        key,
        Expect {
            ctime_ns: after.ctime_ns,
            nlink: after.nlink,
        },
    );
    Ok(())
}

/// The entry at the name is still the archived one, unchanged.
fn check(e: &Entry, id: Identity, expect: Expect, m: &Meta) -> Result<(), Keep> {
    let kind_ok = match e.kind {
        Kind::File | Kind::Hardlink => m.is_file(),
        Kind::Symlink => m.is_symlink(),
        Kind::Dir => m.is_dir(),
        Kind::Fifo => m.kind == FileType::Fifo,
        Kind::Socket => m.kind == FileType::Socket,
        Kind::Char => m.kind == FileType::CharacterDevice,
        Kind::Block => m.kind == FileType::BlockDevice,
    };
    if !kind_ok {
        return Err(Keep::Replaced(kind_words(m)));
    }
    if !m.same_inode(id.dev, e.ino) {
        return Err(Keep::Replaced(format!("another {}", kind_noun(m))));
    }
    let differ: Vec<&'static str> = [
        (m.size != e.size, "size"),
        (m.mtime_ns != e.mtime_ns, "mtime"),
        (m.ctime_ns != expect.ctime_ns, "ctime"),
        (m.nlink != expect.nlink, "link count"),
    ]
    .into_iter()
    .filter_map(|(d, what)| d.then_some(what))
    .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(Keep::Changed(differ))
    }
}

fn remove_base_dir(base: &BaseDir, kept_any: bool) -> Result<(), String> {
    let Some((parent, name)) = &base.parent else {
        return Err("datamig cannot reach the directory that holds it".into());
    };
    let m = parent.stat(name).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "it was moved away or removed by something else".to_string(),
        _ => format!("cannot check it: {e}"),
    })?;
    if !m.is_dir() || !m.same_inode(base.dev, base.ino) {
        return Err(format!(
            "{} is now {}, not the directory that was archived; left alone",
            base.display,
            kind_words(&m)
        ));
    }
    parent.rmdir(name).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) if kept_any => {
            "it holds the entries kept above".to_string()
        }
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
            "it holds entries that were not archived; left in place".to_string()
        }
        _ => e.to_string(),
    })
}

fn lookup_error(e: io::Error) -> Keep {
    if e.kind() == io::ErrorKind::NotFound {
        Keep::Vanished
    } else {
        Keep::Unchecked(e.to_string())
    }
}

fn unlink_error(e: io::Error) -> Keep {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Keep::Vanished,
        // The checked entry was swapped for a directory in between.
        Some(libc::EISDIR) => Keep::Replaced("a directory at the instant of removal".into()),
        _ => Keep::RemoveFailed(e.to_string()),
    }
}

fn kind_noun(m: &Meta) -> &'static str {
    match m.kind {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        _ => "special file",
    }
}

fn kind_words(m: &Meta) -> String {
    format!("a {}", kind_noun(m))
}

/// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`).
fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(k) => (&path[..k], &path[k + 1..]),
        None => (&[], path),
    }
}

/// `path` is `dir` or below it.
fn is_within(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
        || dir.is_empty()
}
