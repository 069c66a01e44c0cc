//! The walk and the archive's reads under concurrent change (issue 10,
//! findings 2 and 11): a directory exchanged with a symlink to an outside
//! directory while `archive` runs, a tree 10,000 directories deep, and targets
//! that lead outside the root through a symlink.

// It re-exports `prng_bytes`, which this file does not need.
#[allow(unused_imports)]
mod archive_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use archive_support::{archive, gnu_extract, note_paths, os, require_gnu_tar};
use common::{FileKind, rel_join, walk_tree};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use serde_json::Value;

const DATE: &str = "20251225";

fn date_dest(dest: &Path) -> Vec<OsString> {
    vec![
        "--dest".into(),
        dest.into(),
        "--date".into(),
        DATE.into(),
        "--json".into(),
    ]
}

/// Every entry of a tree (not following symlinks): kind, mode, and file bytes
/// or link target.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, (FileKind, u32, Vec<u8>)> {
    let mut m: BTreeMap<_, _> = walk_tree(root)
        .into_iter()
        .map(|(rel, k)| {
            let p = rel_join(root, &rel);
            let mode = fs::symlink_metadata(&p).unwrap().mode();
            let v = match k {
                FileKind::File => fs::read(&p).unwrap(),
                FileKind::Symlink => {
                    use std::os::unix::ffi::OsStrExt;
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
                }
                _ => vec![],
            };
            (rel, (k, mode, v))
        })
        .collect();
    m.insert(
        b".".to_vec(),
        (FileKind::Dir, fs::metadata(root).unwrap().mode(), vec![]),
    );
    m
}

