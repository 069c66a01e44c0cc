//! `datamig archive`: the .tar.zst it writes is read back with independent
//! tools (GNU tar, bsdtar, zstd, sha256sum, libzstd) and checked against the
//! source tree; refusals, interruptions and flagged captures are exercised.

mod archive_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use archive_support::*;
use common::{FileKind, ManifestLines, awk, rel_join, small_tree, walk_tree, write};
use serde_json::Value;

const DATE: &str = "20251225";

/// Snapshot of a tree: every entry with kind, and file bytes / link targets.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, (FileKind, Vec<u8>)> {
    walk_tree(root)
        .into_iter()
        .map(|(rel, k)| {
            let p = rel_join(root, &rel);
            let v = match k {
                FileKind::File => fs::read(&p).unwrap(),
                FileKind::Symlink => fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                _ => vec![],
            };
            (rel, (k, v))
        })
        .collect()
}

fn archive_path(dest: &Path, prefix: &str) -> PathBuf {
    dest.join(format!("{prefix}-{DATE}.tar.zst"))
}

fn sidecars(archive: &Path) -> [PathBuf; 3] {
    let s = archive.as_os_str().to_string_lossy();
    [
        archive.to_path_buf(),
        PathBuf::from(format!("{s}.manifest.jsonl")),
        PathBuf::from(format!("{s}.sha256")),
    ]
}

