//! Issue 10, restore side: restore works only through directory handles, so a
//! directory swapped for a symlink mid-run is refused and named, never written
//! through (finding 1); directories stay 0700 until the end whatever the umask
//! (7); a damaged embedded-manifest frame still restores unverified (9); long
//! names and paths deeper than PATH_MAX restore (10); manifest problems are
//! named (4); a hostile 1 TiB sparse member restores in about a second (11).

mod archive_support;
mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{FileKind, walk_tree, write};
use datamig::tarfmt::{END_OF_ARCHIVE, MemberHeader, MemberKind, Region, encode_header, padding};
use serde_json::Value;

const DATE: &str = "20251225";

// ---------------------------------------------------------------------------
// Helpers

/// `datamig --root ROOT archive DIRNAME --dest DEST`, asserting `want`.
fn make_archive(root: &Path, dirname: &str, dest: &Path, want: i32) -> PathBuf {
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
        want,
        "archive {dirname}\nstderr:\n{}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    dest.join(format!("{dirname}-{DATE}.tar.zst"))
}

fn restore_args(archive: &Path, to: &Path) -> Vec<OsString> {
    vec![
        "restore".into(),
        archive.into(),
        "--to".into(),
        to.into(),
        "-q".into(),
        "--json".into(),
    ]
}

/// `datamig restore ARCHIVE --to TO --json`: (exit code, report, stderr).
fn restore_json(archive: &Path, to: &Path, deadline: Duration) -> (i32, Value, String) {
    let o = common::output_within(&mut common::cmd(restore_args(archive, to)), deadline);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{err}"));
    (common::code(&o), v, err)
}

