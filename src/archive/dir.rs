//! Which files in a directory are archives: what `list DIR` and
//! `verify --all DIR` look at.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::archive::EXTENSION;

/// The regular files named `*.tar.zst` (or `*.tar.zst.age`, encrypted)
/// directly in `dir`, sorted by name;
/// a datamig run's temporary file is not an archive yet, and a symlink is
/// not followed (it may lead anywhere).
pub fn archives_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?;
    let mut found = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot read the directory {}", dir.display()))?;
        let name = e.file_name();
        let n = name.as_bytes();
        let age = [EXTENSION.as_bytes(), crate::crypt::AGE_SUFFIX.as_bytes()].concat();
        let archive = n.ends_with(EXTENSION.as_bytes()) || n.ends_with(&age);
        if !archive || crate::atomic::is_temp_name(n) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) {
            found.push(e.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The error for a directory without archives, naming what was looked for.
pub fn none_in(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} holds no archives (no regular file named *{EXTENSION}); name the directory \
         the archives or backups are in (e.g. <root>/archive or <root>/backups)",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_tar_zst_files_that_are_not_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for n in [
            "b.tar.zst",
            "a.tar.zst",
            "a.tar.zst.sha256",
            "notes.txt",
            "e.tar.zst.age",
            "e.tar.zst.age.sha256",
            "e.tar.zst.manifest.jsonl.age",
        ] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        std::fs::write(d.join(".c.tar.zst.datamig-tmp-1-1"), b"x").unwrap();
        std::fs::write(d.join(".d.datamig-tmp-1-1.tar.zst"), b"x").unwrap();
        std::fs::create_dir(d.join("dir.tar.zst")).unwrap();
        std::os::unix::fs::symlink("a.tar.zst", d.join("link.tar.zst")).unwrap();
        let got: Vec<_> = archives_in(d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["a.tar.zst", "b.tar.zst", "e.tar.zst.age"]);
    }
}
