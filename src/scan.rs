//! The parallel scan: walk a tree without following symlinks, lstat every entry,
//! then SHA-256 every regular file once. Per-entry faults become `problem`s on
//! the entry; only a root that cannot be read stops the scan.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use globset::GlobSet;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::entry::{Entry, Kind};
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
    /// Relative paths to scan; empty means the whole root.
    pub scope: &'a [Vec<u8>],
    pub excludes: &'a GlobSet,
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
    /// Per entry, in the same order: what the manifest does not record but
    /// `--remove-source` re-checks before it deletes.
    pub identity: Vec<Identity>,
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

struct Raw {
    entry: Entry,
    dev: u64,
    nlink: u64,
    /// Where to open it (absolute).
    abs: PathBuf,
    /// Only a walk error (no lstat), e.g. a directory that could not be listed.
    walk_error: bool,
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
    pool: rayon::ThreadPool,
}

pub fn list(spec: &ScanSpec, progress: &dyn Progress) -> Result<Listing> {
    let root_meta = std::fs::metadata(spec.root).with_context(|| {
        format!(
            "data root {} cannot be read (set --root or V2_DATA_ROOT)",
            spec.root.display()
        )
    })?;
    if !root_meta.is_dir() {
        bail!(
            "data root {} is not a directory (set --root or V2_DATA_ROOT)",
            spec.root.display()
        );
    }
    std::fs::read_dir(spec.root).with_context(|| {
        format!(
            "data root {} cannot be listed (run as a user who can read it)",
            spec.root.display()
        )
    })?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads.max(1))
        .thread_name(|i| format!("datamig-scan-{i}"))
        .build()?;

    let starts: Vec<Vec<u8>> = if spec.scope.is_empty() {
        vec![Vec::new()]
    } else {
        spec.scope.to_vec()
    };
    for s in &starts {
        let abs = join(spec.root, s);
        if std::fs::symlink_metadata(&abs).is_err() {
            bail!(
                "{} does not exist under the root {} (name an area from `datamig layout` or a relative path)",
                String::from_utf8_lossy(s),
                spec.root.display()
            );
        }
    }

    progress.phase("scanning", None);
    let walker = Walker {
        spec,
        progress,
        out: Mutex::new(Vec::new()),
    };
    pool.install(|| rayon::scope(|s| walker.start(s, &starts)));
    let mut raws = walker.out.into_inner().expect("walk results");
    // A directory that could not be listed appears twice: its lstat'd entry, then
    // the listing error, which is merged onto it (never dropped).
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

    // Hard links: the first path in sorted order is the file; the rest point at it.
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
    Ok(Listing { raws, pool })
}

