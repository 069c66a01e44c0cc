//! `archive --remove-source` under concurrent change (issue 10, findings 2
//! and 3): a directory swapped for a symlink to an outside directory while
//! removal runs, a file rewritten after capture with its size and mtime
//! kept, and hard-link groups whose own unlinks move ctime and nlink.
//!
//! The binary has no test hooks: the window between capture and removal is
//! opened with `strace -e inject=unlinkat:delay_enter=...`, which holds the
//! N-th `unlinkat` (removal is the only caller) while the test changes the tree.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, FileKind, NOBODY, is_root, rel_join, walk_tree};
use serde_json::Value;

const DATE: &str = "20250101";

/// One test tree: `ROOT/olddir` is archived and removed; `outside` is where a
/// swapped-in symlink points.
struct Setup {
    _t: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
    outside: PathBuf,
    dest: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let t = common::tempdir();
        let root = t.path().join("root");
        let base = root.join("olddir");
        let outside = t.path().join("outside");
        let dest = t.path().join("out");
        for d in [&root, &base, &outside, &dest] {
            fs::create_dir_all(d).unwrap();
        }
        Setup {
            _t: t,
            root,
            base,
            outside,
            dest,
        }
    }

    fn archive(&self) -> PathBuf {
        self.dest.join(format!("olddir-{DATE}.tar.zst"))
    }

    /// `datamig --root ROOT archive olddir --remove-source ... --json`.
    fn args(&self) -> Vec<OsString> {
        [
            OsStr::new("--root"),
            self.root.as_os_str(),
            OsStr::new("archive"),
            OsStr::new("olddir"),
            OsStr::new("--remove-source"),
            OsStr::new("--dest"),
            self.dest.as_os_str(),
            OsStr::new("--date"),
            OsStr::new(DATE),
            OsStr::new("-q"),
            OsStr::new("-j"),
            OsStr::new("2"),
            OsStr::new("--json"),
        ]
        .iter()
        .map(|s| s.to_os_string())
        .collect()
    }

    fn write(&self, rel: &str, bytes: &[u8], mode: u32) {
        let p = self.base.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Give every entry of the tempdir to `nobody` (who then runs datamig).
    fn give_all_to_nobody(&self) {
        for top in [&self.root, &self.outside, &self.dest] {
            std::os::unix::fs::lchown(top, Some(NOBODY), Some(NOBODY)).unwrap();
            for rel in walk_tree(top).keys() {
                std::os::unix::fs::lchown(rel_join(top, rel), Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
    }
}

/// What a directory holds, never following a symlink: kind, content (file
/// bytes or link target) and permission bits per entry, plus its own mode.
type Snapshot = (u32, BTreeMap<Vec<u8>, (FileKind, Vec<u8>, u32)>);

/// "" when equal, else what differs (a few names, in words).
fn differences(before: &Snapshot, after: &Snapshot) -> String {
    let mut out = Vec::new();
    if before.0 != after.0 {
        out.push(format!("its mode went {:o} -> {:o}", before.0, after.0));
    }
    let names: BTreeSet<&Vec<u8>> = before.1.keys().chain(after.1.keys()).collect();
    let mut changed: Vec<String> = names
        .into_iter()
        .filter(|n| before.1.get(*n) != after.1.get(*n))
        .map(|n| {
            let how = match (before.1.get(n), after.1.get(n)) {
                (Some(_), None) => "deleted",
                (None, Some(_)) => "created",
                _ => "changed",
            };
            format!("{} {how}", String::from_utf8_lossy(n))
        })
        .collect();
    if !changed.is_empty() {
        out.push(format!("{} entries differ", changed.len()));
        changed.truncate(5);
        out.extend(changed);
    }
    out.join("; ")
}

fn assert_unchanged(before: &Snapshot, dir: &Path, what: &str) {
    let d = differences(before, &snapshot(dir));
    assert!(d.is_empty(), "{what} ({}) changed: {d}", dir.display());
}

fn snapshot(dir: &Path) -> Snapshot {
    let own = fs::symlink_metadata(dir).unwrap().mode() & 0o7777;
    let entries = walk_tree(dir)
        .into_iter()
        .map(|(rel, k)| {
            let p = rel_join(dir, &rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let content = match k {
                FileKind::File => fs::read(&p).unwrap(),
                FileKind::Symlink => fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                _ => Vec::new(),
            };
            (rel, (k, content, m.mode() & 0o7777))
        })
        .collect();
    (own, entries)
}

/// `strace` holding the `nth` unlinkat of datamig for `hold`, then datamig.
/// `unlink` is held the same way (counted apart) where the architecture has
/// it, so the window opens whichever call a removal uses.
fn held_datamig(s: &Setup, nth: u32, hold: Duration) -> Command {
    held(s.args(), nth, hold)
}

fn held(args: Vec<OsString>, nth: u32, hold: Duration) -> Command {
    let mut c = Command::new(common::require_tool("strace"));
    c.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=?unlink,unlinkat",
        "-e",
    ])
    .arg(format!(
        "inject=?unlink,unlinkat:delay_enter={}:when={nth}",
        hold.as_micros()
    ))
    .arg(BIN)
    .args(args)
    .env_remove("V2_DATA_ROOT");
    c
}

/// A started datamig whose output is drained as it comes (a long `kept`
/// list fills a pipe).
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

fn spawn(mut c: Command) -> Running {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).ok();
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Wait for datamig, killing it past `deadline`.
fn finish(mut r: Running, deadline: Duration) -> Output {
    let start = Instant::now();
    let status = loop {
        if let Some(st) = r.child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > deadline {
            let _ = r.child.kill();
            let _ = r.child.wait();
            panic!(
                "datamig did not finish within {deadline:?}; killed it\nstderr:\n{}",
                String::from_utf8_lossy(&r.stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: r.stdout.join().unwrap(),
        stderr: r.stderr.join().unwrap(),
    }
}

/// Block until the archive is in place (the capture is over; removal comes
/// next). Panics if the child exits first.
fn wait_for_archive(s: &Setup, run: &mut Running) {
    wait_for_archive_named(&s.archive(), run)
}

fn wait_for_archive_named(archive: &Path, run: &mut Running) {
    let start = Instant::now();
    while fs::symlink_metadata(archive).is_err() {
        if let Some(st) = run.child.try_wait().unwrap() {
            panic!("datamig exited ({st}) before the archive appeared");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the archive did not appear within 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn report_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e})\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// `removed.kept` as path -> note.
fn kept_of(rep: &Value) -> BTreeMap<String, String> {
    rep["removed"]["kept"]
        .as_array()
        .unwrap_or_else(|| panic!("no removed.kept in the report: {rep:#}"))
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn exchange(base: &fs::File, a: &str, b: &str) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(base, a, base, b, rustix::fs::RenameFlags::EXCHANGE)
}

// ---------------------------------------------------------------------------
// Finding 2: removal follows a directory swapped for a symlink.

const ITERATIONS: usize = 20;
/// Files in the directory that gets swapped, and in the part removed first.
const SWAPPED: usize = 300;
const BEFORE: usize = 1400;

/// `olddir/d/f*` (swapped with `olddir/l`, a symlink to `outside`, whose files
/// have the same names), and `olddir/z/f*`, removed first (reverse byte order),
/// which gives the swapper time to get going.
fn race_tree(s: &Setup) {
    for i in 0..SWAPPED {
        s.write(
            &format!("d/f{i:04}"),
            format!("inside {i}\n").as_bytes(),
            0o644,
        );
        let p = s.outside.join(format!("f{i:04}"));
        fs::write(&p, format!("OUTSIDE {i}\n")).unwrap();
        fs::set_permissions(
            &p,
            fs::Permissions::from_mode(0o600 + (i as u32 % 3) * 0o40),
        )
        .unwrap();
    }
    fs::write(s.outside.join("only-outside"), b"precious\n").unwrap();
    fs::set_permissions(&s.outside, fs::Permissions::from_mode(0o750)).unwrap();
    for i in 0..BEFORE {
        s.write(&format!("z/f{i:04}"), format!("z {i}\n").as_bytes(), 0o644);
    }
    std::os::unix::fs::symlink(&s.outside, s.base.join("l")).unwrap();
}

/// Exchange `d` and `l` from the moment the archive is in place until `stop`;
/// leaves them the way they started. Returns the number of exchanges.
fn swapper(base: PathBuf, archive: PathBuf, stop: Arc<AtomicBool>) -> u64 {
    let dir = fs::File::open(&base).unwrap();
    while fs::symlink_metadata(&archive).is_err() {
        if stop.load(Ordering::Relaxed) {
            return 0;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let mut swaps = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match exchange(&dir, "d", "l") {
            Ok(()) => swaps += 1,
            // One of the two was removed: there is nothing left to swap.
            Err(rustix::io::Errno::NOENT) => break,
            Err(e) => panic!("renameat2(RENAME_EXCHANGE) d <-> l: {e}"),
        }
    }
    if swaps % 2 == 1 {
        // Nothing is removed while they are swapped (a symlink is not the
        // directory `d`, a directory is not the link `l`), so both are there.
        exchange(&dir, "d", "l").expect("swap d and l back");
        swaps += 1;
    }
    swaps
}

#[test]
fn finding_2_remove_source_race_never_deletes_outside_root() {
    let started = Instant::now();
    let mut saw = 0usize;
    let mut clean = 0usize;
    for it in 0..ITERATIONS {
        let t_it = Instant::now();
        let s = Setup::new();
        race_tree(&s);
        // Odd iterations run datamig as nobody owning the whole tree (the
        // outside directory included), even ones as whoever runs the tests
        // (root in CI): no permission stands between datamig and `outside`.
        let as_nobody = is_root() && it % 2 == 1;
        if as_nobody {
            s.give_all_to_nobody();
        }
        let outside_before = snapshot(&s.outside);
        let t_built = t_it.elapsed();
        let stop = Arc::new(AtomicBool::new(false));
        let th = {
            let (b, a, st) = (s.base.clone(), s.archive(), stop.clone());
            std::thread::spawn(move || swapper(b, a, st))
        };
        let c = if as_nobody {
            common::cmd_as_nobody(s.args())
        } else {
            common::cmd(s.args())
        };
        let out = finish(spawn(c), Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        let swaps = th.join().unwrap();
        let code = common::code(&out);
        let rep = report_of(&out);
        let ctx = format!("iteration {it} (as nobody: {as_nobody}, {swaps} exchanges)");
        eprintln!(
            "{ctx}: built {t_built:?}, ran {:?} (datamig {:?})",
            t_it.elapsed(),
            rep["seconds"]
        );

        assert_unchanged(
            &outside_before,
            &s.outside,
            &format!("{ctx}: the outside directory"),
        );
        assert!(swaps > 0, "{ctx}: the swapper never ran: {rep:#}");
        assert!(rep["remove_refused"].is_null(), "{ctx}: {rep:#}");

        // Every archived entry still on disk is listed as kept; nothing else
        // (everything in olddir was archived).
        let kept = kept_of(&rep);
        let source = rep["source"].as_str().unwrap().to_string();
        let left: BTreeSet<String> = if s.base.exists() {
            walk_tree(&s.base)
                .keys()
                .map(|k| String::from_utf8(k.clone()).unwrap())
                .chain([source.clone()])
                .collect()
        } else {
            BTreeSet::new()
        };
        let listed: BTreeSet<String> = kept.keys().cloned().collect();
        assert_eq!(
            left, listed,
            "{ctx}: entries left on disk vs entries the report lists as kept\n{rep:#}"
        );
        if kept.is_empty() {
            assert_eq!(code, 0, "{ctx}: {rep:#}");
            clean += 1;
            continue;
        }
        assert_eq!(code, 1, "{ctx}: entries kept but exit {code}: {rep:#}");
        saw += 1;
        // Only the swapped pair (and what is below `d`, and the base holding
        // them) may be kept, each saying what happened to it.
        for (path, note) in &kept {
            let ok = match path.as_str() {
                p if p == source => note.contains("holds the entries kept"),
                // Exchanged back and forth, the link itself was renamed:
                // its ctime moved.
                "d" | "l" => {
                    note.contains("replaced")
                        || note.contains("holds entries that were kept")
                        || note.contains("(ctime differ)")
                }
                p if p.starts_with("d/") => {
                    note.contains("directory d ") && note.contains("replaced")
                }
                _ => false,
            };
            assert!(ok, "{ctx}: unexpected kept entry {path}: {note}\n{rep:#}");
        }
    }
    eprintln!(
        "{ITERATIONS} iterations in {:.1?}: the swap was seen by {saw}, {clean} removed everything",
        started.elapsed()
    );
    assert!(
        saw > 0,
        "no iteration saw the swap, so this test did not exercise the race"
    );
}

/// The window held open instead of raced: before the first unlinkat, `d` is
/// moved away and a symlink to `outside` put in its place, and `e` is
/// replaced by another directory holding the same names. Nothing below
/// either is removed, and the report names both.
#[test]
fn finding_2_directory_swapped_for_symlink_or_other_directory_is_kept() {
    let s = Setup::new();
    for i in 0..20 {
        s.write(&format!("d/f{i:02}"), b"inside d\n", 0o644);
        s.write(&format!("e/f{i:02}"), b"inside e\n", 0o644);
        fs::write(s.outside.join(format!("f{i:02}")), b"OUTSIDE\n").unwrap();
    }
    s.write("z.txt", b"removed first\n", 0o644);
    let other = s.root.parent().unwrap().join("other");
    fs::create_dir(&other).unwrap();
    for i in 0..20 {
        fs::write(other.join(format!("f{i:02}")), b"OTHER\n").unwrap();
    }
    let outside_before = snapshot(&s.outside);
    let other_before = snapshot(&other);
    let mut child = spawn(held_datamig(&s, 1, Duration::from_secs(3)));
    wait_for_archive(&s, &mut child);
    let moved = s.root.parent().unwrap();
    fs::rename(s.base.join("d"), moved.join("moved-d")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.base.join("d")).unwrap();
    fs::rename(s.base.join("e"), moved.join("moved-e")).unwrap();
    fs::rename(&other, s.base.join("e")).unwrap();
    let other_in_place = snapshot(&s.base.join("e"));
    let out = finish(child, Duration::from_secs(60));
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 1, "{rep:#}");
    assert_unchanged(&outside_before, &s.outside, "the outside directory");
    assert_unchanged(
        &other_in_place,
        &s.base.join("e"),
        "the directory swapped in for e",
    );
    assert_eq!(other_in_place.1, other_before.1);
    for d in ["moved-d", "moved-e"] {
        assert_eq!(
            walk_tree(&moved.join(d)).len(),
            20,
            "files were removed from {d}, the archived directory moved out of the way"
        );
    }
    assert!(!s.base.join("z.txt").exists(), "z.txt was not removed");
    let kept = kept_of(&rep);
    for i in 0..20 {
        for (d, how) in [
            ("d", "was replaced by a symbolic link"),
            ("e", "was replaced by another directory"),
        ] {
            let p = format!("{d}/f{i:02}");
            let note = kept
                .get(&p)
                .unwrap_or_else(|| panic!("{p} not listed as kept: {rep:#}"));
            assert!(
                note.contains(&format!("directory {d} {how}")),
                "{p}: {note}"
            );
        }
    }
    assert!(
        kept["d"].contains("replaced by a symbolic link"),
        "{}",
        kept["d"]
    );
    assert!(
        kept["e"].contains("replaced by another directory"),
        "{}",
        kept["e"]
    );
}

// ---------------------------------------------------------------------------
// Finding 3: a change only ctime sees.

/// Rewrite `p` in place with other bytes of the same length, then put its
/// mtime back: only ctime (and the content) tell.
fn rewrite_keeping_size_and_mtime(p: &Path) {
    let before = fs::metadata(p).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(p).unwrap();
    let mut new = fs::read(p).unwrap();
    for b in &mut new {
        *b = b.to_ascii_uppercase();
    }
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&new).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = fs::metadata(p).unwrap();
    assert_eq!(
        (
            after.ino(),
            after.len(),
            after.mtime(),
            after.mtime_nsec(),
            after.nlink()
        ),
        (
            before.ino(),
            before.len(),
            before.mtime(),
            before.mtime_nsec(),
            before.nlink()
        ),
        "the rewrite was to keep inode, size, mtime and link count"
    );
    assert_ne!(
        (after.ctime(), after.ctime_nsec()),
        (before.ctime(), before.ctime_nsec()),
        "the rewrite did not move ctime"
    );
}

#[test]
fn finding_3_ctime_only_change_is_kept() {
    let s = Setup::new();
    s.write("a.txt", b"archived content\n", 0o644);
    s.write("m.txt", b"middle\n", 0o644);
    s.write("z.txt", b"removed first\n", 0o644);
    // Removal runs z.txt, m.txt, a.txt: hold the first unlinkat and rewrite
    // a.txt, which the archive holds in its old form.
    let mut child = spawn(held_datamig(&s, 1, Duration::from_secs(3)));
    wait_for_archive(&s, &mut child);
    let t0 = Instant::now();
    rewrite_keeping_size_and_mtime(&s.base.join("a.txt"));
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "the rewrite took longer than the window strace holds open"
    );
    let out = finish(child, Duration::from_secs(60));
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 1, "{rep:#}");
    let kept = kept_of(&rep);
    let note = kept
        .get("a.txt")
        .unwrap_or_else(|| panic!("a.txt is not listed as kept: {rep:#}"));
    assert!(note.contains("ctime"), "{note}");
    assert_eq!(
        fs::read(s.base.join("a.txt")).unwrap(),
        b"ARCHIVED CONTENT\n",
        "the rewritten a.txt was not left in place"
    );
    assert!(!s.base.join("m.txt").exists() && !s.base.join("z.txt").exists());
    assert_eq!(rep["removed"]["files"], 2, "{rep:#}");
    let listed: BTreeSet<&str> = kept.keys().map(String::as_str).collect();
    let source = rep["source"].as_str().unwrap();
    assert_eq!(listed, BTreeSet::from(["a.txt", source]), "{rep:#}");
}

// ---------------------------------------------------------------------------
// Hard links: our own unlinks move ctime and nlink of the remaining links.

#[test]
fn finding_3_hard_link_group_is_removed_cleanly_despite_own_unlinks() {
    let s = Setup::new();
    s.write("h1", b"one inode, four names\n", 0o644);
    for n in ["h2", "sub/h3"] {
        fs::create_dir_all(s.base.join("sub")).unwrap();
        fs::hard_link(s.base.join("h1"), s.base.join(n)).unwrap();
    }
    // A fourth name outside the archived directory stays, and stays intact.
    let outside_link = s.outside.join("h4");
    fs::hard_link(s.base.join("h1"), &outside_link).unwrap();
    s.write("plain", b"x\n", 0o644);
    let out = common::output_within(&mut common::cmd(s.args()), common::DEFAULT_DEADLINE);
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 0, "{rep:#}");
    assert!(kept_of(&rep).is_empty(), "{rep:#}");
    assert_eq!(rep["removed"]["files"], 4, "{rep:#}");
    assert!(!s.base.exists(), "the archived directory is still there");
    let m = fs::metadata(&outside_link).unwrap();
    assert_eq!(m.nlink(), 1);
    assert_eq!(fs::read(&outside_link).unwrap(), b"one inode, four names\n");
}

#[test]
fn finding_3_hard_link_changed_after_its_first_name_was_removed_is_kept() {
    let s = Setup::new();
    // Removal order: c-link, b-plain, a-link. Hold b-plain's unlinkat (the
    // 2nd): c-link is gone by then, and a-link is checked after.
    s.write("a-link", b"shared content\n", 0o644);
    fs::hard_link(s.base.join("a-link"), s.base.join("c-link")).unwrap();
    s.write("b-plain", b"plain\n", 0o644);
    let mut child = spawn(held_datamig(&s, 2, Duration::from_secs(3)));
    wait_for_archive(&s, &mut child);
    let start = Instant::now();
    while s.base.join("c-link").exists() {
        assert!(
            start.elapsed() < Duration::from_millis(2000),
            "c-link was not removed before the held unlinkat"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // datamig reads a-link's ctime through its pin right after unlinking
    // c-link; a rewrite landing in those microseconds is indistinguishable
    // from our own unlink (strace's syscall-exit stop widens them). Rewrite
    // once it is surely parked in the held unlinkat of b-plain.
    std::thread::sleep(Duration::from_millis(200));
    rewrite_keeping_size_and_mtime(&s.base.join("a-link"));
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "the rewrite took longer than the window strace holds open"
    );
    let out = finish(child, Duration::from_secs(60));
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 1, "{rep:#}");
    let kept = kept_of(&rep);
    let note = kept
        .get("a-link")
        .unwrap_or_else(|| panic!("a-link is not listed as kept: {rep:#}"));
    assert!(note.contains("ctime"), "{note}");
    assert!(
        !note.contains("link count"),
        "own unlink counted as a change: {note}"
    );
    assert_eq!(
        fs::read(s.base.join("a-link")).unwrap(),
        b"SHARED CONTENT\n"
    );
    assert!(!s.base.join("b-plain").exists());
}

// ---------------------------------------------------------------------------
// A target of several paths: the directories above them are not archived,
// but removal still only goes through the ones that were there.

/// The built-in layout plus a target `nested` made of `keep/x`, `keep/y`
/// and `zz` (removed first).
fn nested_layout(dir: &Path) -> PathBuf {
    let (c, toml, err) = common::datamig(["layout"]);
    assert_eq!(c, 0, "{err}");
    let mut toml = String::from_utf8(toml).unwrap();
    toml.push_str(
        "\n[[target]]\nname = \"nested\"\nprefix = \"nested\"\npaths = [\"keep/x\", \"keep/y\", \"zz\"]\n",
    );
    let p = dir.join("layout.toml");
    fs::write(&p, toml).unwrap();
    p
}

/// `archive nested` of the layout `layout`, dated `date`.
fn nested_args(s: &Setup, layout: &Path, date: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--layout".into(), layout.into()];
    a.extend(s.args().into_iter().map(|x| match x.to_str() {
        Some("olddir") => "nested".into(),
        Some(DATE) => date.into(),
        _ => x,
    }));
    a
}

#[test]
fn finding_2_scoped_target_parent_swapped_for_another_directory_is_kept() {
    let s = Setup::new();
    let layout = nested_layout(s.root.parent().unwrap());
    let keep = s.root.join("keep");
    for i in 0..10 {
        common::write(&keep, &format!("x/f{i}"), b"x\n");
        common::write(&keep, &format!("y/f{i}"), b"y\n");
    }
    common::write(&keep, "not-in-target", b"stays\n");
    common::write(&s.root, "zz", b"removed first\n");

    // Undisturbed: x and y go, keep (not archived) stays with what else it holds.
    let out = common::output_within(
        &mut common::cmd(nested_args(&s, &layout, DATE)),
        common::DEFAULT_DEADLINE,
    );
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 0, "{rep:#}");
    assert_eq!(rep["removed"]["files"], 21, "{rep:#}");
    assert_eq!(walk_tree(&keep).len(), 1, "{:?}", walk_tree(&keep));

    // `keep` replaced by another directory holding the same names while the
    // first unlinkat (of zz) is held: nothing below it is touched.
    common::write(&s.root, "zz", b"removed first\n");
    for i in 0..10 {
        common::write(&keep, &format!("x/f{i}"), b"x\n");
        common::write(&keep, &format!("y/f{i}"), b"y\n");
    }
    let mut run = spawn(held(
        nested_args(&s, &layout, "20250102"),
        1,
        Duration::from_secs(3),
    ));
    wait_for_archive_named(&s.dest.join("nested-20250102.tar.zst"), &mut run);
    let moved = s.root.parent().unwrap().join("moved-keep");
    fs::rename(&keep, &moved).unwrap();
    fs::create_dir(&keep).unwrap();
    for d in ["x", "y"] {
        for i in 0..10 {
            common::write(&keep, &format!("{d}/f{i}"), b"IMPOSTOR\n");
        }
    }
    let impostor = snapshot(&keep);
    let out = finish(run, Duration::from_secs(60));
    let rep = report_of(&out);
    assert_eq!(common::code(&out), 1, "{rep:#}");
    assert_unchanged(&impostor, &keep, "the directory put in place of keep");
    assert_eq!(
        common::regular_files(&moved).len(),
        21,
        "the archived tree, moved out of the way, lost files"
    );
    let kept = kept_of(&rep);
    let note = kept.get("keep/y/f9").unwrap_or_else(|| panic!("{rep:#}"));
    assert!(
        note.contains("directory keep was replaced by another directory"),
        "{note}"
    );
    assert!(!s.root.join("zz").exists(), "zz was not removed");
}

// ---------------------------------------------------------------------------
// Finding 11 (removal part): a target that is a symlink under the root.

/// `olddir` is a symlink to `outside`: whatever else datamig does with such a
/// target (archive it, or refuse it outright), it never removes through it.
#[test]
fn finding_11_symlinked_target_is_never_removed_through() {
    let s = Setup::new();
    fs::remove_dir(&s.base).unwrap();
    for i in 0..5 {
        fs::write(s.outside.join(format!("f{i}")), b"precious\n").unwrap();
    }
    std::os::unix::fs::symlink(&s.outside, &s.base).unwrap();
    let before = snapshot(&s.outside);
    let out = common::output_within(&mut common::cmd(s.args()), common::DEFAULT_DEADLINE);
    let code = common::code(&out);
    assert_unchanged(&before, &s.outside, "the directory the target links to");
    assert!(
        fs::symlink_metadata(&s.base)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the target symlink itself was removed"
    );
    assert!(
        code == 1 || code == 2,
        "exit {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if code == 1 {
        let rep = report_of(&out);
        let why = rep["remove_refused"].as_str().unwrap_or_default();
        assert!(why.contains("symbolic link"), "{rep:#}");
    }
}
