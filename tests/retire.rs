//! `datamig retire ARCHIVE` (issue 12 item 7) and the split of `--force`
//! into `--allow-live` / `--skip-migration-check` (item 6): a removal that
//! `archive --remove-source` refused is finished against the archive already
//! written, never a second one; any change to the tree since the archive, or
//! damage to the archive, refuses and removes nothing; every override a flag
//! made is in the JSON and the text, and the run is not clean.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{FileKind, rel_join, small_tree, walk_tree, write};
use serde_json::Value;

const DATE: &str = "20251225";

/// Every entry below `root` with its kind and, for files, its bytes.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, (FileKind, Vec<u8>)> {
    walk_tree(root)
        .into_iter()
        .map(|(p, k)| {
            let bytes = match k {
                FileKind::File => fs::read(rel_join(root, &p)).unwrap(),
                _ => Vec::new(),
            };
            (p, (k, bytes))
        })
        .collect()
}

/// The archive and its sidecars, hashed, so a test can show they are untouched.
fn archive_files(dest: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dest)
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (
                d.file_name().to_string_lossy().into_owned(),
                common::sha256sum_of(&d.path()),
            )
        })
        .collect()
}

/// `datamig --root ROOT -q -j 2 ARGS...`: (exit code, stdout, stderr).
fn dm(root: &Path, args: &[&OsStr]) -> (i32, Vec<u8>, String) {
    let mut all: Vec<OsString> = vec![
        "--root".into(),
        root.into(),
        "-q".into(),
        "-j".into(),
        "2".into(),
    ];
    all.extend(args.iter().map(|a| a.to_os_string()));
    common::datamig(&all)
}

/// [`dm`] with `--json`, asserting the exit code; the parsed report.
fn dm_json(root: &Path, args: &[&OsStr], want: i32) -> Value {
    let mut a = args.to_vec();
    a.push(OsStr::new("--json"));
    let (c, out, err) = dm(root, &a);
    assert_eq!(
        c,
        want,
        "datamig {args:?} exited {c}, expected {want}\nstderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        1,
        "--json is one line"
    );
    common::json_of(&out)
}

/// `archive TARGET --dest DEST --date DATE EXTRA...`.
fn archive_args<'a>(
    target: &'a str,
    dest: &'a Path,
    date: &'a str,
    extra: &[&'a str],
) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = vec![
        OsStr::new("archive"),
        OsStr::new(target),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(date),
    ];
    v.extend(extra.iter().map(|s| OsStr::new(*s)));
    v
}

fn retire_args<'a>(archive: &'a Path, extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = vec![OsStr::new("retire"), archive.as_os_str()];
    v.extend(extra.iter().map(|s| OsStr::new(*s)));
    v
}

/// A data root whose `v2-dev-data` fails the migration check with one file
/// that differs (`wisdom.md`) and one not migrated
/// (`projects/P/notes.md`); `fix_migration` makes it pass.
fn legacy_root(t: &Path) -> PathBuf {
    let root = t.join("root");
    write(&root, "v2-dev-data/wisdom.md", b"legacy wisdom\n");
    write(&root, "v2-dev-data/projects/P/notes.md", b"legacy notes\n");
    write(&root, "v2-dev-data/projects/P/sub/deep.md", b"deep\n");
    write(&root, "wisdom.md", b"consolidated wisdom, edited since\n");
    write(&root, "projects/P/sub/deep.md", b"deep\n");
    root
}

fn fix_migration(root: &Path) {
    for rel in ["wisdom.md", "projects/P/notes.md"] {
        let to = root.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(root.join("v2-dev-data").join(rel), &to).unwrap();
    }
}