fn date_dest(dest: &Path) -> Vec<&OsStr> {
    vec![
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(DATE),
    ]
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// 1. Round trip through GNU tar, sha256sum and bsdtar.

#[test]
fn awkward_tree_round_trips_through_gnu_tar_sha256sum_and_bsdtar() {
    require_gnu_tar();
    let sha256sum = require_tool("sha256sum");
    let bsdtar = require_tool("bsdtar");

    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("production");
    fs::create_dir_all(&src).unwrap();
    common::awkward_tree(&src, false);
    // Distinct modes and one foreign owner.
    common::chmod(&src.join(awk::SPACES), 0o600);
    common::chmod(&src.join("realdir/one.txt"), 0o755);
    common::chmod(&src.join("realdir/two.txt"), 0o640);
    common::chmod(&src.join(awk::REAL_DIR), 0o750);
    common::chmod(&src.join(awk::EMPTY_DIR), 0o700);
    let root_user = is_root();
    if root_user {
        std::os::unix::fs::chown(src.join(awk::EMPTY_FILE), Some(4321), Some(8765)).unwrap();
    } else {
        eprintln!(
            "not running as root: owners are not compared (GNU tar only restores them as root)"
        );
    }
    // Fixed mtimes: files first, then directories (deepest first).
    let tree = walk_tree(&src);
    for (i, (rel, k)) in tree.iter().enumerate() {
        if *k == FileKind::File {
            common::set_mtime(
                &rel_join(&src, rel),
                common::at(1_500_000_000 + i as u64 * 1000, 123_456_789),
            );
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

    let dest = t.path().join("out");
    let o = archive(
        &root,
        &[&[OsStr::new("production")][..], &date_dest(&dest)].concat(),
    );
    assert_eq!(common::code(&o), 0, "stderr:\n{}", stderr_of(&o));
    let a = archive_path(&dest, "v1-production");
    assert!(a.is_file(), "no archive at {}", a.display());

    // Extract with GNU tar (as root it restores owners and modes).
    let r = t.path().join("extracted");
    gnu_extract(&a, &r);

    let got = walk_tree(&r);
    let mut expected: BTreeSet<Vec<u8>> = tree.keys().cloned().collect();
    for extra in [
        &b".datamig"[..],
        b".datamig/MANIFEST.jsonl",
        b".datamig/SHA256SUMS",
    ] {
        expected.insert(extra.to_vec());
    }
    let got_paths: BTreeSet<Vec<u8>> = got.keys().cloned().collect();
    assert_eq!(
        got_paths
            .iter()
            .map(|p| common::show(p))
            .collect::<Vec<_>>(),
        expected.iter().map(|p| common::show(p)).collect::<Vec<_>>(),
        "extracted tree does not have exactly the source's entries plus .datamig/"
    );
    for (rel, k) in &tree {
        let s = rel_join(&src, rel);
        let d = rel_join(&r, rel);
        let (sm, dm) = (
            fs::symlink_metadata(&s).unwrap(),
            fs::symlink_metadata(&d).unwrap(),
        );
        let name = common::show(rel);
        assert_eq!(got[rel], *k, "{name}: kind");
        match k {
            FileKind::File => {
                assert!(
                    fs::read(&s).unwrap() == fs::read(&d).unwrap(),
                    "{name}: content differs"
                );
                assert_eq!(sm.mode() & 0o7777, dm.mode() & 0o7777, "{name}: mode");
                assert_eq!(sm.mtime(), dm.mtime(), "{name}: mtime");
                if root_user {
                    assert_eq!((sm.uid(), sm.gid()), (dm.uid(), dm.gid()), "{name}: owner");
                }
            }
            FileKind::Dir => {
                assert_eq!(sm.mode() & 0o7777, dm.mode() & 0o7777, "{name}: mode");
                assert_eq!(sm.mtime(), dm.mtime(), "{name}: mtime");
            }
            FileKind::Symlink => {
                assert_eq!(
                    fs::read_link(&s).unwrap(),
                    fs::read_link(&d).unwrap(),
                    "{name}: link target"
                );
            }
            _ => panic!("unexpected kind {k:?} for {name}"),
        }
    }
    // Spot checks on what the awkward tree promises.
    assert_eq!(mode_of(&r.join(awk::SPACES)), 0o600);
    assert_eq!(mode_of(&r.join("realdir/one.txt")), 0o755);
    assert_eq!(mode_of(&r.join("realdir/two.txt")), 0o640);
    if root_user {
        let m = fs::metadata(r.join(awk::EMPTY_FILE)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (4321, 8765),
            "owner of {}",
            awk::EMPTY_FILE
        );
    }
    assert_eq!(fs::metadata(r.join(awk::EMPTY_FILE)).unwrap().len(), 0);
    assert!(
        fs::read_dir(r.join(awk::EMPTY_DIR))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(
        fs::read_link(r.join(awk::ETC_LINK)).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_link(r.join(awk::DANGLING)).unwrap(),
        Path::new(awk::DANGLING_TARGET)
    );
    assert!(
        fs::read_link(r.join(awk::ETC_LINK)).is_ok(),
        "etc-link must stay a symlink"
    );
    assert_eq!(
        fs::read(rel_join(&r, &common::awk_long_path())).unwrap(),
        b"far down\n"
    );
    assert!(common::awk_long_path().len() > 300);
    assert_eq!(
        fs::read(rel_join(&r, awk::NON_UTF8)).unwrap(),
        b"latin-1 name\n"
    );
    assert_eq!(
        fs::read(r.join(awk::NEWLINE)).unwrap(),
        b"a newline in the name\n"
    );
    let (ha, hb) = (
        fs::metadata(r.join(awk::HARD_A)).unwrap(),
        fs::metadata(r.join(awk::HARD_B)).unwrap(),
    );
    assert_eq!(
        ha.ino(),
        hb.ino(),
        "hard-link pair is not one inode after extraction"
    );
    assert_eq!(ha.nlink(), 2);
    let sp = fs::metadata(r.join(awk::SPARSE)).unwrap();
    assert_eq!(sp.len(), awk::SPARSE_LEN);
    let bytes = fs::read(r.join(awk::SPARSE)).unwrap();
    assert!(
        bytes[..bytes.len() - 4].iter().all(|&b| b == 0),
        "sparse file is not zeros"
    );
    assert_eq!(&bytes[bytes.len() - 4..], b"tail");
    assert!(
        sp.blocks() * 512 < 1 << 20,
        "extracted sparse file occupies {} bytes on disk; it was not stored sparse",
        sp.blocks() * 512
    );

    // The embedded manifest is the sidecar manifest.
    let [_, manifest, sha_file] = sidecars(&a);
    assert_eq!(
        fs::read(r.join(".datamig/MANIFEST.jsonl")).unwrap(),
        fs::read(&manifest).unwrap()
    );

    // sha256sum -c on the embedded sums (in the extracted tree) and on the sidecar.
    let o = sys_ok(
        &sha256sum,
        &[os("--strict"), os("-c"), os(".datamig/SHA256SUMS")],
        Some(&r),
    );
    let checked = String::from_utf8_lossy(&o.stdout).matches(": OK").count();
    let files = tree.values().filter(|k| **k == FileKind::File).count();
    assert_eq!(
        checked, files,
        "sha256sum -c checked {checked} files, the tree has {files}"
    );
    let sha_name = sha_file.file_name().unwrap().to_os_string();
    sys_ok(&sha256sum, &[os("-c"), sha_name.as_os_str()], Some(&dest));

    // bsdtar (libarchive) lists it too.
    let o = sys_ok(&bsdtar, &[os("-tf"), a.as_os_str()], None);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.lines().any(|l| l == awk::HARD_B),
        "bsdtar listing lacks {}:\n{listing}",
        awk::HARD_B
    );
    let long = String::from_utf8(common::awk_long_path()).unwrap();
    assert!(
        listing.lines().any(|l| l == long),
        "bsdtar listing lacks the long path:\n{listing}"
    );
}

// ---------------------------------------------------------------------------
// 2. Frames: several independent zstd frames, and every recorded member
//    position decodes to that member.

#[test]
fn members_decode_from_their_recorded_frame_positions() {
    let zstd_bin = require_tool("zstd");
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("production");
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, name) in ["a-big.bin", "c-big.bin", "e-big.bin"].iter().enumerate() {
        contents.insert(
            name.to_string(),
            prng_bytes(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1), 6 << 20),
        );
    }
    for (i, name) in [
        "b-small.txt",
        "d-small.txt",
        "f-small.txt",
        "sub/g-small.txt",
    ]
    .iter()
    .enumerate()
    {
        contents.insert(
            name.to_string(),
            format!("small file {i}\n").repeat(i * 37 + 1).into_bytes(),
        );
    }
    for (k, v) in &contents {
        write(&src, k, v);
    }
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[&[os("production")][..], &date_dest(&dest)].concat(),
        0,
    );
    let a = archive_path(&dest, "v1-production");
    let bytes = fs::read(&a).unwrap();

    // Frames, walked independently with libzstd.
    let frames = zstd_frames(&bytes);
    let data_starts: BTreeSet<u64> = frames.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert!(
        data_starts.len() >= 5,
        "18 MiB of tar data should span at least 5 frames, found {}",
        data_starts.len()
    );
    // Archive layout 2: the index frame, then the standard seek table last.
    assert_eq!(
        frames.iter().filter(|f| !f.1).count(),
        2,
        "exactly two skippable frames (index, seek table) expected"
    );
    assert!(
        frames.iter().rev().take(2).all(|f| !f.1),
        "the skippable index and seek-table frames must be last"
    );
    assert_eq!(
        &bytes[bytes.len() - 4..],
        &0x8F92_EAB1u32.to_le_bytes(),
        "the file must end with the seekable magic"
    );
    assert_eq!(
        rep["frames"].as_u64(),
        Some(data_starts.len() as u64),
        "report frames"
    );
    assert_eq!(rep["compressed_bytes"].as_u64(), Some(bytes.len() as u64));

    // zstd's own listing agrees.
    let o = sys_ok(&zstd_bin, &[os("-lv"), a.as_os_str()], None);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr_of(&o);
    let n: u64 = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("# Zstandard Frames:"))
        .unwrap_or_else(|| panic!("no frame count in `zstd -lv` output:\n{listing}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        n,
        data_starts.len() as u64,
        "zstd -lv frame count:\n{listing}"
    );

    // Every member's recorded position decodes to its header and data.
    let m = ManifestLines::read(&sidecars(&a)[1]);
    let by_path = m.by_path();
    let mut member_frames = BTreeSet::new();
    let mut small_mid_frame = false;
    for (name, data) in &contents {
        let e = by_path
            .get(name.as_bytes())
            .unwrap_or_else(|| panic!("{name} is not in the manifest"));
        let fo = e["frame_offset"].as_u64().expect("frame_offset");
        let oif = e["offset_in_frame"].as_u64().expect("offset_in_frame");
        assert!(
            data_starts.contains(&fo),
            "{name}: frame_offset {fo} is not the start of a zstd frame ({data_starts:?})"
        );
        assert!(
            oif.is_multiple_of(512) && oif < 4 << 20,
            "{name}: offset_in_frame {oif}"
        );
        member_frames.insert(fo);
        small_mid_frame |= fo > 0 && oif > 0 && data.len() < 4096;
        let (h, got) = read_member_at(&bytes, fo, oif, data.len() as u64);
        assert_eq!(
            common::show(&h.name),
            common::show(name.as_bytes()),
            "header name at the recorded position"
        );
        assert_eq!(h.typeflag, b'0', "{name}: type");
        assert_eq!(h.size, data.len() as u64, "{name}: size in header");
        assert!(
            got == *data,
            "{name}: data after the header differs from the file"
        );
    }
    // The directory member too.
    let e = &by_path[&b"sub"[..]];
    let (h, _) = read_member_at(
        &bytes,
        e["frame_offset"].as_u64().unwrap(),
        e["offset_in_frame"].as_u64().unwrap(),
        0,
    );
    assert_eq!(h.name, b"sub/");
    assert_eq!(h.typeflag, b'5');
    assert!(
        member_frames.len() > 1,
        "all members in one frame: {member_frames:?}"
    );
    assert!(
        small_mid_frame,
        "no small member sits mid-frame in a later frame; the test lost its point"
    );
}

