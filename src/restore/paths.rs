//! Where a member may land. Pure checks on names, and `Tree`: the open
//! destination directory (DIR) plus the chain of handles down to the member's
//! parent. Every parent is reached by opening one component at a time from
//! DIR's handle with `O_NOFOLLOW|O_DIRECTORY`, and every directory's (dev,
//! ino) is recorded the first time it is made or entered, so a symlink or
//! another directory put in its place later is refused, never written through.

use std::collections::HashMap;
use std::fmt;
use std::io;

use crate::fsx::Dir;

/// Longest member name accepted (bounded by the tar reader's 1 MiB cap on
/// long-name records anyway); paths deeper than PATH_MAX restore fine.
const MAX_NAME: usize = 1 << 20;

/// Why a member name is refused, if it is.
pub fn refuse_name(name: &[u8]) -> Option<String> {
    if name.is_empty() {
        return Some("empty name".into());
    }
    if name.contains(&0) {
        return Some("name contains a NUL byte".into());
    }
    if name[0] == b'/' {
        return Some("absolute path".into());
    }
    if name.len() > MAX_NAME {
        return Some("name longer than 1 MiB".into());
    }
    for c in name.split(|&b| b == b'/') {
        match c {
            b".." => return Some("path contains `..`".into()),
            b"" | b"." => return Some("path has an empty or `.` component".into()),
            _ => {}
        }
    }
    None
}

/// Why a directory on a member's way could not be used.
#[derive(Debug)]
pub enum Blocked {
    /// A symlink is where a directory was expected.
    Symlink(Vec<u8>),
    /// Something that is not a directory is there.
    NotDir(Vec<u8>),
    /// A directory other than the one this restore made or entered is there
    /// now (renamed in while the restore ran).
    Swapped(Vec<u8>),
    /// The directory this restore made is gone.
    Vanished(Vec<u8>),
    Io(Vec<u8>, io::Error),
}

impl Blocked {
    /// The directory (relative to DIR) the problem is at.
    pub fn at(&self) -> &[u8] {
        match self {
            Blocked::Symlink(p)
            | Blocked::NotDir(p)
            | Blocked::Swapped(p)
            | Blocked::Vanished(p)
            | Blocked::Io(p, _) => p,
        }
    }

    /// A symlink or another directory put where restore's own directory was.
    pub fn is_swap(&self) -> bool {
        matches!(self, Blocked::Symlink(_) | Blocked::Swapped(_))
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Blocked::Symlink(d) => write!(f, "would write through the symlink {}", p(d)),
            Blocked::NotDir(d) => write!(f, "{} is not a directory", p(d)),
            Blocked::Swapped(d) => write!(
                f,
                "{} was replaced (by a symlink or another directory) while the restore ran; nothing was written there",
                p(d)
            ),
            Blocked::Vanished(d) => write!(f, "directory {} vanished during the restore", p(d)),
            Blocked::Io(d, e) => write!(f, "cannot create or open directory {}: {e}", p(d)),
        }
    }
}

/// One directory on the way to the current parent.
struct Level {
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    /// Closed when too many are open; re-opened (and checked) on demand.
    dir: Option<Dir>,
}

/// DIR and the handles leading to the directory the last member went into.
pub struct Tree {
    root: Dir,
    chain: Vec<Level>,
    /// Every directory this restore made or entered, with its (dev, ino).
    known: HashMap<Vec<u8>, (u64, u64)>,
    open: usize,
    /// Most handles held at once (a deep tree would otherwise exhaust fds).
    budget: usize,
}

impl Tree {
    pub fn new(root: Dir) -> Tree {
        crate::fsx::raise_fd_limit();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(4096);
        Tree {
            root,
            chain: Vec::new(),
            known: HashMap::new(),
            open: 0,
            budget: (soft / 4).clamp(16, 512) as usize,
        }
    }

    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// Every directory made or entered, relative to DIR.
    pub fn known_dirs(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.known.keys()
    }