/// Hash every regular file of the listing, reusing `previous`'s hashes for
/// files whose size, mtime, inode and ctime are unchanged.
pub fn hash(
    spec: &ScanSpec,
    listing: Listing,
    previous: Option<&Manifest>,
    progress: &dyn Progress,
) -> Scan {
    let Listing { mut raws, pool } = listing;
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
    pool.install(|| {
        to_hash.par_iter().for_each_init(
            || vec![0u8; READ_BUF],
            |buf, &i| {
                let mut r = slots[i].lock().expect("slot lock");
                let want_json =
                    (spec.check_json)(&r.entry.path) && r.entry.size <= JSON_CHECK_LIMIT;
                hash_file(&mut r, buf, want_json);
                progress.advance(1, r.entry.size);
            },
        )
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
    }
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// A parallel walk, one rayon task per directory. Each entry is lstat'd through
/// its directory's open handle (`DirEntry::metadata` is `fstatat(dirfd, name,
/// AT_SYMLINK_NOFOLLOW)`), so there are no full-path lookups and no shared
/// iterator; a directory's handle is closed before its subdirectories are
/// queued, so depth never costs file descriptors.
struct Walker<'a> {
    spec: &'a ScanSpec<'a>,
    progress: &'a dyn Progress,
    out: Mutex<Vec<Raw>>,
}

impl<'a> Walker<'a> {
    fn excluded(&self, rel: &[u8]) -> bool {
        // Matching builds a candidate (an allocation) even for an empty set.
        !self.spec.excludes.is_empty()
            && self
                .spec
                .excludes
                .is_match(std::ffi::OsStr::from_bytes(rel))
    }

    fn start<'s>(&'s self, s: &rayon::Scope<'s>, starts: &[Vec<u8>]) {
        for start in starts {
            let abs = join(self.spec.root, start);
            if start.is_empty() {
                s.spawn(move |s| self.list_dir(s, abs, Vec::new()));
                continue;
            }
            if self.excluded(start) {
                continue;
            }
            // A start named on the command line is followed when it is a
            // symlink to a directory, as the root is; nothing under it is.
            let meta = std::fs::symlink_metadata(&abs).map(|m| match std::fs::metadata(&abs) {
                Ok(target) if m.file_type().is_symlink() && target.is_dir() => target,
                _ => m,
            });
            let raw = match meta {
                Ok(m) => from_meta(self.spec, abs.clone(), start.clone(), &m),
                Err(e) => self.stat_error(abs.clone(), start.clone(), &e),
            };
            let is_dir = raw.entry.kind == Kind::Dir && !raw.walk_error;
            self.out.lock().expect("walk results").push(raw);
            if is_dir {
                let rel = start.clone();
                s.spawn(move |s| self.list_dir(s, abs, rel));
            }
        }
    }

    fn list_dir<'s>(&'s self, s: &rayon::Scope<'s>, abs: PathBuf, rel: Vec<u8>) {
        let mut local = Vec::new();
        let mut subdirs = Vec::new();
        match std::fs::read_dir(&abs) {
            Err(e) => {
                if !rel.is_empty() {
                    local.push(self.listing_error(abs, rel, &e));
                }
            }
            Ok(rd) => {
                for item in rd {
                    let de = match item {
                        Ok(de) => de,
                        Err(e) => {
                            if !rel.is_empty() {
                                local.push(self.listing_error(abs.clone(), rel.clone(), &e));
                            }
                            break;
                        }
                    };
                    let name = de.file_name();
                    let mut crel = Vec::with_capacity(rel.len() + 1 + name.len());
                    if !rel.is_empty() {
                        crel.extend_from_slice(&rel);
                        crel.push(b'/');
                    }
                    crel.extend_from_slice(name.as_bytes());
                    if self.excluded(&crel) {
                        continue;
                    }
                    let cabs = abs.join(&name);
                    let raw = match de.metadata() {
                        Ok(m) => from_meta(self.spec, cabs, crel, &m),
                        Err(e) => self.stat_error(cabs, crel, &e),
                    };
                    if raw.entry.kind == Kind::Dir && !raw.walk_error {
                        subdirs.push((raw.abs.clone(), raw.entry.path.clone()));
                    }
                    local.push(raw);
                }
            }
        }
        self.progress.advance(local.len() as u64, 0);
        self.out.lock().expect("walk results").append(&mut local);
        for (cabs, crel) in subdirs {
            s.spawn(move |s| self.list_dir(s, cabs, crel));
        }
    }

    /// A directory that could not be listed: merged onto its own entry later.
    fn listing_error(&self, abs: PathBuf, rel: Vec<u8>, e: &std::io::Error) -> Raw {
        self.error_raw(abs, rel, e, Kind::Dir)
    }

    /// An entry that vanished or could not be lstat'd after it was listed.
    fn stat_error(&self, abs: PathBuf, rel: Vec<u8>, e: &std::io::Error) -> Raw {
        let kind = if std::fs::symlink_metadata(&abs)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            Kind::Dir
        } else {
            Kind::File
        };
        self.error_raw(abs, rel, e, kind)
    }

    fn error_raw(&self, abs: PathBuf, rel: Vec<u8>, e: &std::io::Error, kind: Kind) -> Raw {
        let problem = if e.kind() == ErrorKind::NotFound {
            problem::VANISHED.to_string()
        } else {
            format!("{}: {e}", problem::UNREADABLE)
        };
        let entry = Entry {
            area: (self.spec.area_of)(&rel),
            path: rel,
            kind,
            problem: Some(problem),
            ..Default::default()
        };
        Raw {
            entry,
            dev: 0,
            nlink: 1,
            abs,
            walk_error: true,
        }
    }
}

fn from_meta(spec: &ScanSpec, abs: PathBuf, rel: Vec<u8>, m: &std::fs::Metadata) -> Raw {
    let ft = m.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::Char
    } else {
        Kind::Block
    };
    let mut entry = Entry {
        area: (spec.area_of)(&rel),
        path: rel,
        kind,
        size: if matches!(kind, Kind::File | Kind::Symlink) {
            m.size()
        } else {
            0
        },
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: crate::entry::nanos(m.mtime(), m.mtime_nsec()),
        ino: m.ino(),
        ctime_ns: crate::entry::nanos(m.ctime(), m.ctime_nsec()),
        ..Default::default()
    };
    if kind == Kind::Symlink {
        match std::fs::read_link(&abs) {
            Ok(t) => entry.target = Some(t.into_os_string().into_vec_bytes()),
            Err(e) => entry.add_problem(format!("{}: cannot read link: {e}", problem::UNREADABLE)),
        }
    }
    Raw {
        entry,
        dev: m.dev(),
        nlink: m.nlink(),
        abs,
        walk_error: false,
    }
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}
impl IntoVecBytes for std::ffi::OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

/// Hash one regular file, reading each byte once. The open never follows a
/// symlink and never blocks on a FIFO swapped in since the walk; a file whose
/// identity, size or mtime moved while it was read is flagged.
fn hash_file(r: &mut Raw, buf: &mut [u8], want_json: bool) {
    let e = &mut r.entry;
    let f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&r.abs)
    {
        Ok(f) => f,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            e.add_problem(problem::VANISHED);
            return;
        }
        Err(err) => {
            e.add_problem(format!("{}: {err}", problem::UNREADABLE));
            return;
        }
    };
    let before = match f.metadata() {
        Ok(m) => m,
        Err(err) => {
            e.add_problem(format!("{}: {err}", problem::UNREADABLE));
            return;
        }
    };
    if !before.is_file() || before.ino() != e.ino || before.dev() != r.dev {
        e.add_problem(format!(
            "{}: replaced by another file after it was listed",
            problem::CHANGED
        ));
        return;
    }
    match hash_reader(&f, buf, want_json) {
        Ok((digest, n, content)) => {
            e.sha256 = Some(digest);
            let after = f.metadata();
            let moved = match &after {
                Ok(a) => {
                    a.size() != e.size
                        || crate::entry::nanos(a.mtime(), a.mtime_nsec()) != e.mtime_ns
                        || n != e.size
                }
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
