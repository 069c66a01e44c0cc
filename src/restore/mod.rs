//! `datamig restore`: the rollback. Every file is written under a temporary
//! name, checked against the manifest's SHA-256, and only then renamed into
//! place; members that would land outside the destination are refused.
//!
//! Everything happens through directory handles (see `paths::Tree`): DIR is
//! opened once, each parent is reached component by component without
//! following symlinks, directories are made 0700 and get their archived mode,
//! owner and time through their own handle only at the end, so neither a
//! directory swapped for a symlink mid-run nor an interrupted run exposes
//! anything.

mod bytes;
mod land;
mod member;
mod owners;
pub mod paths;
mod pool;
mod seekable;
mod source;
mod xattrs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::entry::{Entry, Kind};
use crate::frames::{FrameReader, read_index};
use crate::fsx::Dir;
use crate::layout::is_under;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::scan::problem;
use crate::summary::PathNote;
use crate::tarfmt::TarReader;
use bytes::Bytes;
use paths::{Tree, refuse_name};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub archive: PathBuf,
    pub to: PathBuf,
    /// Relative paths (files or directories) to restore; empty: everything.
    pub paths: Vec<String>,
    pub overwrite: bool,
    pub same_owner: bool,
    /// The archive is a remote object (`s3://…/NAME.tar.zst`, parsed from
    /// `archive`): fetched with ranged reads, only the frames it needs.
    pub remote: Option<(crate::remote::Location, String)>,
    /// Threads writing files in a full restore (1: the main thread alone).
    pub threads: usize,
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
    /// FIFOs and device nodes made (foreign archives only).
    pub specials: u64,
    pub bytes: u64,
    /// Compressed bytes read from the archive (manifest lookup included); of
    /// an encrypted archive, the ciphertext read (header and chunks).
    pub archive_bytes_read: u64,
    /// The archive is age-encrypted; `archive_size` is the ciphertext's.
    pub encrypted: bool,
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
    /// Entries the archive's own manifest records as not captured cleanly
    /// (not archived, unreadable, changed while read, special files): the
    /// restored tree lacks them or holds a doubtful copy.
    pub manifest_problems: Vec<PathNote>,
    /// Directories found replaced (by a symlink or another directory) when
    /// they were re-opened at the end: nothing was written through them, and
    /// their archived mode, owner and time were not applied.
    pub swapped: Vec<PathNote>,
    /// Members of a foreign archive restored differently from what their
    /// header says, or not at all, each with what was done (unknown typeflag
    /// restored as a file, pre-POSIX directory, device skipped when not root,
    /// name given twice, ...). Informational: the exit code does not change.
    pub notes: Vec<PathNote>,
}

impl RestoreReport {
    pub fn clean(&self) -> bool {
        self.refused.is_empty()
            && self.corrupt.is_empty()
            && self.unverified.is_empty()
            && self.missing.is_empty()
            && self.errors.is_empty()
            && self.manifest_problems.is_empty()
            && self.swapped.is_empty()
    }
}

/// A directory's archived metadata, applied through its handle at the end.
#[derive(Debug, Clone)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    /// Extended attributes and ACLs (foreign archives), set after the mode.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Ctx<'a> {
    tree: Tree,
    /// DIR as a path: only to register temporaries for the signal handler.
    to: PathBuf,
    manifest: Option<&'a Manifest>,
    same_owner: bool,
    overwrite: bool,
    /// Files, hard links, FIFOs and devices this restore put in place: what a
    /// later member of the same name may replace (symlinks never are), and
    /// what a hard link may point to.
    made: HashSet<Vec<u8>>,
    /// Every member met in the archive (restored or not): the rest of the
    /// manifest is missing.
    seen: HashSet<Vec<u8>>,
    /// Parent directories already swept of dead runs' temporaries (--overwrite).
    swept: HashSet<Vec<u8>>,
    /// Archived metadata of directory members, applied last.
    dirs: HashMap<Vec<u8>, DirMeta>,
    /// A `.` member's metadata, applied to DIR when this restore created it.
    root_meta: Option<DirMeta>,
    /// Owner names of foreign members, looked up as GNU tar does (as root).
    names: owners::Names,
    /// Writers for small files (full restores with more than one thread).
    pool: Option<pool::Pool>,
    report: RestoreReport,
}