// ---------------------------------------------------------------------------
// 3. Never overwrite.

#[test]
fn second_run_with_the_same_date_refuses_and_leaves_the_first_alone() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("production"));
    let dest = t.path().join("out");
    let args = [&[os("production")][..], &date_dest(&dest)].concat();
    let o = archive(&root, &args);
    assert_eq!(common::code(&o), 0, "first run: {}", stderr_of(&o));
    let files = sidecars(&archive_path(&dest, "v1-production"));
    let state = |fs_: &[PathBuf; 3]| -> Vec<(Vec<u8>, SystemTime, u64)> {
        fs_.iter()
            .map(|p| {
                let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (fs::read(p).unwrap(), m.modified().unwrap(), m.ino())
            })
            .collect()
    };
    let before = state(&files);
    let names_before = dir_names(&dest);
    assert_eq!(names_before.len(), 3, "{names_before:?}");
    std::thread::sleep(Duration::from_millis(20));

    let o = archive(&root, &args);
    assert_eq!(
        common::code(&o),
        2,
        "second run must fail; stderr:\n{}",
        stderr_of(&o)
    );
    assert!(
        stderr_of(&o).contains("already exists"),
        "stderr:\n{}",
        stderr_of(&o)
    );
    assert!(
        state(&files) == before,
        "the first archive or a sidecar changed"
    );
    assert_eq!(
        dir_names(&dest),
        names_before,
        "the second run left something behind"
    );

    // Any one of the three names alone is enough to refuse, and it is kept as is.
    for which in 0..3 {
        let dest2 = t.path().join(format!("lone{which}"));
        fs::create_dir_all(&dest2).unwrap();
        let lone = sidecars(&archive_path(&dest2, "v1-production"))[which].clone();
        fs::write(&lone, b"keep me\n").unwrap();
        let o = archive(
            &root,
            &[&[os("production")][..], &date_dest(&dest2)].concat(),
        );
        assert_eq!(
            common::code(&o),
            2,
            "{}: stderr:\n{}",
            lone.display(),
            stderr_of(&o)
        );
        assert!(
            stderr_of(&o).contains("already exists"),
            "stderr:\n{}",
            stderr_of(&o)
        );
        assert_eq!(fs::read(&lone).unwrap(), b"keep me\n");
        assert_eq!(dir_names(&dest2).len(), 1, "{:?}", dir_names(&dest2));
    }
}

