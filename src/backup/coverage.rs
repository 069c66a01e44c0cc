//! What a backup leaves out: every top-level entry of the data root that no
//! path of the backup target covers, each with its reason, read from the
//! layout's area kinds (so a custom layout explains itself the same way).

use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::FileType;

use crate::layout::{Layout, Target};
use crate::summary::PathNote;

/// The archive target a backup captures; a layout without it (one written
/// before it existed) gets [`FALLBACK_TARGET`], and the report says so.
pub const TARGET: &str = "backup";
pub const FALLBACK_TARGET: &str = "v2";

/// The backup target of `layout`, and a note when it is the fallback.
pub fn backup_target(layout: &Layout) -> Result<(&Target, Option<String>)> {
    if let Some(t) = layout.target(TARGET) {
        return Ok((t, None));
    }
    let t = layout.target(FALLBACK_TARGET).with_context(|| {
        format!(
            "the layout has neither an archive target {TARGET:?} nor {FALLBACK_TARGET:?}, one of which `datamig backup` archives (see `datamig layout`)"
        )
    })?;
    Ok((
        t,
        Some(format!(
            "the layout has no {TARGET:?} target, so the {FALLBACK_TARGET:?} target was backed up; add a {TARGET:?} target (see `datamig layout`) to cover secrets and server files"
        )),
    ))
}

/// Each top-level entry of `root` that `target` does not back up whole, as
/// `name/` (directories) or `name`, with why. Listed through the root's
/// handle, in name order.
pub fn not_covered(root: &Path, layout: &Layout, target: &Target) -> Result<Vec<PathNote>> {
    let dir = crate::scan::open_root(root)?;
    let mut names = Vec::new();
    for n in dir
        .entries()
        .with_context(|| format!("cannot list the data root {}", root.display()))?
    {
        let n = n.with_context(|| format!("cannot list the data root {}", root.display()))?;
        let is_dir = match n.kind {
            FileType::Unknown => dir.stat(&n.name).is_ok_and(|m| m.is_dir()),
            k => k == FileType::Directory,
        };
        names.push((String::from_utf8_lossy(&n.name).into_owned(), is_dir));
    }
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|(name, is_dir)| {
            let note = left_out(layout, target, &name)?;
            let path = if is_dir { format!("{name}/") } else { name };
            Some(PathNote { path, note })
        })
        .collect())
}

/// Why the top-level entry `name` is not (wholly) in `target`; None when it is.
pub fn left_out(layout: &Layout, target: &Target, name: &str) -> Option<String> {
    if target.paths.iter().any(|p| p == name) {
        return None;
    }
    let below = format!("{name}/");
    let partly: Vec<&str> = target
        .paths
        .iter()
        .filter(|p| p.starts_with(&below))
        .map(String::as_str)
        .collect();
    let mut why = reason(layout, name);
    if let Some(other) = layout
        .targets
        .iter()
        .find(|t| t.name != target.name && t.paths.iter().any(|p| p == name))
    {
        why.push_str(&format!(": archive target {}", other.name));
    }
    if !partly.is_empty() {
        why = format!("only {} backed up; the rest: {why}", partly.join(", "));
    }
    Some(why)
}

/// The reason a kind of area stays out of a backup.
fn reason(layout: &Layout, name: &str) -> String {
    let classifier = layout.classifier();
    let Some(area) = classifier.area_of(name.as_bytes()) else {
        return "not in the layout".into();
    };
    match area.kind.as_str() {
        "v1-code" | "v1-data" => "V1, retired".into(),
        "deprecated" => "deprecated".into(),
        "archive" => "archives".into(),
        "backup" => "the backups themselves".into(),
        "code" => "code checkout".into(),
        kind => format!(
            "area {} (kind {kind}) is not a path of the backup target",
            area.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_area_kinds() {
        let l = Layout::default_layout();
        let (t, note) = backup_target(&l).unwrap();
        assert_eq!((t.name.as_str(), note), ("backup", None));
        let why = |n: &str| left_out(&l, t, n);
        assert_eq!(
            why("production").as_deref(),
            Some("V1, retired: archive target production")
        );
        assert_eq!(
            why("v2-dev-data").as_deref(),
            Some("deprecated: archive target v2-dev-data")
        );
        assert_eq!(why("archive").as_deref(), Some("archives"));
        assert_eq!(why("backups").as_deref(), Some("the backups themselves"));
        assert_eq!(why("worktrees").as_deref(), Some("code checkout"));
        assert_eq!(why("foo").as_deref(), Some("not in the layout"));
        for covered in [
            "instances",
            "auth-keys",
            ".hub-secret",
            "shared-config",
            "vacation",
        ] {
            assert_eq!(why(covered), None, "{covered}");
        }
    }

    #[test]
    fn a_layout_without_a_backup_target_falls_back_to_v2_and_says_so() {
        let mut l = Layout::default_layout();
        l.targets.retain(|t| t.name != TARGET);
        let (t, note) = backup_target(&l).unwrap();
        assert_eq!(t.name, FALLBACK_TARGET);
        assert!(note.unwrap().contains("no \"backup\" target"));
        // Secrets are then named as left out, not silently missing.
        assert!(
            left_out(&l, t, "auth-keys")
                .unwrap()
                .contains("kind secret")
        );
        l.targets.clear();
        assert!(backup_target(&l).is_err());
    }
}
