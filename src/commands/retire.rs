//! `datamig retire ARCHIVE`: finish a removal that `archive --remove-source`
//! refused (or was not asked for), against the archive already written, with
//! no second archive. The archive is verified in full, the tree it was made
//! from is audited against its manifest (any change refuses), the same gates
//! as `--remove-source` run with the same override flags, and only then is
//! exactly what matches removed, through the handle-checked removal of
//! `archive::remove`.
//!
//! Which tree: the manifest header's `root` (the archived directory) and
//! `scope` (the paths of a multi-path target), taken relative to the data
//! root; the layout target is the one with those paths (the archive's name
//! prefix decides between targets with the same paths).

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::archive::gates::{self, Check, GateResult, Gates, Override, Overrides, PolicyInput};
use crate::archive::remove::{BaseDir, Removal, remove_archived};
use crate::archive::{Source, resolve_source};
use crate::entry::Entry;
use crate::layout::Layout;
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::verify::tree::{Moved, TreeReport};

#[derive(Debug, Clone)]
pub struct RetireOptions {
    pub root: PathBuf,
    pub layout: Layout,
    pub archive: PathBuf,
    /// Paths under the archived directory to leave alone (as `archive --exclude`).
    pub excludes: Vec<String>,
    pub threads: usize,
    pub overrides: Overrides,
    /// `--accept PATH`: legacy files the migration check takes as obsolete.
    pub accept: Vec<String>,
    /// `--etc DIR` for the reference gate (default `/etc`).
    pub etc: Option<PathBuf>,
}

/// The live tree against the archive's manifest (`verify --tree`'s lists).
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub matched: u64,
    pub modified: Vec<PathNote>,
    pub metadata: Vec<PathNote>,
    pub missing: Vec<String>,
    pub new: Vec<String>,
    pub moved: Vec<Moved>,
    pub unreadable: Vec<PathNote>,
}

impl From<TreeReport> for Audit {
    fn from(t: TreeReport) -> Audit {
        Audit {
            matched: t.matched,
            modified: t.modified,
            metadata: t.metadata,
            missing: t.missing,
            new: t.new,
            moved: t.moved,
            unreadable: t.unreadable,
        }
    }
}

