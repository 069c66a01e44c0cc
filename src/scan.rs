//! The parallel scan: walk a tree through directory handles without following
//! symlinks, lstat every entry, then SHA-256 every regular file once. Per-entry
//! faults become `problem`s on the entry; only a root that cannot be read, or a
//! start that leads outside the root, stops the scan.
//!
//! Why handles: the tree may change while it is walked (an instance directory
//! is a Unix home whose owner can swap a directory for a symlink to `/etc`).
//! Every child directory is opened from its parent's handle with O_NOFOLLOW and
//! checked against the (dev, ino) just listed; every file is opened beneath its
//! start with no symlink allowed anywhere on the way, and its fstat is checked
//! against the listing. A directory replaced mid-walk is named in a problem and
//! never descended; nothing outside the root is ever opened. Depth costs
//! neither path length nor file descriptors (see `HELD_DIRS`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use globset::GlobSet;
use rustix::fs::FileType;
use sha2::{Digest, Sha256};

use crate::entry::{AreaCache, AreaNames, Entry, Kind};
use crate::fsx::{self, Dir, Meta};
use crate::manifest::Manifest;
use crate::progress::Progress;

/// Problem prefixes, so reports can count them by class.
pub mod problem {
    pub const UNREADABLE: &str = "unreadable";
    pub const CHANGED: &str = "changed during scan";
    pub const VANISHED: &str = "vanished during scan";
    pub const INVALID_JSON: &str = "invalid JSON";
}

pub struct ScanSpec<'a> {
    pub root: &'a Path,
    /// `root`, already open (the archive opens its source once, beneath the
    /// data root, and scans and reads through that one handle); `None`: the
    /// scan opens `root` itself.
    pub root_dir: Option<&'a Dir>,
    /// Relative paths to scan; empty means the whole root.
    pub scope: &'a [Vec<u8>],
    pub excludes: &'a GlobSet,
    /// Directories whose contents are skipped because of a file in them.
    pub tags: &'a Tags,
    /// Names the area of a relative path.
    pub area_of: &'a (dyn Fn(&[u8]) -> String + Sync),
    /// Whether a file's content should also be parsed as JSON.
    pub check_json: &'a (dyn Fn(&[u8]) -> bool + Sync),
    pub threads: usize,
    /// False: list and stat only (the archive hashes as it reads).
    pub hash_files: bool,
}

#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by path bytes, unique.
    pub entries: Vec<Entry>,
    pub hashed: u64,
    pub reused: u64,
    /// Per entry, in the same order: what the manifest does not record (device
    /// numbers are not stable across reboots) but the archive writer and
    /// `--remove-source` check an entry against before they use it.
    pub identity: Vec<Identity>,
    /// What the walk left out on purpose, sorted by path: each excluded
    /// entry where the walk stopped (nothing below it was listed), and each
    /// directory whose contents a tag skipped.
    pub excluded: Vec<Excluded>,
}

/// `--exclude-caches` and `--exclude-if-present NAME`, as GNU tar's
/// `--exclude-caches` and `--exclude-tag`: a tagged directory and its tag
/// file are recorded, nothing else below it is listed or read.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    /// Skip directories holding a `CACHEDIR.TAG` with the standard signature.
    pub caches: bool,
    /// Skip directories holding an entry of one of these names.
    pub if_present: Vec<Vec<u8>>,
}

/// The Cache Directory Tagging Specification (bford.info/cachedir): the tag's
/// name and the 43 bytes its content must start with.
pub const CACHEDIR_TAG: &[u8] = b"CACHEDIR.TAG";
pub const CACHEDIR_SIGNATURE: &[u8; 43] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Why the walk left something out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// It matched an exclude pattern.
    Pattern,
    /// A directory with a valid `CACHEDIR.TAG` (`--exclude-caches`).
    Cache,
    /// A directory holding this name (`--exclude-if-present`).
    Tag(Vec<u8>),
}

/// One thing the walk left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub path: Vec<u8>,
    pub why: Skip,
}

impl Excluded {
    /// How a report says it.
    pub fn note(&self) -> String {
        match &self.why {
            Skip::Pattern => "matches an exclude pattern; not scanned".into(),
            Skip::Cache => {
                "cache directory (CACHEDIR.TAG, --exclude-caches); only the tag kept".into()
            }
            Skip::Tag(n) => format!(
                "holds {} (--exclude-if-present); only that file kept",
                String::from_utf8_lossy(n)
            ),
        }
    }
}

/// Device and link count of an entry as the walk saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub nlink: u64,
}

