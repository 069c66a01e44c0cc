//! A local directory as a copy location: the same create-only, all-or-nothing
//! rules as an object store, through datamig's temporary files
//! (`.NAME.datamig-tmp-PID-N`, fsync, `renameat2(RENAME_NOREPLACE)`).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{Object, PutError};
use crate::atomic::AtomicFile;

pub(super) struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub(super) fn new(dir: PathBuf) -> DirStore {
        DirStore { dir }
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            bail!("{name:?} is not a plain file name");
        }
        Ok(self.dir.join(name))
    }

    pub(super) fn put_new(&self, name: &str, src: &mut dyn Read) -> Result<(), PutError> {
        let dest = self.path(name)?;
        crate::archive::ensure_dest(&self.dir)?;
        // Mode 0600: archives hold credentials.
        let mut f = AtomicFile::create(&dest, 0o600, true)?;
        std::io::copy(src, &mut f)
            .and_then(|_| f.flush())
            .with_context(|| format!("cannot write {}", f.temp_path().display()))?;
        // RENAME_NOREPLACE: a file that appeared meanwhile is kept.
        f.commit().map_err(|e| {
            if dest.symlink_metadata().is_ok() {
                PutError::Exists(dest.display().to_string())
            } else {
                PutError::Failed(e)
            }
        })
    }

    pub(super) fn stat(&self, name: &str) -> Result<Option<u64>> {
        let p = self.path(name)?;
        match p.symlink_metadata() {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => bail!("{} is not a regular file", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", p.display())),
        }
    }

    pub(super) fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let f =
            crate::fsx::open_path(&p).with_context(|| format!("cannot open {}", p.display()))?;
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = f
                .read_at(&mut buf[got..], offset + got as u64)
                .with_context(|| format!("cannot read {}", p.display()))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub(super) fn list(&self) -> Result<Vec<Object>> {
        let rd = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        let mut out = Vec::new();
        for d in rd {
            let d = d.with_context(|| format!("cannot list {}", self.dir.display()))?;
            let Ok(name) = d.file_name().into_string() else {
                continue;
            };
            let Ok(m) = d.path().symlink_metadata() else {
                continue;
            };
            if !m.is_file() || crate::atomic::is_temp_name(name.as_bytes()) {
                continue;
            }
            let modified = m
                .modified()
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(|t| t.to_string());
            out.push(Object {
                name,
                size: m.len(),
                modified,
            });
        }
        Ok(out)
    }

    pub(super) fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name)?;
        std::fs::remove_file(&p).with_context(|| format!("cannot delete {}", p.display()))
    }

    pub(super) fn abort_unfinished(&self) -> Result<Vec<String>> {
        Ok(crate::atomic::sweep_stale_temps(&self.dir)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect())
    }
}