    /// Record a directory made or found at `rel`; a different one already
    /// recorded there means it was swapped.
    pub fn record(&mut self, rel: &[u8], dev: u64, ino: u64) -> Result<(), Blocked> {
        match self.known.get(rel) {
            Some(&id) if id != (dev, ino) => Err(Blocked::Swapped(rel.to_vec())),
            Some(_) => Ok(()),
            None => {
                self.known.insert(rel.to_vec(), (dev, ino));
                Ok(())
            }
        }
    }

    /// The handle of the directory `comps` (DIR itself when empty), creating
    /// missing directories (mode 0700) when `create`. Returns its depth, for
    /// [`Tree::dir`].
    pub fn reach(&mut self, comps: &[&[u8]], create: bool) -> Result<usize, Blocked> {
        let keep = self
            .chain
            .iter()
            .zip(comps)
            .take_while(|(l, c)| l.name == **c)
            .count();
        while self.chain.len() > keep {
            if self.chain.pop().is_some_and(|l| l.dir.is_some()) {
                self.open -= 1;
            }
        }
        for (i, c) in comps.iter().enumerate().skip(keep) {
            self.ensure_open(i)?;
            let prefix = comps[..=i].join(&b'/');
            let (d, dev, ino) = self.enter(i, c, &prefix, create)?;
            self.push(Level {
                name: c.to_vec(),
                dev,
                ino,
                dir: Some(d),
            });
        }
        self.ensure_open(comps.len())?;
        Ok(comps.len())
    }

    /// The handle at `depth` (0: DIR); valid right after [`Tree::reach`].
    pub fn dir(&self, depth: usize) -> &Dir {
        if depth == 0 {
            return &self.root;
        }
        self.chain[depth - 1]
            .dir
            .as_ref()
            .expect("reach leaves the last level open")
    }

    /// Open (or make) `name` in the directory at `depth`, checking it is the
    /// one recorded for `prefix` if any.
    fn enter(
        &mut self,
        depth: usize,
        name: &[u8],
        prefix: &[u8],
        create: bool,
    ) -> Result<(Dir, u64, u64), Blocked> {
        let base = self.dir(depth);
        let d = match base.open_dir(name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match base.mkdir(name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Blocked::Io(prefix.to_vec(), e)),
                }
                base.open_dir(name)
                    .map_err(|e| classify(base, name, prefix, e))?
            }
            Err(e) => return Err(classify(base, name, prefix, e)),
        };
        let m = d.meta().map_err(|e| Blocked::Io(prefix.to_vec(), e))?;
        self.record(prefix, m.dev, m.ino)?;
        Ok((d, m.dev, m.ino))
    }

    fn push(&mut self, l: Level) {
        self.open += l.dir.is_some() as usize;
        self.chain.push(l);
        self.trim();
    }

    /// Close the shallowest handles beyond the budget (never the deepest).
    fn trim(&mut self) {
        let last = self.chain.len().saturating_sub(1);
        for l in self.chain[..last].iter_mut() {
            if self.open <= self.budget {
                break;
            }
            if l.dir.take().is_some() {
                self.open -= 1;
            }
        }
    }

    /// Re-open a closed level (and any closed ones above it) from the
    /// deepest open ancestor, checking each (dev, ino).
    fn ensure_open(&mut self, depth: usize) -> Result<(), Blocked> {
        if depth == 0 || self.chain[depth - 1].dir.is_some() {
            return Ok(());
        }
        let from = (0..depth - 1)
            .rev()
            .find(|&i| self.chain[i].dir.is_some())
            .map_or(0, |i| i + 1);
        for i in from..depth {
            let prefix = self.chain[..=i]
                .iter()
                .map(|l| l.name.as_slice())
                .collect::<Vec<_>>()
                .join(&b'/');
            let base = self.dir(i);
            let l = &self.chain[i];
            let d = match base.open_dir_expect(&l.name, l.dev, l.ino) {
                Ok(Some(d)) => d,
                Ok(None) => return Err(Blocked::Swapped(prefix)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Blocked::Vanished(prefix));
                }
                Err(e) => return Err(classify(base, &l.name, &prefix, e)),
            };
            self.chain[i].dir = Some(d);
            self.open += 1;
        }
        // Trim, sparing the levels just opened up to `depth`.
        let spare = depth;
        for l in self.chain[..spare.saturating_sub(1)].iter_mut() {
            if self.open <= self.budget {
                break;
            }
            if l.dir.take().is_some() {
                self.open -= 1;
            }
        }
        Ok(())
    }
}

