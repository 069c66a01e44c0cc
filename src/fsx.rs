//! Directory handles: the one place that makes syscalls on the trees datamig
//! reads (the data root) and writes (a restore destination).
//!
//! Why: a tree datamig works on can change under it — an instance directory is
//! a Unix home whose owner may rename a directory away and put a symlink to
//! `/etc` in its place while we run as root. A check by path followed by a use
//! by path can then act somewhere else. Here every operation is relative to an
//! open directory handle, never follows a symlink in the part of the path it
//! resolves, and the caller checks the (dev, ino) of what it opened against
//! what it listed. Only the starting directory (the root, or DIR) is opened by
//! path. Above this module no code holds an absolute path into the tree.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps,
};

/// What an `lstat` says about an entry (never follows a final symlink).
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub kind: FileType,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks allocated (less than `size` says: a sparse file).
    pub blocks: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Device number of a character or block device.
    pub rdev: u64,
}

impl Meta {
    // `stat` field types differ between architectures, so the casts are only
    // redundant on some of them.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            kind: FileType::from_raw_mode(st.st_mode as _),
            mode: st.st_mode as u32 & 0o7777,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            mtime_ns: crate::entry::nanos(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: crate::entry::nanos(st.st_ctime as i64, st.st_ctime_nsec as i64),
            rdev: st.st_rdev as u64,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }

    pub fn is_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == FileType::Symlink
    }

    /// The same inode as `other` (dev and ino).
    pub fn same_inode(&self, dev: u64, ino: u64) -> bool {
        self.dev == dev && self.ino == ino
    }
}

/// Whether an error means "a symlink was in the way" (O_NOFOLLOW on the last
/// component, or RESOLVE_NO_SYMLINKS on any): the caller reports a swap.
pub fn is_symlink_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
}

/// An open directory. Every method acts on a single name inside it, or on a
/// relative path resolved beneath it without following any symlink.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK);

