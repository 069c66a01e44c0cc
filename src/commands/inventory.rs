//! `datamig inventory`: scan the root (or some areas), write the manifest, and
//! summarize what was found.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::atomic::AtomicFile;
use crate::entry::Entry;
use crate::layout::{Layout, build_globset};
use crate::manifest::{Header, Manifest, write_manifest};
use crate::progress::Progress;
use crate::scan::{self, ScanSpec};
use crate::summary::{Summary, summarize};

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub root: PathBuf,
    pub layout: Layout,
    /// Area names or paths relative to the root; empty: everything.
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
    /// `--exclude-caches`, `--exclude-if-present`.
    pub tags: crate::scan::Tags,
    pub threads: usize,
    pub since: Option<PathBuf>,
    pub output: Option<PathBuf>,
    /// Creation time for the header; `None` means now.
    pub now: Option<String>,
}

pub struct Inventory {
    pub summary: Summary,
    pub entries: Vec<Entry>,
}

impl Inventory {
    pub fn clean(&self) -> bool {
        self.summary.problems == 0
    }
}

/// Resolve each argument to a relative path: an area name first, else a path
/// relative to the root (absolute paths under the root are accepted too).
pub fn resolve_scope(
    opts_root: &std::path::Path,
    layout: &Layout,
    args: &[String],
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for a in args {
        if let Some(area) = layout.area(a) {
            out.push(area.path.clone().into_bytes());
            continue;
        }
        // An archive target (`v2`) names its paths: inventory what it would archive.
        if let Some(t) = layout.target(a) {
            out.extend(target_scope(opts_root, t)?);
            continue;
        }
        let p = std::path::Path::new(a);
        let rel = if p.is_absolute() {
            p.strip_prefix(opts_root)
                .ok()
                .with_context(|| format!("{a} is not under the root {}", opts_root.display()))?
                .to_path_buf()
        } else {
            p.to_path_buf()
        };
        let s = rel.to_string_lossy().trim_end_matches('/').to_string();
        crate::manifest::check_entry_path(s.as_bytes()).with_context(|| {
            format!("{a:?} is neither an area of the layout nor a clean relative path")
        })?;
        out.push(s.into_bytes());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The paths of an archive target that exist (as `archive` does, a target
/// path that is absent is simply not part of it); looked up through the root
/// handle. None at all: the run cannot start.
fn target_scope(root: &std::path::Path, t: &crate::layout::Target) -> Result<Vec<Vec<u8>>> {
    let root_dir = crate::scan::open_root(root)?;
    let mut present = Vec::new();
    for p in &t.paths {
        let arg = format!("{p} (a path of the archive target {:?})", t.name);
        if crate::scan::locate(&root_dir, root, p.as_bytes(), &arg)?.is_some() {
            present.push(p.clone().into_bytes());
        }
    }
    if present.is_empty() {
        anyhow::bail!(
            "target {:?} has nothing to inventory: none of {} exists under {}",
            t.name,
            t.paths.join(", "),
            root.display()
        );
    }
    Ok(present)
}

/// Areas a whole-root inventory leaves out: the archives and the backups
/// (areas of kind `archive` and `backup`), so that `--format files0 | tar
/// --null -T -` does not back up the backups. Naming one includes it.
pub fn not_scanned_by_default(layout: &Layout, targets: &[String]) -> Vec<String> {
    if !targets.is_empty() {
        return vec![];
    }
    layout
        .areas
        .iter()
        .filter(|a| matches!(a.kind.as_str(), "archive" | "backup"))
        .map(|a| a.path.clone())
        .collect()
}

pub fn run(opts: &InventoryOptions, progress: &dyn Progress) -> Result<Inventory> {
    let scope = resolve_scope(&opts.root, &opts.layout, &opts.targets)?;
    let left_out = not_scanned_by_default(&opts.layout, &opts.targets);
    let mut patterns = opts.excludes.clone();
    // A named archive target brings its own excludes, so the preview lists
    // what `archive TARGET` would take (both are relative to the root here).
    for t in opts.targets.iter().filter_map(|a| opts.layout.target(a)) {
        if opts.layout.area(&t.name).is_none() {
            patterns.extend(t.exclude.iter().cloned());
        }
    }
    let asked = patterns.clone();
    for p in &left_out {
        patterns.push(globset::escape(p));
        patterns.push(format!("{}/**", globset::escape(p)));
    }
    let excludes = build_globset(&patterns)?;
    let classifier = opts.layout.classifier();
    let area_of = |rel: &[u8]| classifier.name_of(rel).to_string();
    let check_json = |rel: &[u8]| {
        (rel.ends_with(b".json") || rel.ends_with(b".jsonl"))
            && classifier.area_of(rel).is_some_and(|a| a.check_json)
    };
    let spec = ScanSpec {
        root: &opts.root,
        root_dir: None,
        scope: &scope,
        excludes: &excludes,
        tags: &opts.tags,
        area_of: &area_of,
        check_json: &check_json,
        threads: opts.threads,
        hash_files: true,
    };
    // The old manifest is parsed while the tree is walked: on a tree of small
    // files both take about as long, and neither needs the other until hashing.
    let (listing, previous) = std::thread::scope(|s| {
        let reader = opts
            .since
            .as_deref()
            .map(|p| s.spawn(move || Manifest::read_file(p)));
        let listing = scan::list(&spec, progress);
        let previous = reader
            .map(|h| h.join().expect("manifest reader panicked"))
            .transpose();
        (listing, previous)
    });
    let previous = previous?;
    let result = scan::hash(&spec, listing?, previous.as_ref(), progress);
    // The manifest records the patterns the scan applied, so `verify --tree`
    // applies them too; the default scope's only for areas that are there.
    let mut recorded = asked;
    for p in &left_out {
        if result.excluded.iter().any(|x| x.path == p.as_bytes()) {
            recorded.push(globset::escape(p));
            recorded.push(format!("{}/**", globset::escape(p)));
        }
    }
    // The summary and the manifest only read the entries: build both at once.
    let (mut summary, written) = std::thread::scope(|s| {
        let writer = opts
            .output
            .as_deref()
            .map(|out| s.spawn(|| write_output(opts, &scope, &recorded, out, &result.entries)));
        let summary = summarize(&opts.root, &opts.layout, &result.entries);
        let written = writer
            .map(|h| h.join().expect("manifest writer panicked"))
            .transpose();
        (summary, written)
    });
    written?;
    let (not_scanned, excluded): (Vec<_>, Vec<_>) = result.excluded.iter().partition(|x| {
        x.why == scan::Skip::Pattern && left_out.iter().any(|p| p.as_bytes() == x.path)
    });
    summary.not_scanned = not_scanned
        .into_iter()
        .map(|x| crate::summary::PathNote {
            path: format!("{}/", String::from_utf8_lossy(&x.path)),
            note: format!(
                "{} area, left out of a whole-root inventory; name it to include it",
                opts.layout
                    .classifier()
                    .area_of(&x.path)
                    .map_or("", |a| a.kind.as_str())
            ),
        })
        .collect();
    summary.excluded_count = excluded.len();
    summary.excluded = excluded
        .into_iter()
        .map(|x| crate::summary::PathNote {
            path: String::from_utf8_lossy(&x.path).into_owned(),
            note: x.note(),
        })
        .collect();
    summary.hashed = result.hashed;
    summary.reused = result.reused;
    summary.manifest = opts.output.as_ref().map(|o| o.display().to_string());
    Ok(Inventory {
        summary,
        entries: result.entries,
    })
}

fn write_output(
    opts: &InventoryOptions,
    scope: &[Vec<u8>],
    exclude: &[String],
    out: &std::path::Path,
    entries: &[Entry],
) -> Result<()> {
    let created = opts.now.clone().unwrap_or_else(now_rfc3339);
    let scope_names = scope
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let mut header = Header::new(&opts.root, &opts.layout.name, created, scope_names);
    header.exclude = exclude.to_vec();
    let mut f = AtomicFile::create(out, 0o600, false)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
    write_manifest(&mut w, &header, entries)
        .with_context(|| format!("cannot write manifest {}", out.display()))?;
    w.into_inner().map_err(|e| e.into_error())?;
    f.commit()
        .with_context(|| format!("cannot write manifest {}", out.display()))
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