/// Largest file whose content is kept for the JSON check.
const JSON_CHECK_LIMIT: u64 = 16 << 20;
const READ_BUF: usize = 256 << 10;
/// Directory handles kept open for subdirectories still queued, at most. A
/// queued subdirectory is opened from its parent's handle while one is held;
/// past this bound it is opened again beneath its start (no symlink allowed,
/// then checked by (dev, ino)). Keeps a walk of any shape well inside a
/// 1024-descriptor limit.
const HELD_DIRS: usize = 256;
/// Symlinks followed while resolving one start inside the root, at most.
const MAX_HOPS: usize = 40;

struct Raw {
    entry: Entry,
    dev: u64,
    nlink: u64,
    /// Index of the start it was found under (where it is opened from).
    start: usize,
    /// Only a walk error (no lstat), e.g. a directory that could not be listed.
    walk_error: bool,
}

/// Where a scan starts: the root, or one path of the scope.
struct Start {
    /// The recorded path of the start, relative to the root (empty: the root).
    rel: Vec<u8>,
    /// The start directory; for a start that is not a directory, the
    /// directory holding it.
    dir: Arc<Dir>,
    /// For a start that is not a directory: its name in `dir`.
    name: Option<Vec<u8>>,
}

impl Start {
    /// Open a regular file found under this start, for reading: beneath the
    /// start, following no symlink anywhere on the way.
    fn open_file(&self, path: &[u8]) -> io::Result<impl Read + AsFd + use<>> {
        match &self.name {
            Some(n) => self.dir.open_file(n),
            None => self.dir.open_file_beneath(below(path, &self.rel)),
        }
    }
}

/// `path` relative to `start` (`start` is a prefix of it, or empty).
fn below<'p>(path: &'p [u8], start: &[u8]) -> &'p [u8] {
    if start.is_empty() {
        path
    } else {
        &path[(start.len() + 1).min(path.len())..]
    }
}

/// Walk and hash in one go.
pub fn scan(spec: &ScanSpec, progress: &dyn Progress) -> Result<Scan> {
    let listing = list(spec, progress)?;
    Ok(hash(spec, listing, None, progress))
}

/// The walk's result: every entry lstat'd, sorted, hard links resolved, no
/// content read yet. Split from `hash` so `--since` can read the old manifest
/// while the walk runs.
pub struct Listing {
    raws: Vec<Raw>,
    starts: Vec<Start>,
    pool: rayon::ThreadPool,
    excluded: Vec<Excluded>,
}

/// Open the data root: the one path the operator names (it may be reached
/// through symlinks).
pub fn open_root(root: &Path) -> Result<Dir> {
    let d = Dir::open(root).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTDIR) => anyhow::anyhow!(
            "data root {} is not a directory (set --root or V2_DATA_ROOT)",
            root.display()
        ),
        Some(libc::EACCES) => anyhow::anyhow!(
            "data root {} cannot be listed (run as a user who can read it): {e}",
            root.display()
        ),
        _ => anyhow::anyhow!(
            "data root {} cannot be read (set --root or V2_DATA_ROOT): {e}",
            root.display()
        ),
    })?;
    d.entries().with_context(|| {
        format!(
            "data root {} cannot be listed (run as a user who can read it)",
            root.display()
        )
    })?;
    Ok(d)
}

