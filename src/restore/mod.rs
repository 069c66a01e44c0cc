//! `datamig restore`: the rollback. Every file is written under a temporary
//! name, checked against the manifest's SHA-256, and only then renamed into
//! place; members that would land outside the destination are refused.

pub mod paths;
mod source;

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::write::hash_zeros;
use crate::archive::{MANIFEST_SIDECAR, sidecar};
use crate::atomic::AtomicFile;
use crate::entry::{Entry, Kind, hex};
use crate::frames::{FrameReader, read_index};
use crate::layout::is_under;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::tarfmt::{Found, MemberKind, TarReader};
use paths::{prepare_parent_cached, refuse_name};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub archive: PathBuf,
    pub to: PathBuf,
    /// Relative paths (files or directories) to restore; empty: everything.
    pub paths: Vec<String>,
    pub overwrite: bool,
    pub same_owner: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    pub to: String,
    /// "sidecar", "embedded" or "none" (nothing could be checked).
    pub manifest: &'static str,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// Compressed bytes read from the archive (manifest lookup included).
    pub archive_bytes_read: u64,
    pub archive_size: u64,
    pub seconds: f64,
    pub refused: Vec<PathNote>,
    /// Content did not match the manifest: not put under its name.
    pub corrupt: Vec<PathNote>,
    /// Restored without a manifest to check against.
    pub unverified: Vec<String>,
    /// In the manifest (and asked for) but not found in the archive.
    pub missing: Vec<String>,
    pub errors: Vec<PathNote>,
    /// With --overwrite: temporary files of killed datamig runs found in the
    /// directories this restore wrote into, and removed.
    pub removed_temps: Vec<String>,
}

impl RestoreReport {
    pub fn clean(&self) -> bool {
        self.refused.is_empty()
            && self.corrupt.is_empty()
            && self.unverified.is_empty()
            && self.missing.is_empty()
            && self.errors.is_empty()
    }
}

struct Ctx<'a> {
    to: PathBuf,
    manifest: Option<&'a Manifest>,
    same_owner: bool,
    overwrite: bool,
    restored_files: HashSet<Vec<u8>>,
    /// Parent directories already checked (not symlinks) in this run.
    known_dirs: HashSet<Vec<u8>>,
    /// Directories already swept of dead runs' temporary files (--overwrite).
    swept: HashSet<PathBuf>,
    /// Directory metadata applied last (children change a directory's mtime).
    dirs: Vec<(PathBuf, u32, u64, u64, i64)>,
    report: RestoreReport,
}

