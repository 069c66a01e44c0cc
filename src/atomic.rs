//! Files that appear whole or not at all: written under a temporary name in the
//! destination directory, fsynced, renamed into place, directory fsynced.
//!
//! Temporary names are registered so a SIGINT/SIGTERM handler can remove them
//! before the process exits (see `signals`), and a leftover from SIGKILL is
//! recognisable by its `.datamig-tmp-` infix and never taken for a result.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// Marks temporary files; `datamig` never reads a file whose name contains it.
pub const TMP_INFIX: &str = ".datamig-tmp-";

static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove every registered temporary file. Called on the error path.
pub fn remove_live_temps() {
    if let Ok(mut v) = LIVE_TEMPS.lock() {
        for p in v.drain(..) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// For the signal handler: remove the temporaries and exit while still holding
/// the registry lock, so no other thread can create a new one in between.
pub fn remove_temps_and_exit(code: i32) -> ! {
    let guard = LIVE_TEMPS.lock();
    if let Ok(mut v) = guard {
        for p in v.drain(..) {
            let _ = std::fs::remove_file(&p);
        }
        std::process::exit(code);
    }
    std::process::exit(code)
}

/// Create a temporary file through `create` while holding the registry lock,
/// and register `path` (where the signal handler finds it): a signal either
/// sees the file or stops us before it exists.
pub fn create_registered<T>(
    path: PathBuf,
    create: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let mut live = LIVE_TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    let made = create()?;
    live.push(path);
    Ok(made)
}

/// The temporary is gone (renamed into place or removed): forget it.
pub fn forget_temp(p: &Path) {
    unregister(p)
}

/// A temporary name of bounded length (`.datamig-tmp-PID-N`, at most ~45
/// bytes), never derived from the member's own name: a name of 255 bytes
/// still has room for its temporary.
pub fn temp_name() -> Vec<u8> {
    format!("{}{}-{}", TMP_INFIX, own_pid(), unique()).into_bytes()
}

/// `sweep_stale_temps` through a directory handle; returns the names removed.
pub fn sweep_stale_temps_in(dir: &crate::fsx::Dir) -> Vec<Vec<u8>> {
    let mut removed = Vec::new();
    let Ok(names) = dir.entries() else {
        return removed;
    };
    for n in names.flatten() {
        let Some(pid) = stale_temp_pid(&n.name) else {
            continue;
        };
        if pid_alive(pid) || !dir.stat(&n.name).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if dir.unlink(&n.name).is_ok() {
            removed.push(n.name);
        }
    }
    removed
}

fn unregister(p: &Path) {
    if let Ok(mut v) = LIVE_TEMPS.lock() {
        v.retain(|q| q != p);
    }
}

/// Refuse to read a temporary file as an archive: it is unfinished (a run
/// still writing it, or one that was killed) and may be cut anywhere.
pub fn refuse_temp_name(p: &Path) -> Result<()> {
    if p.file_name().is_some_and(|n| is_temp_name(n.as_bytes())) {
        bail!(
            "{} is a temporary file of a datamig run (its name contains {TMP_INFIX:?}), not an archive: \
             the run is still writing it or was killed; use the archive without {TMP_INFIX:?} in its name, \
             or delete this file if no datamig run is going",
            p.display()
        );
    }
    Ok(())
}

pub fn is_temp_name(name: &[u8]) -> bool {
    name.windows(TMP_INFIX.len())
        .any(|w| w == TMP_INFIX.as_bytes())
}

/// Remove the temporary files that a killed `datamig` (SIGKILL, power loss)
/// left in `dir`: regular files named `.NAME.datamig-tmp-PID-N` whose PID is
/// not a live process on this machine. A live PID (another run, or a reused
/// PID) keeps its file. Returns the names removed; errors are ignored (a
/// leftover is harmless: it is never taken for a result).
pub fn sweep_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    for d in rd.flatten() {
        let name = d.file_name();
        let Some(pid) = stale_temp_pid(name.as_bytes()) else {
            continue;
        };
        if !d.file_type().map(|t| t.is_file()).unwrap_or(false) || pid_alive(pid) {
            continue;
        }
        let p = d.path();
        if std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// The PID in `.NAME.datamig-tmp-PID-N` or `.datamig-tmp-PID-N`, if `name`
/// has that shape.
pub fn stale_temp_pid(name: &[u8]) -> Option<i32> {
    if !name.starts_with(b".") {
        return None;
    }
    let inf = TMP_INFIX.as_bytes();
    let at = name.windows(inf.len()).rposition(|w| w == inf)?;
    let rest = &name[at + inf.len()..];
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, n) = (&rest[..dash], &rest[dash + 1..]);
    if pid.is_empty() || n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(pid)
        .ok()?
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
}

/// Whether `pid` names a live process (ours counts as live).
pub fn pid_alive(pid: i32) -> bool {
    if pid as u32 == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    no_clobber: bool,
}

impl AtomicFile {
    /// `mode` applies from creation on, so secrets are never briefly world-readable.
    /// With `no_clobber`, an existing `dest` is an error now and at commit.
    pub fn create(dest: &Path, mode: u32, no_clobber: bool) -> Result<AtomicFile> {
        if no_clobber && std::fs::symlink_metadata(dest).is_ok() {
            bail!(
                "{} already exists; datamig never overwrites it (move it away or pick another name)",
                dest.display()
            );
        }
        AtomicFile::create_unchecked(dest, mode, no_clobber)
    }

    /// Like `create`, without looking for `dest` first: with `no_clobber`, the
    /// commit's `renameat2(RENAME_NOREPLACE)` is then the only check. For
    /// restores into a directory that started empty, where a clash is rare and
    /// a `stat` per file is not.
    pub fn create_unchecked(dest: &Path, mode: u32, no_clobber: bool) -> Result<AtomicFile> {
        let dir = parent_dir(dest);
        let name = dest.file_name().context("destination has no file name")?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!("{TMP_INFIX}{}-{}", own_pid(), unique()));
        let tmp = dir.join(tmp_name);
        // Created under the registry lock: a signal either sees it or stops us
        // before it exists.
        let file = {
            let mut live = LIVE_TEMPS.lock().unwrap_or_else(|e| e.into_inner());
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
            live.push(tmp.clone());
            f
        };
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
            no_clobber,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file open until commit")
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Rename into place without fsync: for restores of many files, which sync
    /// the whole filesystem once at the end instead.
    pub fn commit_unsynced(mut self) -> Result<()> {
        let f = self.file.take().expect("file open until commit");
        drop(f);
        let r = if self.no_clobber {
            rename_noreplace(&self.tmp, &self.dest)
        } else {
            std::fs::rename(&self.tmp, &self.dest)
                .with_context(|| format!("cannot rename into {}", self.dest.display()))
        };
        if r.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        unregister(&self.tmp);
        r
    }

    /// fsync, rename into place, fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        let f = self.file.take().expect("file open until commit");
        f.sync_all()
            .with_context(|| format!("cannot flush {} to disk", self.tmp.display()))?;
        drop(f);
        if self.no_clobber {
            rename_noreplace(&self.tmp, &self.dest)?;
        } else {
            std::fs::rename(&self.tmp, &self.dest)
                .with_context(|| format!("cannot rename into {}", self.dest.display()))?;
        }
        unregister(&self.tmp);
        sync_dir(parent_dir(&self.dest))?;
        Ok(())
    }
}

/// Put several files in place as one step, as far as a SIGINT/SIGTERM can tell:
/// all are flushed first, then renamed under the registry lock, so the signal
/// handler either removes every temporary (nothing renamed yet) or waits until
/// all are in place — never a partial set (e.g. sidecars without their archive).
/// Renames happen in the given order; if one fails, those already renamed are
/// removed again and the error is returned.
pub fn commit_all(mut files: Vec<AtomicFile>) -> Result<()> {
    for a in &files {
        let f = a.file.as_ref().expect("file open until commit");
        f.sync_all()
            .with_context(|| format!("cannot flush {} to disk", a.tmp.display()))?;
    }
    let mut done = 0;
    let renamed: Result<()> = {
        let mut live = LIVE_TEMPS.lock().unwrap_or_else(|e| e.into_inner());
        let mut res = Ok(());
        for a in &files {
            let r = if a.no_clobber {
                rename_noreplace(&a.tmp, &a.dest)
            } else {
                std::fs::rename(&a.tmp, &a.dest)
                    .with_context(|| format!("cannot rename into {}", a.dest.display()))
            };
            if let Err(e) = r {
                res = Err(e);
                break;
            }
            done += 1;
        }
        for a in &files[..done] {
            if res.is_err() {
                let _ = std::fs::remove_file(&a.dest);
            }
            live.retain(|q| q != &a.tmp);
        }
        res
    };
    // The renamed ones have no temporary left; the rest (after a failure) are
    // removed by their Drop, outside the lock.
    for a in &mut files[..done] {
        drop(a.file.take());
    }
    renamed?;
    for a in &files {
        sync_dir(parent_dir(&a.dest))?;
    }
    Ok(())
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
            unregister(&self.tmp);
        }
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// This process's PID, asked once: every temporary name carries it.
fn own_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

/// rename(2) that fails instead of replacing an existing destination.
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in path");
    let (f, t) = (c(from), c(to));
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::AlreadyExists {
        bail!(
            "{} appeared while datamig was writing it; the new copy was not put in its place",
            to.display()
        );
    }
    // Filesystems without RENAME_NOREPLACE: link() also refuses to replace.
    if err.raw_os_error() == Some(libc::EINVAL) || err.raw_os_error() == Some(libc::ENOSYS) {
        std::fs::hard_link(from, to).with_context(|| format!("cannot create {}", to.display()))?;
        std::fs::remove_file(from)?;
        return Ok(());
    }
    Err(err).with_context(|| format!("cannot rename into {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_names_are_recognised() {
        assert_eq!(stale_temp_pid(b".a.tar.zst.datamig-tmp-123-456"), Some(123));
        assert_eq!(stale_temp_pid(b"a.tar.zst.datamig-tmp-123-456"), None);
        assert_eq!(stale_temp_pid(b".a.datamig-tmp-x-456"), None);
        assert_eq!(stale_temp_pid(b".a.datamig-tmp-123-"), None);
        assert_eq!(stale_temp_pid(b".a.datamig-tmp-0-1"), None);
        assert_eq!(stale_temp_pid(b".notes.txt"), None);
        // restore's bounded form
        assert_eq!(stale_temp_pid(b".datamig-tmp-77-9"), Some(77));
        let t = temp_name();
        assert!(is_temp_name(&t) && t.len() < 64);
        assert_eq!(stale_temp_pid(&t), Some(std::process::id() as i32));
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("m.jsonl");
        {
            let mut a = AtomicFile::create(&dest, 0o600, false).unwrap();
            a.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn no_clobber_refuses_existing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("a");
        std::fs::write(&dest, b"keep").unwrap();
        assert!(AtomicFile::create(&dest, 0o600, true).is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"keep");
    }

    #[test]
    fn commit_all_is_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut fa = AtomicFile::create(&a, 0o600, true).unwrap();
        fa.write_all(b"A").unwrap();
        let mut fb = AtomicFile::create(&b, 0o600, true).unwrap();
        fb.write_all(b"B").unwrap();
        std::fs::write(&b, b"appeared meanwhile").unwrap();
        assert!(commit_all(vec![fa, fb]).is_err());
        assert!(!a.exists(), "the first file must be taken back");
        assert_eq!(std::fs::read(&b).unwrap(), b"appeared meanwhile");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

        let mut fa = AtomicFile::create(&a, 0o600, true).unwrap();
        fa.write_all(b"A").unwrap();
        let c = d.path().join("c");
        let mut fc = AtomicFile::create(&c, 0o600, true).unwrap();
        fc.write_all(b"C").unwrap();
        commit_all(vec![fa, fc]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"A");
        assert_eq!(std::fs::read(&c).unwrap(), b"C");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
        assert!(
            LIVE_TEMPS
                .lock()
                .unwrap()
                .iter()
                .all(|p| !p.starts_with(d.path()))
        );
    }

    #[test]
    fn commit_puts_whole_file_in_place_with_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("a");
        let mut a = AtomicFile::create(&dest, 0o600, true).unwrap();
        a.write_all(b"data").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