// ---------------------------------------------------------------------------
// 4. SIGTERM / SIGINT while the archive is being written.

/// `datamig --root ROOT archive big --dest DEST --date DATE -q -j 2`
fn archive_big_args<'a>(root: &'a Path, dest: &'a Path) -> [&'a OsStr; 11] {
    [
        os("--root"),
        root.as_os_str(),
        os("archive"),
        os("big"),
        os("--dest"),
        dest.as_os_str(),
        os("--date"),
        os(DATE),
        os("-q"),
        os("-j"),
        os("2"),
    ]
}

/// Start an archive of ROOT/big, wait until its temporary archive has data,
/// send `sig`, and return (exit code, stderr).
fn interrupt_mid_write(root: &Path, dest: &Path, sig: i32) -> (Option<i32>, String) {
    let mut c = common::cmd(archive_big_args(root, dest));
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start datamig");
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "datamig finished ({st}) before a temporary archive with data appeared; \
                 the tree is too small to interrupt it"
            );
        }
        let temp_with_data = fs::read_dir(dest).ok().is_some_and(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .as_bytes()
                    .windows(13)
                    .any(|w| w == b".datamig-tmp-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        });
        if temp_with_data {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no temporary archive appeared in {} within 60 s",
                dest.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: signalling our own child by pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let waited = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if waited.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("datamig did not exit within 30 s of signal {sig}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn sigterm_and_sigint_mid_write_leave_nothing_in_dest() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let big = root.join("big");
    // 16 MiB of real data (written to the archive first), then an 8 GiB
    // all-hole file whose zeros take seconds to hash: the run is reliably
    // still writing when the signal arrives, without needing GBs of disk.
    write(&big, "a-random.bin", &prng_bytes(42, 16 << 20));
    File::create(big.join("b-hole.bin"))
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let dest = t.path().join(format!("out-{name}"));
        let (code, err) = interrupt_mid_write(&root, &dest, sig);
        assert_eq!(code, Some(128 + sig), "{name}: exit code; stderr:\n{err}");
        assert!(err.contains("interrupted"), "{name}: stderr:\n{err}");
        assert!(
            !archive_path(&dest, "big").exists(),
            "{name}: the final archive exists"
        );
        assert_eq!(
            dir_names(&dest),
            Vec::<String>::new(),
            "{name}: files left in dest after the signal"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. --remove-source

#[test]
fn remove_source_deletes_a_clean_verified_tree() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    small_tree(&src);
    let before = snapshot(&src);
    let tree = walk_tree(&src);
    let non_dirs = tree.values().filter(|k| **k != FileKind::Dir).count() as u64;
    let dirs = tree.values().filter(|k| **k == FileKind::Dir).count() as u64 + 1;
    let mut inodes = BTreeMap::new();
    for (rel, k) in &tree {
        if *k == FileKind::File {
            let m = fs::metadata(rel_join(&src, rel)).unwrap();
            inodes.insert(m.ino(), m.len());
        }
    }
    let bytes: u64 = inodes.values().sum();
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[
            &[os("olddir"), os("--remove-source")][..],
            &date_dest(&dest),
        ]
        .concat(),
        0,
    );
    assert!(!src.exists(), "the archived directory is still there");
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    let removed = &rep["removed"];
    assert_eq!(removed["files"].as_u64(), Some(non_dirs), "{rep:#}");
    assert_eq!(removed["dirs"].as_u64(), Some(dirs), "{rep:#}");
    assert_eq!(removed["bytes"].as_u64(), Some(bytes), "{rep:#}");
    assert_eq!(
        removed["kept"].as_array().map(|v| v.len()),
        Some(0),
        "{rep:#}"
    );

    // The archive still holds everything.
    let a = archive_path(&dest, "olddir");
    let listed: BTreeSet<String> = gnu_list(&a)
        .into_iter()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    let mut want: BTreeSet<String> = before
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    want.insert(".datamig/MANIFEST.jsonl".into());
    want.insert(".datamig/SHA256SUMS".into());
    assert_eq!(listed, want);
    let r = t.path().join("restored");
    gnu_extract(&a, &r);
    fs::remove_dir_all(r.join(".datamig")).unwrap();
    assert!(
        snapshot(&r) == before,
        "extracted tree differs from the removed source"
    );
}

/// Issue 11: a FIFO is archived (type `6`), so `--remove-source` may take it
/// like any archived entry; a socket is skipped (as GNU tar does), so it and
/// the directory holding it stay, and the run says so (exit 1: the source was
/// not wholly removed).
#[test]
fn issue_11_remove_source_takes_an_archived_fifo_and_leaves_a_skipped_socket() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    small_tree(&src);
    common::mkfifo(&src.join("fifo"));
    fs::create_dir(src.join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(src.join("run/sock")).unwrap());
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[
            &[os("olddir"), os("--remove-source")][..],
            &date_dest(&dest),
        ]
        .concat(),
        1,
    );
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    assert!(note_paths(&rep, "flagged").is_empty(), "{rep:#}");
    assert_eq!(
        note_paths(&rep, "notes"),
        vec!["run/sock".to_string()],
        "{rep:#}"
    );
    assert!(!src.join("fifo").exists(), "the archived FIFO was kept");
    assert!(!src.join("a.txt").exists(), "an archived file was kept");
    let sock = fs::symlink_metadata(src.join("run/sock")).expect("the socket stays");
    assert!(sock.file_type().is_socket());
    let a = archive_path(&dest, "olddir");
    let listed = gnu_list(&a);
    assert!(listed.iter().any(|l| l == "fifo"), "{listed:?}");
    assert!(!listed.iter().any(|l| l == "run/sock"), "{listed:?}");
    let m = ManifestLines::read(&sidecars(&a)[1]).by_path();
    let e = &m[&b"fifo"[..]];
    assert_eq!(e["type"], "fifo", "{e}");
    assert!(e.get("frame_offset").is_some(), "{e}");
    assert!(e.get("problem").is_none(), "{e}");
}

#[test]
fn remove_source_refuses_without_verification() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    small_tree(&src);
    let before = snapshot(&src);
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[
            &[os("olddir"), os("--remove-source"), os("--no-verify")][..],
            &date_dest(&dest),
        ]
        .concat(),
        1,
    );
    assert_eq!(rep["verify"], "skipped", "{rep:#}");
    let why = rep["remove_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{rep:#}"));
    assert!(why.contains("verif"), "{why}");
    assert!(rep["removed"].is_null(), "{rep:#}");
    assert!(
        snapshot(&src) == before,
        "the source changed although removal was refused"
    );
}