pub fn list(spec: &ScanSpec, progress: &dyn Progress) -> Result<Listing> {
    let opened;
    let root = match spec.root_dir {
        Some(d) => d,
        None => {
            opened = open_root(spec.root)?;
            &opened
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads.max(1))
        .thread_name(|i| format!("datamig-scan-{i}"))
        .build()?;

    let areas = AreaNames::default();
    let mut firsts = Vec::new();
    let mut starts = Vec::new();
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    if spec.scope.is_empty() {
        let dir = root.try_clone().context("cannot reopen the root")?;
        let m = dir.meta().context("cannot stat the root")?;
        starts.push(Start {
            rel: Vec::new(),
            dir: Arc::new(dir.try_clone()?),
            name: None,
        });
        tasks.push((0, m, dir));
    }
    for rel in spec.scope {
        let arg = String::from_utf8_lossy(rel);
        let Some(found) = locate(root, spec.root, rel, &arg)? else {
            bail!(
                "{arg} does not exist under the root {} (name an area from `datamig layout` or a relative path)",
                spec.root.display()
            );
        };
        if excluded(spec, rel) {
            skipped.push(Excluded {
                path: rel.clone(),
                why: Skip::Pattern,
            });
            continue;
        }
        let i = starts.len();
        match found {
            Located::Dir { dir, meta } => {
                let mut area = AreaCache::new(&areas);
                firsts.push(from_meta(spec, &mut area, None, rel.clone(), &meta, i));
                starts.push(Start {
                    rel: rel.clone(),
                    dir: Arc::new(dir.try_clone()?),
                    name: None,
                });
                tasks.push((i, meta, dir));
            }
            Located::Other { parent, name, meta } => {
                firsts.push(from_meta(
                    spec,
                    &mut AreaCache::new(&areas),
                    Some((&parent, &name)),
                    rel.clone(),
                    &meta,
                    i,
                ));
                starts.push(Start {
                    rel: rel.clone(),
                    dir: Arc::new(parent),
                    name: Some(name),
                });
            }
        }
    }

    progress.phase("scanning", None);
    let walker = Walker {
        spec,
        starts: &starts,
        progress,
        areas: &areas,
        held: AtomicUsize::new(0),
        out: Mutex::new(firsts),
        skipped: Mutex::new(skipped),
    };
    pool.install(|| {
        rayon::scope(|s| {
            for (start, meta, dir) in tasks {
                let task = Task {
                    start,
                    rel: walker.starts[start].rel.clone(),
                    dev: meta.dev,
                    ino: meta.ino,
                    via: Via::Open(dir),
                };
                let w = &walker;
                s.spawn(move |s| w.visit(s, task));
            }
        })
    });
    let mut raws = walker.out.into_inner().expect("walk results");
    merge_walk_errors(&mut raws);
    flag_seen_twice(&mut raws);
    mark_hardlinks(&mut raws);
    let mut excluded = walker.skipped.into_inner().expect("walk exclusions");
    excluded.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing {
        raws,
        starts,
        pool,
        excluded,
    })
}

/// A directory that could not be opened or listed appears twice: its lstat'd
/// entry, then the error, which is merged onto it (never dropped).
fn merge_walk_errors(raws: &mut Vec<Raw>) {
    raws.sort_unstable_by(|a, b| {
        (a.entry.path.as_slice(), a.walk_error).cmp(&(b.entry.path.as_slice(), b.walk_error))
    });
    raws.dedup_by(|later, kept| {
        if later.entry.path != kept.entry.path {
            return false;
        }
        if later.walk_error
            && !kept.walk_error
            && let Some(p) = later.entry.problem.take()
            && !kept
                .entry
                .problem
                .as_deref()
                .is_some_and(|k| k.contains(p.as_str()))
        {
            kept.entry.add_problem(p);
        }
        true
    });
}

/// An inode with a single link (or a directory) found at two paths was moved
/// while the walk ran: e.g. a directory exchanged with a symlink between the
/// lstat of the two names, so that both names show the symlink and the
/// directory's content is in neither. Both paths are flagged, so such a scan
/// is never reported clean.
fn flag_seen_twice(raws: &mut [Raw]) {
    let mut first: HashMap<(u64, u64), usize> = HashMap::with_capacity(raws.len());
    let mut twice = Vec::new();
    for (i, r) in raws.iter().enumerate() {
        if r.walk_error || (r.nlink > 1 && r.entry.kind != Kind::Dir) {
            continue;
        }
        match first.get(&(r.dev, r.entry.ino)) {
            Some(&j) => twice.extend([j, i]),
            None => {
                first.insert((r.dev, r.entry.ino), i);
            }
        }
    }
    twice.sort_unstable();
    twice.dedup();
    for i in twice {
        raws[i].entry.add_problem(format!(
            "{}: the same inode was found at two paths (moved or exchanged while it was scanned, or mounted twice)",
            problem::CHANGED
        ));
    }
}

/// Hard links: the first path in sorted order is the file; the rest point at it.
fn mark_hardlinks(raws: &mut [Raw]) {
    let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, r) in raws.iter_mut().enumerate() {
        if r.entry.kind == Kind::File && r.nlink > 1 {
            match first_of.get(&(r.dev, r.entry.ino)) {
                Some(_) => r.entry.kind = Kind::Hardlink,
                None => {
                    first_of.insert((r.dev, r.entry.ino), i);
                }
            }
        }
    }
    for i in 0..raws.len() {
        if raws[i].entry.kind == Kind::Hardlink {
            let first = first_of[&(raws[i].dev, raws[i].entry.ino)];
            raws[i].entry.target = Some(raws[first].entry.path.clone());
        }
    }
}