impl Dir {
    /// Open the trusted starting directory (the root, DIR) by path. It may be
    /// reached through symlinks: the operator named it.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Open the child directory `name`; a symlink there is an error (ELOOP).
    pub fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
        Ok(Dir { fd })
    }

    /// Open the child directory `name` and check it is the inode that was
    /// listed; `Ok(None)` when something else is there now.
    pub fn open_dir_expect(&self, name: &[u8], dev: u64, ino: u64) -> io::Result<Option<Dir>> {
        let d = self.open_dir(name)?;
        Ok(d.meta()?.same_inode(dev, ino).then_some(d))
    }

    /// Open a directory at `rel` (`/`-separated, no `..`) beneath this one,
    /// following no symlink on the way.
    pub fn open_dir_beneath(&self, rel: &[u8]) -> io::Result<Dir> {
        if rel.is_empty() {
            return self.try_clone();
        }
        let fd = open_beneath(&self.fd, rel, DIR_FLAGS)?;
        Ok(Dir { fd })
    }

    /// Open the regular file `name` for reading (never follows a symlink, never
    /// blocks on a FIFO swapped in since it was listed).
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let fd = rustix::fs::openat(&self.fd, name, READ_FLAGS, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Open a file at `rel` beneath this directory for reading, following no
    /// symlink on the way.
    pub fn open_file_beneath(&self, rel: &[u8]) -> io::Result<File> {
        Ok(File::from(open_beneath(&self.fd, rel, READ_FLAGS)?))
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// `lstat` of the child `name`.
    pub fn stat(&self, name: &[u8]) -> io::Result<Meta> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Meta::from_stat(&st))
    }

    /// `fstat` of this directory.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// The names in this directory (not `.` and `..`), with the type the
    /// directory reports when it reports one.
    pub fn entries(&self) -> io::Result<Entries> {
        Ok(Entries {
            inner: rustix::fs::Dir::read_from(&self.fd)?,
        })
    }

    pub fn read_link(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&self.fd, name, Vec::new())?.into_bytes())
    }

    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &self.fd,
            name,
            Mode::from_raw_mode(mode as _),
        )?)
    }

    /// Create `name` for writing; an existing entry (a symlink included) is an
    /// error (EEXIST), never followed or truncated.
    pub fn create_new(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as _),
        )?;
        Ok(File::from(fd))
    }

    /// `renameat2(RENAME_NOREPLACE)` within this directory.
    pub fn rename_noreplace(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(
            &self.fd,
            from,
            &self.fd,
            to,
            RenameFlags::NOREPLACE,
        )?)
    }

    /// `renameat` within this directory (replaces a non-directory at `to`).
    pub fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    pub fn rmdir(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
    }

    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, name)?)
    }

    /// A hard link `name` here to `from_name` in `from_dir`; never follows a
    /// symlink at `from_name`.
    pub fn hard_link(&self, from_dir: &Dir, from_name: &[u8], name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &from_dir.fd,
            from_name,
            &self.fd,
            name,
            AtFlags::empty(),
        )?)
    }

    /// Create a FIFO or a device node `name` (mode includes no type bits).
    pub fn mknod(&self, name: &[u8], kind: FileType, mode: u32, rdev: u64) -> io::Result<()> {
        Ok(rustix::fs::mknodat(
            &self.fd,
            name,
            kind,
            Mode::from_raw_mode(mode as _),
            rdev as _,
        )?)
    }

    /// Owner of the entry `name` itself (a symlink is not followed).
    pub fn chown_nofollow(&self, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            name,
            Some(uid_of(uid)),
            Some(gid_of(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Modification time of the entry `name` itself (a symlink is not followed).
    pub fn set_mtime_nofollow(&self, name: &[u8], mtime_ns: i64) -> io::Result<()> {
        Ok(rustix::fs::utimensat(
            &self.fd,
            name,
            &times(mtime_ns),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Mode, owner (when `owner` is given) and mtime of this directory itself.
    pub fn set_meta(&self, mode: u32, owner: Option<(u32, u32)>, mtime_ns: i64) -> io::Result<()> {
        set_fd_meta(self.fd.as_fd(), mode, owner, mtime_ns)
    }

    /// `syncfs` of the filesystem holding this directory.
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }

    /// `fsync` of the directory itself (makes renames in it durable).
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Mode, owner (when given) and mtime of an open file or directory. The owner
/// goes first: `fchown` clears set-id bits, which `fchmod` then restores.
pub fn set_fd_meta(
    fd: BorrowedFd<'_>,
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime_ns: i64,
) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode as _))?;
    rustix::fs::futimens(fd, &times(mtime_ns))?;
    Ok(())
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

/// Access time "now" is not wanted (restores are compared by mtime only), so
/// both are set to the recorded mtime, as tar does.
fn times(mtime_ns: i64) -> Timestamps {
    let ts = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// Resolve `rel` beneath `dir` following no symlink: `openat2` with
/// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS where the
/// kernel has it, else one `openat(O_NOFOLLOW)` per component.
fn open_beneath(dir: &OwnedFd, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    if rel.is_empty()
        || rel
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain relative path: {:?}", OsStr::from_bytes(rel)),
        ));
    }
    // The kernel takes at most PATH_MAX bytes in one call: a deeper path is
    // resolved in chunks, each beneath the directory the one before it
    // opened. (One `openat` per component from `dir` made every open in a
    // 10,000-level tree cost 10,000 syscalls, and a walk of it quadratic.)
    let mut here: Option<OwnedFd> = None;
    let mut rest = rel;
    while rest.len() >= BENEATH_CHUNK {
        // Names are at most 255 bytes, so a separator is always in reach.
        let cut = rest[..BENEATH_CHUNK]
            .iter()
            .rposition(|&b| b == b'/')
            .expect("a name is shorter than a chunk");
        let base = here.as_ref().unwrap_or(dir);
        here = Some(resolve_beneath(base, &rest[..cut], DIR_FLAGS)?);
        rest = &rest[cut + 1..];
    }
    resolve_beneath(here.as_ref().unwrap_or(dir), rest, flags)
}

/// Paths at least this long are resolved in pieces (below PATH_MAX).
const BENEATH_CHUNK: usize = 4000;

/// One `openat2` beneath `dir` for a path shorter than PATH_MAX, or one
/// `openat(O_NOFOLLOW)` per component where the kernel lacks openat2.
fn resolve_beneath(dir: &OwnedFd, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    for _ in 0..8 {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            // A rename elsewhere raced the lookup: try again.
            Err(rustix::io::Errno::AGAIN) => continue,
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut parts = rel.split(|&b| b == b'/').peekable();
    let mut here: Option<OwnedFd> = None;
    while let Some(c) = parts.next() {
        let base = here.as_ref().unwrap_or(dir);
        let last = parts.peek().is_none();
        let f = if last { flags } else { DIR_FLAGS };
        here = Some(rustix::fs::openat(base, c, f, Mode::empty())?);
    }
    Ok(here.expect("at least one component"))
}

/// Iterator over a directory's names.
pub struct Entries {
    inner: rustix::fs::Dir,
}

/// One name in a directory, with the type the directory reports (`Unknown`
/// on filesystems that do not say).
pub struct Name {
    pub name: Vec<u8>,
    pub kind: FileType,
}

impl Iterator for Entries {
    type Item = io::Result<Name>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let e = match self.inner.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e.into())),
            };
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            return Some(Ok(Name {
                name: n.to_vec(),
                kind: e.file_type(),
            }));
        }
    }
}