fn open_dir(p: &Path) -> OwnedFd {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// `datamig list ARCHIVE --json`: member path -> (type, target).
fn list_members(archive: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let (c, out, err) = common::datamig([os("list"), archive.as_os_str(), os("--json")]);
    assert_eq!(c, 0, "datamig list {}: {err}", archive.display());
    let v = common::json_of(&out);
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                (
                    m["type"].as_str().unwrap().to_string(),
                    m["target"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// Every regular file under `dir` (symlinks not followed) with its bytes.
fn files_under(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    walk_tree(dir)
        .into_iter()
        .filter(|(_, k)| *k == FileKind::File)
        .map(|(rel, _)| {
            let b = fs::read(rel_join(dir, &rel)).unwrap();
            (rel, b)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Finding 2: a source directory exchanged with a symlink to an outside
// directory while `archive` runs.

const SUB_DIRS: usize = 8;
const PER_DIR: usize = 250;

#[test]
fn finding_2_archive_race_never_reads_outside_root() {
    require_gnu_tar();
    let t = common::tempdir();
    let root = t.path().join("root");
    let area = root.join("area");
    let sub = area.join("sub");
    // The source: a few thousand files, in a few directories.
    for d in 0..SUB_DIRS {
        let dir = sub.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_DIR {
            fs::write(
                dir.join(format!("f{f:03}.txt")),
                format!("inside {d}/{f}\n"),
            )
            .unwrap();
        }
    }
    fs::write(area.join("keep.txt"), b"steady\n").unwrap();
    let files_in_sub = SUB_DIRS * PER_DIR;

    // Outside: a fake shadow with unique content, and a few uniquely named
    // files shaped like the source, so a path under the swapped name resolves
    // there if anything follows the symlink.
    let sentinel = format!("SENTINEL-{}-{:x}", std::process::id(), rand_u64());
    let outside = t.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(
        outside.join("shadow"),
        format!("root:{sentinel}:19000::::::\n"),
    )
    .unwrap();
    fs::set_permissions(outside.join("shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    let mut outside_names = BTreeSet::from(["shadow".to_string()]);
    for d in 0..SUB_DIRS {
        let dir = outside.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        // Same names as the source files: content is the only tell.
        for f in (0..PER_DIR).step_by(25) {
            fs::write(
                dir.join(format!("f{f:03}.txt")),
                format!("{sentinel} {d}/{f}\n"),
            )
            .unwrap();
        }
        let only = format!("outside-only-{d}-{sentinel}");
        fs::write(dir.join(&only), sentinel.as_bytes()).unwrap();
        outside_names.insert(only);
    }
    let outside_before = snapshot(&outside);
    symlink(&outside, area.join("link")).unwrap();

    // The swapper: exchange area/sub and area/link (a symlink to outside)
    // as fast as it can while archive runs.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
        let area_fd = open_dir(&area);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                rustix::fs::renameat_with(&area_fd, "sub", &area_fd, "link", RenameFlags::EXCHANGE)
                    .expect("renameat2(RENAME_EXCHANGE)");
                swaps.fetch_add(1, Ordering::Relaxed);
            }
            area_fd
        })
    };

    let started = Instant::now();
    let mut flagged_runs = 0;
    let mut runs = 0;
    let swap_pair = |p: &str| {
        ["sub", "link"]
            .iter()
            .any(|n| p == *n || p.starts_with(&format!("{n}/")))
    };
    while runs < 20 || (flagged_runs == 0 && runs < 60) {
        let dest = t.path().join(format!("out{runs}"));
        let mut args: Vec<OsString> = vec!["area".into()];
        args.extend(date_dest(&dest));
        let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let before = swaps.load(Ordering::Relaxed);
        let o = archive(&root, &argv);
        let during = swaps.load(Ordering::Relaxed) - before;
        let code = common::code(&o);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            code == 0 || code == 1,
            "run {runs}: archive exited {code}\n{stderr}"
        );
        let rep: Value = common::json_of(&o.stdout);
        let flagged = note_paths(&rep, "flagged");
        let a = dest.join(format!("area-{DATE}.tar.zst"));

        // Nothing from outside, by datamig's own listing...
        let members = list_members(&a);
        for (path, (kind, target)) in &members {
            let last = path.rsplit('/').next().unwrap();
            assert!(
                !outside_names.contains(last) && !path.contains(&sentinel),
                "run {runs}: an outside file is in the archive: {path}"
            );
            if path == "sub" || path == "link" {
                assert!(
                    kind == "dir" || (kind == "symlink" && target.is_some()),
                    "run {runs}: {path} archived as {kind}"
                );
            }
        }
        // ... and by GNU tar's extraction of the bytes.
        let x = t.path().join(format!("x{runs}"));
        gnu_extract(&a, &x);
        for (rel, bytes) in files_under(&x) {
            assert!(
                !contains(&bytes, sentinel.as_bytes()),
                "run {runs}: outside content in the archive at {}",
                common::show(&rel)
            );
        }
        fs::remove_dir_all(&x).unwrap();

        // Every flag names the swapped entries; an unflagged run is a
        // consistent capture: one of the two names holds every file of the
        // real directory, the other is the symlink.
        assert!(
            flagged.iter().all(|p| swap_pair(p)),
            "run {runs}: flagged entries other than the swapped ones: {flagged:?}"
        );
        assert_eq!(code, if flagged.is_empty() { 0 } else { 1 }, "{rep:#}");
        if flagged.is_empty() {
            let real = ["sub", "link"]
                .into_iter()
                .find(|n| members.get(*n).is_some_and(|(k, _)| k == "dir"))
                .unwrap_or_else(|| panic!("run {runs}: neither name archived as a directory and nothing flagged: {rep:#}"));
            let other = if real == "sub" { "link" } else { "sub" };
            let n = members
                .iter()
                .filter(|(p, (k, _))| p.starts_with(&format!("{real}/")) && *k == "file")
                .count();
            assert_eq!(
                n, files_in_sub,
                "run {runs}: {real}/ is missing files and nothing was flagged"
            );
            assert_eq!(
                members.get(other).map(|(k, _)| k.as_str()),
                Some("symlink"),
                "run {runs}"
            );
        } else {
            flagged_runs += 1;
            eprintln!("run {runs}: {during} swaps, flagged {flagged:?}");
        }
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let area_fd = swapper.join().unwrap();
    if fs::symlink_metadata(&sub).unwrap().file_type().is_symlink() {
        rustix::fs::renameat_with(&area_fd, "sub", &area_fd, "link", RenameFlags::EXCHANGE)
            .unwrap();
    }
    assert_eq!(
        snapshot(&outside),
        outside_before,
        "the outside tree changed"
    );
    assert!(
        flagged_runs > 0,
        "no run saw the swap in {runs} runs ({} swaps): the race was never hit",
        swaps.load(Ordering::Relaxed)
    );
    eprintln!(
        "{runs} runs, {flagged_runs} saw the swap, {} swaps, {:?}",
        swaps.load(Ordering::Relaxed),
        started.elapsed()
    );
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

// ---------------------------------------------------------------------------
// Finding 11: depth.

const DEPTH: usize = 10_000;
const LEAF: &[u8] = b"at the bottom\n";

/// `root/d/d/.../d/leaf.txt`, DEPTH directories, built through handles (the
/// full path is far past PATH_MAX).
fn build_deep(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let mut here = open_dir(root);
    for _ in 0..DEPTH {
        rustix::fs::mkdirat(&here, "d", Mode::from_raw_mode(0o755)).unwrap();
        here = rustix::fs::openat(
            &here,
            "d",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
    }
    let f = rustix::fs::openat(
        &here,
        "leaf.txt",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, LEAF).unwrap();
}

/// Remove the deep chain without a descriptor per level (std's
/// `remove_dir_all` would hold one each): pull each grandchild up, remove
/// the emptied child, repeat.
fn remove_deep(root: &Path) {
    let top = open_dir(root);
    loop {
        let d = rustix::fs::openat(&top, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .unwrap();
        let _ = rustix::fs::unlinkat(&d, "leaf.txt", AtFlags::empty());
        let more = rustix::fs::renameat(&d, "d", &top, "next").is_ok();
        drop(d);
        rustix::fs::unlinkat(&top, "d", AtFlags::REMOVEDIR).unwrap();
        if !more {
            break;
        }
        rustix::fs::renameat(&top, "next", &top, "d").unwrap();
    }
}

fn deep_path(levels: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(levels * 2);
    for i in 0..levels {
        if i > 0 {
            p.push(b'/');
        }
        p.push(b'd');
    }
    p
}

/// Manifest lines of the deep tree, streamed: (dir paths seen by depth, leaf
/// line).
fn deep_manifest_facts(manifest: &Path, leaf_path: &[u8]) -> (Vec<bool>, Option<Value>) {
    let mut depth_seen = vec![false; DEPTH + 1];
    let mut leaf = None;
    for line in BufReader::new(fs::File::open(manifest).unwrap()).split(b'\n') {
        let line = line.unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        let Some(p) = v["path"].as_str() else {
            continue;
        };
        if v["type"] == "dir" && p.bytes().all(|b| b == b'd' || b == b'/') {
            let levels = p.len().div_ceil(2);
            assert_eq!(p.as_bytes(), deep_path(levels), "odd dir path");
            depth_seen[levels] = true;
        } else if p.as_bytes() == leaf_path {
            leaf = Some(v);
        }
    }
    (depth_seen, leaf)
}

#[test]
fn finding_11_ten_thousand_deep_tree_inventories() {
    let t = common::tempdir();
    let root = t.path().join("root");
    build_deep(&root);
    let mut leaf_path = deep_path(DEPTH);
    leaf_path.extend_from_slice(b"/leaf.txt");
    let want_sha = common::sha256_hex(LEAF);

    let manifest = t.path().join("deep.jsonl");
    let started = Instant::now();
    let o = common::output_within(
        &mut common::cmd([
            os("--root"),
            root.as_os_str(),
            os("inventory"),
            os("-q"),
            os("-o"),
            manifest.as_os_str(),
        ]),
        Duration::from_secs(120),
    );
    let took = started.elapsed();
    assert_eq!(
        common::code(&o),
        0,
        "inventory of a {DEPTH}-deep tree: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (seen, leaf) = deep_manifest_facts(&manifest, &leaf_path);
    let missing: Vec<usize> = (1..=DEPTH).filter(|&l| !seen[l]).collect();
    assert!(
        missing.is_empty(),
        "levels missing from the manifest: {} (first {:?})",
        missing.len(),
        missing.first()
    );
    let leaf = leaf.expect("the leaf file is in the manifest");
    assert_eq!(leaf["sha256"].as_str(), Some(want_sha.as_str()), "{leaf}");
    assert!(leaf.get("problem").is_none(), "{leaf}");
    eprintln!("inventory of {DEPTH} levels: {took:?}");

    // The same depth through archive and `list`.
    let dest = t.path().join("out");
    let started = Instant::now();
    let mut args: Vec<OsString> = vec!["d".into()];
    args.extend(date_dest(&dest));
    let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let o = archive(&root, &argv);
    let took = started.elapsed();
    assert_eq!(
        common::code(&o),
        0,
        "archive of a {DEPTH}-deep tree: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rep = common::json_of(&o.stdout);
    assert_eq!(rep["verify"], "passed", "{rep:#}");
    let sidecar = dest.join(format!("d-{DATE}.tar.zst.manifest.jsonl"));
    // Archived paths are relative to the target `d`: one level fewer.
    let mut member_leaf = deep_path(DEPTH - 1);
    member_leaf.extend_from_slice(b"/leaf.txt");
    let (seen, leaf) = deep_manifest_facts(&sidecar, &member_leaf);
    assert!((1..DEPTH).all(|l| seen[l]), "archive manifest lacks levels");
    let leaf = leaf.expect("the leaf file is archived");
    assert_eq!(leaf["sha256"].as_str(), Some(want_sha.as_str()), "{leaf}");
    assert!(leaf["frame_offset"].is_u64(), "{leaf}");
    eprintln!("archive of {DEPTH} levels: {took:?}");

    remove_deep(&root);
}

// ---------------------------------------------------------------------------
// Finding 11: targets that lead outside the root through a symlink.

#[test]
fn finding_11_target_symlink_resolving_outside_root_is_refused() {
    let t = common::tempdir();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("keep")).unwrap();
    fs::write(root.join("keep/a.txt"), b"inside\n").unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("inner")).unwrap();
    fs::write(outside.join("precious.txt"), b"do not touch\n").unwrap();
    fs::write(outside.join("inner/also.txt"), b"nor this\n").unwrap();
    fs::set_permissions(outside.join("inner"), fs::Permissions::from_mode(0o750)).unwrap();
    // A symlinked target, and a symlinked ancestor of a target.
    symlink(&outside, root.join("escape")).unwrap();
    symlink("../outside", root.join("up")).unwrap();
    // A symlink that stays inside the root is still followed as a target.
    symlink("keep", root.join("alias")).unwrap();
    let before = snapshot(&outside);

    for target in ["escape", "up/inner", "escape/inner"] {
        for extra in [
            &[][..],
            &["--remove-source", "--allow-live", "--skip-migration-check"][..],
        ] {
            let dest = t.path().join("out");
            let mut args: Vec<OsString> = vec![target.into()];
            args.extend(date_dest(&dest));
            args.extend(extra.iter().map(OsString::from));
            let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let o = archive(&root, &argv);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(common::code(&o), 2, "archive {target} {extra:?}: {err}");
            assert!(
                err.contains(target)
                    && err.contains("outside")
                    && err.contains(&*outside.to_string_lossy()),
                "the message names the argument and where it leads: {err}"
            );
            assert!(!dest.exists(), "a refused run created {}", dest.display());
            assert_eq!(snapshot(&outside), before, "archive {target} {extra:?}");
        }
        // Inventory takes paths under the root too.
        let (c, _, err) = common::datamig([
            os("--root"),
            root.as_os_str(),
            os("inventory"),
            os("-q"),
            os(target),
        ]);
        assert_eq!(c, 2, "inventory {target}: {err}");
        assert!(err.contains(target) && err.contains("outside"), "{err}");
    }
    assert_eq!(snapshot(&outside), before);

    // Inside the root, a symlinked target is archived through what it names.
    let dest = t.path().join("ok");
    let mut args: Vec<OsString> = vec!["alias".into()];
    args.extend(date_dest(&dest));
    let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let o = archive(&root, &argv);
    assert_eq!(
        common::code(&o),
        0,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let members = list_members(&dest.join(format!("alias-{DATE}.tar.zst")));
    assert!(members.contains_key("a.txt"), "{members:?}");
}
