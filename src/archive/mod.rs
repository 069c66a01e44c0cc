//! The `.tar.zst` archive: what gets archived (targets), how archives are named,
//! and the modules that write, check and retire sources.

pub mod attrs;
pub mod check;
pub mod commit;
pub mod dir;
pub mod gates;
pub mod remove;
pub mod write;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::fsx::Dir;
use crate::layout::Layout;
use crate::scan::{Located, locate};

/// Members appended after the archived tree.
pub const MANIFEST_MEMBER: &str = ".datamig/MANIFEST.jsonl";
pub const SUMS_MEMBER: &str = ".datamig/SHA256SUMS";
pub const EXTENSION: &str = ".tar.zst";
pub const MANIFEST_SIDECAR: &str = ".manifest.jsonl";
pub const SHA_SIDECAR: &str = ".sha256";

/// What one archive holds.
#[derive(Debug, Clone)]
pub struct Source {
    pub target: String,
    pub prefix: String,
    /// Member paths are relative to this directory.
    pub base: PathBuf,
    /// `base`, opened beneath the data root without following a symlink out
    /// of it: the scan and the writer read the source only through it.
    pub dir: Arc<Dir>,
    /// `base` relative to the data root (empty when it is the root).
    pub base_rel: Vec<u8>,
    /// Paths under `base` to include; empty means all of it.
    pub scope: Vec<Vec<u8>>,
    /// Layout paths of the target that do not exist on disk.
    pub absent: Vec<String>,
    pub live: bool,
    pub requires_migration_check: bool,
    /// The layout target's `exclude` patterns, relative to `base`.
    pub excludes: Vec<String>,
}

impl Source {
    /// A member path relative to the data root (for areas and secrets).
    pub fn root_rel(&self, member: &[u8]) -> Vec<u8> {
        if self.base_rel.is_empty() {
            return member.to_vec();
        }
        let mut v = self.base_rel.clone();
        v.push(b'/');
        v.extend_from_slice(member);
        v
    }
}

/// A layout target by name, else a directory under the root. The root is
/// opened once and the source found beneath it through handles: a target (or
/// a directory on its way) that is a symlink leading outside the root is
/// refused, so nothing outside is ever read or removed.
pub fn resolve_source(root: &Path, layout: &Layout, name: &str) -> Result<Source> {
    let root_dir = crate::scan::open_root(root)?;
    if let Some(t) = layout.target(name) {
        return resolve_layout_target(root, root_dir, t);
    }
    let p = Path::new(name);
    let rel = if p.is_absolute() {
        p.strip_prefix(root)
            .ok()
            .with_context(|| format!("{name} is not under the data root {}", root.display()))?
            .to_path_buf()
    } else {
        p.to_path_buf()
    };
    let rel_s = rel.as_os_str().as_bytes().to_vec();
    let rel_s: Vec<u8> = rel_s
        .strip_suffix(b"/")
        .map(|s| s.to_vec())
        .unwrap_or(rel_s);
    crate::manifest::check_entry_path(&rel_s)
        .with_context(|| crate::suggest::not_a_target(name, layout, root))?;
    let Some(Located::Dir { dir, .. }) =
        locate(&root_dir, root, &rel_s, &format!("archive target {name:?}"))?
    else {
        bail!(crate::suggest::not_a_target(name, layout, root));
    };
    let base = root.join(std::ffi::OsStr::from_bytes(&rel_s));
    let classifier = layout.classifier();
    let live = classifier.area_of(&rel_s).is_some_and(|a| a.kind == "v2");
    let prefix = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    Ok(Source {
        target: name.to_string(),
        prefix,
        base,
        dir: Arc::new(dir),
        base_rel: rel_s,
        scope: vec![],
        absent: vec![],
        live,
        requires_migration_check: false,
        excludes: vec![],
    })
}

fn resolve_layout_target(root: &Path, root_dir: Dir, t: &crate::layout::Target) -> Result<Source> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    let mut single_dir = None;
    for p in &t.paths {
        let arg = format!("{p} (a path of the archive target {:?})", t.name);
        match locate(&root_dir, root, p.as_bytes(), &arg)? {
            Some(found) => {
                if t.paths.len() == 1
                    && let Located::Dir { dir, .. } = found
                {
                    single_dir = Some(dir);
                }
                present.push(p);
            }
            None => absent.push(p.clone()),
        }
    }
    if present.is_empty() {
        bail!(
            "target {:?} has nothing to archive: none of {} exists under {}",
            t.name,
            t.paths.join(", "),
            root.display()
        );
    }
    let (base, dir, base_rel, scope) = match single_dir {
        Some(d) => (
            root.join(&t.paths[0]),
            d,
            t.paths[0].clone().into_bytes(),
            vec![],
        ),
        None => (
            root.to_path_buf(),
            root_dir,
            vec![],
            present.iter().map(|p| p.as_bytes().to_vec()).collect(),
        ),
    };
    let excludes = t.excludes_below(&base_rel);
    Ok(Source {
        target: t.name.clone(),
        prefix: t.prefix.clone(),
        base,
        dir: Arc::new(dir),
        base_rel,
        scope,
        excludes,
        absent,
        live: t.live,
        requires_migration_check: t.requires_migration_check,
    })
}

