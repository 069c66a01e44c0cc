//! Issue 12, the rollback and the nightly job as the operator walks them:
//! a byte-identical rollback passes `verify --tree` against the inventory
//! taken before the cutover (item 8), and `backup --dry-run` removes what the
//! real run removes (item 10); a closed pipe (`| head -1`) ends quietly
//! (item 11).

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::write;
use serde_json::Value;

/// Every entry under `root` (the root too), deepest first, so that setting a
/// child's mtime cannot bump its parent's afterwards.
fn entries_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    all.reverse();
    all
}

/// Give every entry (files, directories, symlinks themselves) a distinct
/// sub-second mtime with all nine digits significant.
fn sub_second_mtimes(root: &Path) {
    for (n, p) in entries_deepest_first(root).iter().enumerate() {
        let nanos = 123_456_789u32.wrapping_add(n as u32 * 7_654_321) % 1_000_000_000;
        let nanos = if nanos.is_multiple_of(10) {
            nanos + 1
        } else {
            nanos
        };
        common::set_symlink_mtime(p, 1_700_000_000 + n as u64, nanos);
    }
}

fn dm(args: &[&OsStr]) -> (i32, Value, String) {
    let (c, out, err) = common::datamig(args);
    let v = serde_json::from_slice(&out).unwrap_or(Value::Null);
    (c, v, err)
}

/// `inventory -o M` of `tree` (as the root), then `archive` of it as a
/// directory under its parent into `dest`.
fn inventory_and_archive(tree: &Path, m: &Path, dest: &Path) -> PathBuf {
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        tree.as_os_str(),
        OsStr::new("inventory"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        m.as_os_str(),
    ]);
    assert!(c == 0 || c == 1, "inventory exited {c}: {err}");
    let parent = tree.parent().unwrap();
    let name = tree.file_name().unwrap();
    let (c, r, err) = dm(&[
        OsStr::new("--root"),
        parent.as_os_str(),
        OsStr::new("archive"),
        name,
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new("20251220"),
        OsStr::new("-q"),
        OsStr::new("--json"),
    ]);
    assert_eq!(c, 0, "archive: {r:#}\n{err}");
    fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("an archive in dest")
}

fn restore(archive: &Path, to: &Path, paths: &[&str]) {
    let mut args: Vec<OsString> = vec![
        "restore".into(),
        archive.into(),
        "--to".into(),
        to.into(),
        "-q".into(),
        "--json".into(),
    ];
    args.extend(paths.iter().map(OsString::from));
    let (c, out, err) = common::datamig(&args);
    assert_eq!(c, 0, "restore: {}\n{err}", String::from_utf8_lossy(&out));
}

/// `verify --tree DIR M`: exit 0, nothing but matches.
fn assert_tree_matches(dir: &Path, m: &Path) {
    let (c, r, err) = dm(&[
        OsStr::new("verify"),
        OsStr::new("--json"),
        OsStr::new("--tree"),
        dir.as_os_str(),
        m.as_os_str(),
    ]);
    let text = format!("{r:#}");
    assert_eq!(c, 0, "verify --tree {}: {text}\n{err}", dir.display());
    assert!(!text.contains("mtime"), "{text}");
}

/// Each entry's own mtime (nanoseconds, not following symlinks), by path
/// relative to `root`.
fn mtimes(root: &Path) -> Vec<(PathBuf, i64, i64)> {
    let mut v: Vec<_> = entries_deepest_first(root)
        .into_iter()
        .filter(|p| p != root)
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            (
                p.strip_prefix(root).unwrap().to_path_buf(),
                m.mtime(),
                m.mtime_nsec(),
            )
        })
        .collect();
    v.sort();
    v
}

type Mtimes = [(PathBuf, i64, i64)];

/// The same entries with the same mtimes; on failure, only the differences.
fn assert_same_mtimes(got: &Mtimes, want: &Mtimes) {
    let diff: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    assert!(
        diff.is_empty() && extra.is_empty(),
        "{} of {} differ; want {diff:?}\ngot {extra:?}",
        diff.len(),
        want.len()
    );
}