#[test]
fn remove_source_refuses_live_v2_data_without_allow_live() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/X/preferences.json", b"{}");
    write(&root, "projects/P/project.json", b"{\"id\":\"P\"}");
    write(&root, "wisdom.md", b"be kind\n");
    let before = snapshot(&root);
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[&[os("v2"), os("--remove-source")][..], &date_dest(&dest)].concat(),
        1,
    );
    let why = rep["remove_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{rep:#}"));
    assert!(why.contains("--allow-live"), "{why}");
    assert!(rep["removed"].is_null(), "{rep:#}");
    assert_eq!(rep["verify"], "passed");
    assert!(rep["overrides"].as_array().unwrap().is_empty(), "{rep:#}");
    let live = rep["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["check"] == "live")
        .unwrap_or_else(|| panic!("no live gate: {rep:#}"));
    assert_eq!(live["outcome"], "failed", "{rep:#}");
    assert!(live.get("overridden_by").is_none(), "{rep:#}");
    assert!(
        snapshot(&root) == before,
        "live data changed although removal was refused"
    );
    assert!(archive_path(&dest, "v2-data").is_file());
}

/// Issue 12 item 6: `--allow-live` removes live data, and the run says so
/// (JSON `overrides`, a loud text line) and is not clean.
#[test]
fn item_6_allow_live_removes_live_data_and_is_recorded_not_clean() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/X/preferences.json", b"{}");
    write(&root, "wisdom.md", b"be kind\n");
    write(&root, "notes/keep.txt", b"not part of the v2 target\n");
    let dest = t.path().join("out");
    let rep = archive_json(
        &root,
        &[
            &[os("v2"), os("--remove-source"), os("--allow-live")][..],
            &date_dest(&dest),
        ]
        .concat(),
        1,
    );
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    assert_eq!(rep["removed"]["files"], 2, "{rep:#}");
    assert_eq!(
        rep["overrides"],
        serde_json::json!([{"flag": "--allow-live", "check": "live", "outcome": "failed", "detail": "v2 is live V2 data"}]),
        "{rep:#}"
    );
    assert!(!root.join("instances").exists() && !root.join("wisdom.md").exists());
    assert!(root.join("notes/keep.txt").is_file(), "outside the target");

    // The text report says it where nobody can miss it.
    write(&root, "wisdom.md", b"again\n");
    let o = archive(
        &root,
        &[
            &[os("v2"), os("--remove-source"), os("--allow-live")][..],
            &[os("--dest"), dest.as_os_str(), os("--date"), os("20251226")][..],
        ]
        .concat(),
    );
    assert_eq!(common::code(&o), 1, "{}", stderr_of(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "live check FAILED: v2 is live V2 data; removed anyway because of --allow-live"
        ),
        "{text}"
    );
    assert!(!text.contains("Result: clean"), "{text}");
}