fn gate<'a>(rep: &'a Value, check: &str) -> &'a Value {
    rep["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("no gates: {rep:#}"))
        .iter()
        .find(|g| g["check"] == check)
        .unwrap_or_else(|| panic!("no {check} gate: {rep:#}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x["path"].as_str().unwrap().to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Item 7: the retire path end to end.

#[test]
fn item_7_refused_by_the_migration_check_then_fixed_then_retired_without_a_second_archive() {
    let t = common::tempdir();
    let root = legacy_root(t.path());
    let dest = t.path().join("archive");
    let legacy_before = snapshot(&root.join("v2-dev-data"));

    let rep = dm_json(
        &root,
        &archive_args("v2-dev-data", &dest, DATE, &["--remove-source"]),
        1,
    );
    let why = rep["remove_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{rep:#}"));
    assert!(why.contains("verify --migration"), "{why}");
    assert_eq!(gate(&rep, "migration")["outcome"], "failed", "{rep:#}");
    assert_eq!(snapshot(&root.join("v2-dev-data")), legacy_before);
    let archive = dest.join(format!("v2-dev-data-{DATE}.tar.zst"));
    let written = archive_files(&dest);
    assert_eq!(written.len(), 3, "{written:?}");

    // The same command again cannot make a second archive under that name,
    // and says how to finish instead.
    let (c, _, err) = dm(
        &root,
        &archive_args("v2-dev-data", &dest, DATE, &["--remove-source"]),
    );
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains(&format!("datamig retire {}", archive.display())),
        "{err}"
    );

    // Before the cause is fixed, retire refuses for the same reason.
    let rep = dm_json(&root, &retire_args(&archive, &[]), 1);
    assert_eq!(rep["report"], "retire", "{rep:#}");
    assert!(
        rep["remove_refused"]
            .as_str()
            .unwrap()
            .contains("verify --migration"),
        "{rep:#}"
    );
    assert!(rep["removed"].is_null(), "{rep:#}");
    assert_eq!(snapshot(&root.join("v2-dev-data")), legacy_before);

    fix_migration(&root);
    let rep = dm_json(&root, &retire_args(&archive, &[]), 0);
    assert_eq!(rep["version"], 1, "{rep:#}");
    assert_eq!(rep["target"], "v2-dev-data", "{rep:#}");
    assert_eq!(
        rep["source"].as_str(),
        root.join("v2-dev-data").to_str(),
        "{rep:#}"
    );
    assert_eq!(rep["archive"].as_str(), archive.to_str(), "{rep:#}");
    assert_eq!(rep["verify"], "passed", "{rep:#}");
    assert_eq!(rep["discrepancies"], Value::Array(vec![]), "{rep:#}");
    assert_eq!(
        rep["audit"]["matched"],
        legacy_before.len() as u64,
        "{rep:#}"
    );
    for check in ["verify", "audit", "live", "migration"] {
        assert_eq!(gate(&rep, check)["outcome"], "passed", "{check}: {rep:#}");
    }
    assert_eq!(rep["overrides"], Value::Array(vec![]), "{rep:#}");
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    assert_eq!(rep["removed"]["files"], 3, "{rep:#}");
    assert_eq!(
        rep["removed"]["dirs"], 4,
        "v2-dev-data, projects, P, sub: {rep:#}"
    );
    assert_eq!(rep["removed"]["kept"], Value::Array(vec![]), "{rep:#}");
    assert!(
        !root.join("v2-dev-data").exists(),
        "the source is still there"
    );
    // The consolidated copies stay; the archive and its sidecars are
    // untouched and alone: no second archive was made.
    assert_eq!(
        fs::read(root.join("wisdom.md")).unwrap(),
        b"legacy wisdom\n"
    );
    assert!(root.join("projects/P/notes.md").is_file());
    assert_eq!(archive_files(&dest), written);
    let (c, _, err) = dm(&root, &[OsStr::new("verify"), archive.as_os_str()]);
    assert_eq!(c, 0, "the archive no longer verifies: {err}");

    // Nothing left to retire: a clear exit 2, the archive still untouched.
    let (c, _, err) = dm(&root, &retire_args(&archive, &[]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("nothing to retire"), "{err}");
    assert_eq!(archive_files(&dest), written);
}

#[test]
fn item_7_retire_of_an_unverified_archive_verifies_it_and_removes_links_and_all() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("olddir"));
    let n = walk_tree(&root.join("olddir")).len() as u64;
    let dest = t.path().join("out");
    let rep = dm_json(
        &root,
        &archive_args("olddir", &dest, DATE, &["--remove-source", "--no-verify"]),
        1,
    );
    let why = rep["remove_refused"].as_str().unwrap();
    assert!(
        why.contains("datamig retire"),
        "the refusal points at retire: {why}"
    );
    let archive = dest.join(format!("olddir-{DATE}.tar.zst"));

    // Not quiet: a clean retire under -q prints nothing.
    let mut args: Vec<&OsStr> = vec![OsStr::new("--root"), root.as_os_str()];
    args.extend(retire_args(&archive, &[]));
    let (c, out, err) = common::datamig(&args);
    assert_eq!(c, 0, "{err}\n{}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(&format!("{n} entries match the archive")),
        "{text}"
    );
    assert!(text.contains("Source removed: 6 files"), "{text}");
    assert!(text.contains("Result: clean"), "{text}");
    assert!(!root.join("olddir").exists());

    // Under -q a clean retire prints nothing at all.
    small_tree(&root.join("olddir"));
    let dest2 = t.path().join("out2");
    dm_json(&root, &archive_args("olddir", &dest2, DATE, &[]), 0);
    let (c, out, err) = dm(
        &root,
        &retire_args(&dest2.join(format!("olddir-{DATE}.tar.zst")), &[]),
    );
    assert_eq!(c, 0, "{err}");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(!root.join("olddir").exists());
}

#[test]
fn item_7_retire_refuses_when_the_tree_changed_since_the_archive() {
    type Change = (&'static str, fn(&Path), &'static str, &'static str);
    let cases: [Change; 4] = [
        (
            "a modified file (same size)",
            |s| fs::write(s.join("sub/b.txt"), b"BRAVO\n").unwrap(),
            "modified",
            "sub/b.txt",
        ),
        (
            "a new file",
            |s| write(s, "sub/new.txt", b"written after the archive\n"),
            "new",
            "sub/new.txt",
        ),
        (
            "a missing file",
            |s| fs::remove_file(s.join("sub/deeper/c.txt")).unwrap(),
            "missing",
            "sub/deeper/c.txt",
        ),
        (
            "a mode change",
            |s| fs::set_permissions(s.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap(),
            "metadata",
            "a.txt",
        ),
    ];
    let t = common::tempdir();
    for (k, (what, change, list, path)) in cases.into_iter().enumerate() {
        let root = t.path().join(format!("root{k}"));
        let src = root.join("olddir");
        small_tree(&src);
        let dest = t.path().join(format!("out{k}"));
        dm_json(&root, &archive_args("olddir", &dest, DATE, &[]), 0);
        let archive = dest.join(format!("olddir-{DATE}.tar.zst"));
        let written = archive_files(&dest);
        change(&src);
        let before = snapshot(&src);
        let rep = dm_json(&root, &retire_args(&archive, &[]), 1);
        assert_eq!(rep["verify"], "passed", "{what}: {rep:#}");
        assert_eq!(gate(&rep, "audit")["outcome"], "failed", "{what}: {rep:#}");
        assert_eq!(
            strings(&rep["audit"][list]),
            vec![path.to_string()],
            "{what}: {rep:#}"
        );
        let why = rep["remove_refused"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {rep:#}"));
        assert!(
            why.contains("changed since it was archived"),
            "{what}: {why}"
        );
        assert!(rep["removed"].is_null(), "{what}: {rep:#}");
        assert_eq!(snapshot(&src), before, "{what}: retire changed the tree");
        assert_eq!(archive_files(&dest), written, "{what}: the archive changed");
        // The text report lists the change under its heading.
        let (c, out, _) = dm(&root, &retire_args(&archive, &[]));
        assert_eq!(c, 1);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(path) && text.contains("Source NOT removed"),
            "{what}: {text}"
        );
    }
}

#[test]
fn item_7_retire_of_a_damaged_archive_refuses_and_removes_nothing() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    small_tree(&src);
    write(&src, "big.bin", &common::prng_bytes(7, 256 << 10));
    let dest = t.path().join("out");
    dm_json(&root, &archive_args("olddir", &dest, DATE, &[]), 0);
    let archive = dest.join(format!("olddir-{DATE}.tar.zst"));
    // One flipped byte in the middle of the compressed data.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&archive)
        .unwrap();
    let at = f.metadata().unwrap().len() / 3;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);
    let before = snapshot(&src);

    let rep = dm_json(&root, &retire_args(&archive, &[]), 1);
    assert_eq!(rep["verify"], "failed", "{rep:#}");
    assert!(
        !rep["discrepancies"].as_array().unwrap().is_empty(),
        "{rep:#}"
    );
    assert!(
        rep["audit"].is_null(),
        "no audit against a damaged archive: {rep:#}"
    );
    assert_eq!(gate(&rep, "verify")["outcome"], "failed", "{rep:#}");
    let why = rep["remove_refused"].as_str().unwrap();
    assert!(why.contains("did not verify"), "{why}");
    assert!(rep["removed"].is_null(), "{rep:#}");
    assert_eq!(
        snapshot(&src),
        before,
        "a damaged archive removed something"
    );
}

#[test]
fn item_7_retire_cannot_run_exits_2_naming_what_to_do() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("olddir"));
    let dest = t.path().join("out");
    dm_json(&root, &archive_args("olddir", &dest, DATE, &[]), 0);
    let archive = dest.join(format!("olddir-{DATE}.tar.zst"));
    let before = snapshot(&root);

    let (c, _, err) = dm(&root, &retire_args(&dest.join("nope.tar.zst"), &[]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("nope.tar.zst"), "{err}");

    // Another data root: the archived directory is not under it.
    let other = t.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let v = dm_json(&other, &retire_args(&archive, &[]), 2);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("not under the data root") && msg.contains("--root"),
        "{msg}"
    );
    assert_eq!(v["report"], "retire");

    // Another layout than the archive was made with: its targets and gates
    // could differ, so it must be the same one.
    let (c, text, _) = dm(&root, &[OsStr::new("layout")]);
    assert_eq!(c, 0);
    let renamed = String::from_utf8(text).unwrap().replacen(
        "name = \"coordination-v2\"",
        "name = \"elsewhere\"",
        1,
    );
    let layout = t.path().join("elsewhere.toml");
    fs::write(&layout, renamed).unwrap();
    let mut args = retire_args(&archive, &[]);
    args.extend([OsStr::new("--layout"), layout.as_os_str()]);
    let (c, _, err) = dm(&root, &args);
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("--layout") && err.contains("elsewhere"),
        "{err}"
    );

    // No manifest at all (both sidecars gone and the index cut off).
    let bare = t.path().join("bare.tar.zst");
    let bytes = fs::read(&archive).unwrap();
    fs::write(&bare, &bytes[..bytes.len() / 2]).unwrap();
    let (c, _, err) = dm(&root, &retire_args(&bare, &[]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("no usable manifest"), "{err}");
    assert_eq!(snapshot(&root), before);
}

