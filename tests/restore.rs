//! `datamig restore` and `datamig list`: round trips of the awkward tree,
//! hostile archives built by hand, a corrupt member, single-file restores from
//! a > 1 GiB archive that read only a few MiB, path selection, --overwrite, the
//! embedded manifest, and listing with and without the sidecar.

mod archive_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use archive_support::{dir_names, mode_of, prng_bytes, zstd_frames};
use common::{FileKind, ManifestLines, awk, rel_join, walk_tree, write};
use datamig::tarfmt::{END_OF_ARCHIVE, MemberHeader, MemberKind, encode_header, padding};
use serde_json::Value;

const DATE: &str = "20251225";

// ---------------------------------------------------------------------------
// Helpers

/// `datamig --root ROOT archive DIRNAME --dest DEST --date DATE -q -j 2`,
/// asserting exit 0; returns the archive's path.
fn make_archive(root: &Path, dirname: &str, dest: &Path) -> PathBuf {
    let o = archive_support::archive(
        root,
        &[
            OsStr::new(dirname),
            OsStr::new("--dest"),
            dest.as_os_str(),
            OsStr::new("--date"),
            OsStr::new(DATE),
        ],
    );
    assert_eq!(
        common::code(&o),
        0,
        "archive {dirname} failed\nstderr:\n{}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let a = dest.join(format!("{dirname}-{DATE}.tar.zst"));
    assert!(a.is_file(), "no archive at {}", a.display());
    a
}

fn manifest_sidecar(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.jsonl", archive.display()))
}

/// `datamig restore ARCHIVE --to TO -q EXTRA...`: (exit code, stdout, stderr).
fn restore(archive: &Path, to: &Path, extra: &[&str]) -> (i32, Vec<u8>, String) {
    let mut args: Vec<OsString> = vec![
        "restore".into(),
        archive.into(),
        "--to".into(),
        to.into(),
        "-q".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    common::datamig(&args)
}

/// Like [`restore`] with `--json`, asserting the exit code; the parsed report.
fn restore_json(archive: &Path, to: &Path, extra: &[&str], want: i32) -> Value {
    let mut e = extra.to_vec();
    e.push("--json");
    let (c, out, err) = restore(archive, to, &e);
    assert_eq!(
        c,
        want,
        "restore {extra:?} exited {c}, expected {want}\nstderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    let v = common::json_of(&out);
    assert_eq!(v["report"], "restore", "{v:#}");
    v
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("report has no list {key:?}: {v:#}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn assert_clean(v: &Value) {
    for key in ["refused", "corrupt", "unverified", "missing", "errors"] {
        assert_eq!(
            v[key].as_array().map(|a| a.len()),
            Some(0),
            "{key} is not empty: {v:#}"
        );
    }
}

/// Every entry of a tree: kind, content or link target, and its metadata.
#[derive(Debug, PartialEq, Eq)]
struct Snap {
    kind: FileKind,
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    ino: u64,
}

fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Snap> {
    walk_tree(root)
        .into_iter()
        .map(|(rel, kind)| {
            let p = rel_join(root, &rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let bytes = match kind {
                FileKind::File => fs::read(&p).unwrap(),
                FileKind::Symlink => fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                _ => vec![],
            };
            let snap = Snap {
                kind,
                bytes,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                ino: m.ino(),
            };
            (rel, snap)
        })
        .collect()
}

fn shown(paths: impl IntoIterator<Item = Vec<u8>>) -> Vec<String> {
    paths.into_iter().map(|p| common::show(&p)).collect()
}

/// Any name containing the temporary-file infix, anywhere below `root`.
fn temp_leftovers(root: &Path) -> Vec<String> {
    walk_tree(root)
        .into_keys()
        .filter(|p| p.windows(13).any(|w| w == b".datamig-tmp-"))
        .map(|p| common::show(&p))
        .collect()
}

/// A small tree: nested files, an empty dir, a symlink, a hard-link pair whose
/// first path (`a.txt`) is outside `sub/`, and a prefix sibling `subway/`.
fn small_tree(dir: &Path) {
    write(dir, "a.txt", b"alpha\n");
    write(dir, "sub/in/b.txt", b"bravo\n");
    fs::create_dir_all(dir.join("sub/empty")).unwrap();
    symlink("in/b.txt", dir.join("sub/l")).unwrap();
    fs::hard_link(dir.join("a.txt"), dir.join("sub/h")).unwrap();
    write(dir, "subway/c.txt", b"charlie\n");
    write(dir, "z.txt", b"zulu\n");
    fs::create_dir_all(dir.join("e")).unwrap();
    fs::write(
        dir.join(OsStr::from_bytes(b"latin1-caf\xe9.txt")),
        b"latin-1\n",
    )
    .unwrap();
}

// ---------------------------------------------------------------------------
// 1. Round trip of the awkward tree

#[test]
fn awkward_tree_round_trips_bytes_modes_times_owners_links_and_holes() {
    assert!(
        common::is_root(),
        "these tests run as root (CI does): owners are part of what is checked"
    );
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    fs::create_dir_all(&src).unwrap();
    common::awkward_tree(&src, false);

    // Foreign owners first (chown clears set-id bits), then distinct modes.
    let foreign = (4321u32, 8765u32);
    std::os::unix::fs::chown(src.join(awk::NFC), Some(foreign.0), Some(foreign.1)).unwrap();
    std::os::unix::fs::chown(src.join(awk::REAL_DIR), Some(foreign.0), Some(foreign.1)).unwrap();
    std::os::unix::fs::lchown(src.join(awk::DANGLING), Some(foreign.0), Some(foreign.1)).unwrap();
    common::chmod(&src.join(awk::NFC), 0o2750);
    common::chmod(&src.join(awk::SPACES), 0o600);
    common::chmod(&src.join(awk::BACKSLASH), 0o400);
    common::chmod(&src.join("realdir/one.txt"), 0o755);
    common::chmod(&src.join("realdir/two.txt"), 0o640);
    common::chmod(&src.join(awk::REAL_DIR), 0o750);
    common::chmod(&src.join(awk::EMPTY_DIR), 0o700);

    // Fixed mtimes: files and symlinks, then directories deepest first.
    let tree = walk_tree(&src);
    for (i, (rel, k)) in tree.iter().enumerate() {
        let secs = 1_500_000_000 + i as u64 * 1000;
        match k {
            FileKind::File => common::set_mtime(&rel_join(&src, rel), common::at(secs, 123_456)),
            FileKind::Symlink => common::set_symlink_mtime(&rel_join(&src, rel), secs, 0),
            _ => {}
        }
    }
    let mut dirs: Vec<&Vec<u8>> = tree
        .iter()
        .filter(|(_, k)| **k == FileKind::Dir)
        .map(|(r, _)| r)
        .collect();
    dirs.sort_by_key(|r| std::cmp::Reverse(r.iter().filter(|&&b| b == b'/').count()));
    for (i, rel) in dirs.iter().enumerate() {
        common::set_mtime(
            &rel_join(&src, rel),
            common::at(1_400_000_000 + i as u64 * 7, 987_654_321),
        );
    }
    assert!(!tree.values().any(|k| *k == FileKind::Fifo));
    let before = snapshot(&src);

    let dest = t.path().join("out");
    let a = make_archive(&root, "tree", &dest);
    let manifest = ManifestLines::read(&manifest_sidecar(&a));
    let count = |ty: &str| {
        manifest
            .entry_values()
            .iter()
            .filter(|v| v["type"] == ty)
            .count() as u64
    };

    let r = t.path().join("restored");
    let v = restore_json(&a, &r, &[], 0);
    assert_clean(&v);
    assert_eq!(v["manifest"], "sidecar");
    assert_eq!(v["files"].as_u64(), Some(count("file")), "{v:#}");
    assert_eq!(v["dirs"].as_u64(), Some(count("dir")), "{v:#}");
    assert_eq!(v["symlinks"].as_u64(), Some(count("symlink")), "{v:#}");
    assert_eq!(v["hardlinks"].as_u64(), Some(1), "{v:#}");
    assert_eq!(v["bytes"], manifest.trailer_json()["bytes"], "{v:#}");
    assert_eq!(
        v["archive_size"].as_u64(),
        Some(fs::metadata(&a).unwrap().len())
    );

    // The source was not touched by archiving; the restore equals it.
    assert_eq!(snapshot(&src), before, "archiving changed the source");
    let after = snapshot(&r);
    assert!(!r.join(".datamig").exists(), ".datamig/ was restored");
    assert_eq!(
        shown(after.keys().cloned()),
        shown(before.keys().cloned()),
        "restored tree does not have exactly the source's entries"
    );
    for (rel, s) in &before {
        let d = &after[rel];
        let name = common::show(rel);
        assert_eq!(d.kind, s.kind, "{name}: kind");
        assert!(d.bytes == s.bytes, "{name}: content / link target differs");
        assert_eq!(d.mtime, s.mtime, "{name}: mtime (seconds)");
        assert_eq!((d.uid, d.gid), (s.uid, s.gid), "{name}: owner");
        if s.kind != FileKind::Symlink {
            assert_eq!(
                format!("{:o}", d.mode),
                format!("{:o}", s.mode),
                "{name}: mode"
            );
        }
    }
    // Spot checks of what the awkward tree promises.
    assert_eq!(mode_of(&r.join(awk::NFC)), 0o2750);
    let m = fs::metadata(r.join(awk::NFC)).unwrap();
    assert_eq!((m.uid(), m.gid()), foreign);
    let m = fs::symlink_metadata(r.join(awk::DANGLING)).unwrap();
    assert_eq!((m.uid(), m.gid()), foreign, "symlink owner");
    assert_eq!(
        fs::read_link(r.join(awk::ETC_LINK)).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_link(r.join(awk::UP_LINK)).unwrap(),
        Path::new(awk::UP_LINK_TARGET)
    );
    let (ha, hb) = (
        fs::metadata(r.join(awk::HARD_A)).unwrap(),
        fs::metadata(r.join(awk::HARD_B)).unwrap(),
    );
    assert_eq!(ha.ino(), hb.ino(), "hard-link pair is not one inode");
    assert_eq!(ha.nlink(), 2);
    let sp = fs::metadata(r.join(awk::SPARSE)).unwrap();
    assert_eq!(sp.len(), awk::SPARSE_LEN);
    let bytes = fs::read(r.join(awk::SPARSE)).unwrap();
    assert!(bytes[..bytes.len() - 4].iter().all(|&b| b == 0));
    assert_eq!(&bytes[bytes.len() - 4..], b"tail");
    assert!(
        sp.blocks() * 512 < 1 << 20,
        "restored sparse file occupies {} bytes on disk: not written sparse",
        sp.blocks() * 512
    );
    assert!(
        fs::read_dir(r.join(awk::EMPTY_DIR))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(
        fs::read(rel_join(&r, awk::NON_UTF8)).unwrap(),
        b"latin-1 name\n"
    );
    assert_eq!(
        fs::read(rel_join(&r, &common::awk_long_path())).unwrap(),
        b"far down\n"
    );
    assert!(temp_leftovers(&r).is_empty());

    // --no-same-owner: everything belongs to whoever ran the restore.
    let r2 = t.path().join("restored-no-owner");
    let v = restore_json(&a, &r2, &["--no-same-owner"], 0);
    assert_clean(&v);
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mine = snapshot(&r2);
    assert_eq!(shown(mine.keys().cloned()), shown(before.keys().cloned()));
    for (rel, s) in &mine {
        assert_eq!(
            (s.uid, s.gid),
            (uid, gid),
            "{}: not owned by the restoring user",
            common::show(rel)
        );
        assert!(s.bytes == before[rel].bytes, "{}", common::show(rel));
        assert_eq!(s.mtime, before[rel].mtime, "{}", common::show(rel));
    }
    assert_eq!(mode_of(&r2.join(awk::NFC)), 0o2750);
}

// ---------------------------------------------------------------------------
// 2. Hostile archives built by hand

fn member(out: &mut Vec<u8>, path: &[u8], kind: MemberKind, link: Option<&[u8]>, data: &[u8]) {
    let h = MemberHeader {
        path: path.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        size: data.len() as u64,
        link: link.map(|l| l.to_vec()),
        sparse: None,
    };
    out.extend_from_slice(&encode_header(&h));
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64), 0);
}

#[test]
fn hostile_members_are_refused_and_nothing_lands_outside_the_destination() {
    let t = common::tempdir();
    let outside_dir = t.path().join("outside-dir");
    fs::create_dir(&outside_dir).unwrap();
    let outside_file = t.path().join("outside");
    fs::write(&outside_file, b"not yours\n").unwrap();
    let abs_dir = t.path().join("absdir");
    let abs_member = abs_dir.join("abs");
    let passwd = fs::metadata("/etc/passwd").unwrap();
    let passwd_bytes = fs::read("/etc/passwd").unwrap();

    let abs_name = abs_member.as_os_str().as_bytes().to_vec();
    let mut tar = Vec::new();
    member(&mut tar, b"../x", MemberKind::File, None, b"escaped up\n");
    member(&mut tar, &abs_name, MemberKind::File, None, b"absolute\n");
    member(
        &mut tar,
        b"s",
        MemberKind::Symlink,
        Some(outside_dir.as_os_str().as_bytes()),
        b"",
    );
    member(&mut tar, b"s/file", MemberKind::File, None, b"through s\n");
    member(
        &mut tar,
        b"h",
        MemberKind::Hardlink,
        Some(b"/etc/passwd"),
        b"",
    );
    member(
        &mut tar,
        b"h2",
        MemberKind::Hardlink,
        Some(b"../outside"),
        b"",
    );
    member(&mut tar, b"a/../../y", MemberKind::File, None, b"dotdot\n");
    // A symlink to an outside file, then a file of the same name.
    member(
        &mut tar,
        b"t2",
        MemberKind::Symlink,
        Some(outside_file.as_os_str().as_bytes()),
        b"",
    );
    member(&mut tar, b"t2", MemberKind::File, None, b"overwritten?\n");
    member(&mut tar, b"ok.txt", MemberKind::File, None, b"fine\n");
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let archive = t.path().join("evil.tar.zst");
    fs::write(&archive, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();

    let names_before = dir_names(t.path());
    let r = t.path().join("r");
    let v = restore_json(&archive, &r, &[], 1);
    assert_eq!(v["manifest"], "none", "{v:#}");

    let refused: BTreeSet<String> = archive_support::note_paths(&v, "refused")
        .into_iter()
        .collect();
    let errors: BTreeSet<String> = archive_support::note_paths(&v, "errors")
        .into_iter()
        .collect();
    let abs_str = abs_member.display().to_string();
    for hostile in ["../x", abs_str.as_str(), "s/file", "h", "h2", "a/../../y"] {
        assert!(
            refused.contains(hostile),
            "{hostile:?} was not refused: {v:#}"
        );
    }
    assert!(
        refused.contains("t2") || errors.contains("t2"),
        "the file t2 over the symlink t2 was neither refused nor an error: {v:#}"
    );
    assert!(!refused.contains("ok.txt"), "{v:#}");
    assert_eq!(strings(&v, "unverified"), ["ok.txt"], "{v:#}");
    assert_eq!(v["files"].as_u64(), Some(1), "{v:#}");
    assert_eq!(v["hardlinks"].as_u64(), Some(0), "{v:#}");

    // Nothing outside R.
    assert!(
        fs::read_dir(&outside_dir).unwrap().next().is_none(),
        "something was written into the symlink's outside target: {:?}",
        dir_names(&outside_dir)
    );
    assert_eq!(fs::read(&outside_file).unwrap(), b"not yours\n");
    assert_eq!(fs::metadata(&outside_file).unwrap().nlink(), 1);
    assert!(!abs_member.exists() && !abs_dir.exists());
    let p = fs::metadata("/etc/passwd").unwrap();
    assert_eq!((p.ino(), p.nlink()), (passwd.ino(), passwd.nlink()));
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_bytes);
    let mut names_after = dir_names(t.path());
    names_after.retain(|n| n != "r");
    assert_eq!(names_after, names_before, "new entries next to R");
    assert!(!t.path().join("x").exists() && !t.path().join("y").exists());

    // Inside R: ok.txt, and at most the harmless symlinks themselves.
    assert_eq!(fs::read(r.join("ok.txt")).unwrap(), b"fine\n");
    let got = walk_tree(&r);
    for (p, k) in &got {
        let ok = p.as_slice() == b"ok.txt"
            || ((p.as_slice() == b"s" || p.as_slice() == b"t2") && *k == FileKind::Symlink);
        assert!(ok, "unexpected {} ({k:?}) in R", common::show(p));
    }
    if got.contains_key(&b"s"[..]) {
        assert_eq!(fs::read_link(r.join("s")).unwrap(), outside_dir);
    }

    // Without a manifest single paths cannot be located: exit 2, nothing made.
    let r2 = t.path().join("r2");
    let (c, out, err) = restore(&archive, &r2, &["ok.txt"]);
    assert_eq!(
        c,
        2,
        "stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(err.contains("manifest"), "{err}");
    assert!(
        !r2.exists(),
        "a restore that could not run created its destination"
    );
}

/// In a foreign archive (no manifest) a name given twice is resolved as GNU
/// tar does: the later copy wins, and the report says so (issue 11). A file
/// never replaces a directory.
#[test]
fn members_named_twice_the_later_copy_wins_and_is_noted() {
    let t = common::tempdir();
    let mut tar = Vec::new();
    member(&mut tar, b"dup.txt", MemberKind::File, None, b"first\n");
    member(&mut tar, b"dup.txt", MemberKind::File, None, b"second\n");
    member(&mut tar, b"d", MemberKind::Dir, None, b"");
    member(
        &mut tar,
        b"d",
        MemberKind::File,
        None,
        b"a file over a dir\n",
    );
    member(&mut tar, b"ok.txt", MemberKind::File, None, b"fine\n");
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let archive = t.path().join("dups.tar.zst");
    fs::write(&archive, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();

    let r = t.path().join("r");
    let v = restore_json(&archive, &r, &[], 1);
    let refused = archive_support::note_paths(&v, "refused");
    assert_eq!(refused, ["d"], "{v:#}");
    assert_eq!(
        archive_support::note_paths(&v, "notes"),
        ["dup.txt"],
        "{v:#}"
    );
    assert!(
        v["notes"].to_string().contains("later member replaced"),
        "{v:#}"
    );
    let notes = v["refused"].to_string();
    assert!(notes.contains("a directory is already there"), "{v:#}");
    assert_eq!(fs::read(r.join("dup.txt")).unwrap(), b"second\n");
    assert!(r.join("d").is_dir());
    assert_eq!(fs::read(r.join("ok.txt")).unwrap(), b"fine\n");
    assert!(temp_leftovers(&r).is_empty(), "{:?}", temp_leftovers(&r));

    // With --overwrite the later copy of a file wins; a directory is never replaced.
    let v = restore_json(&archive, &r, &["--overwrite"], 1);
    assert_eq!(archive_support::note_paths(&v, "refused"), ["d"], "{v:#}");
    assert_eq!(fs::read(r.join("dup.txt")).unwrap(), b"second\n");
    assert!(r.join("d").is_dir());
    assert!(temp_leftovers(&r).is_empty(), "{:?}", temp_leftovers(&r));
}

/// A `.tar.zst` that datamig did not make (one zstd frame holding more than
/// datamig's 4 MiB frames, as `tar --zstd` writes) is restored as one stream,
/// with the same path checks; without a manifest every file is unverified.
#[test]
fn a_foreign_single_frame_tar_zst_is_restored_as_one_stream() {
    let t = common::tempdir();
    let big: Vec<u8> = (0u32..(6 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut tar = Vec::new();
    member(&mut tar, b"data", MemberKind::Dir, None, b"");
    member(&mut tar, b"data/big.bin", MemberKind::File, None, &big);
    member(
        &mut tar,
        b"data/small.txt",
        MemberKind::File,
        None,
        b"small\n",
    );
    member(&mut tar, b"../escape", MemberKind::File, None, b"no\n");
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let archive = t.path().join("foreign.tar.zst");
    let z = zstd::stream::encode_all(&tar[..], 3).unwrap();
    assert_eq!(
        zstd::zstd_safe::find_frame_compressed_size(&z).ok(),
        Some(z.len()),
        "one frame"
    );
    assert!(tar.len() > 4 << 20, "the frame holds more than 4 MiB");
    fs::write(&archive, &z).unwrap();

    let r = t.path().join("r");
    let v = restore_json(&archive, &r, &[], 1);
    assert_eq!(v["manifest"], "none", "{v:#}");
    assert_eq!(v["files"].as_u64(), Some(2), "{v:#}");
    assert_eq!(archive_support::note_paths(&v, "refused"), ["../escape"]);
    assert_eq!(
        strings(&v, "unverified"),
        ["data/big.bin", "data/small.txt"]
    );
    assert_eq!(v["archive_bytes_read"].as_u64(), Some(z.len() as u64));
    assert!(fs::read(r.join("data/big.bin")).unwrap() == big);
    assert_eq!(fs::read(r.join("data/small.txt")).unwrap(), b"small\n");
    assert!(!t.path().join("escape").exists());
}

#[test]
fn overwrite_never_follows_links_in_the_way() {
    let t = common::tempdir();
    let outside_file = t.path().join("outside");
    fs::write(&outside_file, b"not yours\n").unwrap();
    let passwd = fs::metadata("/etc/passwd").unwrap();

    // A file, replaced by a symlink to /etc/passwd, then a hard link to that name;
    // and a file named like a symlink already in DIR that points outside.
    let mut tar = Vec::new();
    member(&mut tar, b"f", MemberKind::File, None, b"plain\n");
    member(
        &mut tar,
        b"f",
        MemberKind::Symlink,
        Some(b"/etc/passwd"),
        b"",
    );
    member(&mut tar, b"h", MemberKind::Hardlink, Some(b"f"), b"");
    member(
        &mut tar,
        b"pre",
        MemberKind::File,
        None,
        b"replaces the link\n",
    );
    member(
        &mut tar,
        b"pre/x",
        MemberKind::File,
        None,
        b"under the link\n",
    );
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let archive = t.path().join("evil.tar.zst");
    fs::write(&archive, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();

    let r = t.path().join("r");
    fs::create_dir(&r).unwrap();
    symlink(&outside_file, r.join("pre")).unwrap();
    let v = restore_json(&archive, &r, &["--overwrite"], 1);
    assert_eq!(v["manifest"], "none");
    assert_eq!(fs::read(&outside_file).unwrap(), b"not yours\n");
    assert_eq!(fs::metadata(&outside_file).unwrap().nlink(), 1);
    let p = fs::metadata("/etc/passwd").unwrap();
    assert_eq!((p.ino(), p.nlink()), (passwd.ino(), passwd.nlink()));
    // Whatever `h` became, it is not a second name of /etc/passwd.
    if let Ok(m) = fs::symlink_metadata(r.join("h")) {
        assert_ne!(m.ino(), passwd.ino(), "h is a hard link to /etc/passwd");
    }
    assert_eq!(fs::read(r.join("pre")).unwrap(), b"replaces the link\n");
    assert!(
        fs::symlink_metadata(r.join("pre")).unwrap().is_file(),
        "pre is still a symlink"
    );
    let refused = archive_support::note_paths(&v, "refused");
    assert!(refused.iter().any(|p| p == "pre/x"), "{v:#}");
}

// ---------------------------------------------------------------------------
// 3. A corrupt member never appears under its name

#[test]
fn corrupt_member_is_reported_and_not_put_in_place() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    let victim = prng_bytes(42, 100_000);
    write(&src, "a.txt", b"first\n");
    write(&src, "m/victim.bin", &victim);
    write(&src, "m/zz.txt", b"after the victim\n");
    write(&src, "z.txt", b"last\n");
    let a = make_archive(&root, "tree", &t.path().join("out"));

    // Decompress, change one byte of the victim's data, recompress as one frame.
    let mut tar = zstd::stream::decode_all(&fs::read(&a).unwrap()[..]).unwrap();
    let at = tar
        .windows(64)
        .position(|w| w == &victim[..64])
        .expect("victim data in the tar stream");
    assert_eq!(&tar[at..at + victim.len()], &victim[..]);
    tar[at + 5000] ^= 0x55;
    let d2 = t.path().join("bad");
    fs::create_dir(&d2).unwrap();
    let bad = d2.join(format!("bad-{DATE}.tar.zst"));
    let compressed = zstd::bulk::compress(&tar, 3).unwrap();
    assert_eq!(zstd_frames(&compressed), [(0, true)], "one frame");
    fs::write(&bad, compressed).unwrap();
    fs::copy(manifest_sidecar(&a), manifest_sidecar(&bad)).unwrap();

    let r = t.path().join("r");
    let v = restore_json(&bad, &r, &[], 1);
    assert_eq!(v["manifest"], "sidecar");
    assert_eq!(
        archive_support::note_paths(&v, "corrupt"),
        ["m/victim.bin"],
        "{v:#}"
    );
    for key in ["refused", "unverified", "missing", "errors"] {
        assert_eq!(v[key].as_array().unwrap().len(), 0, "{key}: {v:#}");
    }
    assert!(
        fs::symlink_metadata(r.join("m/victim.bin")).is_err(),
        "corrupt member was put under its name"
    );
    assert_eq!(temp_leftovers(&r), Vec::<String>::new());
    assert_eq!(fs::read(r.join("a.txt")).unwrap(), b"first\n");
    assert_eq!(fs::read(r.join("m/zz.txt")).unwrap(), b"after the victim\n");
    assert_eq!(fs::read(r.join("z.txt")).unwrap(), b"last\n");
    assert_eq!(v["files"].as_u64(), Some(3), "{v:#}");

    // Asked for by name, the corrupt member is still refused a place.
    let r2 = t.path().join("r2");
    let v = restore_json(&bad, &r2, &["m/victim.bin"], 1);
    assert_eq!(
        archive_support::note_paths(&v, "corrupt"),
        ["m/victim.bin"],
        "{v:#}"
    );
    assert!(fs::symlink_metadata(r2.join("m/victim.bin")).is_err());
    assert_eq!(temp_leftovers(&r2), Vec::<String>::new());
}

/// Offset of the header block naming `name` (a short name) in a tar stream.
fn header_offset(tar: &[u8], name: &[u8]) -> usize {
    (0..tar.len() / 512)
        .map(|i| i * 512)
        .find(|&o| tar[o..o + name.len()] == *name && tar[o + name.len()] == 0)
        .unwrap_or_else(|| panic!("no header for {}", common::show(name)))
}

#[test]
fn missing_members_and_truncation_are_reported() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    write(&src, "a.txt", b"first\n");
    write(&src, "m/gone.txt", b"will be cut out\n");
    write(&src, "z.txt", b"last\n");
    let a = make_archive(&root, "tree", &t.path().join("out"));
    let tar = zstd::stream::decode_all(&fs::read(&a).unwrap()[..]).unwrap();

    // Cut m/gone.txt (header + one data block) out of the stream.
    let at = header_offset(&tar, b"m/gone.txt");
    let mut cut = tar.clone();
    cut.drain(at..at + 1024);
    let d = t.path().join("d");
    fs::create_dir(&d).unwrap();
    let holed = d.join("holed.tar.zst");
    fs::write(&holed, zstd::bulk::compress(&cut, 3).unwrap()).unwrap();
    fs::copy(manifest_sidecar(&a), manifest_sidecar(&holed)).unwrap();
    let r = t.path().join("r");
    let v = restore_json(&holed, &r, &[], 1);
    assert_eq!(strings(&v, "missing"), ["m/gone.txt"], "{v:#}");
    for key in ["refused", "corrupt", "unverified", "errors"] {
        assert_eq!(v[key].as_array().unwrap().len(), 0, "{key}: {v:#}");
    }
    assert_eq!(fs::read(r.join("z.txt")).unwrap(), b"last\n");
    assert!(!r.join("m/gone.txt").exists());

    // Truncated in the middle of z.txt's data: an error, z.txt missing and
    // not left behind half-written.
    let at = header_offset(&tar, b"z.txt");
    let trunc = d.join("trunc.tar.zst");
    fs::write(&trunc, zstd::bulk::compress(&tar[..at + 514], 3).unwrap()).unwrap();
    fs::copy(manifest_sidecar(&a), manifest_sidecar(&trunc)).unwrap();
    let r2 = t.path().join("r2");
    let v = restore_json(&trunc, &r2, &[], 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(
        v["errors"][0]["note"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{v:#}"
    );
    assert_eq!(strings(&v, "missing"), ["z.txt"], "{v:#}");
    assert!(!r2.join("z.txt").exists());
    assert_eq!(temp_leftovers(&r2), Vec::<String>::new());
    assert_eq!(
        fs::read(r2.join("m/gone.txt")).unwrap(),
        b"will be cut out\n"
    );

    // The same, asking for the truncated file and one before it by name.
    let r3 = t.path().join("r3");
    let v = restore_json(&trunc, &r3, &["a.txt", "z.txt"], 1);
    assert_eq!(
        archive_support::note_paths(&v, "errors"),
        ["z.txt"],
        "{v:#}"
    );
    assert_eq!(fs::read(r3.join("a.txt")).unwrap(), b"first\n");
    assert!(!r3.join("z.txt").exists());
    assert_eq!(temp_leftovers(&r3), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 4. One small file out of a > 1 GiB archive reads only a few MiB

#[test]
fn single_file_from_a_gib_archive_reads_only_its_frames() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("big");
    fs::create_dir_all(src.join("that")).unwrap();
    // 18 × 64 MiB of xorshift data; each file differs in the first 8 bytes of
    // every 64 KiB block, so no two files share a long run.
    let mut buf = prng_bytes(0x9e37_79b9_7f4a_7c15, 64 << 20);
    for i in 0..18u64 {
        for (k, block) in buf.chunks_mut(64 << 10).enumerate() {
            let tag = (i << 32 | k as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            block[..8].copy_from_slice(&tag.to_le_bytes());
        }
        let name = if i < 9 {
            format!("a-{i:02}.bin")
        } else {
            format!("z-{i:02}.bin")
        };
        fs::write(src.join(name), &buf).unwrap();
    }
    drop(buf);
    let small = prng_bytes(7, 4096);
    fs::write(src.join("that/file"), &small).unwrap();

    let a = make_archive(&root, "big", &t.path().join("out"));
    let size = fs::metadata(&a).unwrap().len();
    assert!(size > 1 << 30, "archive is only {size} bytes");
    // The source is no longer needed: keep disk use down.
    fs::remove_dir_all(&src).unwrap();

    let r = t.path().join("r");
    let v = restore_json(&a, &r, &["that/file"], 0);
    assert_clean(&v);
    assert_eq!(fs::read(r.join("that/file")).unwrap(), small);
    assert_eq!(v["files"].as_u64(), Some(1), "{v:#}");
    assert_eq!(v["bytes"].as_u64(), Some(4096), "{v:#}");
    assert_eq!(v["archive_size"].as_u64(), Some(size), "{v:#}");
    let read = v["archive_bytes_read"].as_u64().unwrap();
    assert!(read > 0, "{v:#}");
    assert!(
        read < 16 << 20,
        "restoring one 4 KiB file read {read} bytes of a {size}-byte archive"
    );
    assert_eq!(
        shown(walk_tree(&r).into_keys()),
        shown([b"that".to_vec(), b"that/file".to_vec()])
    );
}

// ---------------------------------------------------------------------------
// 5. PATH selection

#[test]
fn path_selects_a_directory_and_brings_hard_link_targets_along() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    small_tree(&src);
    let a = make_archive(&root, "tree", &t.path().join("out"));

    let r = t.path().join("r");
    let v = restore_json(&a, &r, &["sub/"], 0);
    assert_clean(&v);
    let want: Vec<&[u8]> = vec![
        b"a.txt",
        b"sub",
        b"sub/empty",
        b"sub/h",
        b"sub/in",
        b"sub/in/b.txt",
        b"sub/l",
    ];
    assert_eq!(
        shown(walk_tree(&r).into_keys()),
        shown(want.iter().map(|p| p.to_vec()))
    );
    assert_eq!(
        (
            v["files"].as_u64(),
            v["hardlinks"].as_u64(),
            v["symlinks"].as_u64(),
            v["dirs"].as_u64()
        ),
        (Some(2), Some(1), Some(1), Some(3)),
        "{v:#}"
    );
    let (ma, mh) = (
        fs::metadata(r.join("a.txt")).unwrap(),
        fs::metadata(r.join("sub/h")).unwrap(),
    );
    assert_eq!((ma.ino(), ma.nlink()), (mh.ino(), 2));
    assert_eq!(fs::read(r.join("sub/h")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(r.join("sub/in/b.txt")).unwrap(), b"bravo\n");
    assert_eq!(
        fs::read_link(r.join("sub/l")).unwrap(),
        Path::new("in/b.txt")
    );

    // Only the hard link: its first path comes along, nothing else.
    let r2 = t.path().join("r2");
    let v = restore_json(&a, &r2, &["sub/h"], 0);
    assert_clean(&v);
    assert_eq!(
        shown(walk_tree(&r2).into_keys()),
        shown([b"a.txt".to_vec(), b"sub".to_vec(), b"sub/h".to_vec()])
    );
    assert_eq!(
        fs::metadata(r2.join("a.txt")).unwrap().ino(),
        fs::metadata(r2.join("sub/h")).unwrap().ino()
    );

    // An unknown PATH could not run: exit 2 naming it, nothing created.
    let r4 = t.path().join("r4");
    let (c, out, err) = restore(&a, &r4, &["sub", "no/such/path"]);
    assert_eq!(
        c,
        2,
        "stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        err.contains("no/such/path"),
        "stderr does not name it:\n{err}"
    );
    assert!(
        !r4.exists(),
        "a restore that could not run created its destination"
    );
}

// ---------------------------------------------------------------------------
// 6. Non-empty destination

#[test]
fn non_empty_destination_needs_overwrite() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    small_tree(&src);
    let a = make_archive(&root, "tree", &t.path().join("out"));

    let r = t.path().join("r");
    write(&r, "a.txt", b"old alpha, longer than the new one\n");
    write(&r, "sub/in/b.txt", b"old bravo\n");
    write(&r, "sub/h", b"old h, a separate file\n");
    symlink("/etc/hostname", r.join("sub/l")).unwrap();
    write(&r, "keep.txt", b"not in the archive\n");
    common::set_mtime(&r.join("a.txt"), common::at(1_000_000_000, 0));
    let before = snapshot(&r);

    let (c, out, err) = restore(&a, &r, &[]);
    assert_eq!(
        c,
        2,
        "stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(snapshot(&r), before, "a refused restore changed DIR");
    let (c, _, err) = restore(&a, &r, &["sub"]);
    assert_eq!(c, 2, "{err}");
    assert_eq!(snapshot(&r), before, "a refused restore changed DIR");

    let v = restore_json(&a, &r, &["--overwrite"], 0);
    assert_clean(&v);
    assert_eq!(fs::read(r.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(r.join("sub/in/b.txt")).unwrap(), b"bravo\n");
    assert_eq!(fs::read(r.join("sub/h")).unwrap(), b"alpha\n");
    assert_eq!(
        fs::metadata(r.join("a.txt")).unwrap().ino(),
        fs::metadata(r.join("sub/h")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(r.join("sub/l")).unwrap(),
        Path::new("in/b.txt")
    );
    assert_eq!(
        fs::read(r.join("keep.txt")).unwrap(),
        b"not in the archive\n"
    );
    let src_snap = snapshot(&src);
    let got = snapshot(&r);
    for (rel, s) in &src_snap {
        let d = got
            .get(rel)
            .unwrap_or_else(|| panic!("{} not restored", common::show(rel)));
        assert_eq!(d.kind, s.kind, "{}", common::show(rel));
        assert!(d.bytes == s.bytes, "{}", common::show(rel));
        assert_eq!(d.mtime, s.mtime, "{}", common::show(rel));
    }
    assert!(temp_leftovers(&r).is_empty());
}

// ---------------------------------------------------------------------------
// 7. Embedded manifest

#[test]
fn without_the_sidecar_the_embedded_manifest_is_used() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    small_tree(&src);
    let a = make_archive(&root, "tree", &t.path().join("out"));
    fs::rename(manifest_sidecar(&a), t.path().join("moved.jsonl")).unwrap();

    let r = t.path().join("r");
    let v = restore_json(&a, &r, &[], 0);
    assert_clean(&v);
    assert_eq!(v["manifest"], "embedded", "{v:#}");
    assert_eq!(v["files"].as_u64(), Some(5), "{v:#}");
    let (s, d) = (snapshot(&src), snapshot(&r));
    assert_eq!(shown(d.keys().cloned()), shown(s.keys().cloned()));
    for (rel, e) in &s {
        assert!(d[rel].bytes == e.bytes, "{}", common::show(rel));
        assert_eq!(d[rel].mode, e.mode, "{}", common::show(rel));
    }

    // Selected paths are located through the embedded manifest too.
    let r2 = t.path().join("r2");
    let v = restore_json(&a, &r2, &["z.txt"], 0);
    assert_clean(&v);
    assert_eq!(v["manifest"], "embedded");
    assert_eq!(fs::read(r2.join("z.txt")).unwrap(), b"zulu\n");
    assert_eq!(
        shown(walk_tree(&r2).into_keys()),
        shown([b"z.txt".to_vec()])
    );
}

// ---------------------------------------------------------------------------
// 8. list

fn list_json(archive: &Path) -> Value {
    let (c, out, err) = common::datamig([
        OsStr::new("list"),
        archive.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(c, 0, "list exited {c}: {err}");
    let v = common::json_of(&out);
    assert_eq!(v["report"], "list", "{v:#}");
    assert_eq!(v["version"], 1);
    v
}

/// (path, type, size, sha256, target) of every manifest entry with a position.
type Row = (String, String, u64, Option<String>, Option<String>);

fn manifest_rows(m: &ManifestLines) -> Vec<Row> {
    m.entry_values()
        .iter()
        .filter(|e| e.get("frame_offset").is_some())
        .map(|e| {
            (
                String::from_utf8_lossy(&common::entry_path(e)).into_owned(),
                e["type"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
                e.get("sha256").map(|s| s.as_str().unwrap().to_string()),
                common::entry_target(e).map(|t| String::from_utf8_lossy(&t).into_owned()),
            )
        })
        .collect()
}

fn list_rows(v: &Value) -> Vec<Row> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["type"].as_str().unwrap().to_string(),
                m["size"].as_u64().unwrap(),
                m["sha256"].as_str().map(String::from),
                m["target"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn list_reads_the_sidecar_or_the_embedded_manifest() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    small_tree(&src);
    let a = make_archive(&root, "tree", &t.path().join("out"));
    let m = ManifestLines::read(&manifest_sidecar(&a));
    let want = manifest_rows(&m);
    assert_eq!(want.len(), m.entries.len(), "every entry was archived");
    assert!(
        want.iter()
            .any(|r| r.1 == "hardlink" && r.4.as_deref() == Some("a.txt"))
    );
    assert!(want.iter().any(|r| r.0 == "latin1-caf\u{fffd}.txt"));

    let v = list_json(&a);
    assert_eq!(v["manifest"], "sidecar");
    assert_eq!(list_rows(&v), want);
    assert_eq!(v["not_archived"].as_u64(), Some(0));
    // Plain text names every member.
    let (c, out, err) = common::datamig([OsStr::new("list"), a.as_os_str()]);
    assert_eq!(c, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    // A header row (issue 12 item 11), then one line per member.
    assert!(text.starts_with("TYPE "), "{text}");
    assert_eq!(text.lines().count(), want.len() + 1, "{text}");
    for row in &want {
        assert!(
            text.lines().any(|l| l.contains(&row.0)),
            "{} missing from:\n{text}",
            row.0
        );
    }

    // Without the sidecar: the same members, from inside the archive.
    fs::rename(manifest_sidecar(&a), t.path().join("moved.jsonl")).unwrap();
    let v = list_json(&a);
    assert_eq!(v["manifest"], "embedded");
    assert_eq!(list_rows(&v), want);

    // A truncated archive without a sidecar is listed from its tar headers
    // up to the cut (issue 11): exit 1, the cut named.
    let bytes = fs::read(&a).unwrap();
    let cut = t.path().join("cut.tar.zst");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (c, out, err) = common::datamig([OsStr::new("list"), cut.as_os_str()]);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(c, 1, "stdout:\n{text}\nstderr:\n{err}");
    assert!(
        text.contains("no manifest: listed from the tar headers")
            && text.contains(&format!("ends at byte {}", bytes.len() / 2))
            && text.contains("truncated"),
        "stdout does not explain:\n{text}"
    );
}

/// Kind, bytes, mode and mtime of each path (not the inode).
type Contents = BTreeMap<Vec<u8>, (FileKind, Vec<u8>, u32, i64)>;

/// A report and tree with the run-dependent fields set aside.
fn comparable(mut v: Value, to: &Path) -> (Value, Contents) {
    v["to"] = Value::Null;
    v["seconds"] = Value::Null;
    let tree = snapshot(to)
        .into_iter()
        .map(|(k, s)| (k, (s.kind, s.bytes, s.mode, s.mtime)))
        .collect();
    (v, tree)
}

/// Restores ARCHIVE with -j1 and -j4 and asserts the same report and tree;
/// returns the report.
fn same_with_writer_threads(t: &Path, archive: &Path, want: i32) -> Value {
    let (r1, r4) = (t.join("r1"), t.join("r4"));
    let one = comparable(restore_json(archive, &r1, &["-j", "1"], want), &r1);
    let four = comparable(restore_json(archive, &r4, &["-j", "4"], want), &r4);
    assert_eq!(one.0, four.0, "-j1 and -j4 reports differ");
    assert_eq!(one.1, four.1, "-j1 and -j4 trees differ");
    assert!(temp_leftovers(&r4).is_empty(), "{:?}", temp_leftovers(&r4));
    fs::remove_dir_all(&r1).unwrap();
    fs::remove_dir_all(&r4).unwrap();
    one.0
}

/// Writer threads change how fast a restore is, never what it reports or
/// leaves: a corrupt small file among hundreds (datamig archive); in a
/// foreign one, names given twice, a file that a later member treats as its
/// directory, a file over a directory.
#[test]
fn restore_with_writer_threads_reports_and_writes_what_one_thread_does() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    let victim = prng_bytes(7, 60_000);
    for i in 0..600 {
        let body = prng_bytes(i, (i as usize * 37) % 5000);
        write(&src, &format!("d{}/f{i:04}.bin", i % 9), &body);
        if i == 300 {
            write(&src, "d3/victim.bin", &victim);
        }
    }
    let a = make_archive(&root, "tree", &t.path().join("out"));
    let mut tar = zstd::stream::decode_all(&fs::read(&a).unwrap()[..]).unwrap();
    let at = tar
        .windows(64)
        .position(|w| w == &victim[..64])
        .expect("victim data in the tar stream");
    tar[at + 999] ^= 0x55;
    let d2 = t.path().join("bad");
    fs::create_dir(&d2).unwrap();
    let bad = d2.join(format!("bad-{DATE}.tar.zst"));
    fs::write(&bad, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();
    fs::copy(manifest_sidecar(&a), manifest_sidecar(&bad)).unwrap();
    let v = same_with_writer_threads(t.path(), &bad, 1);
    assert_eq!(
        archive_support::note_paths(&v, "corrupt"),
        ["d3/victim.bin"],
        "{v:#}"
    );
    assert_eq!(v["files"].as_u64(), Some(600), "{v:#}");

    let mut tar = Vec::new();
    for i in 0..300u64 {
        let body = prng_bytes(i, (i as usize * 53) % 3000);
        member(
            &mut tar,
            format!("f/{i:03}").as_bytes(),
            MemberKind::File,
            None,
            &body,
        );
        match i {
            100 => {
                member(&mut tar, b"x/dup.txt", MemberKind::File, None, b"first\n");
                member(&mut tar, b"x/dup.txt", MemberKind::File, None, b"second\n");
            }
            150 => {
                member(&mut tar, b"x/plain", MemberKind::File, None, b"a file\n");
                member(
                    &mut tar,
                    b"x/plain/under",
                    MemberKind::File,
                    None,
                    b"below it\n",
                );
            }
            200 => {
                member(&mut tar, b"x/d", MemberKind::Dir, None, b"");
                member(&mut tar, b"x/d", MemberKind::File, None, b"over a dir\n");
            }
            _ => {}
        }
    }
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let foreign = d2.join("foreign.tar.zst");
    fs::write(&foreign, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();
    let v = same_with_writer_threads(t.path(), &foreign, 1);
    assert_eq!(
        archive_support::note_paths(&v, "notes"),
        ["x/dup.txt"],
        "{v:#}"
    );
    let refused = archive_support::note_paths(&v, "refused");
    let errors = archive_support::note_paths(&v, "errors");
    assert!(
        refused.contains(&"x/plain/under".to_string())
            || errors.contains(&"x/plain/under".to_string()),
        "{v:#}"
    );
    assert!(refused.contains(&"x/d".to_string()), "{v:#}");
}