/// Archive `tree`, restore it whole (with sidecars, and from the embedded
/// manifest alone) and in part, and check every mtime to the nanosecond.
fn rollback_round_trip(t: &Path, tree: &Path, part: &str, gnu_tar: bool) {
    let m = t.join("before.manifest.jsonl");
    let dest = t.join("dest");
    let archive = inventory_and_archive(tree, &m, &dest);
    let want = mtimes(tree);
    assert!(want.iter().any(|(_, _, ns)| *ns != 0), "{want:?}");

    let back = t.join("rolled-back");
    restore(&archive, &back, &[]);
    assert_same_mtimes(&mtimes(&back), &want);
    assert_tree_matches(&back, &m);

    // Without sidecars: restore reads the embedded manifest (and the PAX
    // records) only.
    let bare_dir = t.join("bare");
    fs::create_dir(&bare_dir).unwrap();
    let bare = bare_dir.join(archive.file_name().unwrap());
    fs::copy(&archive, &bare).unwrap();
    let back2 = t.join("rolled-back-bare");
    restore(&bare, &back2, &[]);
    assert_same_mtimes(&mtimes(&back2), &want);
    assert_tree_matches(&back2, &m);

    // PATH restore: the part restored keeps its nanoseconds too.
    let back3 = t.join("rolled-back-part");
    restore(&archive, &back3, &[part]);
    let part_want: Vec<_> = want
        .iter()
        .filter(|(p, _, _)| p.starts_with(part))
        .cloned()
        .collect();
    let got: Vec<_> = mtimes(&back3)
        .into_iter()
        .filter(|(p, _, _)| p.starts_with(part))
        .collect();
    assert!(!part_want.is_empty());
    assert_same_mtimes(&got, &part_want);

    // GNU tar reads the nanoseconds from the PAX records as well.
    if !gnu_tar {
        return;
    }
    let tar = common::require_tool("tar");
    let by_tar = t.join("by-gnu-tar");
    fs::create_dir(&by_tar).unwrap();
    let st = Command::new(tar)
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&by_tar)
        .arg("--exclude=.datamig")
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_mtimes(&mtimes(&by_tar), &want);
}

#[test]
fn issue_12_8_byte_identical_rollback_passes_verify_tree() {
    let t = common::tempdir();
    let tree = t.path().join("data");
    write(&tree, "a.txt", b"alpha\n");
    write(&tree, "sub/b.txt", b"bravo\n");
    write(&tree, "sub/deeper/c.txt", b"charlie\n");
    fs::create_dir_all(tree.join("empty-dir")).unwrap();
    symlink("b.txt", tree.join("sub/link")).unwrap();
    symlink("does/not/exist", tree.join("dangling")).unwrap();
    sub_second_mtimes(&tree);
    rollback_round_trip(t.path(), &tree, "sub", true);
}

#[test]
fn issue_12_8_fixture_root_rollback_passes_verify_tree() {
    let t = common::tempdir();
    let tree = t.path().join("data");
    let st = Command::new("cp")
        .arg("-a")
        .arg(common::fixture_root())
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    sub_second_mtimes(&tree);
    rollback_round_trip(t.path(), &tree, "instances", false);
}

/// Run `datamig ARGS` with stdout to a pipe whose reader takes one line and
/// closes it, as `| head -1` does: (exit code, the line, stderr).
fn first_line_then_close(args: &[&OsStr]) -> (i32, String, String) {
    let mut child = common::cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The reader (and with it the pipe's only read end) is dropped here.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > common::DEFAULT_DEADLINE {
            let _ = child.kill();
            panic!("datamig {args:?} did not end after its reader closed the pipe");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code().unwrap_or(-1), line, t_err.join().unwrap())
}

/// Issue 12 item 11: `datamig list ARCHIVE | head -1` and `datamig inventory
/// | head -1` end with exit 0 and nothing on stderr (no "Broken pipe" panic
/// or error). The outputs are far larger than a pipe's buffer (64 KiB), so
/// the writes after the reader is gone fail with EPIPE every time.
#[test]
fn issue_12_11_closed_pipe_ends_quietly_with_exit_0() {
    let t = common::tempdir();
    let tree = t.path().join("data");
    for i in 0..3000 {
        write(
            &tree,
            &format!(
                "dir-{:02}/a-rather-long-file-name-for-a-wide-listing-{i:05}.txt",
                i % 30
            ),
            format!("{i}\n").as_bytes(),
        );
    }
    let m = t.path().join("m.jsonl");
    let archive = inventory_and_archive(&tree, &m, &t.path().join("dest"));

    let (c, line, err) = first_line_then_close(&[OsStr::new("list"), archive.as_os_str()]);
    assert!(!line.is_empty());
    assert_eq!((c, err.as_str()), (0, ""), "list | head -1");

    for format in ["summary", "sha256sum", "files0"] {
        let (c, line, err) = first_line_then_close(&[
            OsStr::new("--root"),
            tree.as_os_str(),
            OsStr::new("inventory"),
            OsStr::new("--format"),
            OsStr::new(format),
        ]);
        assert!(!line.is_empty());
        assert_eq!(
            (c, err.as_str()),
            (0, ""),
            "inventory --format {format} | head -1"
        );
    }
    // JSON: one object, still far larger than the pipe's buffer.
    let (c, _, err) = first_line_then_close(&[
        OsStr::new("list"),
        OsStr::new("--json"),
        archive.as_os_str(),
    ]);
    assert_eq!((c, err.as_str()), (0, ""), "list --json | head -1");
}
