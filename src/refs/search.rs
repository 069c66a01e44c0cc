//! The walk over the search area (ripgrep's `ignore` walker: `.gitignore`
//! honoured in code checkouts, `.git/` and `node_modules/` skipped) and the
//! search of each file, in parallel; hits come back sorted so two runs print
//! the same report.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::matcher::Matcher;
use super::spec::{Place, PlaceKind, Retiring};
use super::{Hit, HitKind};
use crate::summary::PathNote;

/// Files larger than this are configuration no longer; skipped and counted.
pub const SIZE_CAP: u64 = 8 << 20;
/// The matched line is cut to this many characters in the report.
pub const TEXT_LIMIT: usize = 160;

#[derive(Debug, Default)]
pub struct Found {
    pub hits: Vec<Hit>,
    pub files: u64,
    pub skipped_binary: Vec<String>,
    pub skipped_large: Vec<String>,
    pub unreadable: Vec<PathNote>,
}

/// One file (or symlink) to search, with the place it was found in.
struct Candidate {
    path: PathBuf,
    place: usize,
    symlink: bool,
}

pub fn search(places: &[Place], retiring: &[Retiring], matcher: &Matcher) -> Found {
    let mut found = Found::default();
    let mut candidates = Vec::new();
    for (i, p) in places.iter().enumerate() {
        walk(p, i, &mut candidates, &mut found.unreadable);
    }
    let per_file: Vec<FileResult> = candidates
        .par_iter()
        .map(|c| search_file(c, &places[c.place], retiring, matcher))
        .collect();
    for r in per_file {
        match r {
            FileResult::Hits(h) => {
                found.files += 1;
                found.hits.extend(h);
            }
            FileResult::Binary(p) => found.skipped_binary.push(p),
            FileResult::Large(p) => found.skipped_large.push(p),
            FileResult::Unreadable(n) => found.unreadable.push(n),
        }
    }
    found
        .hits
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    found
        .hits
        .dedup_by(|a, b| a.file == b.file && a.line == b.line);
    found
}

fn walk(place: &Place, index: usize, out: &mut Vec<Candidate>, unreadable: &mut Vec<PathNote>) {
    if std::fs::symlink_metadata(&place.path).is_err() {
        return; // this server has no such place
    }
    let code = place.kind == PlaceKind::Code;
    let walker = ignore::WalkBuilder::new(&place.path)
        .standard_filters(false)
        .hidden(false)
        .git_ignore(code)
        .git_exclude(code)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | "node_modules")))
        .build();
    for entry in walker {
        match entry {
            Ok(e) => {
                let Some(t) = e.file_type() else { continue };
                if t.is_file() || t.is_symlink() {
                    out.push(Candidate {
                        path: e.into_path(),
                        place: index,
                        symlink: t.is_symlink(),
                    });
                }
            }
            Err(err) => unreadable.push(PathNote {
                path: place.path.display().to_string(),
                note: format!("cannot search it ({err}); run as root to search it"),
            }),
        }
    }
}

enum FileResult {
    Hits(Vec<Hit>),
    Binary(String),
    Large(String),
    Unreadable(PathNote),
}

