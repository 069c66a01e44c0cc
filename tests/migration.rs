//! `datamig verify --migration` can be satisfied (issue 12 item 9): whatever
//! the consolidation left behind in `v2-dev-data/instances/<id>/` maps to
//! `instances/<id>/`, reports "not migrated" with the `cp -p` that fixes it,
//! and passes once copied; `--accept PATH` settles an obsolete file in the
//! check and in `archive v2-dev-data --remove-source`; "newer" is decided and
//! printed to the nanosecond.

mod common;

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use common::{json_of, write};
use serde_json::Value;

const ID: &str = "Bastion-11a9";

/// A root whose migration left two files behind: a dotfile of the instance
/// home and a nested note; the five API files were migrated (one here).
fn half_migrated_root(root: &Path) {
    write(
        root,
        &format!("v2-dev-data/instances/{ID}/diary.md"),
        b"diary\n",
    );
    write(root, &format!("instances/{ID}/diary.md"), b"diary\n");
    write(
        root,
        &format!("v2-dev-data/instances/{ID}/.bashrc"),
        b"alias ll='ls -l'\n",
    );
    write(
        root,
        &format!("v2-dev-data/instances/{ID}/notes/old plan.md"),
        b"the old plan\n",
    );
    write(root, "v2-dev-data/wisdom.md", b"wisdom\n");
    write(root, "wisdom.md", b"wisdom\n");
}

fn migration_json(root: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args: Vec<OsString> = vec![
        "--root".into(),
        root.into(),
        "verify".into(),
        "--migration".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let (c, out, err) = common::datamig(&args);
    (c, json_of(&out), err)
}

fn legacy_of(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x["legacy"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn item_9_a_file_left_in_a_legacy_instance_is_not_migrated_until_copied() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);

    let (c, r, err) = migration_json(&root, &[]);
    assert_eq!(c, 1, "{r:#}\n{err}");
    assert_eq!(r["legacy_files"], 4, "{r:#}");
    assert_eq!(r["migrated"], 2, "{r:#}");
    assert_eq!(r["unmapped"].as_array().unwrap().len(), 0, "{r:#}");
    let bashrc = format!("v2-dev-data/instances/{ID}/.bashrc");
    let plan = format!("v2-dev-data/instances/{ID}/notes/old plan.md");
    assert_eq!(
        legacy_of(&r["not_migrated"]),
        [bashrc.clone(), plan.clone()]
    );
    let nm = r["not_migrated"].as_array().unwrap();
    let by = |p: &str| nm.iter().find(|x| x["legacy"] == p).unwrap().clone();
    assert_eq!(by(&bashrc)["expected"], format!("instances/{ID}/.bashrc"));
    assert_eq!(
        by(&plan)["expected"],
        format!("instances/{ID}/notes/old plan.md")
    );

    // The human report prints the exact commands; running them resolves it.
    let (c, out, _) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("verify"),
        OsStr::new("--migration"),
    ]);
    assert_eq!(c, 1);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("--accept PATH"), "{text}");
    for x in nm {
        let copy = x["copy"].as_str().unwrap_or_else(|| panic!("{x:#}"));
        assert!(copy.contains("cp -p -- "), "{copy}");
        assert!(text.contains(copy), "hint {copy} not in:\n{text}");
        let st = Command::new("sh").arg("-c").arg(copy).status().unwrap();
        assert!(st.success(), "{copy}");
    }
    // The nested note needed its directory made first.
    assert!(
        by(&plan)["copy"]
            .as_str()
            .unwrap()
            .starts_with("mkdir -p -- ")
    );
    assert_eq!(
        std::fs::read(root.join(format!("instances/{ID}/notes/old plan.md"))).unwrap(),
        b"the old plan\n"
    );

    let (c, r, err) = migration_json(&root, &[]);
    assert_eq!(c, 0, "{r:#}\n{err}");
    assert_eq!(r["migrated"], 4, "{r:#}");
    assert!(r["not_migrated"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(r["accepted"].as_array().unwrap().is_empty(), "{r:#}");
}

#[test]
fn item_9_a_legacy_file_with_other_content_at_its_place_differs() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);
    write(
        &root,
        &format!("instances/{ID}/.bashrc"),
        b"# rewritten since\n",
    );
    let (c, r, _) = migration_json(&root, &[]);
    assert_eq!(c, 1, "{r:#}");
    let d = &r["differs"][0];
    assert_eq!(
        d["legacy"],
        format!("v2-dev-data/instances/{ID}/.bashrc"),
        "{r:#}"
    );
    assert_eq!(d["consolidated"], format!("instances/{ID}/.bashrc"));
    assert!(
        d["copy"].as_str().unwrap().starts_with("cp -p -- "),
        "{d:#}"
    );
}

