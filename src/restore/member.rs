//! One tar member put in place through its parent's handle: directories made
//! 0700 (their metadata waits for the end), files written under a bounded
//! temporary name, checked, given their metadata on the open fd and renamed
//! with RENAME_NOREPLACE; symlinks and hard links made with the `*at` calls.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::paths::{Blocked, refuse_name, split_parent};
use super::{Ctx, DirMeta, RestoreReport};
use crate::archive::write::hash_zeros;
use crate::entry::{Entry, Kind, hex};
use crate::fsx::Dir;
use crate::summary::PathNote;
use crate::tarfmt::{Found, MemberHeader, MemberKind, TarReader};

fn refuse(report: &mut RestoreReport, name: &[u8], why: String) {
    report.refused.push(PathNote {
        path: String::from_utf8_lossy(name).into_owned(),
        note: why,
    });
}

fn error(report: &mut RestoreReport, name: &[u8], note: String) {
    report.errors.push(PathNote {
        path: String::from_utf8_lossy(name).into_owned(),
        note,
    });
}

fn strip_dot_slash(p: &mut Vec<u8>) {
    while p.starts_with(b"./") {
        p.drain(..2);
    }
}

/// The mtime to set: the manifest's nanoseconds when they agree with the
/// header's seconds, else the PAX record's nanoseconds, else the header's seconds.
fn mtime_ns(h: &MemberHeader, pax: Option<i64>, expected: Option<&Entry>) -> i64 {
    let secs = pax.unwrap_or(h.mtime.saturating_mul(1_000_000_000));
    expected
        .map(|e| e.mtime_ns)
        .filter(|ns| ns.div_euclid(1_000_000_000) == h.mtime)
        .unwrap_or(secs)
}

fn note(report: &mut RestoreReport, name: &[u8], note: String) {
    report.notes.push(PathNote {
        path: String::from_utf8_lossy(name).into_owned(),
        note,
    });
}

pub(super) fn member<R: Read>(ctx: &mut Ctx, tar: &mut TarReader<R>, found: Found) -> Result<()> {
    let mut h = found.header.clone();
    // `tar -C dir .` writes `./name` and a `.` member for the directory itself.
    strip_dot_slash(&mut h.path);
    if h.kind == MemberKind::Hardlink
        && let Some(l) = h.link.as_mut()
    {
        strip_dot_slash(l);
    }
    if let Some(why) = &found.refused {
        refuse(&mut ctx.report, &h.path, why.clone());
        return Ok(());
    }
    if h.path.is_empty() {
        let why = format!(
            "empty member name (a {:?} member at archive offset {}); not restored",
            h.kind, found.offset
        );
        refuse(&mut ctx.report, b"", why);
        return Ok(());
    }
    if h.path == b"." {
        if h.kind == MemberKind::Dir {
            let (attrs, _) = super::xattrs::wanted(&found, &mut ctx.names);
            ctx.root_meta = Some(DirMeta {
                mode: h.mode,
                uid: h.uid as u32,
                gid: h.gid as u32,
                mtime_ns: mtime_ns(&h, found.mtime_ns, None),
                xattrs: attrs,
            });
        }
        return Ok(());
    }
    if h.path.starts_with(b".datamig/") || h.path == b".datamig" {
        return Ok(());
    }
    if let Some(why) = refuse_name(&h.path) {
        refuse(&mut ctx.report, &h.path, why);
        return Ok(());
    }
    for n in &found.notes {
        note(&mut ctx.report, &h.path, n.clone());
    }
    if ctx.same_owner {
        h.uid = ctx
            .names
            .uid(found.uname.as_deref())
            .map_or(h.uid, u64::from);
        h.gid = ctx
            .names
            .gid(found.gname.as_deref())
            .map_or(h.gid, u64::from);
    }
    let (attrs, bad) = super::xattrs::wanted(&found, &mut ctx.names);
    for n in bad {
        note(&mut ctx.report, &h.path, n);
    }
    ctx.seen.insert(h.path.clone());
    let expected: Option<&Entry> = match ctx.manifest {
        Some(m) => match m.get(&h.path) {
            Some(e) => Some(e),
            None => {
                refuse(
                    &mut ctx.report,
                    &h.path,
                    "not in the archive's manifest".into(),
                );
                return Ok(());
            }
        },
        None => None,
    };
    let (comps, name) = split_parent(&h.path);
    let depth = match ctx.tree.reach(&comps, true) {
        Ok(d) => d,
        Err(b) => {
            refuse(&mut ctx.report, &h.path, b.to_string());
            return Ok(());
        }
    };
    if ctx.overwrite {
        sweep_parent(ctx, &comps, depth);
    }
    let ns = mtime_ns(&h, found.mtime_ns, expected);
    let replace = replaces_earlier(ctx, &h);
    match h.kind {
        MemberKind::Dir => make_dir(ctx, &h, depth, name, ns, attrs),
        MemberKind::Symlink => make_symlink(ctx, &h, depth, name, ns, replace),
        MemberKind::Hardlink => make_hardlink(ctx, &h, name, replace),
        MemberKind::Fifo | MemberKind::CharDev | MemberKind::BlockDev => {
            let want = match h.kind {
                MemberKind::Fifo => Kind::Fifo,
                MemberKind::CharDev => Kind::Char,
                _ => Kind::Block,
            };
            if expected.is_some_and(|e| e.kind != want) {
                let why = format!("the manifest does not record a {want} here");
                refuse(&mut ctx.report, &h.path, why);
                return Ok(());
            }
            make_special(ctx, &h, found.rdev, depth, name, ns, replace)
        }
        MemberKind::File => {
            if expected.is_some_and(|e| e.kind != Kind::File) {
                refuse(
                    &mut ctx.report,
                    &h.path,
                    "the manifest does not record a regular file here".into(),
                );
                return Ok(());
            }
            let at = Placing {
                depth,
                ns,
                replace,
                attrs: &attrs,
            };
            write_file(ctx, tar, &h, at, name, expected)?;
        }
    }
    Ok(())
}