fn note_paths(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no list {key}: {v:#}"))
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no list {key}: {v:#}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Names, kinds, modes and contents of everything under `dir` (and `dir`'s
/// own mode), to prove nothing there changed.
fn fingerprint(dir: &Path) -> BTreeMap<Vec<u8>, (FileKind, u32, u64, Vec<u8>)> {
    let mut m = BTreeMap::new();
    let own = fs::symlink_metadata(dir).unwrap();
    m.insert(Vec::new(), (FileKind::Dir, own.mode(), 0, Vec::new()));
    for (rel, kind) in walk_tree(dir) {
        let p = common::rel_join(dir, &rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let bytes = if kind == FileKind::File {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        m.insert(rel, (kind, md.mode(), md.ino(), bytes));
    }
    m
}

/// Every directory under `dir` (itself included) whose mode has any of `bits`.
fn dirs_with_bits(dir: &Path, bits: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&d) else {
            continue;
        };
        if !md.is_dir() {
            continue;
        }
        if md.mode() & bits != 0 {
            out.push(format!("{} {:o}", d.display(), md.mode() & 0o7777));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    out
}

fn spawn_restore(archive: &Path, to: &Path) -> Child {
    common::cmd(restore_args(archive, to))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start datamig restore")
}

fn exchange(a: &Path, b: &Path) -> bool {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .is_ok()
}

// ---------------------------------------------------------------------------
// Finding 1: a directory swapped for a symlink while restore runs

/// A scratch directory on tmpfs when there is one: twenty restores of a few
/// thousand files then take seconds, not a minute of ext4 file creation.
fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("datamig-test-")
            .tempdir_in(shm)
    {
        return d;
    }
    common::tempdir()
}

#[test]
fn finding_1_restore_race_never_writes_outside_dir() {
    let t = fast_tempdir();
    let src = t.path().join("root/tree");
    // a00..a19 (before x), x with subdirectories, y with hard links into x:
    // restore reaches x by name again for each link, racing the swapper.
    for d in 0..20 {
        for f in 0..60 {
            write(
                &src,
                &format!("a{d:02}/f{f:03}"),
                format!("{d}/{f}\n").as_bytes(),
            );
        }
    }
    for s in 0..8 {
        for f in 0..60 {
            write(
                &src,
                &format!("x/s{s}/f{f:03}"),
                format!("x{s}/{f}\n").as_bytes(),
            );
        }
    }
    fs::create_dir_all(src.join("y")).unwrap();
    for f in 0..40 {
        fs::hard_link(
            src.join(format!("x/s0/f{f:03}")),
            src.join(format!("y/hl{f:03}")),
        )
        .unwrap();
        write(&src, &format!("y/z{f:03}"), b"z\n");
    }
    let archive = make_archive(&t.path().join("root"), "tree", &t.path().join("out"), 0);

    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), b"keep me\n").unwrap();
    fs::create_dir(outside.join("s0")).unwrap();
    fs::write(outside.join("s0/f000"), b"outside's own\n").unwrap();
    common::chmod(&outside, 0o755);
    common::chmod(&outside.join("s0"), 0o755);
    let link = t.path().join("swaplink");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let before = fingerprint(&outside);

    let mut named = 0;
    let mut swaps_total = 0;
    let started = Instant::now();
    let mut iterations = 0;
    while iterations < 20 || (named == 0 && iterations < 60) {
        iterations += 1;
        let r = t.path().join(format!("r{iterations}"));
        let x = r.join("x");
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let swapper = {
            let (stop, swaps, x, link) = (stop.clone(), swaps.clone(), x.clone(), link.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && !x.is_dir() {
                    std::thread::yield_now();
                }
                while !stop.load(Ordering::Relaxed) {
                    if exchange(&x, &link) {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let child = spawn_restore(&archive, &r);
        let o = common::wait_within(child, Duration::from_secs(60), "restore");
        let (code, out, err) = (
            common::code(&o),
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        let n = swaps.load(Ordering::Relaxed);
        swaps_total += n;
        if n % 2 == 1 {
            // Put the symlink back where it was for the next iteration.
            assert!(exchange(&x, &link), "swap back");
        }
        assert_eq!(
            fingerprint(&outside),
            before,
            "iteration {iterations}: the outside directory changed\nstderr:\n{err}"
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let v: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("no JSON ({e}), exit {code}\nstderr:\n{err}"));
        let mut blamed: Vec<String> = note_paths(&v, "swapped");
        blamed.extend(note_paths(&v, "refused"));
        for n in v["refused"].as_array().unwrap() {
            let why = n["note"].as_str().unwrap();
            // A link whose target was refused is refused in turn.
            let consequence =
                n["path"].as_str().unwrap().starts_with("y/hl") && why.contains("did not write");
            assert!(
                why.contains("symlink x") || why.contains("x was replaced") || consequence,
                "refused for another reason: {v:#}"
            );
        }
        let names_x = note_paths(&v, "swapped").iter().any(|p| p == "x")
            || v["refused"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["note"].as_str().unwrap().contains("symlink x"));
        if !blamed.is_empty() {
            assert!(names_x, "something other than x blamed: {v:#}");
            assert_eq!(code, 1, "a swap was reported, so exit 1: {v:#}");
            named += 1;
        } else {
            assert_eq!(code, 0, "{v:#}\nstderr:\n{err}");
        }
        // Everything outside x was restored either way.
        assert_eq!(fs::read(r.join("a07/f031")).unwrap(), b"7/31\n");
        assert_eq!(fs::read(r.join("y/z039")).unwrap(), b"z\n");
    }
    assert!(
        swaps_total > 0,
        "the swapper never ran while restore did ({iterations} iterations)"
    );
    assert!(
        named > 0,
        "in {iterations} iterations ({swaps_total} swaps) no report named the swapped directory: the race was never hit"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

// ---------------------------------------------------------------------------
// Finding 7: umask 000 and an interrupted restore never expose a directory

#[test]
fn finding_7_restore_under_umask_000_never_exposes_dirs() {
    let t = common::tempdir();
    let src = t.path().join("root/home");
    for d in 0..150 {
        for f in 0..25 {
            write(&src, &format!("d{d:03}/sub/f{f:02}"), &[b'x'; 300]);
        }
    }
    write(&src, ".ssh/id_ed25519", b"secret key\n");
    common::chmod(&src.join(".ssh"), 0o700);
    common::chmod(&src.join(".ssh/id_ed25519"), 0o600);
    common::chmod(&src.join("d007"), 0o750);
    let archive = make_archive(&t.path().join("root"), "home", &t.path().join("out"), 0);
    let umask000 = |r: &Path| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg("umask 000; exec \"$@\"")
            .arg("sh")
            .arg(common::BIN)
            .args(restore_args(&archive, r))
            .env_remove("V2_DATA_ROOT");
        c
    };

    // Interrupted: look at the modes while it runs, then SIGTERM it.
    let r = t.path().join("interrupted");
    let mut child = umask000(&r)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut looks = 0;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let exposed = dirs_with_bits(&r, 0o077);
        assert_eq!(exposed, Vec::<String>::new(), "while restoring");
        looks += 1;
        if fs::read_dir(&r).map(|d| d.count()).unwrap_or(0) > 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let still_running = child.try_wait().unwrap().is_none();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .ok();
    child.wait().unwrap();
    assert!(looks > 0);
    assert!(
        still_running,
        "restore finished before it could be interrupted; make the tree bigger"
    );
    assert_eq!(
        dirs_with_bits(&r, 0o077),
        Vec::<String>::new(),
        "an interrupted restore left directories open to group/others"
    );
    if let Ok(md) = fs::metadata(r.join(".ssh")) {
        assert_eq!(md.mode() & 0o077, 0, ".ssh readable by others");
    }

    // Complete: DIR is 0700 (restore made it; the archive has no mode for
    // it), every directory has its archived mode.
    let r = t.path().join("complete");
    let o = common::output_within(&mut umask000(&r), Duration::from_secs(60));
    assert_eq!(
        common::code(&o),
        0,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::metadata(&r).unwrap().mode() & 0o7777, 0o700);
    for (rel, kind) in walk_tree(&src) {
        let want = fs::symlink_metadata(common::rel_join(&src, &rel)).unwrap();
        let got = fs::symlink_metadata(common::rel_join(&r, &rel)).unwrap();
        if kind != FileKind::Symlink {
            assert_eq!(
                got.mode() & 0o7777,
                want.mode() & 0o7777,
                "{}",
                common::show(&rel)
            );
        }
        if kind == FileKind::Dir {
            assert_eq!(got.mtime(), want.mtime(), "{}", common::show(&rel));
            assert_eq!(
                got.mtime_nsec(),
                want.mtime_nsec(),
                "{}",
                common::show(&rel)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Finding 9: a damaged embedded-manifest frame, no sidecar

#[test]
fn finding_9_damaged_manifest_frame_restores_unverified() {
    let t = common::tempdir();
    let src = t.path().join("root/tree");
    for i in 0..30 {
        let body = archive_support::prng_bytes(i, 2000 + i as usize);
        write(&src, &format!("d{}/f{i}", i % 3), &body);
    }
    let archive = make_archive(&t.path().join("root"), "tree", &t.path().join("out"), 0);
    let side = PathBuf::from(format!("{}.manifest.jsonl", archive.display()));
    let entries = common::ManifestLines::read(&side).entry_values();
    fs::remove_file(&side).unwrap();

    let ix = datamig::frames::read_index(&mut fs::File::open(&archive).unwrap())
        .unwrap()
        .expect("an index");
    let at = ix.manifest_frame_offset;
    let mut bytes = fs::read(&archive).unwrap();
    let frame_len =
        zstd::zstd_safe::find_frame_compressed_size(&bytes[at as usize..]).expect("a frame");
    let flip = at as usize + frame_len / 2;
    bytes[flip] ^= 0x5a;
    fs::write(&archive, &bytes).unwrap();

    let r = t.path().join("r");
    let (code, v, err) = restore_json(&archive, &r, Duration::from_secs(60));
    assert_eq!(code, 1, "{v:#}\nstderr:\n{err}");
    assert_eq!(v["manifest"], "none", "{v:#}");
    let text = v.to_string();
    assert!(
        text.contains(&format!("zstd frame at offset {at} is corrupt")),
        "the damage is not named in words: {v:#}"
    );
    assert!(!text.contains("Destination buffer"), "{v:#}");
    // Every member outside the damaged frame is restored, unverified.
    let unverified = strings(&v, "unverified");
    let mut checked = 0;
    for e in entries {
        if e["type"] != "file" || e["frame_offset"].as_u64() == Some(at) {
            continue;
        }
        let rel = e["path"].as_str().unwrap();
        assert_eq!(
            fs::read(r.join(rel)).unwrap(),
            fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
        assert!(
            unverified.iter().any(|u| u == rel),
            "{rel} not listed unverified"
        );
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} files were outside the damaged frame"
    );
}

// ---------------------------------------------------------------------------
// Finding 10: names of 255 bytes, paths deeper than PATH_MAX

#[test]
fn finding_10_long_names_restore() {
    let t = common::tempdir();
    let src = t.path().join("root/tree");
    let long_file = "f".repeat(255);
    let long_dir = "d".repeat(255);
    write(&src, &format!("{long_dir}/{long_file}"), b"long name\n");
    write(&src, &long_file, b"top\n");
    let archive = make_archive(&t.path().join("root"), "tree", &t.path().join("out"), 0);
    let r = t.path().join("r");
    let (code, v, err) = restore_json(&archive, &r, Duration::from_secs(60));
    assert_eq!(code, 0, "{v:#}\nstderr:\n{err}");
    assert_eq!(
        fs::read(r.join(&long_dir).join(&long_file)).unwrap(),
        b"long name\n"
    );
    assert_eq!(fs::read(r.join(&long_file)).unwrap(), b"top\n");

    // A path of ~6,000 bytes (24 levels of 250-byte names), in a tar made
    // here: deeper than PATH_MAX, so only handles can reach it.
    let comp = vec![b'p'; 250];
    let mut tar = Vec::new();
    let mut path: Vec<u8> = Vec::new();
    for _ in 0..24 {
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&comp);
        tar.extend(encode_header(&header(&path, MemberKind::Dir, 0, None)));
    }
    let mut file = path.clone();
    file.extend_from_slice(b"/");
    file.extend_from_slice(&[b'q'; 255]);
    let data = b"deep\n";
    tar.extend(encode_header(&header(
        &file,
        MemberKind::File,
        data.len() as u64,
        None,
    )));
    tar.extend_from_slice(data);
    tar.resize(tar.len() + padding(data.len() as u64), 0);
    tar.extend_from_slice(&END_OF_ARCHIVE);
    assert!(file.len() > 4096);
    let deep = t.path().join("deep.tar.zst");
    fs::write(&deep, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();
    let r = t.path().join("r-deep");
    let (code, v, err) = restore_json(&deep, &r, Duration::from_secs(60));
    // No manifest to check against: exit 1 for "unverified" only.
    assert_eq!(code, 1, "{v:#}\nstderr:\n{err}");
    assert_eq!(
        strings(&v, "unverified"),
        [String::from_utf8(file.clone()).unwrap()]
    );
    for key in ["refused", "errors", "swapped"] {
        assert_eq!(v[key].as_array().unwrap().len(), 0, "{key}: {v:#}");
    }
    let root = datamig::fsx::Dir::open(&r).unwrap();
    let mut got = String::new();
    root.open_file_beneath(&file)
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "deep\n");
}

fn header(path: &[u8], kind: MemberKind, size: u64, sparse: Option<Vec<Region>>) -> MemberHeader {
    MemberHeader {
        path: path.to_vec(),
        kind,
        mode: if kind == MemberKind::Dir {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        size,
        link: None,
        sparse,
    }
}

// ---------------------------------------------------------------------------
// Finding 11: a hostile archive declaring a 1 TiB sparse member

#[test]
fn finding_11_hostile_sparse_member_restores_quickly() {
    let t = common::tempdir();
    let tib: u64 = 1 << 40;
    let regions = vec![
        Region {
            offset: 0,
            len: 512,
        },
        Region {
            offset: tib - 512,
            len: 512,
        },
    ];
    let mut tar = encode_header(&header(b"big", MemberKind::File, tib, Some(regions)));
    tar.extend_from_slice(&[b'A'; 512]);
    tar.extend_from_slice(&[b'Z'; 512]);
    tar.extend_from_slice(&END_OF_ARCHIVE);
    let a = t.path().join("hostile.tar.zst");
    let z = zstd::bulk::compress(&tar, 19).unwrap();
    assert!(z.len() < 2048, "{} bytes", z.len());
    fs::write(&a, z).unwrap();

    let r = t.path().join("r");
    let started = Instant::now();
    let (code, v, err) = restore_json(&a, &r, Duration::from_secs(20));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(code, 1, "unverified, so exit 1: {v:#}\nstderr:\n{err}");
    assert_eq!(strings(&v, "unverified"), ["big"], "{v:#}");
    let md = fs::metadata(r.join("big")).unwrap();
    assert_eq!(md.len(), tib);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        md.blocks()
    );
    let mut f = fs::File::open(r.join("big")).unwrap();
    let mut head = [0u8; 512];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, [b'A'; 512]);
    let mut tail = [0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut tail, tib - 512).unwrap();
    assert_eq!(tail, [b'Z'; 512]);
}

// ---------------------------------------------------------------------------
// Finding 4: the manifest records entries that were not captured

#[test]
fn finding_4_restore_names_problem_entries() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("tree");
    write(&src, "ok.txt", b"fine\n");
    write(&src, "secret/credentials", b"token\n");
    common::mkfifo(&src.join("pipe"));
    common::make_world_readable(&root);
    common::chmod(&src.join("secret/credentials"), 0o000);
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    common::give_to_nobody(&out);
    // As nobody, so mode 000 really means unreadable.
    let args: Vec<OsString> = vec![
        "--root".into(),
        root.clone().into(),
        "archive".into(),
        "tree".into(),
        "--dest".into(),
        out.clone().into(),
        "--date".into(),
        DATE.into(),
        "-q".into(),
    ];
    let o = common::output_within(&mut common::cmd_as_nobody(&args), Duration::from_secs(60));
    assert_eq!(
        common::code(&o),
        1,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let archive = out.join(format!("tree-{DATE}.tar.zst"));

    let r = t.path().join("r");
    let (code, v, err) = restore_json(&archive, &r, Duration::from_secs(60));
    assert_eq!(code, 1, "{v:#}\nstderr:\n{err}");
    let mut named = note_paths(&v, "manifest_problems");
    named.sort();
    // Since issue 11 the FIFO is archived (type 6) and restored, not a problem.
    assert_eq!(named, ["secret/credentials"], "{v:#}");
    assert_eq!(fs::read(r.join("ok.txt")).unwrap(), b"fine\n");
    assert!(
        fs::symlink_metadata(r.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    for key in ["refused", "corrupt", "errors", "missing", "swapped"] {
        assert_eq!(v[key].as_array().unwrap().len(), 0, "{key}: {v:#}");
    }
    // The text report says so too.
    let o = common::run([
        OsStr::new("restore"),
        archive.as_os_str(),
        OsStr::new("--to"),
        t.path().join("r2").as_os_str(),
    ]);
    assert_eq!(common::code(&o), 1);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("secret/credentials"), "{text}");
}