// ---------------------------------------------------------------------------
// Item 6: the overrides, recorded.

#[test]
fn item_6_skip_migration_check_is_recorded_in_json_and_text_and_exits_1() {
    let t = common::tempdir();
    let root = legacy_root(t.path());
    let dest = t.path().join("out");
    let keep = fs::read(root.join("wisdom.md")).unwrap();

    let rep = dm_json(
        &root,
        &archive_args(
            "v2-dev-data",
            &dest,
            DATE,
            &["--remove-source", "--skip-migration-check"],
        ),
        1,
    );
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    assert_eq!(rep["removed"]["files"], 3, "{rep:#}");
    assert_eq!(
        rep["overrides"],
        serde_json::json!([{
            "flag": "--skip-migration-check",
            "check": "migration",
            "outcome": "failed",
            "detail": "1 differs, 1 not migrated"
        }]),
        "{rep:#}"
    );
    let m = gate(&rep, "migration");
    assert_eq!(m["overridden_by"], "--skip-migration-check", "{rep:#}");
    assert!(!root.join("v2-dev-data").exists());
    assert_eq!(
        fs::read(root.join("wisdom.md")).unwrap(),
        keep,
        "consolidated side untouched"
    );

    // The text says it loudly, and the result is not clean.
    let root2 = legacy_root(&t.path().join("second"));
    let (c, out, err) = dm(
        &root2,
        &archive_args(
            "v2-dev-data",
            &dest,
            "20251226",
            &["--remove-source", "--skip-migration-check"],
        ),
    );
    assert_eq!(c, 1, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(
            "migration check FAILED: 1 differs, 1 not migrated; removed anyway because of --skip-migration-check"
        ),
        "{text}"
    );
    assert!(!text.contains("Result: clean"), "{text}");

    // A flag that overrode nothing (the check passes) is not recorded: clean.
    let root3 = legacy_root(&t.path().join("third"));
    fix_migration(&root3);
    let rep = dm_json(
        &root3,
        &archive_args(
            "v2-dev-data",
            &dest,
            "20251227",
            &["--remove-source", "--skip-migration-check"],
        ),
        0,
    );
    assert_eq!(rep["overrides"], Value::Array(vec![]), "{rep:#}");
    assert_eq!(gate(&rep, "migration")["outcome"], "passed", "{rep:#}");
}

