//! `--remove-source`: delete exactly what the verified archive holds. Anything
//! that changed since it was archived, or was never archived (excluded paths,
//! the destination itself), stays on disk and is reported.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::entry::{Entry, Kind};
use crate::summary::PathNote;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Removal {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub kept: Vec<PathNote>,
}

/// Remove archived entries, children before parents (reverse byte order puts
/// `a/b` before `a`), then the base directory itself when `remove_base` and empty.
pub fn remove_archived(base: &Path, entries: &[Entry], remove_base: bool) -> Removal {
    let mut r = Removal::default();
    for e in entries.iter().rev().filter(|e| e.pos.is_some()) {
        let abs = base.join(OsStr::from_bytes(&e.path));
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(err) => {
                r.kept
                    .push(note(e, format!("cannot check it before removal: {err}")));
                continue;
            }
        };
        let res = if e.kind == Kind::Dir {
            if !meta.is_dir() {
                r.kept
                    .push(note(e, "no longer a directory; left alone".into()));
                continue;
            }
            std::fs::remove_dir(&abs).map(|_| r.dirs += 1)
        } else {
            let same = meta.ino() == e.ino
                && meta.size() == e.size
                && crate::entry::nanos(meta.mtime(), meta.mtime_nsec()) == e.mtime_ns;
            if !same {
                r.kept
                    .push(note(e, "changed since it was archived; left alone".into()));
                continue;
            }
            std::fs::remove_file(&abs).map(|_| {
                r.files += 1;
                if e.kind == Kind::File {
                    r.bytes += e.size;
                }
            })
        };
        if let Err(err) = res {
            let why = if err.raw_os_error() == Some(libc::ENOTEMPTY) {
                "holds entries that were not archived; left in place".to_string()
            } else {
                format!("cannot remove: {err}")
            };
            r.kept.push(note(e, why));
        }
    }
    if remove_base {
        match std::fs::remove_dir(base) {
            Ok(()) => r.dirs += 1,
            Err(err) => r.kept.push(PathNote {
                path: base.display().to_string(),
                note: format!("archived directory not removed: {err}"),
            }),
        }
    }
    r
}

fn note(e: &Entry, why: String) -> PathNote {
    PathNote {
        path: e.path_lossy(),
        note: why,
    }
}
