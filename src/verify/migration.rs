//! `datamig verify --migration`: proof that every legacy file has an identical
//! copy at its consolidated place, from the layout's migration rules. Each
//! finding carries how to resolve it: the `cp -p` that puts it in place, or an
//! explicit `--accept PATH` for a file the operator decides is obsolete.

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
use crate::summary::{PathNote, rfc3339_nanos};

#[derive(Debug, Clone, Serialize)]
pub struct NotMigrated {
    pub legacy: String,
    pub expected: String,
    /// The shell command that puts the legacy file at its place (absolute
    /// paths, quoted); absent when something other than a file is in the way
    /// or a name is not UTF-8.
    pub copy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Differs {
    pub legacy: String,
    pub consolidated: String,
    pub legacy_sha256: String,
    pub consolidated_sha256: String,
    /// RFC 3339 with nanoseconds, so two different mtimes never print alike.
    pub legacy_mtime: String,
    pub consolidated_mtime: String,
    pub legacy_mtime_ns: i64,
    pub consolidated_mtime_ns: i64,
    /// "legacy", "consolidated" or "same" (compared to the nanosecond).
    pub newer: &'static str,
    /// `cp -p` of the legacy copy over the consolidated one, for when the
    /// legacy copy is the right one.
    pub copy: Option<String>,
}

/// A finding the operator resolved with `--accept PATH`: deliberately left
/// behind (obsolete), listed so that nothing is dropped silently.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub legacy: String,
    /// Where the rules would put it (absent when no rule maps it).
    pub expected: Option<String>,
    /// What the check found: "not_migrated", "differs" or "unmapped".
    pub was: &'static str,
    /// The `--accept` argument that covers it.
    pub accepted_by: String,
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
    /// Findings covered by `--accept`; not problems.
    pub accepted: Vec<Accepted>,
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

/// `accept`: the `--accept PATH` arguments, legacy files or directories the
/// operator decided are obsolete (relative to the root, or absolute under it).
pub fn verify_migration(
    root: &Path,
    layout: &Layout,
    threads: usize,
    accept: &[String],
    progress: &dyn Progress,
) -> Result<MigrationReport> {
    let accept = normalize_accepts(root, accept)?;
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
    check_accepts_match(&accept, &files)?;

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
        accepted: vec![],
    };
    for o in outcomes {
        let o = match o.accepted_as(&accept) {
            Ok(a) => {
                r.accepted.push(a);
                continue;
            }
            Err(o) => o,
        };
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

impl Outcome {
    /// The finding as accepted, when an `--accept` path covers its legacy
    /// file; unreadable files are never accepted (nothing was checked).
    fn accepted_as(self, accept: &[String]) -> Result<Accepted, Outcome> {
        let (legacy, expected, was) = match &self {
            Outcome::NotMigrated(x) => (&x.legacy, Some(x.expected.clone()), "not_migrated"),
            Outcome::Differs(x) => (&x.legacy, Some(x.consolidated.clone()), "differs"),
            Outcome::Unmapped(p) => (p, None, "unmapped"),
            Outcome::Migrated | Outcome::Unreadable(_) => return Err(self),
        };
        match accept.iter().find(|a| covers(a, legacy.as_bytes())) {
            Some(a) => Ok(Accepted {
                legacy: legacy.clone(),
                expected,
                was,
                accepted_by: a.clone(),
            }),
            None => Err(self),
        }
    }
}

/// An accepted path covers itself and, as a directory, everything below it.
fn covers(accept: &str, legacy: &[u8]) -> bool {
    let a = accept.as_bytes();
    legacy == a || (legacy.starts_with(a) && legacy.get(a.len()) == Some(&b'/'))
}

/// `--accept` paths as the report prints legacy paths: relative to the root,
/// no `./`, no trailing `/`. An absolute path must lie under the root.
fn normalize_accepts(root: &Path, accept: &[String]) -> Result<Vec<String>> {
    accept
        .iter()
        .map(|raw| {
            let p = Path::new(raw);
            let rel = if p.is_absolute() {
                p.strip_prefix(root).map_err(|_| {
                    anyhow::anyhow!(
                        "--accept {raw}: not under the root {}; name the legacy file as the \
                         report does, e.g. v2-dev-data/instances/<id>/notes.md",
                        root.display()
                    )
                })?
            } else {
                p
            };
            let parts: Vec<String> = rel
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .map(|c| match c {
                    std::path::Component::Normal(n) => Ok(n.to_string_lossy().into_owned()),
                    _ => Err(anyhow::anyhow!(
                        "--accept {raw}: `..` is not allowed; name the legacy file relative to the root"
                    )),
                })
                .collect::<Result<_>>()?;
            if parts.is_empty() {
                bail!("--accept {raw}: names the whole root; name legacy files or directories");
            }
            Ok(parts.join("/"))
        })
        .collect()
}

/// An `--accept` that covers no legacy file is a typo or a stale decision:
/// refuse it rather than let the operator believe something was accepted.
fn check_accepts_match(accept: &[String], files: &[&Entry]) -> Result<()> {
    for a in accept {
        if !files.iter().any(|e| covers(a, &e.path)) {
            bail!(
                "--accept {a}: no legacy file is at or under this path; give paths relative to \
                 the root as the report prints them (e.g. v2-dev-data/instances/<id>/notes.md)"
            );
        }
    }
    Ok(())
}

/// `cp -p SRC DST` with absolute, shell-quoted paths (plus `mkdir -p` when
/// the destination directory is missing); none for a name that is not UTF-8,
/// whose lossy spelling would copy the wrong file.
fn copy_command(root: &Path, legacy: &[u8], dest: &[u8]) -> Option<String> {
    let quote = |rel: &[u8]| -> Option<String> {
        let abs = root.join(OsStr::from_bytes(rel));
        let s = abs.to_str()?;
        shlex::try_quote(s).ok().map(|q| q.into_owned())
    };
    let (src, dst) = (quote(legacy)?, quote(dest)?);
    let parent = root.join(OsStr::from_bytes(dest));
    let parent = parent.parent()?;
    if parent.is_dir() {
        Some(format!("cp -p -- {src} {dst}"))
    } else {
        let dir = shlex::try_quote(parent.to_str()?).ok()?.into_owned();
        Some(format!("mkdir -p -- {dir} && cp -p -- {src} {dst}"))
    }
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
                copy: None,
            });
        }
        Err(_) => {
            let copy = copy_command(root, &e.path, &dest);
            return Outcome::NotMigrated(NotMigrated {
                legacy,
                expected,
                copy,
            });
        }
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
        legacy_mtime: rfc3339_nanos(e.mtime_ns),
        consolidated_mtime: rfc3339_nanos(their_mtime),
        legacy_mtime_ns: e.mtime_ns,
        consolidated_mtime_ns: their_mtime,
        newer,
        copy: copy_command(root, &e.path, &dest),
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
            // Whatever stayed behind belongs at the same place (item 12.9).
            (
                "v2-dev-data/instances/Bastion-11a9/.bashrc",
                Some("instances/Bastion-11a9/.bashrc"),
            ),
            (
                "v2-dev-data/instances/Bastion-11a9/.claude/todos/t.json",
                Some("instances/Bastion-11a9/.claude/todos/t.json"),
            ),
            ("v2-dev-data/instances/stray.txt", None),
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

    #[test]
    fn an_accepted_directory_covers_what_is_below_it_only() {
        assert!(covers(
            "v2-dev-data/instances/a",
            b"v2-dev-data/instances/a/x"
        ));
        assert!(covers(
            "v2-dev-data/instances/a/x",
            b"v2-dev-data/instances/a/x"
        ));
        assert!(!covers(
            "v2-dev-data/instances/a",
            b"v2-dev-data/instances/ab/x"
        ));
        assert!(!covers(
            "v2-dev-data/instances/a/x",
            b"v2-dev-data/instances/a"
        ));
    }

    #[test]
    fn accept_paths_are_normalized_to_report_paths() {
        let root = Path::new("/data");
        let got = normalize_accepts(
            root,
            &[
                "./v2-dev-data/instances/a/".into(),
                "/data/v2-dev-data/wisdom.md".into(),
            ],
        )
        .unwrap();
        assert_eq!(got, ["v2-dev-data/instances/a", "v2-dev-data/wisdom.md"]);
        for bad in ["/elsewhere/x", "v2-dev-data/../etc", "."] {
            assert!(normalize_accepts(root, &[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_hint_quotes_names_with_spaces_and_quotes() {
        let t = std::env::temp_dir();
        let hint = copy_command(&t, b"v2 dev/it's", b"no-such-dir-datamig/x").unwrap();
        assert!(hint.starts_with("mkdir -p -- "), "{hint}");
        assert!(hint.contains("cp -p -- "), "{hint}");
        assert!(!hint.contains(" v2 dev/"), "unquoted space: {hint}");
    }
}