/// Issue 12 item 6: `--force` no longer silently means both overrides; it is
/// refused (exit 2) naming the two flags, before anything is written.
#[test]
fn item_6_force_is_refused_naming_the_two_new_flags() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("production"));
    let before = snapshot(&root);
    let dest = t.path().join("out");
    for json in [false, true] {
        let mut args = vec![os("production"), os("--remove-source"), os("--force")];
        args.extend(date_dest(&dest));
        if json {
            args.push(os("--json"));
        }
        let o = archive(&root, &args);
        assert_eq!(common::code(&o), 2, "{}", stderr_of(&o));
        let err = stderr_of(&o);
        assert!(
            err.contains("--allow-live") && err.contains("--skip-migration-check"),
            "{err}"
        );
        if json {
            let v = common::json_of(&o.stdout);
            assert_eq!(v["exit"], 2, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--allow-live")
            );
        }
    }
    assert!(!dest.exists(), "a refused run wrote {}", dest.display());
    assert!(snapshot(&root) == before);
    // An override without --remove-source would be silently ignored: refused.
    let o = archive(
        &root,
        &[
            &[os("production"), os("--allow-live")][..],
            &date_dest(&dest),
        ]
        .concat(),
    );
    assert_eq!(common::code(&o), 2, "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("--remove-source"));
}

// ---------------------------------------------------------------------------
// 6. Permissions of what is written.

#[test]
fn archive_and_sidecars_are_0600_and_a_new_dest_is_0700() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("production"));
    let dest = t.path().join("out/new/sub");
    assert!(!dest.exists());
    let o = archive(
        &root,
        &[&[os("production")][..], &date_dest(&dest)].concat(),
    );
    assert_eq!(common::code(&o), 0, "stderr:\n{}", stderr_of(&o));
    assert_eq!(mode_of(&dest), 0o700, "mode of the created dest dir");
    for p in sidecars(&archive_path(&dest, "v1-production")) {
        assert_eq!(mode_of(&p), 0o600, "mode of {}", p.display());
    }
}

// ---------------------------------------------------------------------------
// 7. A destination inside the archived tree.

#[test]
fn destination_inside_the_tree_is_not_archived_into_itself() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("production");
    small_tree(&src);
    let entries_before = walk_tree(&src).len() as u64;
    let dest = src.join("archive-out");
    let rep = archive_json(
        &root,
        &[&[os("production")][..], &date_dest(&dest)].concat(),
        0,
    );
    let a = archive_path(&dest, "v1-production");
    let listed = gnu_list(&a);
    assert!(
        !listed.iter().any(|l| l.starts_with("archive-out")),
        "the archive contains its own destination: {listed:?}"
    );
    assert_eq!(listed.len() as u64, entries_before + 2, "{listed:?}");
    assert_eq!(rep["members"].as_u64(), Some(entries_before), "{rep:#}");
    let m = ManifestLines::read(&sidecars(&a)[1]);
    assert!(
        !m.by_path().keys().any(|p| p.starts_with(b"archive-out")),
        "the manifest lists the destination"
    );
    assert_eq!(dir_names(&dest).len(), 3, "{:?}", dir_names(&dest));
}

// ---------------------------------------------------------------------------
// 8. A file changing while it is archived is flagged.

#[test]
fn file_changing_during_the_archive_is_flagged() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("production");
    write(&src, "steady.txt", b"does not change\n");
    let big = src.join("big.bin");
    File::create(&big).unwrap().set_len(2 << 30).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let toucher = {
        let stop = Arc::clone(&stop);
        let f = File::options().write(true).open(&big).unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.set_modified(SystemTime::now()).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    let dest = t.path().join("out");
    let started = Instant::now();
    let rep = archive_json(
        &root,
        &[&[os("production")][..], &date_dest(&dest)].concat(),
        1,
    );
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let touches = toucher.join().unwrap();
    assert!(
        touches >= 2,
        "mtime was only changed {touches} times in {took:?}"
    );
    let flagged = note_paths(&rep, "flagged");
    assert_eq!(flagged, vec!["big.bin".to_string()], "{rep:#}");
    let note = rep["flagged"][0]["note"].as_str().unwrap();
    assert!(note.contains("changed"), "{note}");
    // Flagged, but archived: a complete, verified archive whose manifest
    // carries the problem on the member.
    assert_eq!(rep["verify"], "passed", "{rep:#}");
    let a = archive_path(&dest, "v1-production");
    let m = ManifestLines::read(&sidecars(&a)[1]).by_path();
    let e = &m[&b"big.bin"[..]];
    assert!(e["frame_offset"].is_u64(), "big.bin was not archived: {e}");
    assert!(
        e["problem"].as_str().is_some_and(|p| p.contains("changed")),
        "{e}"
    );
    assert!(m[&b"steady.txt"[..]].get("problem").is_none());
}