/// Raise the soft limit on open files to the hard limit: a walk or restore of
/// a very deep tree holds one handle per level.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// Ask the kernel to start writing `len` bytes at `offset` of `file` to disk
/// now, without waiting: a file written in one go is then mostly on disk by
/// the time it is fsynced, and the fsync waits for the tail only. Advisory,
/// so a failure is ignored (the fsync still makes the file durable).
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a valid open descriptor; the call only schedules I/O on it.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

// ---------------------------------------------------------------------------
// Scan and archive reads (h-scan): helpers for the walk and the archive writer.

/// `fstat` of an open file (what was really opened, to compare with what was
/// listed).
pub fn meta_of(fd: impl AsFd) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::fstat(fd)?))
}

// ---------------------------------------------------------------------------
// archive --remove-source (src/archive/remove.rs): pin an entry while it is
// checked and unlinked, so what our own unlink did to it can be read after.

/// An `O_PATH` handle on one entry (a symlink itself, never its target). It
/// reads nothing and opens no device, and it still describes that inode after
/// its name is gone: the link count and ctime our own unlink left.
#[derive(Debug)]
pub struct Pinned {
    fd: OwnedFd,
}

impl Dir {
    /// Pin the entry `name` (never follows a symlink there).
    pub fn pin(&self, name: &[u8]) -> io::Result<Pinned> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Pinned { fd })
    }
}

impl Pinned {
    /// `fstat` of the pinned inode.
    pub fn meta(&self) -> io::Result<Meta> {
        meta_of(&self.fd)
    }
}

// ---------------------------------------------------------------- restore's helpers

/// Create the directory the operator named (DIR) and any missing parents, each
/// with `mode` (the process umask still applies). A trusted path: the operator
/// named it, so it may be reached through symlinks.
pub fn create_dir_path(path: &Path, mode: u32) -> io::Result<()> {
    match rustix::fs::mkdir(path, Mode::from_raw_mode(mode as _)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(rustix::io::Errno::NOENT) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_dir_path(parent, mode)?;
            }
            match rustix::fs::mkdir(path, Mode::from_raw_mode(mode as _)) {
                Err(rustix::io::Errno::EXIST) => Ok(()),
                r => Ok(r?),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Open a file the operator named (an archive) for reading.
pub fn open_path(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

impl Dir {
    /// Whether the directory has no entries besides `.` and `..`.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.entries()?.next().transpose()?.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beneath_refuses_symlinks_anywhere_and_dotdot() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), b"ok").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        let root = Dir::open(d.path()).unwrap();
        assert!(root.open_file_beneath(b"real/f").is_ok());
        let e = root.open_file_beneath(b"link/secret").unwrap_err();
        assert!(is_symlink_error(&e), "{e}");
        assert!(root.open_file_beneath(b"../x").is_err());
        assert!(root.open_dir(b"link").is_err());
    }

    #[test]
    fn component_walk_handles_paths_longer_than_path_max() {
        let d = tempfile::tempdir().unwrap();
        let root = Dir::open(d.path()).unwrap();
        let mut here = root.try_clone().unwrap();
        let name = [b'd'; 200];
        let mut rel = Vec::new();
        for _ in 0..30 {
            here.mkdir(&name, 0o700).unwrap();
            here = here.open_dir(&name).unwrap();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
        }
        drop(here.create_new(b"f", 0o600).unwrap());
        rel.extend_from_slice(b"/f");
        assert!(rel.len() > 4096);
        assert!(root.open_file_beneath(&rel).is_ok());
    }
}