#[test]
fn item_6_and_7_retire_of_live_data_needs_allow_live_and_records_it() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/X/preferences.json", b"{}");
    write(&root, "projects/P/project.json", b"{\"id\":\"P\"}");
    write(&root, "wisdom.md", b"be kind\n");
    write(&root, "vacation/notes.txt", b"not part of v2\n");
    let dest = t.path().join("out");
    dm_json(&root, &archive_args("v2", &dest, DATE, &[]), 0);
    let archive = dest.join(format!("v2-data-{DATE}.tar.zst"));
    let before = snapshot(&root);

    let rep = dm_json(&root, &retire_args(&archive, &[]), 1);
    assert_eq!(rep["target"], "v2", "{rep:#}");
    assert!(
        rep["remove_refused"]
            .as_str()
            .unwrap()
            .contains("--allow-live"),
        "{rep:#}"
    );
    assert_eq!(snapshot(&root), before);

    let rep = dm_json(&root, &retire_args(&archive, &["--allow-live"]), 1);
    assert_eq!(
        rep["overrides"],
        serde_json::json!([{"flag": "--allow-live", "check": "live", "outcome": "failed", "detail": "v2 is live V2 data"}]),
        "{rep:#}"
    );
    assert_eq!(rep["removed"]["files"], 3, "{rep:#}");
    for gone in ["instances", "projects", "wisdom.md"] {
        assert!(!root.join(gone).exists(), "{gone} is still there");
    }
    assert!(
        root.join("vacation/notes.txt").is_file(),
        "outside the target"
    );
}

