//! Where the archive is written: one pass over the scanned entries, each file
//! read once, its SHA-256 taken over exactly the bytes put into the tar stream.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, FramePos, Kind};
use crate::frames::{FrameWriter, Mark};
use crate::fsx::{self, Dir};
use crate::hashing::{Hashed, Hashing};
use crate::progress::Progress;
use crate::scan::problem;
use crate::tarfmt::{
    Extra, MemberHeader, MemberKind, Region, encode_header, encode_member, padding,
};

pub const NOT_ARCHIVED: &str = "not archived";

/// What the archive report says of a socket it skipped (not a problem).
pub const SOCKET_NOTE: &str = "not archived (sockets are skipped, as GNU tar does)";

const READ_BUF: usize = 256 << 10;

/// Write every entry as a tar member. Entries gain `sha256`, `pos` (frame index
/// for now; see `resolve_positions`) and a `problem` where the capture was not
/// clean. Returns the number of members written. Files are read only through
/// `base` (the source's handle), each opened beneath it without following any
/// symlink and checked against `identity` (each entry's `st_dev`, parallel to
/// `entries`) and the entry's inode.
pub fn write_members(
    base: &Dir,
    entries: &mut [Entry],
    identity: &[crate::scan::Identity],
    fw: &mut FrameWriter,
    progress: &dyn Progress,
) -> Result<u64> {
    let total: u64 = entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    progress.phase("archiving", Some(total));
    let mut buf = vec![0u8; READ_BUF];
    let mut written = 0u64;
    let mut failed_files: std::collections::HashSet<Vec<u8>> = Default::default();
    for (e, dev) in entries.iter_mut().zip(identity.iter().map(|i| i.dev)) {
        let mark = match e.kind {
            Kind::Dir => {
                let extra = dir_extra(base, e, dev);
                Some(put_simple(fw, e, MemberKind::Dir, None, &extra)?)
            }
            Kind::Symlink if e.problem.is_none() => {
                // A symlink's own xattrs are not archived, as with GNU tar
                // (they can only be read by name, and restore cannot set them).
                let link = e.target.clone();
                Some(put_simple(
                    fw,
                    e,
                    MemberKind::Symlink,
                    link,
                    &Extra::default(),
                )?)
            }
            Kind::Hardlink => {
                let target = e.target.clone().unwrap_or_default();
                if failed_files.contains(&target) {
                    e.add_problem(format!(
                        "{NOT_ARCHIVED}: the first path of this hard link could not be archived"
                    ));
                    None
                } else {
                    let none = Extra::default();
                    Some(put_simple(
                        fw,
                        e,
                        MemberKind::Hardlink,
                        Some(target),
                        &none,
                    )?)
                }
            }
            Kind::File if e.problem.is_none() => {
                let m = put_file(base, e, dev, fw, &mut buf)?;
                if m.is_none() {
                    failed_files.insert(e.path.clone());
                }
                progress.advance(1, e.size);
                m
            }
            Kind::File | Kind::Symlink => {
                failed_files.insert(e.path.clone());
                None
            }
            Kind::Fifo | Kind::Char | Kind::Block if e.problem.is_none() => {
                put_special(base, e, dev, fw)?
            }
            // Skipped, as GNU tar skips them ("socket ignored"): a socket is
            // recreated by whatever listens on it. Not a problem; the report
            // names it (`SOCKET_NOTE`).
            Kind::Socket => None,
            k => {
                e.add_problem(format!("{NOT_ARCHIVED}: {k} files cannot be archived"));
                None
            }
        };
        if let Some(m) = mark {
            e.pos = Some(FramePos {
                frame_offset: m.frame,
                offset_in_frame: m.offset_in_frame,
            });
            written += 1;
        }
    }
    Ok(written)
}

/// Turn frame indexes into compressed offsets once the frames are on disk.
pub fn resolve_positions(entries: &mut [Entry], frame_offsets: &[u64]) {
    for e in entries {
        if let Some(p) = e.pos.as_mut() {
            p.frame_offset = frame_offsets[p.frame_offset as usize];
        }
    }
}

fn header_for(e: &Entry, kind: MemberKind, link: Option<Vec<u8>>) -> MemberHeader {
    MemberHeader {
        path: e.path.clone(),
        kind,
        mode: e.mode,
        uid: e.uid as u64,
        gid: e.gid as u64,
        mtime: e.mtime_ns.div_euclid(1_000_000_000),
        size: if kind == MemberKind::File { e.size } else { 0 },
        link,
        sparse: None,
    }
}