/// In a foreign archive (no manifest) a name given twice is resolved as GNU
/// tar does: the later member replaces what this restore wrote under it, and
/// it is noted. Never a directory, never anything this restore did not write,
/// and never a symlink: "symlink, then a file of its name" is the classic
/// escape attempt, and stays refused as before.
fn replaces_earlier(ctx: &mut Ctx, h: &MemberHeader) -> bool {
    if ctx.manifest.is_some() || h.kind == MemberKind::Dir || !ctx.made.contains(&h.path) {
        return false;
    }
    note(
        &mut ctx.report,
        &h.path,
        "named again later in the archive; the later member replaced the earlier one (as GNU tar does)"
            .into(),
    );
    true
}

/// A FIFO (made by anyone, as GNU tar does) or a device node (only as root:
/// mknod needs CAP_MKNOD), through the parent's handle.
fn make_special(
    ctx: &mut Ctx,
    h: &MemberHeader,
    rdev: Option<(u32, u32)>,
    depth: usize,
    name: &[u8],
    ns: i64,
    replace: bool,
) {
    use rustix::fs::FileType;
    let (kind, what) = match h.kind {
        MemberKind::Fifo => (FileType::Fifo, "FIFO"),
        MemberKind::CharDev => (FileType::CharacterDevice, "character device"),
        _ => (FileType::BlockDevice, "block device"),
    };
    if kind != FileType::Fifo && !rustix::process::geteuid().is_root() {
        let why = format!("{what} not created: only root may make device nodes; skipped");
        return note(&mut ctx.report, &h.path, why);
    }
    let dir = ctx.tree.dir(depth);
    if !clear_for(
        &mut ctx.report,
        ctx.overwrite || replace,
        dir,
        name,
        &h.path,
    ) {
        return;
    }
    let (major, minor) = rdev.unwrap_or((0, 0));
    let dev = rustix::fs::makedev(major, minor);
    // The archived mode exactly, without a chmod by name afterwards: the
    // umask is lifted for this one call (restore writes on one thread).
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let made = dir.mknod(name, kind, h.mode & 0o7777, dev);
    rustix::process::umask(old);
    if let Err(e) = made {
        return error(
            &mut ctx.report,
            &h.path,
            format!("cannot create {what}: {e}"),
        );
    }
    if ctx.same_owner {
        let _ = dir.chown_nofollow(name, h.uid as u32, h.gid as u32);
    }
    let _ = dir.set_mtime_nofollow(name, ns);
    ctx.made.insert(h.path.clone());
    ctx.report.specials += 1;
}

/// A restore killed by SIGKILL leaves the temporary file of the member it was
/// writing; the re-run (which needs --overwrite, DIR being non-empty) removes
/// those of dead runs from each directory it writes into.
fn sweep_parent(ctx: &mut Ctx, comps: &[&[u8]], depth: usize) {
    let rel = comps.join(&b'/');
    if !ctx.swept.insert(rel.clone()) {
        return;
    }
    for n in crate::atomic::sweep_stale_temps_in(ctx.tree.dir(depth)) {
        let mut p = rel.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&n);
        ctx.report
            .removed_temps
            .push(String::from_utf8_lossy(&p).into_owned());
    }
}