/// The migration gate of retire takes the same `--accept` as `archive` and
/// `verify --migration`; the accepted files are named in `notes`.
#[test]
fn item_7_retire_honours_accept_and_names_the_accepted_files() {
    let t = common::tempdir();
    let root = legacy_root(t.path());
    let dest = t.path().join("out");
    dm_json(&root, &archive_args("v2-dev-data", &dest, DATE, &[]), 0);
    let archive = dest.join(format!("v2-dev-data-{DATE}.tar.zst"));
    let accepts = [
        "--accept",
        "v2-dev-data/wisdom.md",
        "--accept",
        "v2-dev-data/projects/P/notes.md",
    ];
    let rep = dm_json(&root, &retire_args(&archive, &accepts), 0);
    assert_eq!(gate(&rep, "migration")["outcome"], "passed", "{rep:#}");
    let mut noted = strings(&rep["notes"]);
    noted.sort();
    assert_eq!(
        noted,
        ["v2-dev-data/projects/P/notes.md", "v2-dev-data/wisdom.md"],
        "{rep:#}"
    );
    assert!(!root.join("v2-dev-data").exists());

    // Where no migration gate runs, --accept would mean nothing: refused.
    small_tree(&root.join("olddir"));
    dm_json(&root, &archive_args("olddir", &dest, DATE, &[]), 0);
    let other = dest.join(format!("olddir-{DATE}.tar.zst"));
    let (c, _, err) = dm(&root, &retire_args(&other, &accepts[..2]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--accept applies only"), "{err}");
    assert!(root.join("olddir/a.txt").is_file());
}

/// What the archive left out by pattern is recorded in its manifest header:
/// retire leaves it alone (kept, listed) instead of calling it new.
#[test]
fn item_7_retire_leaves_what_the_archive_excluded_alone() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let src = root.join("olddir");
    small_tree(&src);
    write(&src, "cache/blob.bin", b"not worth keeping\n");
    let dest = t.path().join("out");
    dm_json(
        &root,
        &archive_args("olddir", &dest, DATE, &["--exclude", "cache/**"]),
        0,
    );
    let archive = dest.join(format!("olddir-{DATE}.tar.zst"));
    let rep = dm_json(&root, &retire_args(&archive, &[]), 1);
    assert_eq!(gate(&rep, "audit")["outcome"], "passed", "{rep:#}");
    assert!(rep["remove_refused"].is_null(), "{rep:#}");
    assert_eq!(rep["removed"]["files"], 6, "{rep:#}");
    assert!(
        src.join("cache/blob.bin").is_file(),
        "an excluded file was removed"
    );
    assert!(!src.join("a.txt").exists() && !src.join("sub").exists());
    let kept = strings(&rep["removed"]["kept"]);
    assert!(kept.iter().any(|k| k.ends_with("olddir")), "{rep:#}");
}
