//! Integration tests for `datamig inventory`, run against the real binary on
//! trees built at run time (and on the bundled fixture).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A temp dir holding `root/` (the tree) and room for manifests next to it, so
/// they are never scanned themselves.
struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempdir();
        let root = dir.path().join("root");
        let out = dir.path().join("out");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&out).unwrap();
        Fx {
            root,
            out,
            _dir: dir,
        }
    }

    fn awkward(with_fifo: bool) -> Fx {
        let fx = Fx::new();
        awkward_tree(&fx.root, with_fifo);
        fx
    }

    fn manifest(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// `inventory --root ROOT -q -o OUT/name EXTRA...` (must exit 0).
    fn make_manifest(&self, name: &str, extra: &[&str]) -> (PathBuf, ManifestLines) {
        let m = self.manifest(name);
        let mut args: Vec<&OsStr> = vec![
            "inventory".as_ref(),
            "--root".as_ref(),
            self.root.as_os_str(),
            "-q".as_ref(),
            "-o".as_ref(),
            m.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| OsStr::new(*s)));
        let (c, _, err) = datamig(&args);
        assert_eq!(c, 0, "inventory failed:\n{err}");
        let lines = ManifestLines::read(&m);
        (m, lines)
    }
}

/// A small plain tree for tests that do not need the awkward one.
fn small_tree(root: &Path) {
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::create_dir_all(root.join("b/c")).unwrap();
    fs::write(root.join("b/c/d.txt"), "delta\n").unwrap();
    fs::write(root.join("b/e.json"), "{\"e\": 1}\n").unwrap();
    make_world_readable(root);
}

fn missing_and_extra<K: Ord + Clone>(want: &BTreeSet<K>, got: &BTreeSet<K>) -> (Vec<K>, Vec<K>) {
    (
        want.difference(got).cloned().collect(),
        got.difference(want).cloned().collect(),
    )
}

