//! How a regular file lands in DIR: written under a bounded temporary name in
//! its parent's handle, checked against the manifest's SHA-256, given its
//! metadata on the open fd, then renamed with RENAME_NOREPLACE. The same steps
//! run on the main thread (data streamed from the archive) and on the writer
//! pool (data already in memory); what happened comes back as an [`Outcome`]
//! that the main thread records, so the report reads the same either way.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::Ctx;
use super::paths::split_parent;
use crate::entry::hex;
use crate::fsx::Dir;
use crate::summary::PathNote;

/// Everything about a file but its bytes and its parent's handle.
pub(super) struct Landing {
    /// The member's path inside DIR.
    pub path: Vec<u8>,
    /// Its last component: the name in the parent handle.
    pub name: Vec<u8>,
    pub size: u64,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub mtime_ns: i64,
    pub attrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The manifest's SHA-256, when there is one to check against.
    pub want: Option<[u8; 32]>,
    /// --overwrite: something already in DIR may be in the way.
    pub overwrite: bool,
    /// The rename may replace what is under `name` (--overwrite, or an
    /// earlier member of the same name in a foreign archive).
    pub replace: bool,
}

/// What the bytes came to: their hash (when asked for) and the first write error.
pub(super) type Filled = (Option<[u8; 32]>, Option<io::Error>);

pub(super) enum Outcome {
    /// In place under its name; `notes` (from the extended attributes) apply.
    Placed {
        notes: Vec<String>,
    },
    Refused {
        notes: Vec<String>,
        why: String,
    },
    Error {
        notes: Vec<String>,
        why: String,
    },
    Corrupt(String),
}

impl Landing {
    /// Put the file in place; `fill` writes its bytes into the temporary
    /// file. An `Err` is the archive's (its data ended or broke), not the
    /// destination's: nothing is left under the file's name.
    pub fn place(
        &self,
        to: &Path,
        dir: &Dir,
        fill: impl FnOnce(&fs::File) -> Result<Filled>,
    ) -> Result<Outcome> {
        // Without --overwrite the destination started empty, so anything in
        // the way was put there by this archive; the no-replace rename at the
        // end catches it, and the common case pays no `stat`.
        if self.overwrite && dir.stat(&self.name).is_ok_and(|m| m.is_dir()) {
            return Ok(Outcome::Refused {
                notes: Vec::new(),
                why: "a directory is already there".into(),
            });
        }
        let mut tmp = match create_temp(to, &self.path, dir) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Outcome::Error {
                    notes: Vec::new(),
                    why: format!("cannot create a temporary file in its directory: {e}"),
                });
            }
        };
        let (got, write_err) = fill(tmp.file())?;
        if let Some(e) = write_err {
            return Ok(Outcome::Error {
                notes: Vec::new(),
                why: format!(
                    "cannot write: {e}; nothing was put under its name (free space in the destination, then restore this path again with --overwrite)"
                ),
            }); // `tmp` dropped: the temporary file is removed
        }
        if let (Some(want), Some(got)) = (self.want, got)
            && want != got
        {
            return Ok(Outcome::Corrupt(format!(
                "sha256 {} but the manifest says {}; not restored",
                hex(&got),
                hex(&want)
            )));
        }
        let _ = crate::fsx::set_fd_meta(tmp.file().as_fd(), self.mode, self.owner, self.mtime_ns);
        // After the owner and mode: fchown drops security.capability, and
        // fchmod rewrites an ACL's mask.
        let notes = super::xattrs::apply(tmp.file(), &self.attrs);
        if let Err(why) = commit(&tmp, &self.name, self.replace) {
            return Ok(match why {
                Commit::Refused(why) => Outcome::Refused {
                    notes,
                    why: why.into(),
                },
                Commit::Failed(e) => Outcome::Error {
                    notes,
                    why: format!("cannot rename into place: {e}"),
                },
            });
        }
        tmp.file = None; // renamed: nothing to remove
        Ok(Outcome::Placed { notes })
    }

    /// Record what happened to this file in the report.
    pub fn record(self, ctx: &mut Ctx, outcome: Outcome) {
        let path = String::from_utf8_lossy(&self.path).into_owned();
        let note = |ctx: &mut Ctx, notes: Vec<String>| {
            for n in notes {
                ctx.report.notes.push(PathNote {
                    path: path.clone(),
                    note: n,
                });
            }
        };
        match outcome {
            Outcome::Placed { notes } => {
                note(ctx, notes);
                if self.want.is_none() {
                    ctx.report.unverified.push(path.clone());
                }
                ctx.made.insert(self.path);
                ctx.report.files += 1;
                ctx.report.bytes += self.size;
            }
            Outcome::Refused { notes, why } => {
                note(ctx, notes);
                ctx.report.refused.push(PathNote {
                    path: path.clone(),
                    note: why,
                });
            }
            Outcome::Error { notes, why } => {
                note(ctx, notes);
                ctx.report.errors.push(PathNote {
                    path: path.clone(),
                    note: why,
                });
            }
            Outcome::Corrupt(why) => ctx.report.corrupt.push(PathNote { path, note: why }),
        }
    }
}

/// `fill` for bytes already in memory.
pub(super) fn from_memory(f: &fs::File, data: &[u8], hash: bool) -> Filled {
    let got = hash.then(|| Sha256::digest(data).into());
    (got, f.write_all_at(data, 0).err())
}

/// A temporary file in a parent directory, removed unless committed.
struct Temp<'d> {
    dir: &'d Dir,
    name: Vec<u8>,
    /// Its path, registered for the signal handler.
    path: PathBuf,
    file: Option<fs::File>,
}

impl Temp<'_> {
    fn file(&self) -> &fs::File {
        self.file.as_ref().expect("open until commit")
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.dir.unlink(&self.name);
        }
        crate::atomic::forget_temp(&self.path);
    }
}

fn create_temp<'d>(to: &Path, rel: &[u8], dir: &'d Dir) -> io::Result<Temp<'d>> {
    let name = crate::atomic::temp_name();
    let (comps, _) = split_parent(rel);
    let mut path = to.to_path_buf();
    for c in comps {
        path.push(std::ffi::OsStr::from_bytes(c));
    }
    path.push(std::ffi::OsStr::from_bytes(&name));
    let file = crate::atomic::create_registered(path.clone(), || dir.create_new(&name, 0o600))?;
    Ok(Temp {
        dir,
        name,
        path,
        file: Some(file),
    })
}

enum Commit {
    Refused(&'static str),
    Failed(io::Error),
}

/// Rename the temporary onto `name` in the same directory handle: never over
/// an existing entry, except a non-directory with --overwrite.
fn commit(tmp: &Temp, name: &[u8], overwrite: bool) -> Result<(), Commit> {
    let dir = tmp.dir;
    let r = if overwrite {
        dir.rename(&tmp.name, name)
    } else {
        match dir.rename_noreplace(&tmp.name, name) {
            // Filesystems without RENAME_NOREPLACE: link() also refuses to replace.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => dir
                .hard_link(dir, &tmp.name, name)
                .and_then(|()| dir.unlink(&tmp.name)),
            r => r,
        }
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) => match dir.stat(name) {
            Ok(m) if m.is_dir() => Err(Commit::Refused("a directory is already there")),
            Ok(_) if !overwrite => Err(Commit::Refused(
                "already exists (the archive names it twice?)",
            )),
            _ => Err(Commit::Failed(e)),
        },
    }
}