/// Record what the writer pool has done so far, in archive order.
fn drain(ctx: &mut Ctx) {
    let Some(p) = ctx.pool.as_mut() else { return };
    for (land, outcome) in p.wait_all() {
        land.record(ctx, outcome);
    }
}

pub fn restore(opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let started = std::time::Instant::now();
    let (file, len, (manifest, source, manifest_cost, damage)) = match &opts.remote {
        None => {
            let (file, len) = open_archive(&opts.archive)?;
            if let Bytes::Age(_) = file {
                let side = crate::archive::manifest_sidecar(&opts.archive);
                let sealed = match std::fs::read(&side) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => bail!("cannot read {}: {e}", side.display()),
                };
                let (m, source) =
                    bytes::sealed_manifest(sealed, &side.display().to_string(), &file, len)?;
                (file, len, (Some(m), source, 0, None))
            } else {
                (file, len, load_manifest(&opts.archive, len)?)
            }
        }
        Some((loc, name)) => bytes::open_remote(loc, name)?,
    };
    // A second handle on the decryption: its count covers every reader's
    // ciphertext (manifest, frames), the cost of an encrypted restore.
    let sealed = match &file {
        Bytes::Age(d) => Some(d.reopen()),
        _ => None,
    };
    // Check the requested paths before touching the destination, so a restore
    // that cannot run (exit 2) leaves nothing behind.
    let mut foreign_table = None;
    let wanted = match (&manifest, opts.paths.is_empty()) {
        (_, true) => Vec::new(),
        (Some(m), false) => select(m, &opts.paths)?,
        // A foreign seekable .tar.zst: members are found through its seek table.
        (None, false) => match file.local().map(seekable::usable_table) {
            None => bail!(
                "{} has no usable manifest, so single paths cannot be located; restore it whole (without PATH)",
                opts.archive.display()
            ),
            Some(t) => match t {
                Ok(t) => {
                    seekable::check_paths(&opts.paths)?;
                    foreign_table = Some(t);
                    Vec::new()
                }
                Err(why) => bail!(
                    "{} has no usable manifest ({why}), so single paths cannot be located; restore it whole (without PATH)",
                    opts.archive.display()
                ),
            },
        },
    };
    // Whatever the caller's umask, nothing is created group/world-accessible;
    // final modes are set explicitly.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let (root, created) = open_destination(&opts.to, opts.overwrite)?;
    let to = opts
        .to
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", opts.to.display()))?;
    let mut ctx = Ctx {
        tree: Tree::new(root),
        to,
        manifest: manifest.as_ref(),
        same_owner: opts.same_owner && rustix::process::geteuid().is_root(),
        overwrite: opts.overwrite,
        made: HashSet::new(),
        seen: HashSet::new(),
        swept: HashSet::new(),
        dirs: HashMap::new(),
        root_meta: None,
        names: owners::Names::default(),
        pool: None,
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
    if let Some(note) = damage {
        ctx.report.errors.push(PathNote {
            path: opts.archive.display().to_string(),
            note,
        });
    }
    if opts.paths.is_empty() {
        let total = manifest.as_ref().map(|m| m.trailer.bytes);
        progress.phase("restoring", total);
        let source = match file {
            Bytes::Local(f) => source::TarSource::open(f, len)?,
            Bytes::Remote(r) => source::TarSource::open_remote(r)?,
            Bytes::Age(d) => source::TarSource::open_sealed(d, &opts.archive)?,
        };
        if opts.threads > 1 {
            ctx.pool = Some(pool::Pool::new(opts.threads, ctx.to.clone()));
        }
        let r = restore_all(&mut ctx, &opts.archive, source, progress);
        drain(&mut ctx);
        ctx.pool = None;
        r?;
    } else if let (Some(table), Bytes::Local(f)) = (&foreign_table, &file) {
        progress.phase("restoring", None);
        seekable::restore_paths(&mut ctx, f.try_clone()?, table, &opts.paths, progress)?;
    } else {
        let total = wanted.iter().map(|e| e.size).sum();
        progress.phase("restoring", Some(total));
        restore_selected(&mut ctx, file, len, &wanted, progress)?;
    }
    if let Some(m) = &manifest {
        account(&mut ctx, m, &opts.paths);
    }
    if let Some(d) = &sealed {
        ctx.report.encrypted = true;
        ctx.report.archive_size = d.cipher_len();
        ctx.report.archive_bytes_read = d.cipher_read();
    }
    finish_dirs(&mut ctx, created);
    let _ = ctx.tree.root().sync_fs();
    progress.finish();
    ctx.report.seconds = started.elapsed().as_secs_f64();
    Ok(ctx.report)
}