/// What an `openat(O_NOFOLLOW|O_DIRECTORY)` failure means.
fn classify(base: &Dir, name: &[u8], prefix: &[u8], e: io::Error) -> Blocked {
    match base.stat(name) {
        Ok(m) if m.is_symlink() => Blocked::Symlink(prefix.to_vec()),
        Ok(m) if !m.is_dir() => Blocked::NotDir(prefix.to_vec()),
        // Not a directory when opened, a directory now: it was swapped.
        Ok(_) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
            Blocked::Swapped(prefix.to_vec())
        }
        Err(se) if se.kind() == io::ErrorKind::NotFound => Blocked::Vanished(prefix.to_vec()),
        _ => Blocked::Io(prefix.to_vec(), e),
    }
}

/// A member path's parent components and its own name.
pub fn split_parent(rel: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let name = comps.pop().unwrap_or_default();
    (comps, name)
}

/// Create the missing parent directories of `rel` under `root` through
/// handles, refusing when a component is a symlink or not a directory;
/// returns the parent's handle. (One-shot form of [`Tree::reach`].)
pub fn prepare_parent(root: &Dir, rel: &[u8]) -> Result<Dir, Blocked> {
    let mut t = Tree::new(root.try_clone().map_err(|e| Blocked::Io(Vec::new(), e))?);
    let (comps, _) = split_parent(rel);
    let d = t.reach(&comps, true)?;
    t.dir(d)
        .try_clone()
        .map_err(|e| Blocked::Io(rel.to_vec(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn hostile_names_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"a/b", true),
            (b"a b/c\nd", true),
            (b"\xff\xfe", true),
            (b"../x", false),
            (b"a/../../x", false),
            (b"/etc/passwd", false),
            (b"a//b", false),
            (b"./a", false),
            (b"a/\0b", false),
            (b"", false),
        ];
        for (name, ok) in cases {
            assert_eq!(refuse_name(name).is_none(), *ok, "{name:?}");
        }
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("s")).unwrap();
        let root = Dir::open(d.path()).unwrap();
        let e = prepare_parent(&root, b"s/file").unwrap_err();
        assert!(matches!(e, Blocked::Symlink(_)), "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(prepare_parent(&root, b"x/y/file").is_ok());
        assert!(d.path().join("x/y").is_dir());
    }

    #[test]
    fn swapped_directory_is_refused_and_closed_levels_reopen() {
        let d = tempfile::tempdir().unwrap();
        let root = Dir::open(d.path()).unwrap();
        let mut t = Tree::new(root);
        t.budget = 2;
        let deep: Vec<&[u8]> = vec![b"a", b"b", b"c", b"e", b"f"];
        let depth = t.reach(&deep, true).unwrap();
        assert!(t.open <= 2 + 1);
        // Back up to a closed level: re-opened and checked.
        assert_eq!(t.reach(&deep[..2], true).unwrap(), 2);
        assert!(t.dir(2).meta().unwrap().is_dir());
        let _ = depth;
        // Swap `a` for another directory: refused when re-entered.
        t.reach(&[], false).unwrap();
        fs::rename(d.path().join("a"), d.path().join("old")).unwrap();
        fs::create_dir(d.path().join("a")).unwrap();
        let e = t.reach(&deep, true).unwrap_err();
        assert!(e.is_swap(), "{e}");
        assert_eq!(e.at(), b"a");
    }
}