impl Audit {
    /// "2 modified, 1 new": the non-empty lists only.
    fn counts(&self) -> String {
        [
            (self.modified.len(), "modified"),
            (self.metadata.len(), "metadata changed"),
            (self.missing.len(), "missing"),
            (self.new.len(), "new"),
            (self.moved.len(), "moved"),
            (self.unreadable.len(), "unreadable"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RetireReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    /// The layout target the archive was made of, or the directory (relative
    /// to the data root).
    pub target: String,
    /// The archived directory on disk.
    pub source: String,
    /// "passed" or "failed": the archive verified in full, as `datamig verify`.
    pub verify: &'static str,
    /// What the verification found (empty when it passed).
    pub discrepancies: Vec<String>,
    /// The tree against the manifest; absent when the archive did not verify.
    pub audit: Option<Audit>,
    /// Legacy files the migration gate passed because of `--accept`: the
    /// archive is their only copy.
    pub notes: Vec<PathNote>,
    pub gates: Vec<GateResult>,
    pub overrides: Vec<Override>,
    /// What the reference check (`datamig refs`) found for the target.
    pub refs: crate::refs::RefsGate,
    pub removed: Option<Removal>,
    pub remove_refused: Option<String>,
    pub seconds: f64,
}

impl RetireReport {
    pub fn clean(&self) -> bool {
        self.remove_refused.is_none()
            && self.overrides.is_empty()
            && self.removed.as_ref().is_some_and(|r| r.kept.is_empty())
    }
}

pub fn run(opts: &RetireOptions, progress: &dyn Progress) -> Result<RetireReport> {
    let started = Instant::now();
    let archive = &opts.archive;
    crate::atomic::refuse_temp_name(archive)?;
    let manifest = load_manifest(archive)?;
    let src = archived_source(opts, &manifest)?;
    if !opts.accept.is_empty() && !src.requires_migration_check {
        bail!(
            "--accept applies only to a target that requires the migration check (v2-dev-data), \
             and {} does not; drop --accept",
            src.target
        );
    }
    // Opened before the audit's scan: removal acts only through it.
    let base_dir = BaseDir::open(&opts.root, &src.base_rel, &src.scope);

    let v = crate::verify::archive::verify_archive(archive, false, opts.threads, progress)?;
    let verified = v.clean();
    let mut gates = vec![verify_gate(&v.discrepancies)];
    let mut audit = None;
    let mut live = None;
    if verified {
        let (entries, identity) = audit_scan(opts, &src, &manifest, progress)?;
        let a = Audit::from(crate::verify::tree::compare_mtimes(
            &src.base,
            archive,
            &manifest.entries,
            &entries,
            false,
            false,
        ));
        gates.push(audit_gate(&a));
        audit = Some(a);
        live = Some((entries, identity));
    }
    let policy = gates::policy(&PolicyInput {
        root: &opts.root,
        layout: &opts.layout,
        threads: opts.threads,
        source: &src,
        overrides: opts.overrides,
        accept: &opts.accept,
    });
    gates.extend(policy.gates);
    let refs = gates::search_refs(
        &opts.root,
        &opts.layout,
        opts.etc.as_deref(),
        &src.target,
        opts.overrides,
    )?;
    gates.push(gates::refs(&refs, &src.target, opts.overrides));
    let gates = Gates(gates);
    let mut report = RetireReport {
        report: "retire",
        version: 1,
        archive: archive.display().to_string(),
        target: src.target.clone(),
        source: src.base.display().to_string(),
        verify: if verified { "passed" } else { "failed" },
        discrepancies: v.discrepancies,
        audit,
        notes: crate::commands::archive::accepted_as_notes(&policy.accepted),
        gates: gates.0.clone(),
        overrides: gates.overrides(),
        refs,
        removed: None,
        remove_refused: None,
        seconds: 0.0,
    };
    match (gates.refusal(), base_dir, live) {
        (Some(why), _, _) | (None, Err(why), _) => report.remove_refused = Some(why),
        (None, Ok(b), Some((entries, identity))) => {
            let entries = with_positions(entries, &manifest);
            let remove_base = src.scope.is_empty();
            report.removed = Some(remove_archived(&b, &entries, &identity, remove_base));
        }
        (None, Ok(_), None) => unreachable!("the audit gate runs whenever removal may"),
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The sidecar manifest, else the one inside the archive: what was archived.
fn load_manifest(archive: &Path) -> Result<Manifest> {
    let meta = std::fs::metadata(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", archive.display());
    }
    let side = crate::archive::manifest_sidecar(archive);
    if let Ok(m) = Manifest::read_file(&side) {
        return Ok(m);
    }
    let mut f = crate::fsx::open_path(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?;
    let ix = crate::frames::read_index(&mut f)
        .ok()
        .flatten()
        .with_context(|| {
            format!(
                "{} has no usable manifest (no readable sidecar {}, no datamig index at its end): \
             retire needs the manifest that says what was archived; nothing was removed",
                archive.display(),
                side.display()
            )
        })?;
    let bytes = crate::verify::archive::read_embedded(
        archive,
        meta.len(),
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )
    .and_then(|b| Manifest::read(&b[..]))
    .with_context(|| {
        format!(
            "neither the sidecar {} nor the manifest inside {} can be read; nothing was removed",
            side.display(),
            archive.display()
        )
    })?;
    Ok(bytes)
}

/// The source the archive was made of, resolved under the data root as
/// `archive` would resolve it, with the manifest's scope.
fn archived_source(opts: &RetireOptions, m: &Manifest) -> Result<Source> {
    let archive = opts.archive.display();
    if m.header.layout != opts.layout.name {
        bail!(
            "{archive} was made with the layout {:?}, this run uses {:?}: pass the same --layout, so that the same targets and gates apply",
            m.header.layout,
            opts.layout.name
        );
    }
    let base = m
        .root_bytes()
        .map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
        .with_context(|| {
            format!("the manifest of {archive} does not name the archived directory")
        })?;
    let rel = rel_under(&opts.root, &base).with_context(|| {
        format!(
            "{archive} was made of {}, which is not under the data root {} (pass the --root it was archived from)",
            base.display(),
            opts.root.display()
        )
    })?;
    let scope: Vec<Vec<u8>> = m
        .header
        .scope
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let wanted: Vec<PathBuf> = if scope.is_empty() {
        vec![opts.root.join(std::ffi::OsStr::from_bytes(&rel))]
    } else {
        m.header.scope.iter().map(|s| opts.root.join(s)).collect()
    };
    if wanted.iter().all(|p| p.symlink_metadata().is_err()) {
        bail!(
            "nothing to retire: {} no longer exists (already removed?); the archive {archive} is untouched",
            wanted
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let name = target_of(&opts.layout, &opts.archive, &rel, &m.header.scope)
        .or_else(|| {
            scope
                .is_empty()
                .then(|| String::from_utf8_lossy(&rel).into_owned())
        })
        .with_context(|| {
            format!(
                "{archive} was made of {} of the data root, which no target of the layout names",
                m.header.scope.join(", ")
            )
        })?;
    let mut src = resolve_source(&opts.root, &opts.layout, &name)?;
    if src.base_rel != rel {
        bail!(
            "{archive} was made of {}, but {name:?} is now {}: the tree is no longer laid out as it was archived; nothing was removed",
            base.display(),
            src.base.display()
        );
    }
    src.scope = scope;
    Ok(src)
}

/// `base` relative to `root`: as written, else with both resolved (a root
/// named another way, e.g. relatively). The last component is never
/// resolved, so a source that became a symlink is still the path archived.
fn rel_under(root: &Path, base: &Path) -> Option<Vec<u8>> {
    let rel = base
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .ok()
        .or_else(|| {
            let r = root.canonicalize().ok()?;
            let b = match (base.parent(), base.file_name()) {
                (Some(p), Some(n)) => p.canonicalize().ok()?.join(n),
                _ => base.canonicalize().ok()?,
            };
            b.strip_prefix(&r).map(Path::to_path_buf).ok()
        })?;
    let rel = rel.as_os_str().as_bytes().to_vec();
    (rel.is_empty() || crate::manifest::check_entry_path(&rel).is_ok()).then_some(rel)
}

/// The layout target with exactly these paths: a single directory, or (for
/// a multi-path target) the scope; among several, the one whose prefix
/// starts the archive's name, else the one with fewest paths.
fn target_of(layout: &Layout, archive: &Path, rel: &[u8], scope: &[String]) -> Option<String> {
    let covers = |t: &crate::layout::Target| {
        if scope.is_empty() {
            t.paths.len() == 1 && t.paths[0].as_bytes() == rel
        } else {
            rel.is_empty() && scope.iter().all(|s| t.paths.contains(s))
        }
    };
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates: Vec<&crate::layout::Target> =
        layout.targets.iter().filter(|t| covers(t)).collect();
    candidates
        .iter()
        .find(|t| name.starts_with(&format!("{}-", t.prefix)))
        .or_else(|| candidates.iter().min_by_key(|t| t.paths.len()))
        .map(|t| t.name.clone())
}

/// The live tree, hashed, through the source's handle, leaving out what the
/// archive left out: the header's `exclude` patterns (the target's and the
/// command line's), `--exclude`, and the archive's own directory when it lies
/// inside the source.
fn audit_scan(
    opts: &RetireOptions,
    src: &Source,
    m: &Manifest,
    progress: &dyn Progress,
) -> Result<(Vec<Entry>, Vec<crate::scan::Identity>)> {
    let dest = match opts.archive.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut patterns = m.header.exclude.clone();
    patterns.extend_from_slice(&opts.excludes);
    let excludes = crate::commands::archive::source_excludes(src, &patterns, &dest)?;
    let (entries, identity, _) = crate::commands::archive::scan_source(
        &opts.layout,
        src,
        &excludes,
        &crate::scan::Tags::default(),
        opts.threads,
        true,
        progress,
    )?;
    Ok((entries, identity))
}

fn verify_gate(discrepancies: &[String]) -> GateResult {
    match discrepancies.first() {
        None => GateResult::passed(
            Check::Verify,
            "every member matched the manifest; sidecars agree",
        ),
        Some(first) => {
            let n = discrepancies.len();
            GateResult::not_passed(
                Check::Verify,
                gates::Verdict::Failed,
                format!("{n} discrepancies, first: {first}"),
                format!(
                    "the archive did not verify ({n} discrepancies, listed), so it cannot stand in for the source"
                ),
                None,
            )
        }
    }
}

fn audit_gate(a: &Audit) -> GateResult {
    let counts = a.counts();
    if counts.is_empty() {
        return GateResult::passed(
            Check::Audit,
            format!("{} entries match the archive", a.matched),
        );
    }
    GateResult::not_passed(
        Check::Audit,
        gates::Verdict::Failed,
        counts.clone(),
        format!(
            "the tree changed since it was archived ({counts}; listed); archive it again to retire it"
        ),
        None,
    )
}

/// The live entries, each with the archive position of its manifest entry:
/// removal takes only entries the archive holds, checked against what the
/// audit saw (which matched the manifest).
fn with_positions(mut live: Vec<Entry>, m: &Manifest) -> Vec<Entry> {
    for e in &mut live {
        e.pos = m.get(&e.path).and_then(|a| a.pos);
    }
    live
}