pub fn restore(opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let started = std::time::Instant::now();
    crate::atomic::refuse_temp_name(&opts.archive)?;
    let len = std::fs::metadata(&opts.archive)
        .with_context(|| format!("cannot open archive {}", opts.archive.display()))?
        .len();
    let mut magic = [0u8; 4];
    let is_zstd = File::open(&opts.archive)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && u32::from_le_bytes(magic) == 0xFD2F_B528;
    if !is_zstd {
        bail!(
            "{} is not a zstd-compressed archive (empty, or not made by datamig); nothing was restored",
            opts.archive.display()
        );
    }
    let (manifest, source, manifest_cost) = load_manifest(&opts.archive, len)?;
    // Check the requested paths before touching the destination, so a restore
    // that cannot run (exit 2) leaves nothing behind.
    let wanted = match (&manifest, opts.paths.is_empty()) {
        (_, true) => Vec::new(),
        (Some(m), false) => select(m, &opts.paths)?,
        (None, false) => bail!(
            "{} has no usable manifest, so single paths cannot be located; restore it whole (without PATH)",
            opts.archive.display()
        ),
    };
    prepare_destination(&opts.to, opts.overwrite)?;
    let to = opts
        .to
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", opts.to.display()))?;
    let mut ctx = Ctx {
        to,
        manifest: manifest.as_ref(),
        same_owner: opts.same_owner && unsafe { libc::geteuid() } == 0,
        overwrite: opts.overwrite,
        restored_files: HashSet::new(),
        known_dirs: HashSet::new(),
        swept: HashSet::new(),
        dirs: Vec::new(),
        report: RestoreReport {
            report: "restore",
            version: 1,
            archive: opts.archive.display().to_string(),
            to: opts.to.display().to_string(),
            manifest: source,
            archive_size: len,
            archive_bytes_read: manifest_cost,
            ..Default::default()
        },
    };
    let file = File::open(&opts.archive)
        .with_context(|| format!("cannot open archive {}", opts.archive.display()))?;

    if opts.paths.is_empty() {
        let total = manifest.as_ref().map(|m| m.trailer.bytes);
        progress.phase("restoring", total);
        let mut tar = TarReader::new(source::TarSource::open(file, len)?);
        loop {
            match tar.next_member() {
                Ok(Some(found)) => {
                    let size = found.header.size;
                    let name = String::from_utf8_lossy(&found.header.path).into_owned();
                    // A read error inside a member's data (truncated archive,
                    // damaged frame): report it, keep what was restored.
                    if let Err(e) = member(&mut ctx, &mut tar, found) {
                        ctx.report.errors.push(PathNote {
                            path: name,
                            note: format!("{e:#}; restore stopped there"),
                        });
                        break;
                    }
                    progress.advance(1, size);
                }
                Ok(None) => break,
                Err(e) => {
                    ctx.report.errors.push(PathNote {
                        path: opts.archive.display().to_string(),
                        note: format!("{e:#}; restore stopped there"),
                    });
                    break;
                }
            }
        }
        ctx.report.archive_bytes_read += tar.get_ref().read_bytes();
        if let Some(m) = &manifest {
            for e in m.entries.iter().filter(|e| e.pos.is_some()) {
                let restored = match e.kind {
                    Kind::File => ctx.restored_files.contains(&e.path),
                    _ => true,
                };
                let path = e.path_lossy();
                // Members found but not writable (disk full) are errors, not
                // also missing.
                let write_failed = ctx
                    .report
                    .errors
                    .iter()
                    .any(|c| c.path == path && c.note.starts_with("cannot"));
                let reported = ctx
                    .report
                    .corrupt
                    .iter()
                    .chain(&ctx.report.refused)
                    .any(|c| c.path == path);
                if !restored && !reported && !write_failed {
                    ctx.report.missing.push(e.path_lossy());
                }
            }
        }
    } else {
        let total = wanted.iter().map(|e| e.size).sum();
        progress.phase("restoring", Some(total));
        let mut reader: Option<TarReader<FrameReader<File>>> = None;
        for e in wanted {
            let pos = e.pos.expect("selected entries are archived");
            let here = reader.as_ref().map(|t| t.get_ref().position());
            if here != Some((pos.frame_offset, pos.offset_in_frame)) {
                if let Some(t) = reader.take() {
                    ctx.report.archive_bytes_read += t.get_ref().read_bytes;
                }
                let mut fr = FrameReader::new(file.try_clone()?, len, pos.frame_offset)?;
                let skipped = std::io::copy(
                    &mut std::io::Read::take(&mut fr, pos.offset_in_frame),
                    &mut std::io::sink(),
                );
                if let Err(err) = skipped {
                    ctx.report.archive_bytes_read += fr.read_bytes;
                    ctx.report.errors.push(PathNote {
                        path: e.path_lossy(),
                        note: format!("{err:#}"),
                    });
                    continue;
                }
                reader = Some(TarReader::new(fr));
            }
            let tar = reader.as_mut().expect("reader set above");
            let failed = match tar.next_member() {
                Ok(Some(found)) if found.header.path == e.path => {
                    match member(&mut ctx, tar, found) {
                        Ok(()) => {
                            progress.advance(1, e.size);
                            None
                        }
                        Err(err) => Some(err),
                    }
                }
                Ok(_) => {
                    ctx.report.missing.push(e.path_lossy());
                    if let Some(t) = reader.take() {
                        ctx.report.archive_bytes_read += t.get_ref().read_bytes;
                    }
                    None
                }
                Err(err) => Some(err),
            };
            if let Some(err) = failed {
                ctx.report.errors.push(PathNote {
                    path: e.path_lossy(),
                    note: format!("{err:#}"),
                });
                if let Some(t) = reader.take() {
                    ctx.report.archive_bytes_read += t.get_ref().read_bytes;
                }
            }
        }
        if let Some(t) = reader {
            ctx.report.archive_bytes_read += t.get_ref().read_bytes;
        }
    }
    finish_dirs(&mut ctx);
    sync_fs(&ctx.to);
    progress.finish();
    ctx.report.seconds = started.elapsed().as_secs_f64();
    Ok(ctx.report)
}