/// `extra` with a PAX `mtime` record first when the mtime has a fraction of
/// a second: the header holds whole seconds only, and without the record a
/// restore by GNU tar or bsdtar (or by datamig without a manifest) would
/// truncate it, and `verify --tree` would call every entry changed.
fn timed(e: &Entry, extra: &Extra) -> Extra {
    let mut out = extra.clone();
    if let Some(v) = crate::tarfmt::pax_mtime(e.mtime_ns) {
        out.pax.insert(0, (b"mtime".to_vec(), v));
    }
    out
}

fn put_simple(
    fw: &mut FrameWriter,
    e: &Entry,
    kind: MemberKind,
    link: Option<Vec<u8>>,
    extra: &Extra,
) -> Result<Mark> {
    let h = encode_member(&header_for(e, kind, link), &timed(e, extra));
    fw.boundary_for(h.len() as u64)?;
    let m = fw.mark();
    fw.write_all(&h)?;
    Ok(m)
}

/// Append a file that `fill` writes (the `.datamig/` members, streamed
/// rather than held in memory). `fill` must write the bytes `expect`
/// describes (a first run of it into [`Hashing::counting`]): the tar header
/// with that size is out before it runs.
pub fn put_stream(
    fw: &mut FrameWriter,
    path: &[u8],
    expect: Hashed,
    mtime: i64,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Mark> {
    let h = MemberHeader {
        path: path.to_vec(),
        kind: MemberKind::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime,
        size: expect.size,
        link: None,
        sparse: None,
    };
    let enc = encode_header(&h);
    fw.boundary_for(enc.len() as u64 + expect.size)?;
    let m = fw.mark();
    fw.write_all(&enc)?;
    let mut w = Hashing::new(Frames(fw));
    fill(&mut w)?;
    let (fw, got) = w.hashed();
    if got != expect {
        bail!(
            "{} came out differently on its second writing ({} bytes, {} the first time)",
            String::from_utf8_lossy(path),
            got.size,
            expect.size
        );
    }
    fw.0.write_all(&vec![0u8; padding(got.size)])?;
    Ok(m)
}

/// `FrameWriter` as an `io::Write`.
struct Frames<'a>(&'a mut FrameWriter);

impl Write for Frames<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Returns `None` (with a problem on the entry) when the file could not be
/// opened, or what was opened is not the inode that was listed (it was
/// replaced, or a directory on its path was swapped for a symlink: nothing is
/// read then). Once its header is out, the member is always completed so the
/// tar stream stays well-formed, and any change is flagged instead.
fn put_file(
    base: &Dir,
    e: &mut Entry,
    dev: u64,
    fw: &mut FrameWriter,
    buf: &mut [u8],
) -> Result<Option<Mark>> {
    let mut f = match base.open_file_beneath(&e.path) {
        Ok(f) => f,
        Err(err) => {
            e.add_problem(crate::scan::open_problem(&err, NOT_ARCHIVED));
            return Ok(None);
        }
    };
    let meta = match fsx::meta_of(&f) {
        Ok(m) if m.is_file() && m.same_inode(dev, e.ino) => m,
        Ok(_) => {
            e.add_problem(format!(
                "{}: replaced by another file after it was listed; {NOT_ARCHIVED}",
                problem::CHANGED
            ));
            return Ok(None);
        }
        Err(err) => {
            e.add_problem(format!("{}: {err}; {NOT_ARCHIVED}", problem::UNREADABLE));
            return Ok(None);
        }
    };
    // The same inode, but written to since it was listed: captured (so the
    // archive holds what is there now) and flagged below, never as if clean.
    let mut moved = meta.size != e.size || meta.mtime_ns != e.mtime_ns;
    let sparse = if meta.blocks * 512 < e.size {
        data_regions(&mut f, e.size)
    } else {
        None
    };
    let mut h = header_for(e, MemberKind::File, None);
    h.sparse = sparse;
    let extra = Extra {
        rdev: None,
        pax: super::attrs::pax_records(&f),
    };
    let enc = encode_member(&h, &timed(e, &extra));
    let stored = h.stored_size();
    fw.boundary_for(enc.len() as u64 + stored)?;
    let mark = fw.mark();
    fw.write_all(&enc)?;

    let mut hasher = Sha256::new();
    let mut short = false;
    let regions = h.sparse.clone().unwrap_or_else(|| {
        vec![Region {
            offset: 0,
            len: e.size,
        }]
    });
    let mut logical = 0u64;
    for r in &regions {
        hash_zeros(&mut hasher, r.offset - logical);
        if h.sparse.is_some() && f.seek(SeekFrom::Start(r.offset)).is_err() {
            short = true;
        }
        let mut left = r.len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = if short {
                0
            } else {
                match f.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                }
            };
            if n == 0 {
                // The file shrank (or failed) mid-read: keep the stream well-formed.
                short = true;
                buf[..want].fill(0);
                hasher.update(&buf[..want]);
                fw.write_all(&buf[..want])?;
                left -= want as u64;
                continue;
            }
            hasher.update(&buf[..n]);
            fw.write_all(&buf[..n])?;
            left -= n as u64;
        }
        logical = r.offset + r.len;
    }
    hash_zeros(&mut hasher, e.size - logical);
    fw.write_all(&vec![0u8; padding(stored)])?;
    e.sha256 = Some(hasher.finalize().into());

    let grew = {
        let mut one = [0u8; 1];
        h.sparse.is_none() && !short && matches!(f.read(&mut one), Ok(1))
    };
    moved |= match fsx::meta_of(&f) {
        Ok(a) => a.size != e.size || a.mtime_ns != e.mtime_ns,
        Err(_) => true,
    };
    if short || grew || moved {
        e.add_problem(format!(
            "{}: size or mtime changed while it was archived; the archived copy may be inconsistent",
            problem::CHANGED
        ));
    }
    Ok(Some(mark))
}