/// Hash every regular file of the listing, reusing `previous`'s hashes for
/// files whose size, mtime, inode and ctime are unchanged.
pub fn hash(
    spec: &ScanSpec,
    listing: Listing,
    previous: Option<&Manifest>,
    progress: &dyn Progress,
) -> Scan {
    let Listing {
        mut raws,
        starts,
        pool,
        excluded,
    } = listing;
    let previous = previous.map(reusable_hashes).unwrap_or_default();
    // Both lists are sorted by path bytes: match them in one merge pass.
    let mut old = previous.iter().peekable();
    let mut reused = 0u64;
    let mut to_hash: Vec<usize> = Vec::new();
    for (i, r) in raws.iter_mut().enumerate() {
        if !spec.hash_files || r.entry.kind != Kind::File || r.entry.problem.is_some() {
            continue;
        }
        while old.next_if(|(p, _)| *p < r.entry.path.as_slice()).is_some() {}
        match old.next_if(|(p, _)| *p == r.entry.path.as_slice()) {
            Some((_, old)) if old.matches(&r.entry) => {
                r.entry.sha256 = Some(old.sha256);
                if let Some(p) = &old.json_problem {
                    r.entry.problem = Some(p.clone());
                }
                reused += 1;
            }
            _ => to_hash.push(i),
        }
    }
    // Largest first, so one big file does not start last and finish alone.
    to_hash.sort_by_key(|&i| std::cmp::Reverse(raws[i].entry.size));
    let total: u64 = to_hash.iter().map(|&i| raws[i].entry.size).sum();
    progress.phase("hashing", Some(total));

    let slots: Vec<Mutex<&mut Raw>> = raws.iter_mut().map(Mutex::new).collect();
    crate::workqueue::each_in_order(&pool, &to_hash, READ_BUF, |buf, &i| {
        let mut r = slots[i].lock().expect("slot lock");
        let want_json = (spec.check_json)(&r.entry.path) && r.entry.size <= JSON_CHECK_LIMIT;
        let start = &starts[r.start];
        hash_file(&mut r, start, buf, want_json);
        progress.advance(1, r.entry.size);
    });
    drop(slots);
    progress.finish();

    let hashed = to_hash.len() as u64;
    let identity = raws
        .iter()
        .map(|r| Identity {
            dev: r.dev,
            nlink: r.nlink,
        })
        .collect();
    Scan {
        entries: raws.into_iter().map(|r| r.entry).collect(),
        hashed,
        reused,
        identity,
        excluded,
    }
}

fn excluded(spec: &ScanSpec, rel: &[u8]) -> bool {
    // Matching builds a candidate (an allocation) even for an empty set.
    !spec.excludes.is_empty() && spec.excludes.is_match(OsStr::from_bytes(rel))
}

/// `dir` holds a regular file `CACHEDIR.TAG` whose first 43 bytes are the
/// specification's signature (a file that merely has the name is no tag).
fn is_cache_tag(dir: &Dir) -> bool {
    let Ok(mut f) = dir.open_file(CACHEDIR_TAG) else {
        return false;
    };
    if !fsx::meta_of(&f).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 43];
    f.read_exact(&mut head).is_ok() && &head == CACHEDIR_SIGNATURE
}

fn child_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        c.extend_from_slice(rel);
        c.push(b'/');
    }
    c.extend_from_slice(name);
    c
}

fn last_name(rel: &[u8]) -> &[u8] {
    rel.rsplit(|&b| b == b'/').next().unwrap_or(rel)
}

// ---------------------------------------------------------------------------
// Path arguments under the root

/// Where a path argument under the root leads.
pub enum Located {
    /// A directory (reached through symlinks inside the root, if any), open.
    Dir { dir: Dir, meta: Meta },
    /// Anything else, not followed: `name` in the open `parent` (a symlink
    /// here is the link itself: it leads to no directory inside the root).
    Other {
        parent: Dir,
        name: Vec<u8>,
        meta: Meta,
    },
}

enum Step {
    Found(Located),
    Missing,
    /// `want[..upto]` is a symlink.
    Link {
        upto: usize,
        parent: Dir,
        meta: Meta,
    },
}

