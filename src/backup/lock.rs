//! One backup at a time per destination: an exclusive `flock` on
//! `<dest>/.datamig-backup.lock`, which the kernel releases when the holder
//! exits however it dies, so a stale lock file never blocks the next night.
//!
//! The file's content (pid, host, start time) only tells a blocked run who
//! holds the lock. The file itself is never deleted: removing a lock file
//! races with a run that has just opened it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub const LOCK_NAME: &str = ".datamig-backup.lock";

/// Held until dropped (or the process ends).
#[derive(Debug)]
pub struct BackupLock {
    _file: File,
    pub path: PathBuf,
}

/// Take the lock in `dest` (which must exist) without waiting, or fail with a
/// message naming the lock file and its holder. `started` is written into it.
pub fn acquire(dest: &Path, started: &str) -> Result<BackupLock> {
    let path = dest.join(LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // flock(LOCK_EX | LOCK_NB): released by the kernel when the holder dies,
    // so a stale lock file never blocks.
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            bail!(
                "another datamig backup is running: {} is locked by {}; this run did nothing",
                path.display(),
                describe_holder(&text)
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let info = format!(
        "pid={}\nhost={}\nstarted={started}\n",
        std::process::id(),
        hostname()
    );
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(info.as_bytes()))
        .with_context(|| format!("cannot write to the lock file {}", path.display()))?;
    Ok(BackupLock { _file: file, path })
}

/// "pid 123 on host web1, started 2025-12-25T02:00:00Z" from the file's lines.
fn describe_holder(text: &str) -> String {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match (field("pid"), field("host"), field("started")) {
        (Some(pid), host, started) => format!(
            "pid {pid} on host {}, started {}",
            host.unwrap_or("?"),
            started.unwrap_or("?")
        ),
        _ if text.trim().is_empty() => "a process that has not written its details yet".into(),
        _ => format!("a holder that wrote {:?}", text.trim()),
    }
}

/// /etc/hostname, else the kernel's node name (`uname -n`).
pub fn hostname() -> String {
    if let Ok(s) = std::fs::read_to_string("/etc/hostname") {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    // SAFETY: uname fills a plain struct; nodename is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let c = std::ffi::CStr::from_ptr(u.nodename.as_ptr());
            return c.to_string_lossy().into_owned();
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_told_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path(), "2025-12-25T02:00:00Z").unwrap();
        // flock conflicts between open file descriptions, even in one process.
        let err = format!("{:#}", acquire(d.path(), "later").unwrap_err());
        assert!(err.contains(&first.path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("started 2025-12-25T02:00:00Z"), "{err}");
        drop(first);
        let again = acquire(d.path(), "2025-12-26T02:00:00Z").unwrap();
        let text = std::fs::read_to_string(&again.path).unwrap();
        assert!(text.ends_with("started=2025-12-26T02:00:00Z\n"), "{text:?}");
        assert!(text.starts_with(&format!("pid={}\n", std::process::id())));
    }

    #[test]
    fn holder_descriptions() {
        assert_eq!(
            describe_holder("pid=7\nhost=h\nstarted=s\n"),
            "pid 7 on host h, started s"
        );
        assert_eq!(
            describe_holder(""),
            "a process that has not written its details yet"
        );
        assert_eq!(describe_holder("junk"), "a holder that wrote \"junk\"");
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
