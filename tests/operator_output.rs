//! Issue 12 items 1 and 2: `-q` means quiet (nothing on stdout for a clean
//! run, only the problems and the result line otherwise), and human reports
//! are bounded (each list at most 20 entries, then "… and N more (all of them
//! in --json)"), with the cause first and each finding under one heading.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use common::{os, write};
use serde_json::Value;

const DATE: &str = "20260102";

/// A small data root with nothing wrong in it: inventory, archive and backup
/// of it are clean.
fn clean_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    common::small_tree(&root.join("production"));
    write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    root
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> (i32, String, String) {
    let (code, out, err) = common::datamig(args);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

fn s(p: &Path) -> OsString {
    p.as_os_str().to_owned()
}

/// Archive `root/production` into `dest`; returns the archive's path.
fn archive_production(root: &Path, dest: &Path) -> PathBuf {
    let (code, out, err) = run(&[
        os(b"--root"),
        s(root),
        os(b"-q"),
        os(b"archive"),
        os(b"production"),
        os(b"--dest"),
        s(dest),
        os(b"--date"),
        os(DATE.as_bytes()),
    ]);
    assert_eq!(code, 0, "archive: {err}\n{out}");
    dest.join(format!("v1-production-{DATE}.tar.zst"))
}

#[test]
fn item_1_quiet_clean_run_of_every_verb_prints_nothing() {
    let t = common::tempdir();
    let root = clean_root(t.path());
    let dest = t.path().join("archives");
    let archive = archive_production(&root, &dest);
    let to = t.path().join("restored");
    let runs: Vec<(&str, Vec<OsString>)> = vec![
        ("inventory", vec![os(b"--root"), s(&root), os(b"inventory")]),
        (
            "archive",
            vec![
                os(b"--root"),
                s(&root),
                os(b"archive"),
                os(b"production"),
                os(b"--dest"),
                s(&t.path().join("again")),
                os(b"--date"),
                os(DATE.as_bytes()),
            ],
        ),
        ("verify", vec![os(b"verify"), s(&archive)]),
        (
            "restore",
            vec![os(b"restore"), s(&archive), os(b"--to"), s(&to)],
        ),
        ("list", vec![os(b"list"), s(&archive)]),
        (
            "backup",
            vec![
                os(b"--root"),
                s(&root),
                os(b"backup"),
                os(b"--dest"),
                s(&t.path().join("backups")),
                os(b"--now"),
                os(b"2026-01-02T02:00:00Z"),
            ],
        ),
    ];
    for (verb, args) in &runs {
        let mut quiet = vec![os(b"-q")];
        quiet.extend(args.iter().cloned());
        let (code, out, err) = run(&quiet);
        assert_eq!(code, 0, "-q {verb}: exit {code}: {err}\n{out}");
        assert_eq!(out, "", "-q {verb} on a clean run printed something");
    }
    // Without -q the same clean run still says so, on its last line.
    let (code, out, err) = run(&runs[0].1);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().last(), Some("Result: clean."), "{out}");
    // -q --json still prints its one line: monitoring reads it.
    let mut json = vec![os(b"-q"), os(b"--json")];
    json.extend(runs[0].1.iter().cloned());
    let (code, out, err) = run(&json);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"], "inventory");
}

#[test]
fn item_1_quiet_run_with_problems_prints_only_the_problems_and_the_result() {
    let t = common::tempdir();
    let root = clean_root(t.path());
    write(&root, "instances/b/goals.json", b"{}\n");
    write(&root, "instances/c/goals.json", b"{}\n");
    write(&root, "auth-keys/key.pem", b"secret\n");
    let (code, out, err) = run(&[os(b"--root"), s(&root), os(b"-q"), os(b"inventory")]);
    assert_eq!(code, 1, "{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "Entities:",
            "  instances            3 × instance (2 missing required files)",
            "    instances/b: missing preferences.json",
            "    instances/c: missing preferences.json",
            "",
            "Result: 2 problems listed above (exit 1).",
        ],
        "-q inventory:\n{out}"
    );
    // The full report has the context the quiet one leaves out.
    let (code, full, _) = run(&[os(b"--root"), s(&root), os(b"inventory")]);
    assert_eq!(code, 1);
    for context in ["AREA", "Hashed", "Secrets present", "projects  "] {
        assert!(full.contains(context), "{context:?} missing:\n{full}");
    }
    assert!(full.ends_with("Result: 2 problems listed above (exit 1).\n"));

    // verify of a damaged archive: the cause, the lost members, the result;
    // none of the header lines.
    let dest = t.path().join("archives");
    let archive = archive_production(&root, &dest);
    let mut bytes = fs::read(&archive).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();
    let (code, out, err) = run(&[os(b"-q"), os(b"verify"), s(&archive)]);
    assert_eq!(code, 1, "{err}\n{out}");
    assert!(out.starts_with("  cause "), "cause first:\n{out}");
    for header in [
        "datamig verify",
        "checked against",
        "archive sha256",
        "members ",
    ] {
        assert!(!out.contains(header), "-q printed {header:?}:\n{out}");
    }
    assert!(out.contains("a.txt"), "the lost member is named:\n{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("Result: ") && last.ends_with("(exit 1)."),
        "{out}"
    );
}