/// Find `rel` (a clean relative path; empty: the root) beneath the root
/// handle, for a path argument such as an archive target or an inventory
/// area. A symlink on the way (the last component included) is followed only
/// when it resolves inside the root; one that resolves outside is refused
/// with an error naming `arg` and where it leads. Everything is opened through
/// handles, without following symlinks; the symlink's full path is resolved
/// only to decide inside/outside and to say where it points. `Ok(None)`:
/// nothing is there.
pub fn locate(root: &Dir, root_path: &Path, rel: &[u8], arg: &str) -> Result<Option<Located>> {
    let mut want = rel.to_vec();
    for _ in 0..MAX_HOPS {
        let (upto, parent, meta) = match walk_beneath(root, &want).with_context(|| {
            format!(
                "{arg}: cannot open it under the root {}",
                root_path.display()
            )
        })? {
            Step::Found(l) => return Ok(Some(l)),
            Step::Missing => return Ok(None),
            Step::Link { upto, parent, meta } => (upto, parent, meta),
        };
        let link = root_path.join(OsStr::from_bytes(&want[..upto]));
        let last = upto == want.len();
        let real = match resolve_link(root_path, &link)? {
            Resolved::Inside(real) => real,
            Resolved::Outside(dest) => bail!(
                "{arg} resolves outside the data root: {} is a symlink that leads to {}, which is not under {}; datamig never reads or removes anything outside the root (name the real directory, or make it the --root)",
                link.display(),
                dest.display(),
                root_path.display()
            ),
            Resolved::Nowhere if last => {
                let name = last_name(&want).to_vec();
                return Ok(Some(Located::Other { parent, name, meta }));
            }
            Resolved::Nowhere => return Ok(None),
        };
        let mut next = real;
        let rest = &want[upto..];
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        if !rest.is_empty() {
            next = child_rel(&next, rest);
        }
        if last {
            // A symlink named as the start: followed to a directory inside
            // the root; to anything else it is recorded as the link itself.
            if let Step::Found(Located::Dir { dir, meta }) = walk_beneath(root, &next)? {
                return Ok(Some(Located::Dir { dir, meta }));
            }
            let name = last_name(&want).to_vec();
            return Ok(Some(Located::Other { parent, name, meta }));
        }
        want = next;
    }
    bail!(
        "{arg}: too many levels of symbolic links under the root {}",
        root_path.display()
    )
}

enum Resolved {
    /// Relative to the root, every symlink resolved.
    Inside(Vec<u8>),
    Outside(std::path::PathBuf),
    /// Dangling, or not resolvable.
    Nowhere,
}

fn resolve_link(root_path: &Path, link: &Path) -> Result<Resolved> {
    let root_real = root_path
        .canonicalize()
        .with_context(|| format!("cannot resolve the data root {}", root_path.display()))?;
    let Ok(dest) = link.canonicalize() else {
        return Ok(Resolved::Nowhere);
    };
    Ok(match dest.strip_prefix(&root_real) {
        Ok(r) => Resolved::Inside(r.as_os_str().as_bytes().to_vec()),
        Err(_) => Resolved::Outside(dest),
    })
}

/// One component at a time from the root handle, each lstat'd and opened
/// through its parent's handle, stopping at the first symlink.
fn walk_beneath(root: &Dir, want: &[u8]) -> Result<Step> {
    let mut here = root.try_clone()?;
    if want.is_empty() {
        let meta = here.meta()?;
        return Ok(Step::Found(Located::Dir { dir: here, meta }));
    }
    let mut end = 0;
    let mut parts = want.split(|&b| b == b'/').peekable();
    while let Some(c) = parts.next() {
        end += c.len();
        let last = parts.peek().is_none();
        let meta = match here.stat(c) {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(Step::Missing);
            }
            Err(e) => return Err(e.into()),
        };
        if meta.is_symlink() {
            return Ok(Step::Link {
                upto: end,
                parent: here,
                meta,
            });
        }
        if !meta.is_dir() {
            if last {
                let name = c.to_vec();
                return Ok(Step::Found(Located::Other {
                    parent: here,
                    name,
                    meta,
                }));
            }
            return Ok(Step::Missing);
        }
        let Some(next) = here.open_dir_expect(c, meta.dev, meta.ino)? else {
            bail!("it was replaced while it was opened; try again");
        };
        if last {
            return Ok(Step::Found(Located::Dir { dir: next, meta }));
        }
        here = next;
        end += 1;
    }
    unreachable!("a non-empty path has a last component")
}

// ---------------------------------------------------------------------------
// The walk

/// A parallel walk, one rayon task per directory. Each directory is opened
/// from its parent's handle (O_NOFOLLOW|O_DIRECTORY) and checked against the
/// (dev, ino) its parent's listing recorded; each entry is lstat'd through its
/// directory's handle. No full path is ever looked up.
struct Walker<'a> {
    spec: &'a ScanSpec<'a>,
    starts: &'a [Start],
    progress: &'a dyn Progress,
    areas: &'a AreaNames,
    /// Parent handles currently held for queued subdirectories.
    held: AtomicUsize,
    out: Mutex<Vec<Raw>>,
    skipped: Mutex<Vec<Excluded>>,
}

