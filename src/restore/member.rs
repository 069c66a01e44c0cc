//! One tar member put in place through its parent's handle: directories made
//! 0700 (their metadata waits for the end), files written under a bounded
//! temporary name, checked, given their metadata on the open fd and renamed
//! with RENAME_NOREPLACE; symlinks and hard links made with the `*at` calls.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::land::Landing;
use super::paths::{Blocked, refuse_name, split_parent};
use super::pool::{Job, MAX_POOLED};
use super::{Ctx, DirMeta, RestoreReport};
use crate::archive::write::hash_zeros;
use crate::entry::{Entry, Kind};
use crate::fsx::Dir;
use crate::summary::PathNote;
use crate::tarfmt::{Found, MemberHeader, MemberKind, TarReader};

/// What the writer pool still holds is recorded before anything is added
/// here, so the report stays in archive order.
fn refuse(ctx: &mut Ctx, name: &[u8], why: String) {
    super::drain(ctx);
    refuse_in(&mut ctx.report, name, why);
}

fn refuse_in(report: &mut RestoreReport, name: &[u8], why: String) {
    report.refused.push(PathNote {
        path: String::from_utf8_lossy(name).into_owned(),
        note: why,
    });
}

fn error(ctx: &mut Ctx, name: &[u8], note: String) {
    super::drain(ctx);
    ctx.report.errors.push(PathNote {
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
    // What the writer pool still holds is recorded before anything this
    // member adds to the report: the report stays in archive order.
    if !may_pool(ctx, &found, &h) {
        super::drain(ctx);
    }
    if let Some(why) = &found.refused {
        refuse(ctx, &h.path, why.clone());
        return Ok(());
    }
    if h.path.is_empty() {
        let why = format!(
            "empty member name (a {:?} member at archive offset {}); not restored",
            h.kind, found.offset
        );
        refuse(ctx, b"", why);
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
        refuse(ctx, &h.path, why);
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
                refuse(ctx, &h.path, "not in the archive's manifest".into());
                return Ok(());
            }
        },
        None => None,
    };
    let (comps, name) = split_parent(&h.path);
    let depth = match ctx.tree.reach(&comps, true) {
        Ok(d) => d,
        Err(b) => {
            refuse(ctx, &h.path, b.to_string());
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
                refuse(ctx, &h.path, why);
                return Ok(());
            }
            make_special(ctx, &h, found.rdev, depth, name, ns, replace)
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
        return error(ctx, &h.path, format!("cannot create {what}: {e}"));
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
        Err(e) => return error(ctx, &h.path, format!("cannot create: {e}")),
    };
    let id = match dir.stat(name) {
        Ok(m) if m.is_dir() => (m.dev, m.ino),
        Ok(_) if made => {
            let why = Blocked::Swapped(h.path.clone()).to_string();
            return refuse(ctx, &h.path, why);
        }
        Ok(_) => {
            return refuse(
                ctx,
                &h.path,
                "something that is not a directory is already there".into(),
            );
        }
        Err(e) => return error(ctx, &h.path, format!("{e}")),
    };
    if let Err(b) = ctx.tree.record(&h.path, id.0, id.1) {
        return refuse(ctx, &h.path, b.to_string());
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
            refuse_in(report, rel, "a directory is already there".into());
            false
        }
        Ok(_) if overwrite => dir.unlink(name).is_ok(),
        Ok(_) => {
            refuse_in(
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
        return error(ctx, &h.path, e.to_string());
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
        return refuse(ctx, &h.path, why);
    }
    // Anything this restore made but a symlink or directory: files, and the
    // FIFOs and device nodes GNU tar also archives as hard links.
    if !ctx.made.contains(&target) {
        let why = "hard link to a file this restore did not write".into();
        return refuse(ctx, &h.path, why);
    }
    // The target's parent is reached (and checked) first; its handle is kept
    // while the chain moves to the link's own parent.
    let (tcomps, tname) = split_parent(&target);
    let from = match ctx.tree.reach(&tcomps, false) {
        Ok(d) => ctx.tree.dir(d).try_clone(),
        Err(b) => return refuse(ctx, &h.path, format!("hard link target: {b}")),
    };
    let from = match from {
        Ok(f) => f,
        Err(e) => return error(ctx, &h.path, e.to_string()),
    };
    let (comps, _) = split_parent(&h.path);
    let depth = match ctx.tree.reach(&comps, true) {
        Ok(d) => d,
        Err(b) => return refuse(ctx, &h.path, b.to_string()),
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
        return error(ctx, &h.path, e.to_string());
    }
    ctx.made.insert(h.path.clone());
    ctx.report.hardlinks += 1;
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
    let land = Landing {
        path: h.path.clone(),
        name: name.to_vec(),
        size: h.size,
        mode: h.mode,
        owner: ctx.same_owner.then_some((h.uid as u32, h.gid as u32)),
        mtime_ns: at.ns,
        attrs: at.attrs.to_vec(),
        want: expected.and_then(|e| e.sha256),
        overwrite: ctx.overwrite,
        replace: ctx.overwrite || at.replace,
    };
    let read = if pooled(h, at.attrs) && ctx.pool.as_ref().is_some_and(|p| !p.is_pending(&h.path)) {
        to_pool(ctx, tar, h, land, at.depth)
    } else {
        let hash = land.want.is_some();
        let dir = ctx.tree.dir(at.depth);
        match land.place(&ctx.to, dir, |f| copy_data(tar, h, f, hash)) {
            Ok(outcome) => {
                land.record(ctx, outcome);
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    if read.is_err() {
        // The archive ended or broke inside its data: it is missing too.
        ctx.seen.remove(&h.path);
    }
    read
}

/// Whether this member needs no drain first: a plain small file (for the
/// pool) or a directory (made here, its metadata applied at the end), with
/// nothing noted about it and its name not pending.
fn may_pool(ctx: &Ctx, found: &Found, h: &MemberHeader) -> bool {
    let Some(pool) = &ctx.pool else { return false };
    found.refused.is_none()
        && found.notes.is_empty()
        && found.xattrs.is_empty()
        && found.acl_access.is_none()
        && found.acl_default.is_none()
        && (pooled(h, &[]) || h.kind == MemberKind::Dir)
        && !pool.is_pending(&h.path)
}

/// Small dense files without extended attributes go to the writer pool.
pub(super) fn pooled(h: &MemberHeader, attrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    h.kind == MemberKind::File && h.sparse.is_none() && h.size <= MAX_POOLED && attrs.is_empty()
}

fn to_pool<R: Read>(
    ctx: &mut Ctx,
    tar: &mut TarReader<R>,
    h: &MemberHeader,
    land: Landing,
    depth: usize,
) -> Result<()> {
    let mut data = Vec::with_capacity(h.size as usize);
    tar.read_data(h, |_, b| {
        data.extend_from_slice(b);
        Ok(())
    })?;
    let dir = match ctx.tree.dir(depth).try_clone() {
        Ok(d) => d,
        Err(e) => {
            let why = format!("cannot create a temporary file in its directory: {e}");
            error(ctx, &h.path, why);
            return Ok(());
        }
    };
    let pool = ctx.pool.as_mut().expect("checked by the caller");
    pool.submit(Job { dir, land, data });
    Ok(())
}