fn search_file(c: &Candidate, place: &Place, retiring: &[Retiring], m: &Matcher) -> FileResult {
    let shown = c.path.display().to_string();
    let unreadable = |e: std::io::Error| {
        FileResult::Unreadable(PathNote {
            path: shown.clone(),
            note: format!("cannot read it ({e}); run as root to search it"),
        })
    };
    if c.symlink {
        // A unit linked in from a checkout (`systemctl link`) points there too.
        return match std::fs::read_link(&c.path) {
            Ok(t) => {
                let text = t.to_string_lossy().into_owned();
                FileResult::Hits(hits_in(&c.path, place, text.as_bytes(), retiring, m, true))
            }
            Err(e) => unreadable(e),
        };
    }
    match std::fs::metadata(&c.path) {
        Ok(md) if md.len() > SIZE_CAP => return FileResult::Large(shown),
        Ok(_) => {}
        Err(e) => return unreadable(e),
    }
    let bytes = match std::fs::read(&c.path) {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    // ripgrep's rule: a NUL byte means binary.
    if memchr::memchr(0, &bytes).is_some() {
        return FileResult::Binary(shown);
    }
    FileResult::Hits(hits_in(&c.path, place, &bytes, retiring, m, false))
}

/// One hit per line that holds a whole-path match.
fn hits_in(
    path: &Path,
    place: &Place,
    bytes: &[u8],
    retiring: &[Retiring],
    m: &Matcher,
    symlink: bool,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut line_no = 1;
    let mut counted_to = 0;
    for f in m.find(bytes) {
        line_no += memchr::memchr_iter(b'\n', &bytes[counted_to..f.start]).count() as u64;
        counted_to = f.start;
        let n = if symlink { 0 } else { line_no };
        if hits.last().is_some_and(|h| h.line == n) {
            continue;
        }
        let line_start = memchr::memrchr(b'\n', &bytes[..f.start]).map_or(0, |i| i + 1);
        let line_end =
            memchr::memchr(b'\n', &bytes[f.start..]).map_or(bytes.len(), |i| f.start + i);
        let line = String::from_utf8_lossy(&bytes[line_start..line_end]);
        hits.push(classify(
            path,
            place,
            n,
            line.trim(),
            &retiring[f.target].target,
            symlink,
        ));
    }
    hits
}

fn classify(path: &Path, place: &Place, line: u64, text: &str, target: &str, symlink: bool) -> Hit {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (kind, owner, directive) = match place.kind {
        PlaceKind::Systemd => {
            let unit = systemd_unit(path, &file_name);
            let kind = if unit.ends_with(".timer") {
                HitKind::Timer
            } else {
                HitKind::Service
            };
            (kind, Some(unit), systemd_directive(text))
        }
        PlaceKind::Crontab => (
            HitKind::Cron,
            Some(cron_owner(&file_name, text)),
            assignment(text),
        ),
        PlaceKind::CronScripts => {
            let dir = path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            let owner = format!("{}/{file_name}", dir.unwrap_or_default());
            (HitKind::Cron, Some(owner), assignment(text))
        }
        PlaceKind::Web => (HitKind::Web, Some(file_name), first_word(text)),
        PlaceKind::Logrotate => (HitKind::Logrotate, Some(file_name), None),
        PlaceKind::Code => {
            let checkout = place
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            (HitKind::Code, checkout, assignment(text))
        }
        PlaceKind::Other => (HitKind::Other, None, assignment(text)),
    };
    Hit {
        file: path.display().to_string(),
        line,
        kind,
        owner,
        directive: if symlink {
            Some("symlink".into())
        } else {
            directive
        },
        target: target.to_string(),
        text: bounded(text),
    }
}

/// The unit a file belongs to: its own name, or for a drop-in
/// (`foo.service.d/override.conf`) the unit it extends.
fn systemd_unit(path: &Path, file_name: &str) -> String {
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match parent.as_deref().and_then(|p| p.strip_suffix(".d")) {
        Some(unit) => unit.to_string(),
        None => file_name.to_string(),
    }
}

/// `WorkingDirectory=`, or for environment settings `Environment=NAME=`.
fn systemd_directive(text: &str) -> Option<String> {
    let (key, value) = text.split_once('=')?;
    let key = key.trim();
    if key == "Environment" {
        let value = value.trim().trim_start_matches(['"', '\'']);
        if let Some((var, _)) = value.split_once('=') {
            return Some(format!("Environment={var}="));
        }
    }
    Some(format!("{key}="))
}

/// `NAME=` for a line that sets a variable (shell, env files, JS `name:` keys
/// are left as the text shows them).
fn assignment(text: &str) -> Option<String> {
    let text = text.strip_prefix("export ").unwrap_or(text);
    let (key, _) = text.split_once('=')?;
    let ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| format!("{key}="))
}

fn first_word(text: &str) -> Option<String> {
    text.split_whitespace().next().map(str::to_string)
}

/// The crontab and its schedule (`crontab: 0 3 * * *`); a variable line
/// is named by the file alone.
fn cron_owner(file_name: &str, text: &str) -> String {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let schedule = match fields.first() {
        Some(f) if f.starts_with('@') => Some(f.to_string()),
        Some(f)
            if fields.len() > 5
                && f.bytes()
                    .all(|b| b.is_ascii_digit() || b"*/,-".contains(&b)) =>
        {
            Some(fields[..5].join(" "))
        }
        _ => None,
    };
    match schedule {
        Some(s) => format!("{file_name}: {s}"),
        None => file_name.to_string(),
    }
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= TEXT_LIMIT {
        return text.to_string();
    }
    let cut: String = text.chars().take(TEXT_LIMIT).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_and_owners() {
        assert_eq!(
            systemd_directive("WorkingDirectory=/r/p").as_deref(),
            Some("WorkingDirectory=")
        );
        assert_eq!(
            systemd_directive("Environment=\"DATA_PATH=/r/p/data\"").as_deref(),
            Some("Environment=DATA_PATH=")
        );
        assert_eq!(
            systemd_unit(
                Path::new("/e/systemd/system/hacs.service.d/data.conf"),
                "data.conf"
            ),
            "hacs.service"
        );
        assert_eq!(
            cron_owner("crontab", "30 2 * * * root tar czf /b.tgz /r/p"),
            "crontab: 30 2 * * *"
        );
        assert_eq!(cron_owner("crontab", "@daily /r/p/run"), "crontab: @daily");
        assert_eq!(cron_owner("jobs", "DATA=/r/p"), "jobs");
        assert_eq!(
            assignment("export DATA_PATH=/r/p").as_deref(),
            Some("DATA_PATH=")
        );
        assert_eq!(assignment("  dataPath: '/r/p'"), None);
        assert_eq!(bounded(&"x".repeat(500)).chars().count(), TEXT_LIMIT + 1);
    }
}