/// `--date YYYYMMDD`, checked; default today's local date.
pub fn date_stamp(date: Option<&str>) -> Result<String> {
    match date {
        Some(d) => {
            let ok = d.len() == 8
                && d.bytes().all(|b| b.is_ascii_digit())
                && jiff::civil::Date::strptime("%Y%m%d", d).is_ok();
            if !ok {
                bail!("--date {d:?} is not a calendar date written YYYYMMDD");
            }
            Ok(d.to_string())
        }
        None => Ok(jiff::Zoned::now().date().strftime("%Y%m%d").to_string()),
    }
}

/// The manifest sidecar of an archive name: `NAME.manifest.jsonl`, and for an
/// encrypted `NAME.age` the encrypted `NAME.manifest.jsonl.age` (file names
/// are sensitive; see `crypt`).
pub fn manifest_sidecar_name(archive: &str) -> String {
    match archive.strip_suffix(crate::crypt::AGE_SUFFIX) {
        Some(plain) => format!("{plain}{MANIFEST_SIDECAR}{}", crate::crypt::AGE_SUFFIX),
        None => format!("{archive}{MANIFEST_SIDECAR}"),
    }
}

/// [`manifest_sidecar_name`] for raw (possibly non-UTF-8) names.
pub fn manifest_sidecar_bytes(archive: &[u8]) -> Vec<u8> {
    let age = crate::crypt::AGE_SUFFIX.as_bytes();
    match archive.strip_suffix(age) {
        Some(plain) => [plain, MANIFEST_SIDECAR.as_bytes(), age].concat(),
        None => [archive, MANIFEST_SIDECAR.as_bytes()].concat(),
    }
}

/// [`manifest_sidecar_name`] beside an archive path.
pub fn manifest_sidecar(archive: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = manifest_sidecar_bytes(archive.as_os_str().as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(name))
}

pub fn sidecar(archive: &Path, suffix: &str) -> PathBuf {
    let mut s = archive.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Create the destination directory (mode 0700) when missing.
pub fn ensure_dest(dest: &Path) -> Result<()> {
    create_dest(dest).map(CreatedDirs::keep)
}

/// Create `dest` (mode 0700) and any missing parents. The guard removes the
/// directories this call created when it is dropped while they are still
/// empty, so a run refused after this point leaves nothing behind; `keep`
/// once something was written.
pub fn create_dest(dest: &Path) -> Result<CreatedDirs> {
    if dest.is_dir() {
        return Ok(CreatedDirs(Vec::new()));
    }
    let missing: Vec<PathBuf> = dest
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_err())
        .map(Path::to_path_buf)
        .collect();
    crate::fsx::create_dir_path(dest, 0o700)
        .with_context(|| format!("cannot create destination directory {}", dest.display()))?;
    Ok(CreatedDirs(missing))
}

/// Directories made by `create_dest`, deepest first.
#[must_use]
pub struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    pub fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        // remove_dir fails on a non-empty directory: nothing written is lost.
        for d in &self.0 {
            if rustix::fs::rmdir(d).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sidecars_of_plain_and_encrypted_archives() {
        assert_eq!(
            manifest_sidecar_name("a.tar.zst"),
            "a.tar.zst.manifest.jsonl"
        );
        assert_eq!(
            manifest_sidecar_name("a.tar.zst.age"),
            "a.tar.zst.manifest.jsonl.age"
        );
        assert_eq!(
            manifest_sidecar(Path::new("/x/a.tar.zst.age")),
            Path::new("/x/a.tar.zst.manifest.jsonl.age")
        );
        assert_eq!(
            manifest_sidecar_bytes(b"a.tar.zst"),
            b"a.tar.zst.manifest.jsonl"
        );
    }

    #[test]
    fn date_stamps_are_checked() {
        assert_eq!(date_stamp(Some("20251225")).unwrap(), "20251225");
        for bad in ["2025-12-25", "20251332", "2025122", "abcdefgh"] {
            assert!(date_stamp(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(date_stamp(None).unwrap().len(), 8);
    }
}
