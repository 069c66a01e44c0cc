//! `datamig verify --migration`: proof that every legacy file has an identical
//! copy at its consolidated place, from the layout's migration rules.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use crate::entry::{Entry, Kind, hex};
use crate::layout::{Layout, MigrationRule};
use crate::progress::Progress;
use crate::scan::{ScanSpec, hash_reader, scan};
use crate::summary::{PathNote, rfc3339_ns};

#[derive(Debug, Clone, Serialize)]
pub struct NotMigrated {
    pub legacy: String,
    pub expected: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Differs {
    pub legacy: String,
    pub consolidated: String,
    pub legacy_sha256: String,
    pub consolidated_sha256: String,
    pub legacy_mtime: String,
    pub consolidated_mtime: String,
    /// "legacy", "consolidated" or "same".
    pub newer: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub report: &'static str,
    pub version: u32,
    pub root: String,
    pub legacy_files: u64,
    pub migrated: u64,
    pub not_migrated: Vec<NotMigrated>,
    pub differs: Vec<Differs>,
    /// Legacy files no rule maps anywhere.
    pub unmapped: Vec<String>,
    pub unreadable: Vec<PathNote>,
}

impl MigrationReport {
    pub fn clean(&self) -> bool {
        self.not_migrated.is_empty()
            && self.differs.is_empty()
            && self.unmapped.is_empty()
            && self.unreadable.is_empty()
    }
}

/// Map a legacy path through the first matching rule.
pub fn map_path(rules: &[MigrationRule], legacy: &[u8]) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = legacy.split(|&b| b == b'/').collect();
    rules.iter().find_map(|r| apply(r, &parts))
}

fn apply(rule: &MigrationRule, parts: &[&[u8]]) -> Option<Vec<u8>> {
    let pat: Vec<&str> = rule.from.split('/').collect();
    let mut caps: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut i = 0;
    for (k, p) in pat.iter().enumerate() {
        if let Some(name) = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            let value: Vec<u8> = if name == "rest" {
                if k + 1 != pat.len() || i >= parts.len() {
                    return None;
                }
                let v = parts[i..].join(&b'/');
                i = parts.len();
                v
            } else {
                let v = parts.get(i)?.to_vec();
                i += 1;
                v
            };
            if let Some(allowed) = rule.only.get(name)
                && !allowed.iter().any(|a| a.as_bytes() == value.as_slice())
            {
                return None;
            }
            caps.insert(name, value);
        } else {
            if parts.get(i)? != &p.as_bytes() {
                return None;
            }
            i += 1;
        }
    }
    if i != parts.len() {
        return None;
    }
    let mut out = Vec::new();
    for (k, p) in rule.to.split('/').enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        match p.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(name) => out.extend_from_slice(caps.get(name)?),
            None => out.extend_from_slice(p.as_bytes()),
        }
    }
    Some(out)
}