/// A directory's xattrs and ACLs, read through its own handle once it is
/// the directory that was listed; none when it cannot be opened or was
/// replaced (its member is still written; restore then has nothing to set).
fn dir_extra(base: &Dir, e: &Entry, dev: u64) -> Extra {
    let pax = match base.open_dir_beneath(&e.path) {
        Ok(d) if d.meta().is_ok_and(|m| m.same_inode(dev, e.ino)) => super::attrs::pax_records(&d),
        _ => Vec::new(),
    };
    Extra { rdev: None, pax }
}

/// A FIFO or device node: never opened (opening one can block or act on a
/// device), only lstat'd again through its parent's handle and checked to be
/// the inode that was listed, of the kind that was listed.
fn put_special(base: &Dir, e: &mut Entry, dev: u64, fw: &mut FrameWriter) -> Result<Option<Mark>> {
    use rustix::fs::FileType;
    let (kind, ft) = match e.kind {
        Kind::Fifo => (MemberKind::Fifo, FileType::Fifo),
        Kind::Char => (MemberKind::CharDev, FileType::CharacterDevice),
        _ => (MemberKind::BlockDev, FileType::BlockDevice),
    };
    let m = match stat_beneath(base, &e.path) {
        Ok(m) => m,
        Err(err) => {
            e.add_problem(crate::scan::open_problem(&err, NOT_ARCHIVED));
            return Ok(None);
        }
    };
    if m.kind != ft || !m.same_inode(dev, e.ino) {
        e.add_problem(format!(
            "{}: replaced by another file after it was listed; {NOT_ARCHIVED}",
            problem::CHANGED
        ));
        return Ok(None);
    }
    let rdev = (ft != FileType::Fifo).then(|| {
        let d = m.rdev as rustix::fs::Dev;
        (rustix::fs::major(d), rustix::fs::minor(d))
    });
    let extra = Extra {
        rdev,
        pax: Vec::new(),
    };
    Ok(Some(put_simple(fw, e, kind, None, &extra)?))
}

/// lstat `rel` through the handle of its parent, opened beneath `base`.
fn stat_beneath(base: &Dir, rel: &[u8]) -> std::io::Result<fsx::Meta> {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => base.open_dir_beneath(&rel[..i])?.stat(&rel[i + 1..]),
        None => base.stat(rel),
    }
}

static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];

pub fn hash_zeros(h: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The data regions of a sparse file, from SEEK_DATA/SEEK_HOLE. `None` when the
/// filesystem cannot tell (the file is then stored densely).
fn data_regions<F: AsFd + Seek>(f: &mut F, size: u64) -> Option<Vec<Region>> {
    use rustix::fs::{SeekFrom as At, seek};
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(&*f, At::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break, // only a hole remains
            Err(_) => return None,
        };
        let hole = seek(&*f, At::Hole(data)).ok()?;
        let end = hole.min(size);
        if end > data {
            out.push(Region {
                offset: data,
                len: end - data,
            });
        }
        pos = hole;
    }
    f.seek(SeekFrom::Start(0)).ok()?;
    Some(out)
}
