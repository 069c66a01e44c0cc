//! Where a member may land. Pure checks on names plus one filesystem check:
//! no existing component of the parent path may be a symlink, so a member can
//! never be written through a link (one the archive created, or one already there).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a member name is refused, if it is.
pub fn refuse_name(name: &[u8]) -> Option<String> {
    if name.is_empty() {
        return Some("empty name".into());
    }
    if name.contains(&0) {
        return Some("name contains a NUL byte".into());
    }
    if name[0] == b'/' {
        return Some("absolute path".into());
    }
    if name.len() > 16 << 10 {
        return Some("name longer than 16 KiB".into());
    }
    for c in name.split(|&b| b == b'/') {
        match c {
            b".." => return Some("path contains `..`".into()),
            b"" | b"." => return Some("path has an empty or `.` component".into()),
            _ => {}
        }
    }
    None
}

/// Create the missing parent directories of `rel` under `root`, refusing when
/// an existing component is a symlink or not a directory.
pub fn prepare_parent(root: &Path, rel: &[u8]) -> Result<PathBuf, String> {
    prepare_parent_cached(root, rel, &mut HashSet::new())
}

/// As `prepare_parent`, remembering directories already checked in this run.
/// Sound because restore never turns a directory it has seen into anything
/// else (a member in a directory's place is refused).
pub fn prepare_parent_cached(
    root: &Path,
    rel: &[u8],
    known: &mut HashSet<Vec<u8>>,
) -> Result<PathBuf, String> {
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let mut at = root.to_path_buf();
    let mut prefix: Vec<u8> = Vec::new();
    for c in &parts[..parts.len() - 1] {
        at.push(OsStr::from_bytes(c));
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(c);
        if known.contains(&prefix) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "would write through the symlink {}",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Err(_) => {
                if let Err(e) = std::fs::create_dir(&at) {
                    return Err(format!("cannot create directory {}: {e}", at.display()));
                }
            }
        }
        known.insert(prefix.clone());
    }
    Ok(root.join(OsStr::from_bytes(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"a/b", true),
            (b"a b/c\nd", true),
            (b"\xff\xfe", true),
            (b"../x", false),
            (b"a/../../x", false),
            (b"/etc/passwd", false),
            (b"a//b", false),
            (b"./a", false),
            (b"a/\0b", false),
            (b"", false),
        ];
        for (name, ok) in cases {
            assert_eq!(refuse_name(name).is_none(), *ok, "{name:?}");
        }
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("s")).unwrap();
        let e = prepare_parent(d.path(), b"s/file").unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert!(prepare_parent(d.path(), b"x/y/file").is_ok());
        assert!(d.path().join("x/y").is_dir());
    }
}