/// `n` instance directories, none with its required preferences.json, and a
/// secret; the inventory counts 5,000 problems.
fn broken_instances(root: &Path, n: usize) {
    for i in 0..n {
        write(root, &format!("instances/I-{i:05}/goals.json"), b"{}\n");
    }
    write(root, "auth-keys/key.pem", b"secret\n");
}

#[test]
fn item_2_inventory_of_5000_broken_instances_is_bounded_and_json_has_all() {
    let t = common::tempdir();
    let root = t.path().join("data");
    broken_instances(&root, 5000);
    let (code, out, err) = run(&[os(b"--root"), s(&root), os(b"inventory")]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() < 100, "{} lines:\n{out}", lines.len());
    assert!(
        out.contains("instances         5000 × instance (5000 missing required files)"),
        "the count is shown:\n{out}"
    );
    let shown = lines
        .iter()
        .filter(|l| l.ends_with(": missing preferences.json"))
        .count();
    assert_eq!(shown, 20, "{out}");
    assert!(
        out.contains("    … and 4980 more (all of them in --json)\n"),
        "{out}"
    );
    // The summary lines are at the bottom, where they are always seen.
    let tail = &lines[lines.len() - 8..];
    assert!(
        tail.iter().any(|l| l.starts_with("Secrets present")),
        "secrets warning buried:\n{out}"
    );
    assert_eq!(
        lines.last(),
        Some(&"Result: 5000 problems listed above (exit 1).")
    );

    let (code, v, err) = common::inventory_json(&root, &[]);
    assert_eq!(code, 1, "{err}");
    let missing = v["entities"][0]["missing_required"].as_array().unwrap();
    assert_eq!(missing.len(), 5000);
    assert_eq!(v["problems"], 5000);
}

/// An archive of `n` incompressible 8 KiB files (several 4 MiB zstd frames),
/// named so that no name is a substring of another.
fn multi_frame_archive(dir: &Path, n: usize) -> PathBuf {
    let root = dir.join("data");
    for i in 0..n {
        write(
            &root,
            &format!("production/m-{i:05}.bin"),
            &common::prng_bytes(i as u64 + 1, 8192),
        );
    }
    archive_production(&root, &dir.join("archives"))
}

#[test]
fn item_2_truncated_archive_verify_gives_the_cause_first_and_each_member_once() {
    let t = common::tempdir();
    let archive = multi_frame_archive(t.path(), 1500);
    let len = fs::metadata(&archive).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&archive).unwrap();
    f.set_len(len * 6 / 10).unwrap();
    drop(f);

    let (code, out, err) = run(&[os(b"verify"), s(&archive)]);
    assert_eq!(code, 1, "{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() < 100, "{} lines:\n{out}", lines.len());
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= 300, "a line of {longest} characters:\n{out}");
    let cause = lines
        .iter()
        .position(|l| l.trim_start().starts_with("cause "))
        .unwrap_or_else(|| panic!("no cause line:\n{out}"));
    assert!(lines[cause].contains("truncated"), "{}", lines[cause]);
    let first_list = lines.iter().position(|l| l.ends_with("):")).unwrap();
    assert!(cause < first_list, "the cause comes after a list:\n{out}");
    assert_eq!(cause, 1, "the cause is the report's second line:\n{out}");

    let (code, json, _) = run(&[os(b"--json"), os(b"verify"), s(&archive)]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&json).unwrap();
    let m = &v["members"];
    let mut lost = common::note_paths(m, "damaged");
    lost.extend(common::note_paths(m, "missing"));
    assert!(lost.len() > 100, "the cut lost too little: {}", lost.len());
    assert_eq!(m["ok"].as_u64().unwrap() as usize + lost.len(), 1500);
    for name in &lost {
        let n = lines.iter().filter(|l| l.contains(name.as_str())).count();
        assert!(n <= 1, "{name} is listed {n} times:\n{out}");
    }
    let listed = lines
        .iter()
        .filter(|l| lost.iter().any(|p| l.contains(p.as_str())))
        .count();
    assert_eq!(listed, 20, "{out}");
    assert!(
        out.contains(&format!(
            "  … and {} more (all of them in --json)\n",
            lost.len() - 20
        )),
        "{out}"
    );
    let result = lines.last().unwrap();
    assert!(
        result.starts_with("Result: ") && result.ends_with("(exit 1)."),
        "{result}"
    );
}

#[test]
fn item_2_list_prints_every_member() {
    let t = common::tempdir();
    let root = t.path().join("data");
    for i in 0..60 {
        write(&root, &format!("production/f-{i:03}.txt"), b"x\n");
    }
    let archive = archive_production(&root, &t.path().join("archives"));
    let (code, out, err) = run(&[os(b"list"), s(&archive)]);
    assert_eq!(code, 0, "{err}");
    for i in 0..60 {
        assert!(
            out.contains(&format!(" f-{i:03}.txt\n")),
            "f-{i:03}:\n{out}"
        );
    }
    assert!(!out.contains("more (all of them"), "{out}");
}