// ---------------------------------------------------------------------------
// 9. The JSON report.

#[test]
fn json_report_has_the_documented_keys_and_names_secrets() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/X/preferences.json", b"{}");
    write(
        &root,
        "instances/X/.claude/.credentials.json",
        b"{\"token\":\"FAKE\"}",
    );
    write(&root, "projects/P/project.json", b"{}");
    write(&root, "wisdom.md", b"hello\n");
    let dest = t.path().join("out");
    let rep = archive_json(&root, &[&[os("v2")][..], &date_dest(&dest)].concat(), 0);
    let a = archive_path(&dest, "v2-data");
    let [_, manifest, sha_file] = sidecars(&a);
    assert_eq!(rep["report"], "archive", "{rep:#}");
    assert_eq!(rep["version"], 1);
    assert_eq!(rep["target"], "v2");
    assert_eq!(rep["archive"].as_str(), Some(a.to_str().unwrap()));
    assert_eq!(rep["manifest"].as_str(), Some(manifest.to_str().unwrap()));
    assert_eq!(
        rep["sha256_file"].as_str(),
        Some(sha_file.to_str().unwrap())
    );
    assert!(a.is_file() && manifest.is_file() && sha_file.is_file());
    assert_eq!(rep["verify"], "passed");
    assert!(rep["flagged"].as_array().unwrap().is_empty(), "{rep:#}");
    assert!(rep["removed"].is_null() && rep["remove_refused"].is_null());
    assert_eq!(
        rep["archive_sha256"].as_str(),
        Some(common::sha256_hex(&fs::read(&a).unwrap()).as_str())
    );
    let secrets: Vec<&str> = rep["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        secrets,
        vec!["instances/X/.claude/.credentials.json"],
        "{rep:#}"
    );
    let absent: Vec<&str> = rep["absent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        absent.contains(&"roles") && !absent.contains(&"instances"),
        "{absent:?}"
    );
    // members: the manifest's entries that have an archive position.
    let m = ManifestLines::read(&manifest);
    let positioned = m
        .entry_values()
        .iter()
        .filter(|v| v.get("frame_offset").is_some_and(|x| !x.is_null()))
        .count() as u64;
    assert_eq!(rep["members"].as_u64(), Some(positioned), "{rep:#}");
    assert!(positioned >= 9, "{positioned}");
    let paths: BTreeSet<Vec<u8>> = m.by_path().keys().cloned().collect();
    assert!(paths.contains(&b"instances/X/.claude/.credentials.json"[..]));

    // No secrets: an empty list, not a missing key.
    let root2 = t.path().join("root2");
    small_tree(&root2.join("production"));
    let rep = archive_json(
        &root2,
        &[&[os("production")][..], &date_dest(&t.path().join("out2"))].concat(),
        0,
    );
    assert_eq!(rep["secrets"], Value::Array(vec![]), "{rep:#}");
}

// ---------------------------------------------------------------------------
// 10. The bundled fixture.

#[test]
fn fixture_production_and_v2_archive_cleanly() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(common::fixture_root())
        .arg(&root)
        .status()
        .expect("run cp");
    assert!(cp.success());
    let fixture_archive_dir = common::fixture_root().join("archive");
    let fixture_before = dir_names(&fixture_archive_dir);

    // Default destination: ROOT/archive (of the copy).
    let rep = archive_json(&root, &[os("production"), os("--date"), os(DATE)], 0);
    let a = archive_path(&root.join("archive"), "v1-production");
    assert!(a.is_file(), "{rep:#}");
    assert_eq!(rep["secrets"], Value::Array(vec![]));
    let r = t.path().join("extracted");
    gnu_extract(&a, &r);
    fs::remove_dir_all(r.join(".datamig")).unwrap();
    assert!(
        snapshot(&r) == snapshot(&root.join("production")),
        "extracted production differs"
    );

    // The live-data target of the fixture carries its (fake) secrets.
    let rep = archive_json(
        &root,
        &[&[os("v2")][..], &date_dest(&t.path().join("out"))].concat(),
        0,
    );
    let secrets: BTreeSet<&str> = rep["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in [
        "instances/Bastion-11a9/.claude/.credentials.json",
        "instances/Crossing-7c2e/.claude/.credentials.json",
        "instances/Bastion-11a9/.ssh/id_ed25519",
        "instances/Crossing-7c2e/.ssh/authorized_keys",
    ] {
        assert!(secrets.contains(s), "{s} not among secrets {secrets:?}");
    }
    assert_eq!(
        dir_names(&fixture_archive_dir),
        fixture_before,
        "something was written into the repo's fixtures"
    );
}