fn make_dir(
    ctx: &mut Ctx,
    h: &MemberHeader,
    depth: usize,
    name: &[u8],
    ns: i64,
    attrs: Vec<(Vec<u8>, Vec<u8>)>,
) {
    let dir = ctx.tree.dir(depth);
    let made = match dir.mkdir(name, 0o700) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return error(&mut ctx.report, &h.path, format!("cannot create: {e}")),
    };
    let id = match dir.stat(name) {
        Ok(m) if m.is_dir() => (m.dev, m.ino),
        Ok(_) if made => {
            let why = Blocked::Swapped(h.path.clone()).to_string();
            return refuse(&mut ctx.report, &h.path, why);
        }
        Ok(_) => {
            return refuse(
                &mut ctx.report,
                &h.path,
                "something that is not a directory is already there".into(),
            );
        }
        Err(e) => return error(&mut ctx.report, &h.path, format!("{e}")),
    };
    if let Err(b) = ctx.tree.record(&h.path, id.0, id.1) {
        return refuse(&mut ctx.report, &h.path, b.to_string());
    }
    ctx.dirs.insert(
        h.path.clone(),
        DirMeta {
            mode: h.mode,
            uid: h.uid as u32,
            gid: h.gid as u32,
            mtime_ns: ns,
            xattrs: attrs,
        },
    );
    ctx.report.dirs += 1;
}

/// With --overwrite, remove a non-directory in the way; never a directory.
fn clear_for(
    report: &mut RestoreReport,
    overwrite: bool,
    dir: &Dir,
    name: &[u8],
    rel: &[u8],
) -> bool {
    match dir.stat(name) {
        Err(_) => true,
        Ok(m) if m.is_dir() => {
            refuse(report, rel, "a directory is already there".into());
            false
        }
        Ok(_) if overwrite => dir.unlink(name).is_ok(),
        Ok(_) => {
            refuse(
                report,
                rel,
                "already exists (the archive names it twice?)".into(),
            );
            false
        }
    }
}

fn make_symlink(
    ctx: &mut Ctx,
    h: &MemberHeader,
    depth: usize,
    name: &[u8],
    ns: i64,
    replace: bool,
) {
    let target = h.link.clone().unwrap_or_default();
    let dir = ctx.tree.dir(depth);
    if !clear_for(
        &mut ctx.report,
        ctx.overwrite || replace,
        dir,
        name,
        &h.path,
    ) {
        return;
    }
    if let Err(e) = dir.symlink(&target, name) {
        return error(&mut ctx.report, &h.path, e.to_string());
    }
    if ctx.same_owner {
        let _ = dir.chown_nofollow(name, h.uid as u32, h.gid as u32);
    }
    let _ = dir.set_mtime_nofollow(name, ns);
    ctx.report.symlinks += 1;
}

fn make_hardlink(ctx: &mut Ctx, h: &MemberHeader, name: &[u8], replace: bool) {
    let target = h.link.clone().unwrap_or_default();
    if let Some(why) = refuse_name(&target) {
        let why = format!(
            "hard link target {:?}: {why}",
            String::from_utf8_lossy(&target)
        );
        return refuse(&mut ctx.report, &h.path, why);
    }
    // Anything this restore made but a symlink or directory: files, and the
    // FIFOs and device nodes GNU tar also archives as hard links.
    if !ctx.made.contains(&target) {
        let why = "hard link to a file this restore did not write".into();
        return refuse(&mut ctx.report, &h.path, why);
    }
    // The target's parent is reached (and checked) first; its handle is kept
    // while the chain moves to the link's own parent.
    let (tcomps, tname) = split_parent(&target);
    let from = match ctx.tree.reach(&tcomps, false) {
        Ok(d) => ctx.tree.dir(d).try_clone(),
        Err(b) => return refuse(&mut ctx.report, &h.path, format!("hard link target: {b}")),
    };
    let from = match from {
        Ok(f) => f,
        Err(e) => return error(&mut ctx.report, &h.path, e.to_string()),
    };
    let (comps, _) = split_parent(&h.path);
    let depth = match ctx.tree.reach(&comps, true) {
        Ok(d) => d,
        Err(b) => return refuse(&mut ctx.report, &h.path, b.to_string()),
    };
    let dir = ctx.tree.dir(depth);
    if !clear_for(
        &mut ctx.report,
        ctx.overwrite || replace,
        dir,
        name,
        &h.path,
    ) {
        return;
    }
    if let Err(e) = dir.hard_link(&from, tname, name) {
        return error(&mut ctx.report, &h.path, e.to_string());
    }
    ctx.made.insert(h.path.clone());
    ctx.report.hardlinks += 1;
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

fn create_temp<'d>(to: &std::path::Path, rel: &[u8], dir: &'d Dir) -> io::Result<Temp<'d>> {
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