#[test]
fn item_9_newer_is_decided_and_printed_to_the_nanosecond() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);
    let legacy = root.join("v2-dev-data/wisdom.md");
    let new = root.join("wisdom.md");
    std::fs::write(&new, b"wisdom, edited\n").unwrap();
    common::set_mtime(&legacy, common::at(1_750_000_000, 1));
    common::set_mtime(&new, common::at(1_750_000_000, 0));

    let (c, r, _) = migration_json(&root, &[]);
    assert_eq!(c, 1, "{r:#}");
    let d = r["differs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["legacy"] == "v2-dev-data/wisdom.md")
        .unwrap_or_else(|| panic!("{r:#}"))
        .clone();
    assert_eq!(d["newer"], "legacy", "{d:#}");
    assert_eq!(d["legacy_mtime"], "2025-06-15T15:06:40.000000001Z", "{d:#}");
    assert_eq!(d["consolidated_mtime"], "2025-06-15T15:06:40.000000000Z");
    assert_eq!(d["legacy_mtime_ns"], 1_750_000_000_000_000_001i64);
    assert_eq!(d["consolidated_mtime_ns"], 1_750_000_000_000_000_000i64);

    // The human line shows both, so the operator sees why one is newer.
    let (_, out, _) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("verify"),
        OsStr::new("--migration"),
    ]);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("15:06:40.000000001Z"), "{text}");
    assert!(text.contains("15:06:40.000000000Z"), "{text}");
    assert!(text.contains("newer: legacy"), "{text}");
}

#[test]
fn item_9_accept_lists_obsolete_files_instead_of_failing() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);
    let bashrc = format!("v2-dev-data/instances/{ID}/.bashrc");
    let notes_dir = format!("./v2-dev-data/instances/{ID}/notes/");

    // One accepted, one still open: still exit 1, and the accepted one is named.
    let (c, r, _) = migration_json(&root, &["--accept", &bashrc]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(legacy_of(&r["accepted"]), std::slice::from_ref(&bashrc));
    assert_eq!(r["accepted"][0]["was"], "not_migrated");
    assert_eq!(r["accepted"][0]["accepted_by"], bashrc);
    assert_eq!(r["not_migrated"].as_array().unwrap().len(), 1, "{r:#}");

    // A directory covers what is below it; both settled: exit 0, both listed.
    let (c, r, _) = migration_json(&root, &["--accept", &bashrc, "--accept", &notes_dir]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["accepted"].as_array().unwrap().len(), 2, "{r:#}");
    let (c, out, _) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("verify"),
        OsStr::new("--migration"),
        OsStr::new("--accept"),
        OsStr::new(&bashrc),
        OsStr::new("--accept"),
        OsStr::new(&notes_dir),
    ]);
    assert_eq!(c, 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Accepted as obsolete"), "{text}");
    assert!(text.contains(&bashrc), "{text}");
    assert!(text.contains("accepted as obsolete (2)"), "{text}");
}

#[test]
fn item_9_an_accept_that_matches_no_legacy_file_is_refused() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);
    let typo = format!("v2-dev-data/instances/{ID}/.bashrcc");
    let (c, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("verify"),
        OsStr::new("--migration"),
        OsStr::new("--accept"),
        OsStr::new(&typo),
    ]);
    assert_eq!(c, 2, "{}", String::from_utf8_lossy(&out));
    assert!(
        err.contains(&typo) && err.contains("no legacy file"),
        "{err}"
    );
}

fn archive_dev_data(root: &Path, dest: &Path, date: &str, extra: &[&str]) -> (i32, Value) {
    let mut args: Vec<OsString> = vec![
        "--root".into(),
        root.into(),
        "archive".into(),
        "v2-dev-data".into(),
        "--dest".into(),
        dest.into(),
        "--date".into(),
        date.into(),
        "--remove-source".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let (c, out, err) = common::datamig(&args);
    assert!(c <= 2, "{err}");
    (c, json_of(&out))
}

#[test]
fn item_9_the_remove_source_gate_honours_the_same_accept() {
    let t = common::tempdir();
    let root = t.path().join("root");
    half_migrated_root(&root);
    let dest = t.path().join("dest");
    let bashrc = format!("v2-dev-data/instances/{ID}/.bashrc");
    let notes_dir = format!("v2-dev-data/instances/{ID}/notes");

    let (c, r) = archive_dev_data(&root, &dest, "20251225", &["--accept", &bashrc]);
    assert_eq!(c, 1, "{r:#}");
    assert!(
        r["remove_refused"]
            .as_str()
            .unwrap()
            .contains("1 not migrated"),
        "{r:#}"
    );
    assert!(root.join(&bashrc).is_file());

    let (c, r) = archive_dev_data(
        &root,
        &dest,
        "20251226",
        &["--accept", &bashrc, "--accept", &notes_dir],
    );
    assert_eq!(c, 0, "{r:#}");
    assert!(r["remove_refused"].is_null(), "{r:#}");
    assert!(!root.join("v2-dev-data").exists(), "{r:#}");
    let notes: Vec<&Value> = r["notes"].as_array().unwrap().iter().collect();
    assert_eq!(notes.len(), 2, "{r:#}");
    assert!(notes.iter().any(
        |n| n["path"] == bashrc && n["note"].as_str().unwrap().contains("accepted as obsolete")
    ));

    // --accept means nothing where no migration gate runs: refused, not ignored.
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new("instances"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--remove-source"),
        OsStr::new("--accept"),
        OsStr::new("instances/x"),
    ]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--accept applies only"), "{err}");
}
