//! What an inventory found, as data: per-area counts, entities missing required
//! files, JSON that does not parse, secrets, symlinks leaving the root, and
//! entries that could not be read or changed under the scan.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::entry::{Entry, Kind};
use crate::layout::{Layout, UNCLASSIFIED, is_under};
use crate::scan::problem;

pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub special: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, e: &Entry) {
        self.entries += 1;
        match e.kind {
            Kind::File => {
                self.files += 1;
                self.bytes += e.size;
            }
            Kind::Dir => self.dirs += 1,
            Kind::Symlink => self.symlinks += 1,
            Kind::Hardlink => self.hardlinks += 1,
            _ => self.special += 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AreaSummary {
    pub name: String,
    pub kind: String,
    pub path: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// RFC 3339, UTC; absent for an empty area.
    pub newest: Option<String>,
    pub newest_path: Option<String>,
    #[serde(skip)]
    newest_ns: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntitySummary {
    pub area: String,
    pub entity: String,
    pub count: u64,
    pub missing_required: Vec<MissingRequired>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingRequired {
    pub id: String,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathNote {
    pub path: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub report: &'static str,
    pub version: u32,
    pub root: String,
    pub layout: String,
    pub totals: Counts,
    pub areas: Vec<AreaSummary>,
    pub entities: Vec<EntitySummary>,
    pub invalid_json: Vec<PathNote>,
    pub secrets: Vec<String>,
    pub symlinks_outside_root: Vec<PathNote>,
    pub special_files: Vec<PathNote>,
    pub unreadable: Vec<PathNote>,
    pub changed: Vec<PathNote>,
    pub hashed: u64,
    pub reused: u64,
    pub manifest: Option<String>,
    /// Entries counted as problems (they make the exit code 1).
    pub problems: u64,
    /// Areas a whole-root inventory leaves out (archives, backups), present
    /// on disk: `path` (with a trailing `/`) and why.
    pub not_scanned: Vec<PathNote>,
    /// What the walk left out on purpose (`--exclude`, tags), where it
    /// stopped; and how many.
    pub excluded_count: usize,
    pub excluded: Vec<PathNote>,
    /// What an archive of these entries cannot capture or other tools may
    /// mishandle: sockets (skipped), entries with a problem (the archive
    /// flags them), mtimes before 1970 or past 2038 (outside a signed 32-bit
    /// `time_t`). Warnings only: they change no exit code.
    pub archive_warnings: Vec<PathNote>,
}

pub fn summarize(root: &Path, layout: &Layout, entries: &[Entry]) -> Summary {
    let secrets = layout.secret_set().expect("layout validated");
    let mut areas: BTreeMap<&str, AreaSummary> = BTreeMap::new();
    for a in &layout.areas {
        areas.insert(
            &a.name,
            AreaSummary {
                name: a.name.clone(),
                kind: a.kind.clone(),
                path: a.path.clone(),
                counts: Counts::default(),
                newest: None,
                newest_path: None,
                newest_ns: i64::MIN,
            },
        );
    }
    let mut totals = Counts::default();
    let mut s = Summary {
        report: "inventory",
        version: REPORT_VERSION,
        root: root.display().to_string(),
        layout: layout.name.clone(),
        totals: Counts::default(),
        areas: vec![],
        entities: vec![],
        invalid_json: vec![],
        secrets: vec![],
        symlinks_outside_root: vec![],
        special_files: vec![],
        unreadable: vec![],
        changed: vec![],
        hashed: 0,
        reused: 0,
        manifest: None,
        problems: 0,
        not_scanned: vec![],
        excluded_count: 0,
        excluded: vec![],
        archive_warnings: vec![],
    };
    for e in entries {
        totals.add(e);
        let a = areas.entry(e.area.as_str()).or_insert_with(|| AreaSummary {
            name: e.area.to_string(),
            kind: if e.area == UNCLASSIFIED {
                UNCLASSIFIED.into()
            } else {
                String::new()
            },
            path: String::new(),
            counts: Counts::default(),
            newest: None,
            newest_path: None,
            newest_ns: i64::MIN,
        });
        a.counts.add(e);
        if e.kind != Kind::Dir && e.mtime_ns > a.newest_ns {
            a.newest_ns = e.mtime_ns;
            a.newest_path = Some(e.path_lossy());
        }
        let path = e.path_lossy();
        if secrets.is_match(std::ffi::OsStr::new(&path)) && e.kind != Kind::Dir {
            s.secrets.push(path.clone());
        }
        if e.kind == Kind::Symlink
            && let Some(t) = &e.target
            && leaves_root(&e.path, t)
        {
            s.symlinks_outside_root.push(PathNote {
                path: path.clone(),
                note: String::from_utf8_lossy(t).into_owned(),
            });
        }
        if e.kind.is_special() {
            s.special_files.push(PathNote {
                path: path.clone(),
                note: format!("{} (recorded, not read; {})", e.kind, archived_as(e.kind)),
            });
        }
        if let Some(w) = archive_warning(e) {
            s.archive_warnings.push(PathNote {
                path: path.clone(),
                note: w,
            });
        }
        if let Some(p) = &e.problem {
            let note = PathNote {
                path: path.clone(),
                note: p.clone(),
            };
            if p.starts_with(problem::INVALID_JSON) {
                s.invalid_json.push(note);
            } else if p.starts_with(problem::CHANGED) || p.starts_with(problem::VANISHED) {
                s.changed.push(note);
            } else {
                s.unreadable.push(note);
            }
        }
    }
    s.entities = entities(layout, entries);
    for a in areas.values_mut() {
        if a.newest_ns != i64::MIN {
            a.newest = Some(rfc3339_ns(a.newest_ns));
        }
    }
    // Layout order first (as the operator reads LAYOUT.md), then unknown areas.
    let mut ordered: Vec<AreaSummary> = Vec::new();
    for a in &layout.areas {
        if let Some(x) = areas.remove(a.name.as_str())
            && x.counts.entries > 0
        {
            ordered.push(x);
        }
    }
    ordered.extend(areas.into_values().filter(|a| a.counts.entries > 0));
    s.areas = ordered;
    s.totals = totals;
    let missing: u64 = s
        .entities
        .iter()
        .map(|e| e.missing_required.len() as u64)
        .sum();
    s.problems =
        s.invalid_json.len() as u64 + s.changed.len() as u64 + s.unreadable.len() as u64 + missing;
    s
}

/// What an archive of `e` would not capture, or capture in a way some tools
/// mishandle (issue 12 item 12).
fn archive_warning(e: &Entry) -> Option<String> {
    if e.kind == Kind::Socket {
        return Some(format!("socket: {}", crate::archive::write::SOCKET_NOTE));
    }
    if let Some(p) = &e.problem
        && !p.starts_with(problem::INVALID_JSON)
    {
        return Some(format!(
            "not capturable now ({p}); an archive would flag it"
        ));
    }
    let secs = e.mtime_ns.div_euclid(1_000_000_000);
    if secs > i64::from(i32::MAX) {
        return Some(format!(
            "mtime {} is past 2038-01-19 (beyond a signed 32-bit time_t): datamig and GNU tar keep it, 32-bit tools and some tar readers do not",
            rfc3339_ns(e.mtime_ns)
        ));
    }
    if secs < 0 {
        return Some(format!(
            "mtime {} is before 1970 (negative): datamig and GNU tar keep it, some tools clamp it or refuse it",
            rfc3339_ns(e.mtime_ns)
        ));
    }
    None
}

/// What `archive` will do with a special file, so the pre-flight says it
/// before the archive does (issue 11).
fn archived_as(kind: Kind) -> &'static str {
    match kind {
        Kind::Socket => crate::archive::write::SOCKET_NOTE,
        Kind::Fifo => "archived as a FIFO",
        _ => "archived as a device node; only a restore run as root recreates it",
    }
}

fn entities(layout: &Layout, entries: &[Entry]) -> Vec<EntitySummary> {
    let mut out = Vec::new();
    for a in layout.areas.iter() {
        let Some(entity) = &a.entity else { continue };
        let base = a.path.as_bytes();
        let mut ids: BTreeMap<&[u8], Vec<&[u8]>> = BTreeMap::new();
        for e in entries {
            if !is_under(&e.path, base) || e.path.len() <= base.len() + 1 {
                continue;
            }
            let rest = &e.path[base.len() + 1..];
            match rest.iter().position(|&b| b == b'/') {
                None if e.kind == Kind::Dir => {
                    ids.entry(rest).or_default();
                }
                Some(i) if matches!(e.kind, Kind::File | Kind::Hardlink) => {
                    ids.entry(&rest[..i]).or_default().push(&rest[i + 1..]);
                }
                _ => {}
            }
        }
        let missing_required = ids
            .iter()
            .filter_map(|(id, files)| {
                let missing: Vec<String> = a
                    .required
                    .iter()
                    .filter(|r| !files.contains(&r.as_bytes()))
                    .cloned()
                    .collect();
                (!missing.is_empty()).then(|| MissingRequired {
                    id: String::from_utf8_lossy(id).into_owned(),
                    missing,
                })
            })
            .collect();
        if !ids.is_empty() {
            out.push(EntitySummary {
                area: a.name.clone(),
                entity: entity.clone(),
                count: ids.len() as u64,
                missing_required,
            });
        }
    }
    out
}

/// Whether a symlink at `link` (relative to the root) resolves, lexically, to a
/// place outside the root.
pub fn leaves_root(link: &[u8], target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth: i64 = link.split(|&b| b == b'/').count() as i64 - 1;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

pub fn rfc3339_ns(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// RFC 3339 with all nine fractional digits, for comparisons the operator must
/// be able to see: two times that differ by a nanosecond print differently.
pub fn rfc3339_nanos(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S.%NZ").to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_table() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"a", b"/etc", true),
            (b"a", b"b", false),
            (b"a", b"../x", true),
            (b"d/a", b"../x", false),
            (b"d/a", b"../../x", true),
            (b"d/a", b"x/../../y", false),
            (b"d/a", b"x/../../../y", true),
            (b"d/a", b"./.", false),
        ];
        for (link, target, want) in cases {
            assert_eq!(leaves_root(link, target), *want, "{link:?} -> {target:?}");
        }
    }
}