/// Entries under the requested paths, in archive order; a hard link's first
/// path comes along so the link can be made.
fn select<'m>(m: &'m Manifest, paths: &[String]) -> Result<Vec<&'m Entry>> {
    let mut want: Vec<&[u8]> = Vec::new();
    for p in paths {
        let p = p.trim_end_matches('/');
        if let Some(why) = refuse_name(p.as_bytes()) {
            bail!("{p:?} cannot be restored: {why}");
        }
        if !m.entries.iter().any(|e| is_under(&e.path, p.as_bytes())) {
            bail!("{p:?} is not in the archive's manifest (see `datamig list`)");
        }
        want.push(p.as_bytes());
    }
    let mut picked: Vec<bool> = m
        .entries
        .iter()
        .map(|e| e.pos.is_some() && want.iter().any(|w| is_under(&e.path, w)))
        .collect();
    for (i, e) in m.entries.iter().enumerate() {
        if picked[i]
            && e.kind == Kind::Hardlink
            && let Some(t) = &e.target
            && let Ok(j) = m.entries.binary_search_by(|x| x.path.as_slice().cmp(t))
        {
            picked[j] = m.entries[j].pos.is_some();
        }
    }
    let mut out: Vec<&Entry> = m
        .entries
        .iter()
        .zip(picked)
        .filter(|(_, p)| *p)
        .map(|(e, _)| e)
        .collect();
    out.sort_by_key(|e| e.pos.map(|p| (p.frame_offset, p.offset_in_frame)));
    Ok(out)
}

/// The sidecar manifest, else the embedded one found through the index.
fn load_manifest(archive: &Path, len: u64) -> Result<(Option<Manifest>, &'static str, u64)> {
    let side = sidecar(archive, MANIFEST_SIDECAR);
    if side.exists() {
        let m = Manifest::read_file(&side)?;
        return Ok((Some(m), "sidecar", 0));
    }
    let mut f = File::open(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    if let Ok(Some(ix)) = read_index(&mut f) {
        let bytes = crate::verify::archive::read_embedded(
            archive,
            len,
            ix.manifest_frame_offset,
            ix.manifest_offset_in_frame,
        )?;
        let m = Manifest::read(&bytes[..]).context("the manifest inside the archive is damaged")?;
        return Ok((Some(m), "embedded", len - ix.manifest_frame_offset));
    }
    Ok((None, "none", 0))
}

fn prepare_destination(to: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(to) {
        Err(_) => {
            std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))
        }
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", to.display()),
        Ok(_) => {
            let non_empty = std::fs::read_dir(to)
                .with_context(|| format!("cannot list {}", to.display()))?
                .next()
                .is_some();
            if non_empty && !overwrite {
                bail!(
                    "{} is not empty; restore into an empty directory, or pass --overwrite to replace what is there",
                    to.display()
                );
            }
            Ok(())
        }
    }
}

fn refuse(ctx: &mut Ctx, name: &[u8], why: String) {
    ctx.report.refused.push(PathNote {
        path: String::from_utf8_lossy(name).into_owned(),
        note: why,
    });
}