/// A parent directory's handle shared by its queued subdirectories; the
/// count of such handles is bounded by `HELD_DIRS`.
struct Held<'w> {
    dir: Dir,
    count: &'w AtomicUsize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a queued directory will be opened.
enum Via<'w> {
    /// Already open (a start).
    Open(Dir),
    /// By name from its parent's held handle.
    Parent(Arc<Held<'w>>),
    /// Beneath its start, following no symlink (no parent handle was held).
    Start,
}

/// A subdirectory to visit: its path and the (dev, ino) its parent listed.
type Subdir = (Vec<u8>, u64, u64);

struct Task<'w> {
    start: usize,
    rel: Vec<u8>,
    dev: u64,
    ino: u64,
    via: Via<'w>,
}

impl<'a> Walker<'a> {
    fn visit<'s>(&'s self, s: &rayon::Scope<'s>, task: Task<'s>) {
        let Task {
            start,
            rel,
            dev,
            ino,
            via,
        } = task;
        let dir = match self.open(start, &rel, dev, ino, via) {
            Ok(d) => d,
            Err(problem) => {
                let raw = self.error_raw(rel, problem, Kind::Dir, start);
                self.out.lock().expect("walk results").push(raw);
                return;
            }
        };
        if let Some(why) = self.tag_of(&dir) {
            self.keep_only_tag(&dir, rel, start, why);
            return;
        }
        let (mut local, subdirs) = self.list_dir(&dir, &rel, start);
        self.progress.advance(local.len() as u64, 0);
        self.out.lock().expect("walk results").append(&mut local);
        if subdirs.is_empty() {
            return;
        }
        let parent = self.hold(dir);
        for (rel, dev, ino) in subdirs {
            let via = match &parent {
                Some(h) => Via::Parent(Arc::clone(h)),
                None => Via::Start,
            };
            let task = Task {
                start,
                rel,
                dev,
                ino,
                via,
            };
            s.spawn(move |s| self.visit(s, task));
        }
    }

    /// Keep `dir` open for its subdirectories, if the bound allows.
    fn hold<'s>(&'s self, dir: Dir) -> Option<Arc<Held<'s>>> {
        if self.held.fetch_add(1, Ordering::Relaxed) < HELD_DIRS {
            Some(Arc::new(Held {
                dir,
                count: &self.held,
            }))
        } else {
            self.held.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Open a listed directory and check it is still the one listed; the
    /// problem to record on it when it is not.
    fn open(&self, start: usize, rel: &[u8], dev: u64, ino: u64, via: Via) -> Result<Dir, String> {
        let got = match via {
            Via::Open(d) => return Ok(d),
            Via::Parent(h) => h.dir.open_dir_expect(last_name(rel), dev, ino),
            Via::Start => {
                let st = &self.starts[start];
                st.dir
                    .open_dir_beneath(below(rel, &st.rel))
                    .and_then(|d| Ok(d.meta()?.same_inode(dev, ino).then_some(d)))
            }
        };
        match got {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(format!(
                "{}: replaced by another directory while it was scanned; not descended",
                problem::CHANGED
            )),
            Err(e) => Err(open_problem(&e, "not descended")),
        }
    }

    fn list_dir(&self, dir: &Dir, rel: &[u8], start: usize) -> (Vec<Raw>, Vec<Subdir>) {
        let mut local = Vec::new();
        let mut subdirs = Vec::new();
        let mut area = AreaCache::new(self.areas);
        let names = match dir.entries() {
            Ok(n) => n,
            Err(e) => {
                if !rel.is_empty() {
                    local.push(self.listing_error(rel, &e, start));
                }
                return (local, subdirs);
            }
        };
        for item in names {
            let n = match item {
                Ok(n) => n,
                Err(e) => {
                    if !rel.is_empty() {
                        local.push(self.listing_error(rel, &e, start));
                    }
                    break;
                }
            };
            let crel = child_rel(rel, &n.name);
            if excluded(self.spec, &crel) {
                self.skip(crel, Skip::Pattern);
                continue;
            }
            let raw = match dir.stat(&n.name) {
                Ok(m) => from_meta(self.spec, &mut area, Some((dir, &n.name)), crel, &m, start),
                Err(e) => {
                    let kind = if n.kind == FileType::Directory {
                        Kind::Dir
                    } else {
                        Kind::File
                    };
                    self.error_raw(crel, stat_problem(&e), kind, start)
                }
            };
            if raw.entry.kind == Kind::Dir && !raw.walk_error {
                subdirs.push((raw.entry.path.clone(), raw.dev, raw.entry.ino));
            }
            local.push(raw);
        }
        (local, subdirs)
    }

    fn skip(&self, path: Vec<u8>, why: Skip) {
        self.skipped
            .lock()
            .expect("walk exclusions")
            .push(Excluded { path, why });
    }

    /// Why `dir`'s contents are to be skipped, if a tag in it says so. The
    /// tag is looked up (and the cache tag read) through `dir`'s handle,
    /// never by path, and a symlink or FIFO named like a tag is no tag.
    fn tag_of(&self, dir: &Dir) -> Option<Skip> {
        let tags = self.spec.tags;
        if tags.caches && is_cache_tag(dir) {
            return Some(Skip::Cache);
        }
        tags.if_present
            .iter()
            .find(|n| dir.stat(n).is_ok())
            .map(|n| Skip::Tag(n.clone()))
    }

    /// Record a tagged directory's tag file (as GNU tar keeps it) and
    /// nothing else below it.
    fn keep_only_tag(&self, dir: &Dir, rel: Vec<u8>, start: usize, why: Skip) {
        let name: &[u8] = match &why {
            Skip::Tag(n) => n,
            _ => CACHEDIR_TAG,
        };
        let crel = child_rel(&rel, name);
        if !excluded(self.spec, &crel)
            && let Ok(m) = dir.stat(name)
        {
            let mut area = AreaCache::new(self.areas);
            let raw = from_meta(self.spec, &mut area, Some((dir, name)), crel, &m, start);
            self.progress.advance(1, 0);
            self.out.lock().expect("walk results").push(raw);
        }
        self.skip(rel, why);
    }

    /// A directory that could not be listed: merged onto its own entry later.
    fn listing_error(&self, rel: &[u8], e: &io::Error, start: usize) -> Raw {
        self.error_raw(rel.to_vec(), stat_problem(e), Kind::Dir, start)
    }

    fn error_raw(&self, rel: Vec<u8>, problem: String, kind: Kind, start: usize) -> Raw {
        let entry = Entry {
            area: self.areas.get(&(self.spec.area_of)(&rel)),
            path: rel,
            kind,
            problem: Some(problem),
            ..Default::default()
        };
        Raw {
            entry,
            dev: 0,
            nlink: 1,
            start,
            walk_error: true,
        }
    }
}

