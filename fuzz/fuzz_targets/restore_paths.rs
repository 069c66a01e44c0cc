//! Restore's path checks. Property: a name `refuse_name` accepts has no `..`
//! or empty/`.` component, no leading `/`, no NUL; and `prepare_parent` on an
//! accepted name never creates anything outside the root it is given, and the
//! handle it returns is the directory at ROOT/PARENT.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use datamig::restore::paths::{prepare_parent, refuse_name};
use libfuzzer_sys::fuzz_target;

struct Scratch {
    _dir: tempfile::TempDir,
    /// `<tmp>/root`: what `prepare_parent` is given.
    root: PathBuf,
    /// `<tmp>`: the sentinel level just outside the root.
    outer: PathBuf,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let outer = d.path().canonicalize().expect("canonicalize");
        let root = outer.join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        Scratch {
            _dir: d,
            root,
            outer,
        }
    })
}

fn outer_entries(p: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir(p)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let Some(_why) = refuse_name(data) else {
        // Accepted: check the property.
        assert!(!data.is_empty(), "empty name accepted");
        assert!(!data.contains(&0), "NUL accepted: {data:?}");
        assert!(data[0] != b'/', "absolute path accepted: {data:?}");
        for c in data.split(|&b| b == b'/') {
            assert!(c != b"..", "`..` component accepted: {data:?}");
            assert!(!c.is_empty(), "empty component accepted: {data:?}");
            assert!(c != b".", "`.` component accepted: {data:?}");
        }

        let s = scratch();
        // Keep the scratch tree small (deleting it costs time that grows with it):
        // start over every 128 inputs.
        static RUNS: AtomicU64 = AtomicU64::new(0);
        if RUNS.fetch_add(1, Ordering::Relaxed) % 128 == 127 {
            let _ = std::fs::remove_dir_all(&s.root);
            std::fs::create_dir(&s.root).expect("recreate root");
        }
        let before = outer_entries(&s.outer);
        let root_dir = datamig::fsx::Dir::open(&s.root).expect("open root");
        if let Ok(parent) = prepare_parent(&root_dir, data) {
            // The handle is the directory at ROOT/PARENT, reached without links.
            let got = parent.meta().expect("fstat");
            let rel = Path::new(std::ffi::OsStr::from_bytes(data)).parent();
            let at = s.root.join(rel.unwrap_or(Path::new("")));
            let m = std::fs::symlink_metadata(&at).expect("parent exists");
            use std::os::unix::fs::MetadataExt;
            assert!(got.same_inode(m.dev(), m.ino()), "handle is not {at:?}");
        }
        // Nothing new appeared next to the root.
        assert_eq!(before, outer_entries(&s.outer), "created outside the root");
        // Every directory made is really under the root (no link was followed).
        if let Some(parent) = Path::new(std::ffi::OsStr::from_bytes(data)).parent() {
            let made = s.root.join(parent);
            if let Ok(real) = made.canonicalize() {
                assert!(real.starts_with(&s.root), "{real:?} escapes {:?}", s.root);
            }
        }
        return;
    };
});