fn member<R: std::io::Read>(ctx: &mut Ctx, tar: &mut TarReader<R>, found: Found) -> Result<()> {
    let mut h = found.header;
    // `tar -C dir .` writes `./name` and a `.` member for the directory itself.
    strip_dot_slash(&mut h.path);
    if h.kind == MemberKind::Hardlink
        && let Some(l) = h.link.as_mut()
    {
        strip_dot_slash(l);
    }
    if h.path == b"." || h.path.is_empty() {
        return Ok(());
    }
    if h.path.starts_with(b".datamig/") || h.path == b".datamig" {
        return Ok(());
    }
    if let Some(why) = refuse_name(&h.path) {
        refuse(ctx, &h.path, why);
        return Ok(());
    }
    let expected: Option<&Entry> = match ctx.manifest {
        Some(m) => match m.get(&h.path) {
            Some(e) => Some(e),
            None => {
                refuse(ctx, &h.path, "not in the archive's manifest".into());
                return Ok(());
            }
        },
        None => None,
    };
    let dest = match prepare_parent_cached(&ctx.to, &h.path, &mut ctx.known_dirs) {
        Ok(d) => d,
        Err(why) => {
            refuse(ctx, &h.path, why);
            return Ok(());
        }
    };
    if ctx.overwrite {
        sweep_parent(ctx, &dest);
    }
    let name = String::from_utf8_lossy(&h.path).into_owned();
    match h.kind {
        MemberKind::Dir => {
            match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    refuse(
                        ctx,
                        &h.path,
                        "something that is not a directory is already there".into(),
                    );
                    return Ok(());
                }
                Err(_) => {
                    if let Err(e) = std::fs::create_dir(&dest) {
                        ctx.report.errors.push(PathNote {
                            path: name,
                            note: e.to_string(),
                        });
                        return Ok(());
                    }
                }
            }
            ctx.dirs.push((dest, h.mode, h.uid, h.gid, h.mtime));
            ctx.report.dirs += 1;
        }
        MemberKind::Symlink => {
            let target = h.link.clone().unwrap_or_default();
            if !clear_for(ctx, &dest, &h.path) {
                return Ok(());
            }
            if let Err(e) = std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest) {
                ctx.report.errors.push(PathNote {
                    path: name,
                    note: e.to_string(),
                });
                return Ok(());
            }
            set_link_meta(&dest, h.uid, h.gid, h.mtime, ctx.same_owner);
            ctx.report.symlinks += 1;
        }
        MemberKind::Hardlink => {
            let target = h.link.clone().unwrap_or_default();
            if let Some(why) = refuse_name(&target) {
                refuse(
                    ctx,
                    &h.path,
                    format!(
                        "hard link target {:?}: {why}",
                        String::from_utf8_lossy(&target)
                    ),
                );
                return Ok(());
            }
            if !ctx.restored_files.contains(&target) {
                refuse(
                    ctx,
                    &h.path,
                    "hard link to a file this restore did not write".into(),
                );
                return Ok(());
            }
            if !clear_for(ctx, &dest, &h.path) {
                return Ok(());
            }
            if let Err(e) = std::fs::hard_link(ctx.to.join(OsStr::from_bytes(&target)), &dest) {
                ctx.report.errors.push(PathNote {
                    path: name,
                    note: e.to_string(),
                });
                return Ok(());
            }
            ctx.report.hardlinks += 1;
        }
        MemberKind::File => {
            if expected.is_some_and(|e| e.kind != Kind::File) {
                refuse(
                    ctx,
                    &h.path,
                    "the manifest does not record a regular file here".into(),
                );
                return Ok(());
            }
            write_file(ctx, tar, &h, &dest, expected)?;
        }
    }
    Ok(())
}

/// A restore killed by SIGKILL leaves the temporary file of the member it was
/// writing; the re-run (which needs --overwrite, DIR being non-empty) removes
/// those of dead runs from each directory it writes into.
fn sweep_parent(ctx: &mut Ctx, dest: &Path) {
    let Some(dir) = dest.parent() else { return };
    if ctx.swept.contains(dir) {
        return;
    }
    for p in crate::atomic::sweep_stale_temps(dir) {
        let rel = p.strip_prefix(&ctx.to).unwrap_or(&p);
        ctx.report
            .removed_temps
            .push(rel.to_string_lossy().into_owned());
    }
    ctx.swept.insert(dir.to_path_buf());
}

fn strip_dot_slash(p: &mut Vec<u8>) {
    while p.starts_with(b"./") {
        p.drain(..2);
    }
}

/// With --overwrite, remove a non-directory in the way; never a directory.
fn clear_for(ctx: &mut Ctx, dest: &Path, rel: &[u8]) -> bool {
    match std::fs::symlink_metadata(dest) {
        Err(_) => true,
        Ok(m) if m.is_dir() => {
            refuse(ctx, rel, "a directory is already there".into());
            false
        }
        Ok(_) if ctx.overwrite => std::fs::remove_file(dest).is_ok(),
        Ok(_) => {
            refuse(
                ctx,
                rel,
                "already exists (the archive names it twice?)".into(),
            );
            false
        }
    }
}

