//! `datamig verify --tree DIR MANIFEST`: what changed on disk since a manifest,
//! in hashdeep's terms: matched, modified, metadata-only, missing, new, moved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::entry::{Entry, Kind};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::scan::{ScanSpec, scan};
use crate::summary::PathNote;

#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeReport {
    pub report: &'static str,
    pub version: u32,
    pub tree: String,
    pub manifest: String,
    /// Size and mtime only: content changes that keep both are not seen.
    pub fast: bool,
    pub matched: u64,
    pub modified: Vec<PathNote>,
    pub metadata: Vec<PathNote>,
    pub missing: Vec<String>,
    pub new: Vec<String>,
    pub moved: Vec<Moved>,
    pub unreadable: Vec<PathNote>,
}

impl TreeReport {
    pub fn clean(&self) -> bool {
        self.modified.is_empty()
            && self.metadata.is_empty()
            && self.missing.is_empty()
            && self.new.is_empty()
            && self.moved.is_empty()
            && self.unreadable.is_empty()
    }
}

/// What identifies a file's content for move detection: size, hash (or, with
/// --fast, mtime instead).
type ContentKey = (u64, Option<[u8; 32]>, i64);

pub struct TreeOptions {
    pub tree: PathBuf,
    pub manifest: PathBuf,
    pub fast: bool,
    pub threads: usize,
}

pub fn verify_tree(opts: &TreeOptions, progress: &dyn Progress) -> Result<TreeReport> {
    let old = Manifest::read_file(&opts.manifest)?;
    let scope: Vec<Vec<u8>> = old
        .header
        .scope
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    // What the manifest's scan skipped on purpose is not "new" now.
    let excludes = crate::layout::build_globset(&old.header.exclude)
        .with_context(|| format!("{}: its header's exclude patterns", opts.manifest.display()))?;
    let area = |_: &[u8]| String::new();
    let no_json = |_: &[u8]| false;
    let spec = ScanSpec {
        root: &opts.tree,
        root_dir: None,
        scope: &scope,
        excludes: &excludes,
        tags: &crate::scan::Tags::default(),
        area_of: &area,
        check_json: &no_json,
        threads: opts.threads,
        hash_files: !opts.fast,
    };
    let now = scan(&spec, progress)?.entries;
    Ok(compare(
        &opts.tree,
        &opts.manifest,
        &old.entries,
        &now,
        opts.fast,
    ))
}

/// Pure comparison of two sorted entry lists.
pub fn compare(
    tree: &Path,
    manifest: &Path,
    old: &[Entry],
    now: &[Entry],
    fast: bool,
) -> TreeReport {
    // Tar members keep whole seconds, so a tree extracted from an archive has
    // the manifest's mtimes truncated: compare seconds for archive manifests.
    let whole_secs = old.iter().any(|e| e.pos.is_some());
    compare_mtimes(tree, manifest, old, now, fast, whole_secs)
}

/// [`compare`], saying whether mtimes count in whole seconds: `retire`
/// audits the tree the archive was made from, whose mtimes are exact.
pub fn compare_mtimes(
    tree: &Path,
    manifest: &Path,
    old: &[Entry],
    now: &[Entry],
    fast: bool,
    whole_secs: bool,
) -> TreeReport {
    let mut r = TreeReport {
        report: "verify-tree",
        version: 1,
        tree: tree.display().to_string(),
        manifest: manifest.display().to_string(),
        fast,
        matched: 0,
        modified: vec![],
        metadata: vec![],
        missing: vec![],
        new: vec![],
        moved: vec![],
        unreadable: vec![],
    };
    // Archive manifests hold the `.datamig/` members' owner, never on disk here.
    let skip = |e: &Entry| e.path.starts_with(b".datamig/") || e.path == b".datamig";
    let mtime = |e: &Entry| {
        if whole_secs {
            e.mtime_ns.div_euclid(1_000_000_000)
        } else {
            e.mtime_ns
        }
    };
    let (mut i, mut j) = (0, 0);
    let mut gone: Vec<&Entry> = Vec::new();
    let mut added: Vec<&Entry> = Vec::new();
    while i < old.len() || j < now.len() {
        let ord = match (old.get(i), now.get(j)) {
            (Some(a), Some(b)) => a.path.cmp(&b.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                if !skip(&old[i]) {
                    gone.push(&old[i]);
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                if !skip(&now[j]) {
                    added.push(&now[j]);
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                same_path(&mut r, &old[i], &now[j], fast, mtime);
                i += 1;
                j += 1;
            }
        }
    }
    // Moved: a vanished file whose content reappears at a new path.
    let key = |e: &Entry| -> Option<ContentKey> {
        if e.kind != Kind::File {
            return None;
        }
        if fast {
            Some((e.size, None, mtime(e)))
        } else {
            e.sha256.map(|h| (e.size, Some(h), 0))
        }
    };
    let mut by_content: HashMap<ContentKey, Vec<usize>> = HashMap::new();
    for (k, e) in added.iter().enumerate() {
        if let Some(c) = key(e) {
            by_content.entry(c).or_default().push(k);
        }
    }
    let mut taken = vec![false; added.len()];
    for g in gone {
        let hit = key(g).and_then(|c| by_content.get_mut(&c)).and_then(|v| {
            let pos = v.iter().position(|&k| !taken[k])?;
            Some(v.remove(pos))
        });
        match hit {
            Some(k) => {
                taken[k] = true;
                r.moved.push(Moved {
                    from: g.path_lossy(),
                    to: added[k].path_lossy(),
                });
            }
            None => r.missing.push(g.path_lossy()),
        }
    }
    for (k, e) in added.iter().enumerate() {
        if !taken[k] {
            r.new.push(e.path_lossy());
        }
    }
    r
}

fn same_path(r: &mut TreeReport, a: &Entry, b: &Entry, fast: bool, mtime: impl Fn(&Entry) -> i64) {
    let path = a.path_lossy();
    if let Some(p) = &b.problem {
        r.unreadable.push(PathNote {
            path,
            note: p.clone(),
        });
        return;
    }
    if a.kind != b.kind {
        r.modified.push(PathNote {
            path,
            note: format!("was a {}, now a {}", a.kind, b.kind),
        });
        return;
    }
    let content = match a.kind {
        Kind::File if fast => {
            (a.size != b.size || mtime(a) != mtime(b)).then(|| "size or mtime differs".to_string())
        }
        Kind::File => (a.sha256 != b.sha256).then(|| "content differs (sha256)".to_string()),
        Kind::Symlink | Kind::Hardlink => {
            (a.target != b.target).then(|| "link target differs".to_string())
        }
        _ => None,
    };
    if let Some(note) = content {
        r.modified.push(PathNote { path, note });
        return;
    }
    let mut meta = Vec::new();
    if a.mode != b.mode {
        meta.push(format!("mode {:o} -> {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        meta.push(format!("owner {}:{} -> {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    // A directory's mtime moves whenever its contents do; that is reported
    // through the contents, not as a change of the directory.
    if a.kind != Kind::Dir && !fast && mtime(a) != mtime(b) {
        meta.push("mtime changed".to_string());
    }
    if meta.is_empty() {
        r.matched += 1;
    } else {
        r.metadata.push(PathNote {
            path,
            note: meta.join(", "),
        });
    }
}