fn stat_problem(e: &io::Error) -> String {
    if e.kind() == ErrorKind::NotFound {
        problem::VANISHED.to_string()
    } else {
        format!("{}: {e}", problem::UNREADABLE)
    }
}

/// The problem to record when an entry that was listed cannot be opened:
/// something replaced it (or a directory on its way) since, or it is gone or
/// unreadable. `then` says what was not done.
pub fn open_problem(e: &io::Error, then: &str) -> String {
    if fsx::is_symlink_error(e) {
        format!(
            "{}: replaced by a symlink (it or a directory on its path) after it was listed; {then}, nothing read through it",
            problem::CHANGED
        )
    } else if e.raw_os_error() == Some(libc::ENOTDIR) {
        format!(
            "{}: a directory on its path was replaced by something else after it was listed; {then}",
            problem::CHANGED
        )
    } else if e.kind() == ErrorKind::NotFound {
        format!("{}; {then}", problem::VANISHED)
    } else {
        format!("{}: {e}; {then}", problem::UNREADABLE)
    }
}

/// An lstat'd entry; `at` is its directory and name, to read a symlink's
/// target through (None: a start that is a directory).
fn from_meta(
    spec: &ScanSpec,
    area: &mut AreaCache,
    at: Option<(&Dir, &[u8])>,
    rel: Vec<u8>,
    m: &Meta,
    start: usize,
) -> Raw {
    let kind = match m.kind {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
        FileType::CharacterDevice => Kind::Char,
        _ => Kind::Block,
    };
    let mut entry = Entry {
        area: area.get(&(spec.area_of)(&rel)),
        path: rel,
        kind,
        size: if matches!(kind, Kind::File | Kind::Symlink) {
            m.size
        } else {
            0
        },
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime_ns: m.mtime_ns,
        ino: m.ino,
        ctime_ns: m.ctime_ns,
        ..Default::default()
    };
    if kind == Kind::Symlink
        && let Some((dir, name)) = at
    {
        match dir.read_link(name) {
            Ok(t) => entry.target = Some(t),
            Err(e) => entry.add_problem(format!("{}: cannot read link: {e}", problem::UNREADABLE)),
        }
    }
    Raw {
        entry,
        dev: m.dev,
        nlink: m.nlink,
        start,
        walk_error: false,
    }
}