fn write_file<R: std::io::Read>(
    ctx: &mut Ctx,
    tar: &mut TarReader<R>,
    h: &crate::tarfmt::MemberHeader,
    dest: &Path,
    expected: Option<&Entry>,
) -> Result<()> {
    let name = String::from_utf8_lossy(&h.path).into_owned();
    // Without --overwrite the destination started empty, so anything in the
    // way was put there by this archive; the no-replace rename at the end
    // catches it, and the common case pays no `stat`.
    if ctx.overwrite && std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        refuse(ctx, &h.path, "a directory is already there".into());
        return Ok(());
    }
    let created = if ctx.overwrite {
        AtomicFile::create(dest, 0o600, false)
    } else {
        AtomicFile::create_unchecked(dest, 0o600, true)
    };
    let mut out = match created {
        Ok(f) => f,
        Err(e) => {
            ctx.report.errors.push(PathNote {
                path: name,
                note: format!("{e:#}"),
            });
            return Ok(());
        }
    };
    let mut hasher = Sha256::new();
    let mut logical = 0u64;
    let mut write_err: Option<std::io::Error> = None;
    {
        let f = out.file();
        tar.read_data(h, |off, b| {
            hash_zeros(&mut hasher, off - logical);
            hasher.update(b);
            logical = off + b.len() as u64;
            if write_err.is_none()
                && let Err(e) = f.write_all_at(b, off)
            {
                write_err = Some(e);
            }
            Ok(())
        })?;
        // Only a trailing hole leaves the file short of its size.
        if write_err.is_none()
            && logical < h.size
            && let Err(e) = f.set_len(h.size)
        {
            write_err = Some(e);
        }
    }
    hash_zeros(&mut hasher, h.size - logical);
    if let Some(e) = write_err {
        ctx.report.errors.push(PathNote {
            path: name,
            note: format!(
                "cannot write: {e}; nothing was put under its name (free space in the destination, then restore this path again with --overwrite)"
            ),
        });
        return Ok(()); // `out` dropped: the temporary file is removed
    }
    let got: [u8; 32] = hasher.finalize().into();
    if let Some(want) = expected.and_then(|e| e.sha256)
        && want != got
    {
        ctx.report.corrupt.push(PathNote {
            path: name,
            note: format!(
                "sha256 {} but the manifest says {}; not restored",
                hex(&got),
                hex(&want)
            ),
        });
        return Ok(());
    }
    let f = out.file();
    if ctx.same_owner {
        let _ = std::os::unix::fs::fchown(&*f, Some(h.uid as u32), Some(h.gid as u32));
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(h.mode));
    let _ = f.set_modified(to_system_time(h.mtime));
    if let Err(e) = out.commit_unsynced() {
        match std::fs::symlink_metadata(dest) {
            Ok(m) if !ctx.overwrite && m.is_dir() => {
                refuse(ctx, &h.path, "a directory is already there".into())
            }
            Ok(_) if !ctx.overwrite => refuse(
                ctx,
                &h.path,
                "already exists (the archive names it twice?)".into(),
            ),
            _ => ctx.report.errors.push(PathNote {
                path: name,
                note: format!("{e:#}"),
            }),
        }
        return Ok(());
    }
    if expected.and_then(|e| e.sha256).is_none() {
        ctx.report.unverified.push(name);
    }
    ctx.restored_files.insert(h.path.clone());
    ctx.report.files += 1;
    ctx.report.bytes += h.size;
    Ok(())
}

fn to_system_time(secs: i64) -> std::time::SystemTime {
    if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    }
}

fn set_link_meta(p: &Path, uid: u64, gid: u64, mtime: i64, same_owner: bool) {
    if same_owner {
        let _ = std::os::unix::fs::lchown(p, Some(uid as u32), Some(gid as u32));
    }
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return;
    };
    let times = [
        libc::timespec {
            tv_sec: mtime as libc::time_t,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

fn finish_dirs(ctx: &mut Ctx) {
    use std::os::unix::fs::PermissionsExt;
    for (p, mode, uid, gid, mtime) in ctx.dirs.iter().rev() {
        if ctx.same_owner {
            let _ = std::os::unix::fs::lchown(p, Some(*uid as u32), Some(*gid as u32));
        }
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        if let Ok(d) = File::open(p) {
            let _ = d.set_modified(to_system_time(*mtime));
        }
    }
}

fn sync_fs(p: &Path) {
    if let Ok(d) = File::open(p) {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a valid, open descriptor.
        unsafe { libc::syncfs(d.as_raw_fd()) };
    }
}