/// The literal directories the rules read from (e.g. `v2-dev-data`).
fn legacy_roots(rules: &[MigrationRule]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = rules
        .iter()
        .filter_map(|r| {
            let lit: Vec<&str> = r
                .from
                .split('/')
                .take_while(|p| !p.starts_with('{'))
                .collect();
            (!lit.is_empty()).then(|| lit[0].as_bytes().to_vec())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn verify_migration(
    root: &Path,
    layout: &Layout,
    threads: usize,
    progress: &dyn Progress,
) -> Result<MigrationReport> {
    if layout.migrations.is_empty() {
        bail!("the layout has no [[migration]] rules; nothing to check");
    }
    let roots: Vec<Vec<u8>> = legacy_roots(&layout.migrations)
        .into_iter()
        .filter(|r| root.join(OsStr::from_bytes(r)).exists())
        .collect();
    if roots.is_empty() {
        bail!(
            "no legacy directory of the migration rules exists under {}",
            root.display()
        );
    }
    let excludes = crate::layout::build_globset(&[])?;
    let area = |_: &[u8]| String::new();
    let no_json = |_: &[u8]| false;
    let spec = ScanSpec {
        root,
        root_dir: None,
        scope: &roots,
        excludes: &excludes,
        tags: &crate::scan::Tags::default(),
        area_of: &area,
        check_json: &no_json,
        threads,
        hash_files: true,
    };
    let legacy = scan(&spec, progress)?.entries;
    let files: Vec<&Entry> = legacy
        .iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Hardlink))
        .collect();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let outcomes: Vec<Outcome> = pool.install(|| {
        files
            .par_iter()
            .map(|e| judge(root, &layout.migrations, e, &legacy))
            .collect()
    });
    let mut r = MigrationReport {
        report: "verify-migration",
        version: 1,
        root: root.display().to_string(),
        legacy_files: files.len() as u64,
        migrated: 0,
        not_migrated: vec![],
        differs: vec![],
        unmapped: vec![],
        unreadable: vec![],
    };
    for o in outcomes {
        match o {
            Outcome::Migrated => r.migrated += 1,
            Outcome::NotMigrated(x) => r.not_migrated.push(x),
            Outcome::Differs(x) => r.differs.push(*x),
            Outcome::Unmapped(p) => r.unmapped.push(p),
            Outcome::Unreadable(n) => r.unreadable.push(n),
        }
    }
    Ok(r)
}

enum Outcome {
    Migrated,
    NotMigrated(NotMigrated),
    Differs(Box<Differs>),
    Unmapped(String),
    Unreadable(PathNote),
}

fn judge(root: &Path, rules: &[MigrationRule], e: &Entry, all: &[Entry]) -> Outcome {
    let legacy = e.path_lossy();
    let sha = match e.kind {
        Kind::Hardlink => e
            .target
            .as_deref()
            .and_then(|t| all.binary_search_by(|x| x.path.as_slice().cmp(t)).ok())
            .and_then(|i| all[i].sha256),
        _ => e.sha256,
    };
    let Some(sha) = sha else {
        return Outcome::Unreadable(PathNote {
            path: legacy,
            note: e.problem.clone().unwrap_or_default(),
        });
    };
    let Some(dest) = map_path(rules, &e.path) else {
        return Outcome::Unmapped(legacy);
    };
    let expected = String::from_utf8_lossy(&dest).into_owned();
    let abs: PathBuf = root.join(OsStr::from_bytes(&dest));
    let meta = match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return Outcome::NotMigrated(NotMigrated {
                legacy,
                expected: format!("{expected} (not a regular file)"),
            });
        }
        Err(_) => return Outcome::NotMigrated(NotMigrated { legacy, expected }),
    };
    let theirs = std::fs::File::open(&abs).and_then(|f| {
        let mut buf = vec![0u8; 64 << 10];
        hash_reader(f, &mut buf, false).map(|(h, _, _)| h)
    });
    let theirs = match theirs {
        Ok(h) => h,
        Err(err) => {
            return Outcome::Unreadable(PathNote {
                path: expected,
                note: err.to_string(),
            });
        }
    };
    if theirs == sha {
        return Outcome::Migrated;
    }
    let their_mtime = crate::entry::nanos(meta.mtime(), meta.mtime_nsec());
    let newer = match e.mtime_ns.cmp(&their_mtime) {
        std::cmp::Ordering::Greater => "legacy",
        std::cmp::Ordering::Less => "consolidated",
        std::cmp::Ordering::Equal => "same",
    };
    Outcome::Differs(Box::new(Differs {
        legacy,
        consolidated: expected,
        legacy_sha256: hex(&sha),
        consolidated_sha256: hex(&theirs),
        legacy_mtime: rfc3339_ns(e.mtime_ns),
        consolidated_mtime: rfc3339_ns(their_mtime),
        newer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_map_the_consolidation() {
        let rules = Layout::default_layout().migrations;
        let cases: &[(&str, Option<&str>)] = &[
            (
                "v2-dev-data/instances/Bastion-11a9/diary.md",
                Some("instances/Bastion-11a9/diary.md"),
            ),
            (
                "v2-dev-data/instances/Continue Test-3f51/preferences.json",
                Some("instances/Continue Test-3f51/preferences.json"),
            ),
            ("v2-dev-data/instances/Bastion-11a9/.bashrc", None),
            ("v2-dev-data/instances/Bastion-11a9/sub/diary.md", None),
            (
                "v2-dev-data/projects/p1/documents/a.md",
                Some("projects/p1/documents/a.md"),
            ),
            ("v2-dev-data/wake-logs/x.log", Some("wake-logs/x.log")),
            ("v2-dev-data/wisdom.md", Some("wisdom.md")),
            ("v2-dev-data/unknown/x", None),
            ("v2-dev-data/projects", None),
            ("instances/a/diary.md", None),
        ];
        for (legacy, want) in cases {
            let got = map_path(&rules, legacy.as_bytes()).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), *want, "{legacy}");
        }
    }
}