/// The member's data written into `f` at its offsets (holes stay holes),
/// hashed only when there is a hash to compare with. Returns the hash and
/// the first write error.
fn copy_data<R: Read>(
    tar: &mut TarReader<R>,
    h: &MemberHeader,
    f: &fs::File,
    hash: bool,
) -> Result<(Option<[u8; 32]>, Option<io::Error>)> {
    let mut hasher = hash.then(Sha256::new);
    let mut logical = 0u64;
    let mut write_err: Option<io::Error> = None;
    tar.read_data(h, |off, b| {
        if let Some(hs) = hasher.as_mut() {
            hash_zeros(hs, off - logical);
            hs.update(b);
        }
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
    let got = hasher.map(|mut hs| {
        hash_zeros(&mut hs, h.size - logical);
        hs.finalize().into()
    });
    Ok((got, write_err))
}

/// Where and how a file lands: its parent's depth in the tree, its mtime,
/// whether it may replace an earlier member of the same name, and its
/// extended attributes.
struct Placing<'a> {
    depth: usize,
    ns: i64,
    replace: bool,
    attrs: &'a [(Vec<u8>, Vec<u8>)],
}

fn write_file<R: Read>(
    ctx: &mut Ctx,
    tar: &mut TarReader<R>,
    h: &MemberHeader,
    at: Placing,
    name: &[u8],
    expected: Option<&Entry>,
) -> Result<()> {
    let Placing {
        depth,
        ns,
        replace,
        attrs,
    } = at;
    let dir = ctx.tree.dir(depth);
    // Without --overwrite the destination started empty, so anything in the
    // way was put there by this archive; the no-replace rename at the end
    // catches it, and the common case pays no `stat`.
    if ctx.overwrite && dir.stat(name).is_ok_and(|m| m.is_dir()) {
        refuse(
            &mut ctx.report,
            &h.path,
            "a directory is already there".into(),
        );
        return Ok(());
    }
    let mut tmp = match create_temp(&ctx.to, &h.path, dir) {
        Ok(t) => t,
        Err(e) => {
            let note = format!("cannot create a temporary file in its directory: {e}");
            error(&mut ctx.report, &h.path, note);
            return Ok(());
        }
    };
    let want = expected.and_then(|e| e.sha256);
    let (got, write_err) = match copy_data(tar, h, tmp.file(), want.is_some()) {
        Ok(r) => r,
        Err(e) => {
            // The archive ended or broke inside its data: it is missing too.
            ctx.seen.remove(&h.path);
            return Err(e);
        }
    };
    if let Some(e) = write_err {
        let note = format!(
            "cannot write: {e}; nothing was put under its name (free space in the destination, then restore this path again with --overwrite)"
        );
        error(&mut ctx.report, &h.path, note);
        return Ok(()); // `tmp` dropped: the temporary file is removed
    }
    if let (Some(want), Some(got)) = (want, got)
        && want != got
    {
        ctx.report.corrupt.push(PathNote {
            path: String::from_utf8_lossy(&h.path).into_owned(),
            note: format!(
                "sha256 {} but the manifest says {}; not restored",
                hex(&got),
                hex(&want)
            ),
        });
        return Ok(());
    }
    let owner = ctx.same_owner.then_some((h.uid as u32, h.gid as u32));
    let _ = crate::fsx::set_fd_meta(tmp.file().as_fd(), h.mode, owner, ns);
    // After the owner and mode: fchown drops security.capability, and
    // fchmod rewrites an ACL's mask.
    for n in super::xattrs::apply(tmp.file(), attrs) {
        note(&mut ctx.report, &h.path, n);
    }
    if let Err(why) = commit(&tmp, name, ctx.overwrite || replace) {
        match why {
            Commit::Refused(why) => refuse(&mut ctx.report, &h.path, why.into()),
            Commit::Failed(e) => error(
                &mut ctx.report,
                &h.path,
                format!("cannot rename into place: {e}"),
            ),
        }
        return Ok(());
    }
    tmp.file = None; // renamed: nothing to remove
    drop(tmp);
    if want.is_none() {
        ctx.report
            .unverified
            .push(String::from_utf8_lossy(&h.path).into_owned());
    }
    ctx.made.insert(h.path.clone());
    ctx.report.files += 1;
    ctx.report.bytes += h.size;
    Ok(())
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