// ---------------------------------------------------------------------------
// 11. Bad inputs.

#[test]
fn unknown_target_and_bad_date_exit_2() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("production"));
    let dest = t.path().join("out");

    let o = archive(
        &root,
        &[&[os("no-such-target")][..], &date_dest(&dest)].concat(),
    );
    assert_eq!(common::code(&o), 2, "stderr:\n{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("no-such-target"),
        "stderr:\n{}",
        stderr_of(&o)
    );
    assert!(!dest.exists(), "dest created for a failed run");

    let o = archive(
        &root,
        &[
            os("production"),
            os("--dest"),
            dest.as_os_str(),
            os("--date"),
            os("2025-12-25"),
        ],
    );
    assert_eq!(common::code(&o), 2, "stderr:\n{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("2025-12-25"),
        "stderr:\n{}",
        stderr_of(&o)
    );
    assert!(!dest.exists(), "dest created for a failed run");

    // A layout target none of whose paths exist.
    let o = archive(
        &root,
        &[&[os("v2-dev-data")][..], &date_dest(&dest)].concat(),
    );
    assert_eq!(common::code(&o), 2, "stderr:\n{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("nothing to archive"),
        "stderr:\n{}",
        stderr_of(&o)
    );
}

// ---------------------------------------------------------------------------
// Extra: a sparse file over 8 GiB needs a base-256 size in its GNU header.

#[test]
fn sparse_file_over_8_gib_round_trips_through_gnu_tar_and_bsdtar() {
    use std::os::unix::fs::FileExt;
    let bsdtar = require_tool("bsdtar");
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    fs::create_dir_all(&src).unwrap();
    let len: u64 = (8 << 30) + (64 << 10);
    let f = File::create(src.join("huge.bin")).unwrap();
    f.set_len(len).unwrap();
    f.write_all_at(b"middle", 5 << 30).unwrap();
    f.write_all_at(b"end", len - 3).unwrap();
    drop(f);
    let dest = t.path().join("out");
    let rep = archive_json(&root, &[&[os("olddir")][..], &date_dest(&dest)].concat(), 0);
    assert_eq!(rep["verify"], "passed");
    let a = archive_path(&dest, "olddir");
    let r = t.path().join("extracted");
    gnu_extract(&a, &r);
    let got = File::open(r.join("huge.bin")).unwrap();
    let m = got.metadata().unwrap();
    assert_eq!(m.len(), len, "size after GNU tar extraction");
    assert!(m.blocks() * 512 < 1 << 20, "extracted file is not sparse");
    let mut buf = [0u8; 6];
    got.read_exact_at(&mut buf, 5 << 30).unwrap();
    assert_eq!(&buf, b"middle");
    got.read_exact_at(&mut buf, (5 << 30) - 6).unwrap();
    assert_eq!(buf, [0u8; 6]);
    got.read_exact_at(&mut buf[..3], len - 3).unwrap();
    assert_eq!(&buf[..3], b"end");
    let o = sys_ok(&bsdtar, &[os("-tvf"), a.as_os_str()], None);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(&len.to_string()) && l.ends_with("huge.bin")),
        "bsdtar does not list huge.bin with size {len}:\n{listing}"
    );
}

/// A signal while the results are being put in place leaves all of them (a
/// complete archive with both sidecars) or none: never a lone sidecar.
#[test]
fn signal_during_commit_leaves_all_three_files_or_none() {
    let sha256sum = require_tool("sha256sum");
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root.join("big"), "r.bin", &prng_bytes(7, 48 << 20));
    for round in 0..3 {
        let dest = t.path().join(format!("out{round}"));
        let files = sidecars(&archive_path(&dest, "big"));
        let mut c = common::cmd(archive_big_args(&root, &dest));
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("start datamig");
        let start = Instant::now();
        // The manifest sidecar is the first final name to appear.
        while fs::symlink_metadata(&files[1]).is_err() {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no manifest sidecar within 60 s"
            );
            std::hint::spin_loop();
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let names = dir_names(&dest);
        let present: Vec<bool> = files.iter().map(|p| p.exists()).collect();
        assert!(
            present.iter().all(|&p| p) || names.is_empty(),
            "round {round} (exit {status}): a partial result was left in dest: {names:?}"
        );
        if present[0] {
            assert_eq!(names.len(), 3, "{names:?}");
            let sha_name = files[2].file_name().unwrap().to_os_string();
            sys_ok(&sha256sum, &[os("-c"), sha_name.as_os_str()], Some(&dest));
        }
    }
}
