//! What `datamig refs` looks for and where: the retiring paths and their
//! spellings, and the places of the server that may point at them, all taken
//! from the layout and the options so another layout gets its own answer.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::layout::Layout;

/// One path about to be retired (a target's path, or a PATH argument).
#[derive(Debug, Clone)]
pub struct Retiring {
    /// The target name, or the path as given.
    pub target: String,
    /// Absolute spellings: the root as given, with and without a trailing
    /// slash, and the symlink-resolved real path; deduplicated.
    pub absolute: Vec<String>,
    /// Relative to the root (`production`), searched only in files that also
    /// name the root.
    pub relative: Option<String>,
}

/// Which kind of system file a place holds; decides a hit's kind and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceKind {
    Systemd,
    /// A crontab: each line is a schedule or a variable.
    Crontab,
    /// `cron.daily/` and friends: each file is a script run on that schedule.
    CronScripts,
    Web,
    Logrotate,
    Code,
    Other,
}

/// A file or directory to search.
#[derive(Debug, Clone)]
pub struct Place {
    pub path: PathBuf,
    pub kind: PlaceKind,
}

/// The system places under `etc` (`/etc` unless `--etc`). The directories
/// outside `/etc` are looked up under `etc` when it was given, so a fake
/// system root (tests, a chroot) holds all of them.
pub fn system_places(etc: &Path, etc_given: bool) -> Vec<Place> {
    let outside = |abs: &str| -> PathBuf {
        if etc_given {
            etc.join(abs.trim_start_matches('/'))
        } else {
            PathBuf::from(abs)
        }
    };
    let place = |path: PathBuf, kind| Place { path, kind };
    let mut v = vec![
        place(etc.join("systemd/system"), PlaceKind::Systemd),
        place(outside("/lib/systemd/system"), PlaceKind::Systemd),
        place(outside("/run/systemd/system"), PlaceKind::Systemd),
        place(etc.join("crontab"), PlaceKind::Crontab),
        place(etc.join("cron.d"), PlaceKind::Crontab),
        place(outside("/var/spool/cron/crontabs"), PlaceKind::Crontab),
    ];
    for s in ["hourly", "daily", "weekly", "monthly"] {
        v.push(place(etc.join(format!("cron.{s}")), PlaceKind::CronScripts));
    }
    v.push(place(etc.join("nginx"), PlaceKind::Web));
    v.push(place(etc.join("logrotate.d"), PlaceKind::Logrotate));
    v.push(place(etc.join("default"), PlaceKind::Other));
    v.push(place(etc.join("environment"), PlaceKind::Other));
    v
}

/// The layout's code checkouts (areas of kind `code`) under the root.
pub fn code_places(root: &Path, layout: &Layout) -> Vec<Place> {
    layout
        .areas
        .iter()
        .filter(|a| a.kind == "code")
        .map(|a| Place {
            path: root.join(&a.path),
            kind: PlaceKind::Code,
        })
        .collect()
}

/// The retiring paths for `names` (targets or root-relative paths); none:
/// every target whose removal the layout allows (not `live`).
pub fn retiring(root: &Path, layout: &Layout, names: &[String]) -> Result<Vec<Retiring>> {
    let mut out = Vec::new();
    if names.is_empty() {
        for t in layout.targets.iter().filter(|t| !t.live) {
            for p in &t.paths {
                out.push(spell(root, &t.name, p));
            }
        }
        return Ok(out);
    }
    for name in names {
        if let Some(t) = layout.targets.iter().find(|t| &t.name == name) {
            for p in &t.paths {
                out.push(spell(root, &t.name, p));
            }
            continue;
        }
        out.push(spell(root, name, &relative_to_root(root, name)?));
    }
    Ok(out)
}

/// A PATH argument as a path relative to the root.
fn relative_to_root(root: &Path, name: &str) -> Result<String> {
    let p = Path::new(name);
    let rel = if p.is_absolute() {
        match p.strip_prefix(root) {
            Ok(r) => r.to_path_buf(),
            Err(_) => bail!(
                "{name} is neither a target of the layout nor a path under the root {}; \
                 name a target (see `datamig layout`) or a path under the root",
                root.display()
            ),
        }
    } else {
        p.to_path_buf()
    };
    let rel = rel.to_string_lossy().trim_matches('/').to_string();
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        bail!(
            "{name} is not a path below the root {}: refs looks for what points at a part of the root",
            root.display()
        );
    }
    Ok(rel)
}

fn spell(root: &Path, target: &str, rel: &str) -> Retiring {
    let given = root.to_string_lossy();
    let bare = given.trim_end_matches('/');
    let mut absolute = vec![format!("{bare}/{rel}")];
    // A root given with a trailing slash is often pasted as `<root>//production`.
    if given.ends_with('/') && bare != given {
        absolute.push(format!("{given}/{rel}"));
    }
    if let Ok(real) = std::fs::canonicalize(root.join(rel)) {
        absolute.push(real.to_string_lossy().into_owned());
    }
    if let Ok(real_root) = std::fs::canonicalize(root) {
        absolute.push(format!("{}/{rel}", real_root.to_string_lossy()));
    }
    absolute.sort();
    absolute.dedup();
    Retiring {
        target: target.to_string(),
        absolute,
        relative: Some(rel.to_string()),
    }
}

/// Spellings of the root itself, to tell which files may use relative paths.
pub fn root_spellings(root: &Path) -> Vec<String> {
    let given = root.to_string_lossy();
    let mut v = vec![given.trim_end_matches('/').to_string()];
    if let Ok(real) = std::fs::canonicalize(root) {
        v.push(real.to_string_lossy().into_owned());
    }
    v.retain(|s| !s.is_empty());
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retiring_targets_are_the_ones_removal_allows() {
        let l = Layout::default_layout();
        let r = retiring(Path::new("/srv/data/"), &l, &[]).unwrap();
        let names: Vec<_> = r.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["production", "v2-dev-data"]);
        assert!(
            r[0].absolute.contains(&"/srv/data/production".to_string()),
            "{:?}",
            r[0].absolute
        );
        assert_eq!(r[0].relative.as_deref(), Some("production"));
    }

    #[test]
    fn a_path_argument_outside_the_root_is_refused() {
        let l = Layout::default_layout();
        let e = retiring(Path::new("/srv/data"), &l, &["/opt/x".into()]).unwrap_err();
        assert!(e.to_string().contains("/opt/x"), "{e}");
        let r = retiring(
            Path::new("/srv/data"),
            &l,
            &["/srv/data/production/data".into()],
        );
        assert_eq!(r.unwrap()[0].relative.as_deref(), Some("production/data"));
    }

    #[test]
    fn fake_etc_holds_the_directories_outside_etc() {
        let p = system_places(Path::new("/fake"), true);
        assert!(
            p.iter()
                .any(|p| p.path == Path::new("/fake/lib/systemd/system"))
        );
        let p = system_places(Path::new("/etc"), false);
        assert!(p.iter().any(|p| p.path == Path::new("/lib/systemd/system")));
    }
}