/// Hash one regular file, reading each byte once. The open follows no symlink
/// anywhere beneath the start and never blocks on a FIFO swapped in since the
/// walk; a file whose identity, size or mtime moved while it was read is
/// flagged.
fn hash_file(r: &mut Raw, start: &Start, buf: &mut [u8], want_json: bool) {
    let e = &mut r.entry;
    let mut f = match start.open_file(&e.path) {
        Ok(f) => f,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            e.add_problem(problem::VANISHED);
            return;
        }
        Err(err) => {
            e.add_problem(open_problem(&err, "not read"));
            return;
        }
    };
    let before = match fsx::meta_of(&f) {
        Ok(m) => m,
        Err(err) => {
            e.add_problem(format!("{}: {err}", problem::UNREADABLE));
            return;
        }
    };
    if !before.is_file() || !before.same_inode(r.dev, e.ino) {
        e.add_problem(format!(
            "{}: replaced by another file after it was listed",
            problem::CHANGED
        ));
        return;
    }
    match hash_reader(&mut f, buf, want_json) {
        Ok((digest, n, content)) => {
            e.sha256 = Some(digest);
            let moved = match fsx::meta_of(&f) {
                Ok(a) => a.size != e.size || a.mtime_ns != e.mtime_ns || n != e.size,
                Err(_) => true,
            };
            if moved {
                e.add_problem(format!(
                    "{}: size or mtime changed while it was read (listed {} bytes, read {n})",
                    problem::CHANGED,
                    e.size
                ));
            } else if let Some(c) = content
                && let Err(msg) = check_json(&e.path, &c)
            {
                e.add_problem(format!("{}: {msg}", problem::INVALID_JSON));
            }
        }
        Err(err) => e.add_problem(format!("{}: {err}", problem::UNREADABLE)),
    }
}

pub fn hash_reader(
    mut f: impl Read,
    buf: &mut [u8],
    keep: bool,
) -> std::io::Result<([u8; 32], u64, Option<Vec<u8>>)> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut content = keep.then(Vec::new);
    loop {
        let k = match f.read(buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        if let Some(c) = content.as_mut() {
            c.extend_from_slice(&buf[..k]);
        }
        n += k as u64;
    }
    Ok((h.finalize().into(), n, content))
}

/// `.json` must be one JSON value; `.jsonl` one per non-empty line.
fn check_json(path: &[u8], content: &[u8]) -> std::result::Result<(), String> {
    if path.ends_with(b".jsonl") {
        for (i, line) in content.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                return Err(format!("line {}: {e}", i + 1));
            }
        }
        Ok(())
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(content)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

struct Reusable {
    size: u64,
    mtime_ns: i64,
    ino: u64,
    ctime_ns: i64,
    sha256: [u8; 32],
    json_problem: Option<String>,
}

impl Reusable {
    fn matches(&self, e: &Entry) -> bool {
        self.ino != 0
            && (self.size, self.mtime_ns, self.ino, self.ctime_ns)
                == (e.size, e.mtime_ns, e.ino, e.ctime_ns)
    }
}

/// Hashes from an earlier manifest that may be trusted for unchanged files:
/// clean files, plus hard-link paths (which carry their group's hash); in the
/// manifest's order (sorted by path bytes).
fn reusable_hashes(m: &Manifest) -> Vec<(&[u8], Reusable)> {
    let mut map = Vec::with_capacity(m.entries.len());
    for e in &m.entries {
        let json_problem = match &e.problem {
            None => None,
            Some(p) if p.starts_with(problem::INVALID_JSON) => Some(p.clone()),
            Some(_) => continue,
        };
        let sha256 = match (e.kind, e.sha256, &e.target) {
            (Kind::File, Some(h), _) => h,
            (Kind::Hardlink, _, Some(t)) => match m.get(t).and_then(|t| t.sha256) {
                Some(h) => h,
                None => continue,
            },
            _ => continue,
        };
        map.push((
            e.path.as_slice(),
            Reusable {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ino: e.ino,
                ctime_ns: e.ctime_ns,
                sha256,
                json_problem,
            },
        ));
    }
    map
}