/// The archive and its (plaintext) length, refusing what cannot be one; an
/// encrypted one is opened with the installed keys.
fn open_archive(archive: &Path) -> Result<(Bytes, u64)> {
    crate::atomic::refuse_temp_name(archive)?;
    let file = crate::fsx::open_path(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot open archive {}", archive.display()))?
        .len();
    let name = archive.display().to_string();
    match crate::crypt::source::sniff(&file) {
        crate::crypt::Sealed::Plain => {}
        crate::crypt::Sealed::Armored => return Err(crate::crypt::source::armored(&name)),
        crate::crypt::Sealed::Age => {
            let d = crate::crypt::Decrypted::open(
                Bytes::Local(file),
                len,
                &name,
                crate::crypt::identity::installed(),
            )?;
            let plain = d.len();
            return Ok((Bytes::Age(d), plain));
        }
    }
    let mut magic = [0u8; 4];
    let is_zstd = std::os::unix::fs::FileExt::read_exact_at(&file, &mut magic, 0).is_ok()
        && u32::from_le_bytes(magic) == 0xFD2F_B528;
    if !is_zstd {
        bail!(
            "{} is not a zstd-compressed archive (empty, or not made by datamig); nothing was restored",
            archive.display()
        );
    }
    Ok((Bytes::Local(file), len))
}

/// Every member in stream order.
fn restore_all(
    ctx: &mut Ctx,
    archive: &Path,
    source: source::TarSource,
    progress: &dyn Progress,
) -> Result<()> {
    let mut tar = TarReader::new(source);
    loop {
        match tar.next_member() {
            Ok(Some(found)) => {
                let size = found.header.size;
                let name = String::from_utf8_lossy(&found.header.path).into_owned();
                // A read error inside a member's data (truncated archive,
                // damaged frame): report it, keep what was restored.
                if let Err(e) = member::member(ctx, &mut tar, found) {
                    drain(ctx);
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
                drain(ctx);
                ctx.report.errors.push(PathNote {
                    path: archive.display().to_string(),
                    note: format!("{e:#}; restore stopped there"),
                });
                break;
            }
        }
    }
    ctx.report.archive_bytes_read += tar.get_ref().read_bytes();
    Ok(())
}

/// The selected entries, each read from its own frame.
fn restore_selected(
    ctx: &mut Ctx,
    file: Bytes,
    len: u64,
    wanted: &[&Entry],
    progress: &dyn Progress,
) -> Result<()> {
    let mut reader: Option<TarReader<FrameReader<Bytes>>> = None;
    for e in wanted {
        let pos = e.pos.expect("selected entries are archived");
        let here = reader.as_ref().map(|t| t.get_ref().position());
        if here != Some((pos.frame_offset, pos.offset_in_frame)) {
            if let Some(t) = reader.take() {
                ctx.report.archive_bytes_read += t.get_ref().read_bytes;
            }
            let mut fr = FrameReader::new(file.dup()?, len, pos.frame_offset)?;
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
                match member::member(ctx, tar, found) {
                    Ok(()) => {
                        progress.advance(1, e.size);
                        None
                    }
                    Err(err) => Some(err),
                }
            }
            Ok(_) => {
                if let Some(t) = reader.take() {
                    ctx.report.archive_bytes_read += t.get_ref().read_bytes;
                }
                None
            }
            Err(err) => Some(err),
        };
        if let Some(err) = failed {
            ctx.seen.insert(e.path.clone());
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
    Ok(())
}

/// After the members: what the manifest lists (under the requested paths)
/// that the archive did not hold, and what it records as not captured cleanly.
fn account(ctx: &mut Ctx, m: &Manifest, paths: &[String]) {
    let wanted = |e: &Entry| {
        paths.is_empty()
            || paths
                .iter()
                .any(|p| is_under(&e.path, p.trim_end_matches('/').as_bytes()))
    };
    for e in m.entries.iter().filter(|e| wanted(e)) {
        if e.pos.is_some() && !ctx.seen.contains(&e.path) {
            ctx.report.missing.push(e.path_lossy());
        }
        // Invalid JSON is an observation about content that was archived intact.
        if let Some(p) = e
            .problem
            .as_deref()
            .filter(|p| !p.starts_with(problem::INVALID_JSON))
        {
            ctx.report.manifest_problems.push(PathNote {
                path: e.path_lossy(),
                note: format!("{} recorded by the archive: {p}", e.kind),
            });
        }
    }
}

/// The last pass: every directory this restore made or entered is re-opened
/// component by component from DIR, its (dev, ino) compared with what was
/// recorded, and only then given its archived mode, owner and time through
/// its own handle. Deepest first, so a parent's mode cannot lock out its
/// children and a child's change cannot bump a parent's mtime.
fn finish_dirs(ctx: &mut Ctx, created: bool) {
    let mut dirs: Vec<Vec<u8>> = ctx.tree.known_dirs().cloned().collect();
    dirs.sort_unstable_by(|a, b| b.cmp(a));
    let mut reported: HashSet<Vec<u8>> = HashSet::new();
    for rel in dirs {
        let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        match ctx.tree.reach(&comps, false) {
            Ok(depth) => {
                if let Some(m) = ctx.dirs.get(&rel) {
                    let owner = ctx.same_owner.then_some((m.uid, m.gid));
                    let d = ctx.tree.dir(depth);
                    let _ = d.set_meta(m.mode, owner, m.mtime_ns);
                    for note in xattrs::apply(d, &m.xattrs) {
                        ctx.report.notes.push(PathNote {
                            path: String::from_utf8_lossy(&rel).into_owned(),
                            note,
                        });
                    }
                }
            }
            Err(b) => {
                if reported.insert(b.at().to_vec()) {
                    ctx.report.swapped.push(PathNote {
                        path: String::from_utf8_lossy(b.at()).into_owned(),
                        note: format!(
                            "{b}; found when re-checked at the end: its archived mode, owner and time were not applied, and what lies below it was not checked"
                        ),
                    });
                }
            }
        }
    }
    let _ = ctx.tree.reach(&[], false);
    if created && let Some(m) = &ctx.root_meta {
        let owner = ctx.same_owner.then_some((m.uid, m.gid));
        let _ = ctx.tree.root().set_meta(m.mode, owner, m.mtime_ns);
        let _ = xattrs::apply(ctx.tree.root(), &m.xattrs);
    }
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

/// The sidecar manifest, else the embedded one found through the index. An
/// embedded manifest that cannot be read is not fatal: the members are
/// restored unverified and the damage is named (the fourth value).
fn load_manifest(
    archive: &Path,
    len: u64,
) -> Result<(Option<Manifest>, &'static str, u64, Option<String>)> {
    let side = crate::archive::manifest_sidecar(archive);
    if side.exists() {
        let m = Manifest::read_file(&side)?;
        return Ok((Some(m), "sidecar", 0, None));
    }
    let mut f = crate::fsx::open_path(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let Ok(Some(ix)) = read_index(&mut f) else {
        return Ok((None, "none", 0, None));
    };
    let cost = len - ix.manifest_frame_offset;
    let read = crate::verify::archive::read_embedded(
        archive,
        len,
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )
    .and_then(|bytes| Manifest::read(&bytes[..]));
    match read {
        Ok(m) => Ok((Some(m), "embedded", cost, None)),
        Err(e) => Ok((
            None,
            "none",
            cost,
            Some(format!(
                "the manifest inside the archive (zstd frame at offset {}) cannot be used: {e:#}; \
                 every readable member was restored unverified (compare with another copy of the archive, \
                 or its .manifest.jsonl sidecar if one exists)",
                ix.manifest_frame_offset
            )),
        )),
    }
}

/// Open DIR, creating it (0700, parents too) when absent; an existing DIR
/// must be an empty directory unless --overwrite. Returns the handle and
/// whether this restore created it.
fn open_destination(to: &Path, overwrite: bool) -> Result<(Dir, bool)> {
    let created = match Dir::open(to) {
        Ok(d) => {
            let empty = d
                .is_empty()
                .with_context(|| format!("cannot list {}", to.display()))?;
            if !empty && !overwrite {
                bail!(
                    "{} is not empty; restore into an empty directory, or pass --overwrite to replace what is there",
                    to.display()
                );
            }
            return Ok((d, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::fsx::create_dir_path(to, 0o700)
                .with_context(|| format!("cannot create {}", to.display()))?;
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            bail!("{} exists and is not a directory", to.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", to.display())),
    };
    let d = Dir::open(to).with_context(|| format!("cannot open {}", to.display()))?;
    Ok((d, created))
}