fn shows(v: &[Vec<u8>]) -> Vec<String> {
    v.iter().map(|p| show(p)).collect()
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

// ---------------------------------------------------------------------------
// 1. Faithful recording of an awkward tree

#[test]
fn awkward_tree_is_recorded_faithfully_and_every_hash_matches_sha256sum() {
    let fx = Fx::awkward(true);
    let m = fx.manifest("m.jsonl");
    // The FIFO must not make the scan hang: hard deadline, killed on expiry.
    let o = output_within(
        &mut cmd([
            OsStr::new("inventory"),
            "--root".as_ref(),
            fx.root.as_os_str(),
            "-q".as_ref(),
            "--json".as_ref(),
            "-o".as_ref(),
            m.as_os_str(),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(
        code(&o),
        0,
        "stderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = json_of(&o.stdout);
    let ml = ManifestLines::read(&m);
    let by_path = ml.by_path();

    // Exactly the entries an independent lstat walk finds, in byte order.
    let walked = walk_tree(&fx.root);
    let want: BTreeSet<Vec<u8>> = walked.keys().cloned().collect();
    let got: BTreeSet<Vec<u8>> = by_path.keys().cloned().collect();
    let (missing, extra) = missing_and_extra(&want, &got);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from manifest: {:?}\nnot in the tree: {:?}",
        shows(&missing),
        shows(&extra)
    );
    let order: Vec<Vec<u8>> = ml.entry_values().iter().map(entry_path).collect::<Vec<_>>();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "entries are not in path byte order");

    // Things the tree was built to contain are really there.
    let long = awk_long_path();
    assert!(long.len() > 300);
    for p in [
        awk::NON_UTF8,
        awk::NFC.as_bytes(),
        awk::NFD.as_bytes(),
        awk::NEWLINE.as_bytes(),
        &long,
    ] {
        assert!(by_path.contains_key(p), "{} not recorded", show(p));
    }
    assert_ne!(awk::NFC.as_bytes(), awk::NFD.as_bytes());

    let mut b64_seen = 0;
    for (path, kind) in &walked {
        let v = &by_path[path];
        let abs = rel_join(&fx.root, path);
        let meta = fs::symlink_metadata(&abs).unwrap();

        // Plain `path` for UTF-8 names, `path_b64` otherwise, never both.
        if std::str::from_utf8(path).is_ok() {
            assert!(
                v.get("path").is_some() && v.get("path_b64").is_none(),
                "UTF-8 name {} should use \"path\": {v}",
                show(path)
            );
        } else {
            b64_seen += 1;
            assert!(
                v.get("path").is_none() && v.get("path_b64").is_some(),
                "non-UTF-8 name {} should use \"path_b64\": {v}",
                show(path)
            );
        }
        assert_eq!(u(v, "mode") as u32, meta.mode() & 0o7777, "{v}");
        assert_eq!(
            v["mtime_ns"].as_i64().unwrap(),
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            "{v}"
        );
        assert_eq!(u(v, "ino"), meta.ino(), "{v}");

        let ty = s(v, "type").unwrap();
        match kind {
            FileKind::File if path.as_slice() == awk::HARD_B.as_bytes() => {
                assert_eq!(ty, "hardlink", "{v}");
                assert_eq!(
                    entry_target(v).as_deref(),
                    Some(awk::HARD_A.as_bytes()),
                    "a hard link points at the first path in byte order: {v}"
                );
            }
            FileKind::File => {
                assert_eq!(ty, "file", "{}: {v}", show(path));
                assert_eq!(u(v, "size"), meta.len(), "{v}");
                assert_eq!(
                    s(v, "sha256"),
                    Some(sha256sum_of(&abs)),
                    "hash of {} differs from sha256sum",
                    show(path)
                );
                assert!(v.get("problem").is_none(), "{v}");
            }
            FileKind::Dir => {
                assert_eq!(ty, "dir", "{v}");
                assert!(v.get("sha256").is_none(), "{v}");
            }
            FileKind::Symlink => {
                assert_eq!(ty, "symlink", "{v}");
                assert!(v.get("sha256").is_none(), "a symlink is not followed: {v}");
                let t = fs::read_link(&abs).unwrap();
                assert_eq!(
                    entry_target(v).as_deref(),
                    Some(t.as_os_str().as_bytes()),
                    "{v}"
                );
            }
            FileKind::Fifo => {
                assert_eq!(ty, "fifo", "{v}");
                assert!(v.get("sha256").is_none(), "a FIFO is never read: {v}");
                assert_eq!(u(v, "size"), 0);
            }
            FileKind::Other => panic!("unexpected file type at {}", show(path)),
        }
    }
    assert_eq!(b64_seen, 1, "exactly the one non-UTF-8 name uses path_b64");

    // Spot checks on the special members of the tree.
    assert_eq!(
        s(&by_path[awk::NON_UTF8], "sha256"),
        Some(sha256_hex(b"latin-1 name\n"))
    );
    assert_ne!(
        s(&by_path[awk::NFC.as_bytes()], "sha256"),
        s(&by_path[awk::NFD.as_bytes()], "sha256")
    );
    assert_eq!(
        s(&by_path[awk::EMPTY_FILE.as_bytes()], "sha256").as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(
        s(&by_path[awk::EMPTY_DIR.as_bytes()], "type").unwrap(),
        "dir"
    );
    assert_eq!(u(&by_path[awk::SPARSE.as_bytes()], "size"), awk::SPARSE_LEN);
    assert_eq!(
        s(&by_path[awk::DANGLING.as_bytes()], "target").as_deref(),
        Some(awk::DANGLING_TARGET)
    );
    assert_eq!(
        s(&by_path[awk::ETC_LINK.as_bytes()], "target").as_deref(),
        Some("/etc")
    );
    let under_link = format!("{}/", awk::DIR_LINK);
    assert!(
        !by_path.keys().any(|p| p.starts_with(under_link.as_bytes())),
        "entries were recorded through the directory symlink"
    );
    assert!(by_path.contains_key(format!("{}/one.txt", awk::REAL_DIR).as_bytes()));

    // The summary.
    let outside: BTreeMap<String, String> = summary["symlinks_outside_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (s(n, "path").unwrap(), s(n, "note").unwrap()))
        .collect();
    let want_outside: BTreeMap<String, String> = [
        (awk::ETC_LINK.to_string(), "/etc".to_string()),
        (awk::UP_LINK.to_string(), awk::UP_LINK_TARGET.to_string()),
    ]
    .into();
    assert_eq!(outside, want_outside);
    assert_eq!(note_paths(&summary, "special_files"), vec![awk::FIFO]);
    assert!(note_paths(&summary, "unreadable").is_empty());
    assert!(note_paths(&summary, "changed").is_empty());
    let files = walked.values().filter(|k| **k == FileKind::File).count() as u64;
    assert_eq!(u(&summary["totals"], "files"), files - 1);
    assert_eq!(u(&summary["totals"], "hardlinks"), 1);
    assert_eq!(u(&summary["totals"], "entries"), walked.len() as u64);
    assert_eq!(u(&summary, "hashed"), files - 1);
    assert_eq!(u(&summary, "problems"), 0);
}

// ---------------------------------------------------------------------------
// 2. Determinism across thread counts

#[test]
fn manifests_made_with_one_and_eight_threads_have_identical_entries() {
    let fx = Fx::awkward(true);
    let (_, one) = fx.make_manifest("j1.jsonl", &["-j", "1"]);
    let (_, eight) = fx.make_manifest("j8.jsonl", &["-j", "8"]);
    assert!(one.entries.len() > 20, "tree too small to mean anything");
    assert_eq!(
        one.entries, eight.entries,
        "entry lines differ between -j 1 and -j 8"
    );
    let (t1, t8) = (one.trailer_json(), eight.trailer_json());
    for k in ["entries", "files", "bytes"] {
        assert_eq!(t1[k], t8[k], "trailer {k}");
    }
    assert_eq!(u(&t1, "entries"), one.entries.len() as u64);
}

/// Big files are hashed on their own threads, biggest first (issue 15 item 1):
/// a directory of several large files next to many small ones, a hard link
/// to a big one and a JSON file, gives the very same manifest entries with
/// 1, 2 and 8 threads, and every hash is the file's.
#[test]
fn big_files_hashed_in_parallel_give_the_same_manifest_with_any_thread_count() {
    let fx = Fx::new();
    let big = fx.root.join("db");
    fs::create_dir(&big).unwrap();
    // Sparse files: cheap to make, still read and hashed in full.
    for (i, mib) in [24u64, 8, 16, 4].iter().enumerate() {
        let f = File::create(big.join(format!("dump-{i}.bin"))).unwrap();
        f.set_len(mib << 20).unwrap();
        use std::io::Write;
        (&f).write_all(format!("dump {i}").as_bytes()).unwrap();
    }
    fs::hard_link(big.join("dump-0.bin"), big.join("dump-0.link")).unwrap();
    for i in 0..300 {
        fs::write(big.join(format!("small-{i:03}.txt")), format!("{i}\n")).unwrap();
    }
    fs::write(big.join("state.json"), "{\"ok\": true}\n").unwrap();
    make_world_readable(&fx.root);

    let (_, one) = fx.make_manifest("j1.jsonl", &["-j", "1"]);
    let (_, two) = fx.make_manifest("j2.jsonl", &["-j", "2"]);
    let (_, eight) = fx.make_manifest("j8.jsonl", &["-j", "8"]);
    assert_eq!(
        one.entries.len(),
        1 + 4 + 1 + 300 + 1,
        "db, 4 dumps, link, small files, json"
    );
    assert_eq!(
        one.entries, two.entries,
        "entry lines differ between -j 1 and -j 2"
    );
    assert_eq!(
        one.entries, eight.entries,
        "entry lines differ between -j 1 and -j 8"
    );
    let by_path = two.by_path();
    for i in 0..4 {
        let p = format!("db/dump-{i}.bin");
        assert_eq!(
            s(&by_path[p.as_bytes()], "sha256"),
            Some(sha256sum_of(&fx.root.join(&p))),
            "{p}"
        );
    }
    assert_eq!(
        s(&by_path[b"db/dump-0.link".as_slice()], "type").as_deref(),
        Some("hardlink")
    );
}

// ---------------------------------------------------------------------------
// 3. Output formats for other tools

#[test]
fn sha256sum_format_passes_gnu_sha256sum_check_strict() {
    let fx = Fx::awkward(true);
    let (c, list, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        fx.root.as_os_str(),
        "-q".as_ref(),
        "--format".as_ref(),
        "sha256sum".as_ref(),
    ]);
    assert_eq!(c, 0, "{err}");
    let files = regular_files(&fx.root);
    let n_lines = list.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        n_lines,
        files.len(),
        "one line per regular file path (both hard-link paths):\n{}",
        String::from_utf8_lossy(&list)
    );
    let listfile = fx.out.join("SHA256SUMS");
    fs::write(&listfile, &list).unwrap();
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--strict"])
        .arg(&listfile)
        .current_dir(&fx.root)
        .output()
        .expect("run sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c --strict failed:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let ok_lines = String::from_utf8_lossy(&check.stdout)
        .lines()
        .filter(|l| l.ends_with(": OK"))
        .count();
    assert_eq!(ok_lines, files.len());

    // And it would notice damage: corrupt one file, the same list must fail.
    fs::write(fx.root.join(awk::SPACES), "tampered\n").unwrap();
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet"])
        .arg(&listfile)
        .current_dir(&fx.root)
        .output()
        .unwrap();
    assert!(!check.status.success());
}

#[test]
fn files0_format_lists_every_regular_file_exactly_once() {
    let fx = Fx::awkward(true);
    let (c, out, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        fx.root.as_os_str(),
        "-q".as_ref(),
        "--format".as_ref(),
        "files0".as_ref(),
    ]);
    assert_eq!(c, 0, "{err}");
    assert!(out.ends_with(b"\0"), "every path ends with NUL");
    let listed: Vec<Vec<u8>> = out[..out.len() - 1]
        .split(|&b| b == 0)
        .map(|p| p.to_vec())
        .collect();
    let as_set: BTreeSet<Vec<u8>> = listed.iter().cloned().collect();
    assert_eq!(as_set.len(), listed.len(), "a path is listed twice");
    let want = regular_files(&fx.root);
    let (missing, extra) = missing_and_extra(&want, &as_set);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {:?}\nextra: {:?}",
        shows(&missing),
        shows(&extra)
    );
    assert!(as_set.contains(awk::HARD_B.as_bytes()));
    assert!(!as_set.contains(awk::FIFO.as_bytes()));
}

// ---------------------------------------------------------------------------
// 4. --since

fn since_run(fx: &Fx, old: &Path, new_name: &str) -> (Value, ManifestLines) {
    let new = fx.manifest(new_name);
    let (c, summary, err) = inventory_json(
        &fx.root,
        &[
            "--since".as_ref(),
            old.as_os_str(),
            "-o".as_ref(),
            new.as_os_str(),
        ],
    );
    assert_eq!(c, 0, "{err}");
    (summary, ManifestLines::read(&new))
}

fn file_entry_count(ml: &ManifestLines) -> u64 {
    ml.entry_values()
        .iter()
        .filter(|v| v["type"] == "file")
        .count() as u64
}

#[test]
fn since_rehashes_only_the_changed_file() {
    let fx = Fx::awkward(true);
    let (old_path, old) = fx.make_manifest("old.jsonl", &[]);
    let files = file_entry_count(&old);
    assert!(files > 5);

    // Same size, new content, written in place; mtime set explicitly elsewhere.
    let target = fx.root.join(awk::SPACES);
    let before = fs::read(&target).unwrap();
    let after = before.to_ascii_uppercase();
    assert_eq!(before.len(), after.len());
    assert_ne!(before, after);
    {
        use std::io::{Seek, Write};
        let mut f = File::options().write(true).open(&target).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&after).unwrap();
        f.set_modified(at(1_500_000_000, 123)).unwrap();
    }

    let (summary, new) = since_run(&fx, &old_path, "new.jsonl");
    assert_eq!(u(&summary, "hashed"), 1, "{summary:#}");
    assert_eq!(u(&summary, "reused"), files - 1, "{summary:#}");

    let (o, n) = (old.lines_by_path(), new.lines_by_path());
    assert_eq!(
        o.keys().collect::<Vec<_>>(),
        n.keys().collect::<Vec<_>>(),
        "same paths"
    );
    let differing: Vec<String> = o
        .iter()
        .filter(|(p, line)| n[*p] != **line)
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(differing, vec![awk::SPACES.to_string()]);
    let v = &new.by_path()[awk::SPACES.as_bytes()];
    assert_eq!(s(v, "sha256"), Some(sha256_hex(&after)));
    assert_eq!(
        v["mtime_ns"].as_i64(),
        Some(1_500_000_000_000_000_123),
        "{v}"
    );
}

#[test]
fn since_on_an_unchanged_tree_hashes_nothing() {
    let fx = Fx::awkward(true);
    let (old_path, old) = fx.make_manifest("old.jsonl", &[]);
    let (summary, new) = since_run(&fx, &old_path, "new.jsonl");
    assert_eq!(u(&summary, "hashed"), 0, "{summary:#}");
    assert_eq!(u(&summary, "reused"), file_entry_count(&old), "{summary:#}");
    assert_eq!(old.entries, new.entries);
}

// ---------------------------------------------------------------------------
// 5. Unreadable entries (as root, run datamig as nobody: root reads everything)

/// Run `inventory --json -o OUT/m.jsonl` as nobody; OUT is writable by nobody.
fn inventory_as_nobody(fx: &Fx) -> (i32, Value, ManifestLines, String) {
    give_to_nobody(&fx.out);
    let m = fx.manifest("m.jsonl");
    let o = output_within(
        &mut cmd_as_nobody([
            OsStr::new("inventory"),
            "--root".as_ref(),
            fx.root.as_os_str(),
            "-q".as_ref(),
            "--json".as_ref(),
            "-o".as_ref(),
            m.as_os_str(),
        ]),
        DEFAULT_DEADLINE,
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        code(&o) == 0 || code(&o) == 1,
        "exit {} as nobody:\n{err}",
        code(&o)
    );
    (code(&o), json_of(&o.stdout), ManifestLines::read(&m), err)
}

#[test]
fn unreadable_file_is_reported_and_the_scan_completes() {
    let fx = Fx::new();
    small_tree(&fx.root);
    fs::write(fx.root.join("locked.txt"), "nobody may read this\n").unwrap();
    chmod(&fx.root.join("locked.txt"), 0o000);

    let (c, summary, ml, err) = inventory_as_nobody(&fx);
    assert_eq!(c, 1, "{err}\n{summary:#}");
    assert_eq!(note_paths(&summary, "unreadable"), vec!["locked.txt"]);
    let note = &summary["unreadable"][0]["note"];
    assert!(note.as_str().unwrap().starts_with("unreadable"), "{note}");
    assert_eq!(u(&summary, "problems"), 1);

    let by_path = ml.by_path();
    let locked = &by_path[b"locked.txt".as_slice()];
    assert!(locked.get("sha256").is_none(), "{locked}");
    assert_eq!(u(locked, "mode"), 0);
    assert!(s(locked, "problem").unwrap().starts_with("unreadable"));
    for f in regular_files(&fx.root) {
        if f == b"locked.txt" {
            continue;
        }
        assert_eq!(
            s(&by_path[&f], "sha256"),
            Some(sha256sum_of(&rel_join(&fx.root, &f))),
            "{} was not hashed",
            show(&f)
        );
    }
}

#[test]
fn unreadable_directory_is_reported_and_the_scan_goes_on() {
    let fx = Fx::new();
    small_tree(&fx.root);
    let locked = fx.root.join("locked");
    fs::create_dir_all(locked.join("sub")).unwrap();
    fs::write(locked.join("x.txt"), "hidden\n").unwrap();
    fs::write(locked.join("sub/y.txt"), "hidden too\n").unwrap();
    make_world_readable(&fx.root);
    // The listing sorts after "locked": the walk must go on past it.
    fs::write(fx.root.join("z-after.txt"), "after\n").unwrap();
    chmod(&fx.root.join("z-after.txt"), 0o644);
    chmod(&locked, 0o000);
    let meta = fs::symlink_metadata(&locked).unwrap();

    let (c, summary, ml, err) = inventory_as_nobody(&fx);
    assert_eq!(c, 1, "{err}\n{summary:#}");
    assert_eq!(note_paths(&summary, "unreadable"), vec!["locked"]);

    let by_path = ml.by_path();
    let v = &by_path[b"locked".as_slice()];
    assert_eq!(s(v, "type").as_deref(), Some("dir"), "{v}");
    assert!(s(v, "problem").unwrap().starts_with("unreadable"), "{v}");
    // Recorded from its lstat like any other directory.
    assert_eq!(u(v, "mode"), 0, "{v}");
    assert_eq!(u(v, "ino"), meta.ino(), "{v}");
    assert_eq!(
        v["mtime_ns"].as_i64().unwrap(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        "{v}"
    );
    assert!(
        !by_path.keys().any(|p| p.starts_with(b"locked/")),
        "nothing below an unlistable directory can be recorded"
    );
    for f in ["a.txt", "b/c/d.txt", "b/e.json", "z-after.txt"] {
        assert_eq!(
            s(&by_path[f.as_bytes()], "sha256"),
            Some(sha256sum_of(&fx.root.join(f))),
            "{f} was not hashed"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. A file that changes while it is read

#[test]
fn file_changed_while_hashed_is_reported() {
    let fx = Fx::new();
    small_tree(&fx.root);
    let big = fx.root.join("big.bin");
    // Sparse: 1 GiB to read (a few hundred ms at least), no disk used.
    File::create(&big).unwrap().set_len(1 << 30).unwrap();

    // Touch its mtime every 2 ms for as long as datamig runs: whenever it is
    // listed, its mtime has moved by the time its read ends.
    let stop = Arc::new(AtomicBool::new(false));
    let toucher = {
        let stop = stop.clone();
        let big = big.clone();
        std::thread::spawn(move || {
            let f = File::options().write(true).open(&big).unwrap();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                f.set_modified(at(1_600_000_000 + k, 0)).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            k
        })
    };
    let o = output_within(
        &mut cmd([
            OsStr::new("inventory"),
            "--root".as_ref(),
            fx.root.as_os_str(),
            "-q".as_ref(),
            "--json".as_ref(),
            "-j".as_ref(),
            "1".as_ref(),
        ]),
        DEFAULT_DEADLINE,
    );
    stop.store(true, Ordering::Relaxed);
    let touches = toucher.join().unwrap();
    assert!(touches > 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    let summary = json_of(&o.stdout);
    assert_eq!(
        note_paths(&summary, "changed"),
        vec!["big.bin"],
        "{summary:#}"
    );
    let note = summary["changed"][0]["note"].as_str().unwrap();
    assert!(note.starts_with("changed during scan"), "{note}");
    assert!(note_paths(&summary, "unreadable").is_empty());
}

// ---------------------------------------------------------------------------
// 7. Damaged manifests are refused with a clear message

fn small_manifest() -> (Fx, PathBuf, Vec<u8>) {
    let fx = Fx::new();
    small_tree(&fx.root);
    let (m, ml) = fx.make_manifest("good.jsonl", &[]);
    // The untouched manifest is accepted.
    let (c, _, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        fx.root.as_os_str(),
        "-q".as_ref(),
        "--since".as_ref(),
        m.as_os_str(),
    ]);
    assert_eq!(c, 0, "{err}");
    (fx, m, ml.raw)
}

/// `inventory --since BAD`: must exit 2 with a message naming BAD.
fn since_refused(fx: &Fx, bad: &Path) -> String {
    let (c, out, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        fx.root.as_os_str(),
        "-q".as_ref(),
        "--since".as_ref(),
        bad.as_os_str(),
    ]);
    assert_eq!(c, 2, "stderr:\n{err}");
    assert!(out.is_empty(), "nothing on stdout when it cannot run");
    assert!(
        err.contains(&bad.display().to_string()),
        "the message should name {}:\n{err}",
        bad.display()
    );
    err
}

#[test]
fn one_edited_byte_in_a_manifest_is_a_trailer_checksum_mismatch() {
    let (fx, _, raw) = small_manifest();
    let second_line = raw.iter().position(|&b| b == b'\n').unwrap() + 1;
    let find = |needle: &[u8]| {
        second_line
            + raw[second_line..]
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
            + needle.len()
    };
    // One hex digit of a sha256, then one digit of a size.
    let at_hash = find(b"\"sha256\":\"");
    let at_size = find(b"\"size\":");
    for (what, at) in [("sha256", at_hash), ("size", at_size)] {
        let mut edited = raw.clone();
        edited[at] = if edited[at] == b'1' { b'2' } else { b'1' };
        assert_ne!(edited, raw);
        let bad = fx.manifest(&format!("edited-{what}.jsonl"));
        fs::write(&bad, &edited).unwrap();
        let err = since_refused(&fx, &bad);
        assert!(
            err.contains("trailer checksum mismatch"),
            "editing a {what} digit:\n{err}"
        );
    }
}

#[test]
fn truncated_manifest_is_refused() {
    let (fx, _, raw) = small_manifest();
    // Without its trailer line.
    let body = &raw[..raw.len() - 1];
    let cut = body.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let bad = fx.manifest("no-trailer.jsonl");
    fs::write(&bad, &raw[..cut]).unwrap();
    let err = since_refused(&fx, &bad);
    assert!(err.contains("truncated"), "{err}");

    // Cut in the middle of an entry line.
    let bad = fx.manifest("mid-line.jsonl");
    fs::write(&bad, &raw[..cut - 10]).unwrap();
    let err = since_refused(&fx, &bad);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn manifest_of_format_version_2_is_refused() {
    let (fx, _, raw) = small_manifest();
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("{\"datamig\":\"manifest\",\"version\":1,"));
    let edited = text.replacen("\"version\":1,", "\"version\":2,", 1);
    let bad = fx.manifest("v2.jsonl");
    fs::write(&bad, edited).unwrap();
    let err = since_refused(&fx, &bad);
    assert!(err.contains("version 2"), "{err}");
}

// ---------------------------------------------------------------------------
// 8. Finding the root, and option placement

#[test]
fn missing_root_exits_2_naming_it() {
    let missing = "/nonexistent/datamig-test-root";
    let (c, out, err) = datamig(["inventory", "--root", missing, "-q"]);
    assert_eq!(c, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains(missing), "{err}");
}

#[test]
fn v2_data_root_env_is_used_when_root_is_absent() {
    let fx = Fx::new();
    small_tree(&fx.root);
    let o = output_within(
        cmd(["inventory", "-q", "--json"]).env("V2_DATA_ROOT", &fx.root),
        DEFAULT_DEADLINE,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let summary = json_of(&o.stdout);
    assert_eq!(s(&summary, "root"), Some(fx.root.display().to_string()));
    assert_eq!(u(&summary["totals"], "files"), 3);

    // --root wins over the environment.
    let o = output_within(
        cmd([
            OsStr::new("inventory"),
            "--root".as_ref(),
            fx.root.as_os_str(),
            "-q".as_ref(),
            "--json".as_ref(),
        ])
        .env("V2_DATA_ROOT", "/nonexistent/datamig-env-root"),
        DEFAULT_DEADLINE,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        s(&json_of(&o.stdout), "root"),
        Some(fx.root.display().to_string())
    );

    // And a bad environment root is named in the error.
    let o = output_within(
        cmd(["inventory", "-q"]).env("V2_DATA_ROOT", "/nonexistent/datamig-env-root"),
        DEFAULT_DEADLINE,
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/datamig-env-root"));
}

#[test]
fn global_options_are_accepted_before_and_after_the_subcommand() {
    let fx = Fx::new();
    small_tree(&fx.root);
    let root = fx.root.as_os_str();
    let after: Vec<&OsStr> = vec![
        "inventory".as_ref(),
        "--root".as_ref(),
        root,
        "-q".as_ref(),
        "--json".as_ref(),
        "-j".as_ref(),
        "2".as_ref(),
    ];
    let before: Vec<&OsStr> = vec![
        "--root".as_ref(),
        root,
        "-q".as_ref(),
        "--json".as_ref(),
        "inventory".as_ref(),
    ];
    let mut summaries = Vec::new();
    for args in [after, before] {
        let (c, out, err) = datamig(&args);
        assert_eq!(c, 0, "{args:?}: {err}");
        assert!(err.is_empty(), "-q: nothing on stderr, got:\n{err}");
        let summary = json_of(&out);
        assert_eq!(s(&summary, "report").as_deref(), Some("inventory"));
        assert_eq!(u(&summary["totals"], "files"), 3);
        summaries.push(summary);
    }
    assert_eq!(summaries[0], summaries[1]);
}

// ---------------------------------------------------------------------------
// 9. The bundled fixture

#[test]
fn fixture_summary_reports_the_known_anomalies() {
    let (c, summary, err) = inventory_json(&fixture_root(), &[]);
    assert_eq!(
        c, 1,
        "missing required files and invalid JSON are problems: {err}"
    );

    let instances: Vec<&Value> = summary["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["area"] == "instances")
        .collect();
    assert_eq!(instances.len(), 1, "{summary:#}");
    let inst = instances[0];
    assert_eq!(s(inst, "entity").as_deref(), Some("instance"));
    assert_eq!(u(inst, "count"), 12);
    assert_eq!(
        inst["missing_required"],
        serde_json::json!([{"id": "Orphan-5b5b", "missing": ["preferences.json"]}])
    );
    // No other entity is missing anything.
    for e in summary["entities"].as_array().unwrap() {
        if e["area"] != "instances" {
            assert_eq!(e["missing_required"], serde_json::json!([]), "{e}");
        }
    }

    assert_eq!(
        note_paths(&summary, "invalid_json"),
        vec!["instances/Canvas-04d1/lists.json"]
    );
    let secrets: BTreeSet<&str> = summary["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in [
        ".hub-secret",
        "instances/Bastion-11a9/.claude/.credentials.json",
        "instances/Crossing-7c2e/.ssh/id_ed25519",
        "auth-keys/wake-api.key",
    ] {
        assert!(secrets.contains(want), "{want} not in secrets {secrets:?}");
    }
    assert!(!secrets.contains("instances/Bastion-11a9/diary.md"));

    let areas: BTreeSet<&str> = summary["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in [
        "production",
        "production-data",
        "instances",
        "v2-dev-data",
        "wisdom",
    ] {
        assert!(areas.contains(want), "{want} not in areas {areas:?}");
    }
    assert!(note_paths(&summary, "unreadable").is_empty());
    assert!(note_paths(&summary, "changed").is_empty());
    assert_eq!(u(&summary, "problems"), 2);
    // 241 files, less archive/README.txt and backups/.keep, which a
    // whole-root inventory leaves out (issue 12 item 12).
    assert_eq!(u(&summary["totals"], "files"), 239, "fixtures/README.md");
}

#[test]
fn exclude_glob_removes_npm_caches_and_their_directories() {
    let root = fixture_root();
    let out = tempdir();
    let manifest = |name: &str, extra: &[&str]| {
        let m = out.path().join(name);
        let mut args: Vec<&OsStr> = vec![
            "inventory".as_ref(),
            "--root".as_ref(),
            root.as_os_str(),
            "-q".as_ref(),
            "-o".as_ref(),
            m.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let (c, _, err) = datamig(&args);
        assert_eq!(c, 1, "{err}");
        ManifestLines::read(&m).by_path()
    };
    let all = manifest("all.jsonl", &[]);
    let some = manifest("some.jsonl", &["--exclude", "instances/*/.npm/**"]);

    let is_npm = |p: &[u8]| {
        let s = String::from_utf8_lossy(p);
        let parts: Vec<&str> = s.split('/').collect();
        parts.len() >= 3 && parts[0] == "instances" && parts[2] == ".npm"
    };
    let npm: Vec<&Vec<u8>> = all.keys().filter(|p| is_npm(p)).collect();
    assert!(
        all.contains_key(b"instances/Bastion-11a9/.npm".as_slice())
            && all.contains_key(b"instances/Crossing-7c2e/.npm/_cacache/index-v5/aa/bb".as_slice()),
        "the fixture has .npm caches"
    );
    assert!(npm.len() >= 10);
    let want: BTreeSet<&Vec<u8>> = all.keys().filter(|p| !is_npm(p)).collect();
    let got: BTreeSet<&Vec<u8>> = some.keys().collect();
    assert_eq!(want, got, "exactly the .npm entries are gone");
    // Neighbours of .npm stay.
    assert!(some.contains_key(b"instances/Bastion-11a9/.claude/history.jsonl".as_slice()));
}

// ---------------------------------------------------------------------------
// 10. Layout files

#[test]
fn printed_layout_passed_back_gives_the_same_summary() {
    let (c, toml, err) = datamig(["layout"]);
    assert_eq!(c, 0, "{err}");
    let text = String::from_utf8(toml).unwrap();
    assert!(text.contains("coordination-v2"), "{text}");
    let dir = tempdir();
    let file = dir.path().join("layout.toml");
    fs::write(&file, &text).unwrap();

    let (c1, builtin, e1) = inventory_json(&fixture_root(), &[]);
    let (c2, from_file, e2) =
        inventory_json(&fixture_root(), &["--layout".as_ref(), file.as_os_str()]);
    assert_eq!((c1, c2), (1, 1), "{e1}\n{e2}");
    assert_eq!(builtin, from_file);

    // The file really is what is used: a renamed layout shows in the summary.
    let renamed = text.replacen("name = \"coordination-v2\"", "name = \"renamed\"", 1);
    assert_ne!(renamed, text);
    fs::write(&file, renamed).unwrap();
    let (_, from_file, _) =
        inventory_json(&fixture_root(), &["--layout".as_ref(), file.as_os_str()]);
    assert_eq!(s(&from_file, "layout").as_deref(), Some("renamed"));
}

#[test]
fn layout_file_with_a_syntax_error_exits_2_naming_it() {
    let dir = tempdir();
    let file = dir.path().join("broken-layout.toml");
    fs::write(&file, "name = \"x\"\n[[area]\nname = 'a'\n").unwrap();
    let (c, out, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        fixture_root().as_os_str(),
        "-q".as_ref(),
        "--layout".as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(c, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains(&file.display().to_string()), "{err}");

    // A layout that does not exist is named too.
    let gone = dir.path().join("no-such-layout.toml");
    let (c, _, err) = datamig([OsStr::new("layout"), "--layout".as_ref(), gone.as_os_str()]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains(&gone.display().to_string()), "{err}");
}
