//! `datamig backup`, the nightly job: ten nights of retention, the lock (held
//! by this test, and two real runs racing), `--if-changed`, `--dry-run`, a
//! failed run that must delete nothing, and files that are not datamig's
//! backups and must never be touched.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{night, night_name as name, write};
use serde_json::Value;

const LOCK: &str = ".datamig-backup.lock";

/// A small V2 data root: a few areas of the `v2` target, plus things outside it.
fn v2_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    write(&root, "instances/a/diary.md", b"# a\n");
    write(&root, "instances/b/preferences.json", b"{\"name\":\"b\"}\n");
    write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    write(&root, "roles/r/role.json", b"{}\n");
    write(&root, "wisdom.md", b"be kind\n");
    write(&root, "production/data/instances.json", b"[]\n");
    root
}

/// `datamig --root ROOT backup -q --json ARGS`: (exit code, report, stderr).
fn backup(root: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "--root".to_string(),
        root.display().to_string(),
        "backup".into(),
        "-q".into(),
        "--json".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let (code, out, err) = common::datamig(&all);
    let v = if out.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    };
    (code, v, err)
}

fn names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Names ending in `.tar.zst`.
fn archives(dir: &Path) -> BTreeSet<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".tar.zst"))
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// A backup's three files.
fn trio(n: &str) -> [String; 3] {
    [
        n.to_string(),
        format!("{n}.manifest.jsonl"),
        format!("{n}.sha256"),
    ]
}

#[test]
fn ten_nightly_runs_keep_the_seven_newest() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    write(&dest, "notes.txt", b"the operator's notes\n");
    write(&dest, "v2-data-garbage.tar.zst", b"not an archive\n");
    for i in 0..10 {
        let (code, r, err) = backup(&root, &["--now", &night(i), "--keep-daily", "7"]);
        assert_eq!(code, 0, "night {i}: {err}");
        assert_eq!(r["archive"], dest.join(name(i)).display().to_string());
        assert_eq!(r["verify"], "passed");
        assert_eq!(r["skipped"], false);
        let removed = strs(&r["removed"]);
        if i < 7 {
            assert!(removed.is_empty(), "night {i}: {removed:?}");
        } else {
            assert_eq!(removed, [name(i - 7)], "night {i}");
        }
        assert_eq!(strs(&r["kept"]).len(), (i as usize + 1).min(7));
        assert_eq!(strs(&r["kept"])[0], name(i), "newest first");
        let ignored: Vec<&str> = r["ignored"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["path"].as_str().unwrap())
            .collect();
        assert_eq!(ignored, ["v2-data-garbage.tar.zst"]);
    }
    let mut expect: BTreeSet<String> = (3..10).flat_map(|i| trio(&name(i))).collect();
    expect.extend(
        [LOCK, "notes.txt", "v2-data-garbage.tar.zst"]
            .iter()
            .map(|s| s.to_string()),
    );
    assert_eq!(names(&dest), expect, "seven backups with both sidecars");
    for i in 0..3 {
        for f in trio(&name(i)) {
            assert!(!dest.join(&f).exists(), "{f} should be gone");
        }
    }
    assert_eq!(
        fs::read(dest.join("notes.txt")).unwrap(),
        b"the operator's notes\n"
    );
    assert_eq!(
        fs::read(dest.join("v2-data-garbage.tar.zst")).unwrap(),
        b"not an archive\n"
    );
    // The kept backups are intact archives.
    let (code, _, err) = common::datamig([
        "verify".to_string(),
        dest.join(name(9)).display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_default_destination_policy_and_json_summary() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let (code, r, err) = backup(&root, &["--now", &night(0)]);
    assert_eq!(code, 0, "{err}");
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "report",
        "version",
        "archive",
        "bytes",
        "seconds",
        "verify",
        "kept",
        "removed",
        "skipped",
        "skip_reason",
    ] {
        assert!(keys.contains(k), "{k} missing from {r}");
    }
    assert_eq!(r["report"], "backup");
    assert_eq!(r["version"], 1);
    assert_eq!(r["policy_text"], "keep-daily 7", "the default policy");
    assert_eq!(r["skip_reason"], Value::Null);
    let archive = root.join("backups").join(name(0));
    assert_eq!(r["archive"], archive.display().to_string());
    assert_eq!(
        r["bytes"].as_u64().unwrap(),
        fs::metadata(&archive).unwrap().len()
    );
    assert!(r["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["files"], 6, "the v2 target only, not production/");
    assert_eq!(strs(&r["kept"]), [name(0)]);
    let d0 = &r["decisions"][0];
    assert_eq!(d0["action"], "keep");
    assert_eq!(
        strs(&d0["reasons"]),
        ["newest backup", "keep-daily (2025-12-20)"]
    );
    // The stamp is the run's clock in UTC, whatever offset --now is written with.
    let (code, r, err) = backup(&root, &["--now", "2025-12-21T03:04:05+01:00"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        r["archive"]
            .as_str()
            .unwrap()
            .ends_with("/v2-data-20251221-020405.tar.zst"),
        "{}",
        r["archive"]
    );
}

#[test]
fn a_held_lock_refuses_the_run_and_names_the_holder() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    fs::create_dir_all(&dest).unwrap();
    let lock_path = dest.join(LOCK);
    let mut held = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&lock_path)
        .unwrap();
    // flock(LOCK_EX|LOCK_NB), as datamig takes it.
    held.try_lock().expect("the test takes the lock first");
    held.write_all(b"pid=4242\nhost=test-holder\nstarted=2025-12-20T01:59:00Z\n")
        .unwrap();

    let (code, r, err) = backup(&root, &["--now", &night(0)]);
    assert_eq!(code, 2, "{err}");
    // Issue 12 item 3: a run that cannot start prints the error object, no report.
    assert_eq!(r["exit"], 2, "{r}");
    assert!(
        r.get("archive").is_none(),
        "no report when the run could not start: {r}"
    );
    assert!(err.contains(&lock_path.display().to_string()), "{err}");
    assert!(
        err.contains("pid 4242 on host test-holder, started 2025-12-20T01:59:00Z"),
        "{err}"
    );
    assert!(archives(&dest).is_empty(), "nothing made while locked");

    drop(held);
    // What is left in the file (a dead holder's details) does not matter: only the flock does.
    let (code, _, err) = backup(&root, &["--now", &night(0)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(archives(&dest), set(&[name(0)]));
    let text = fs::read_to_string(&lock_path).unwrap();
    assert!(!text.contains("4242"), "{text}");
    assert!(
        text.starts_with("pid=") && text.contains("\nhost="),
        "{text}"
    );
}

#[test]
fn two_runs_at_once_one_wins_the_other_names_the_lock() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    // 200 MiB that does not compress: the winner holds the lock for a while.
    let mut src = File::open("/dev/urandom").unwrap();
    let mut big = File::create(root.join("instances/a/blob.bin")).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut src, 200 << 20), &mut big).unwrap();
    drop(big);
    let dest = root.join("backups");

    let run = |now: String| {
        let mut c = common::cmd([
            "--root".to_string(),
            root.display().to_string(),
            "backup".into(),
            "-q".into(),
            "--now".into(),
            now,
        ]);
        common::output_within(&mut c, Duration::from_secs(300))
    };
    // Different stamps, so that two runs one after the other would both succeed:
    // only the lock can make one of them exit 2.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(night(0)));
        let b = s.spawn(|| run(night(1)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut results = [a, b].map(|o| {
        (
            common::code(&o),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    });
    results.sort();
    assert_eq!(results[0].0, 0, "one run succeeds: {results:?}");
    assert_eq!(
        results[1].0, 2,
        "the other is refused by the lock (if both succeeded, the first finished before \
         the second started, despite 200 MiB to archive): {results:?}"
    );
    assert!(
        results[1]
            .1
            .contains(&dest.join(LOCK).display().to_string()),
        "{results:?}"
    );
    assert!(results[1].1.contains("another datamig backup is running"));
    assert_eq!(archives(&dest).len(), 1);
}

#[test]
fn if_changed_skips_an_unchanged_tree() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    // No backup yet: --if-changed makes one.
    let (code, r, err) = backup(&root, &["--if-changed", "--now", &night(0)]);
    assert_eq!((code, &r["skipped"]), (0, &Value::Bool(false)), "{err}");
    assert_eq!(archives(&dest), set(&[name(0)]));

    let (code, r, err) = backup(&root, &["--if-changed", "--now", &night(1)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["skipped"], true);
    assert!(
        r["skip_reason"].as_str().unwrap().contains(&name(0)),
        "{}",
        r["skip_reason"]
    );
    assert_eq!(r["archive"], Value::Null);
    assert_eq!(archives(&dest), set(&[name(0)]), "no new archive");
    // Outside the v2 target nothing counts.
    write(&root, "production/data/instances.json", b"[1]\n");
    let (code, r, _) = backup(&root, &["--if-changed", "--now", &night(1)]);
    assert_eq!((code, &r["skipped"]), (0, &Value::Bool(true)));

    // New content and mtime: a new archive.
    let prefs = root.join("instances/a/preferences.json");
    fs::write(&prefs, b"{\"name\":\"a\",\"theme\":\"dark\"}\n").unwrap();
    common::set_mtime(&prefs, common::at(1_766_000_000, 5));
    let (code, r, err) = backup(&root, &["--if-changed", "--now", &night(2)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["skipped"], false);
    assert_eq!(r["changed"], "instances/a/preferences.json changed size");
    assert_eq!(archives(&dest), set(&[name(0), name(2)]));

    // Only the mtime moves, by one nanosecond: still a change.
    common::set_mtime(&prefs, common::at(1_766_000_000, 6));
    let (code, r, err) = backup(&root, &["--if-changed", "--now", &night(3)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["changed"], "instances/a/preferences.json changed mtime");
    assert_eq!(archives(&dest).len(), 3);

    // A new file: a change too.
    write(&root, "instances/c/preferences.json", b"{}\n");
    let (code, r, _) = backup(&root, &["--if-changed", "--now", &night(4)]);
    assert_eq!(code, 0);
    assert_eq!(r["changed"], "instances/c is new");
}

#[test]
fn dry_run_prints_the_plan_with_reasons_and_deletes_nothing() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    // Nothing there yet: an empty plan, and the destination is not created.
    let (code, out, err) = common::datamig([
        "--root".to_string(),
        root.display().to_string(),
        "backup".into(),
        "--dry-run".into(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("would make v2-data-"), "{text}");
    assert!(!dest.exists());

    for i in 0..3 {
        let (code, _, err) = backup(&root, &["--now", &night(i)]);
        assert_eq!(code, 0, "{err}");
    }
    let before = names(&dest);
    let args = |json: bool| {
        let mut v = vec![
            "--root".to_string(),
            root.display().to_string(),
            "backup".into(),
            "--dry-run".into(),
            "--keep-last".into(),
            "1".into(),
            "--now".into(),
            night(3),
        ];
        if json {
            v.push("--json".into());
        }
        v
    };
    let (code, out, err) = common::datamig(args(false));
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("no archive made, nothing removed"), "{text}");
    assert!(text.contains("Retention (keep-last 1):"), "{text}");
    let line = |n: &str| {
        text.lines()
            .find(|l| l.contains(n) && !l.contains("would make"))
            .unwrap_or_else(|| panic!("{n} not in:\n{text}"))
            .to_string()
    };
    // Tonight's backup, which the real run makes, is the one keep-last keeps.
    assert!(text.contains(&format!("would make {}", name(3))), "{text}");
    assert!(line(&name(3)).contains("keep"), "{text}");
    assert!(
        line(&name(3)).contains("newest backup; keep-last"),
        "{text}"
    );
    for i in [0, 1, 2] {
        let l = line(&name(i));
        assert!(l.contains("would remove"), "{l}");
        assert!(l.contains("keep-last: beyond the 1 newest"), "{l}");
    }
    assert!(
        text.contains("3 backups would be removed, 1 kept"),
        "{text}"
    );

    let (code, out, _) = common::datamig(args(true));
    assert_eq!(code, 0);
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["archive"], Value::Null);
    assert_eq!(strs(&r["removed"]), [name(2), name(1), name(0)]);
    assert_eq!(r["would_make"], name(3));
    assert_eq!(names(&dest), before, "a dry run changes nothing");

    // As of a --now before some backups: those are in the future, and kept.
    let (code, r, _) = backup(
        &root,
        &["--dry-run", "--keep-last", "1", "--now", &night(1)],
    );
    assert_eq!(code, 0);
    assert_eq!(r["decisions"][0]["reasons"][0], "in the future");
    assert_eq!(strs(&r["removed"]), [name(0)]);
    assert_eq!(names(&dest), before);
}

#[test]
fn a_failed_run_deletes_nothing() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    for i in 0..3 {
        let (code, _, err) = backup(&root, &["--now", &night(i)]);
        assert_eq!(code, 0, "{err}");
    }
    let before = names(&dest);
    assert_eq!(archives(&dest).len(), 3);

    // The name is taken (same clock as the last run): no archive, so no retention.
    let (code, r, err) = backup(&root, &["--keep-last", "1", "--now", &night(2)]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(r["exit"], 2, "{r}");
    assert!(r.get("archive").is_none(), "{r}");
    assert!(err.contains("already exists"), "{err}");
    // backup has no --date: the hint names what the operator can change.
    assert!(err.contains("pick another --now or --dest"), "{err}");
    assert!(!err.contains("--date"), "{err}");
    assert_eq!(names(&dest), before);

    // Nothing of the v2 target left to archive.
    let gone = d.path().join("moved-away");
    fs::create_dir_all(&gone).unwrap();
    for p in ["instances", "projects", "roles", "wisdom.md"] {
        fs::rename(root.join(p), gone.join(p)).unwrap();
    }
    let (code, _, err) = backup(&root, &["--keep-last", "1", "--now", &night(3)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing to archive"), "{err}");
    assert_eq!(names(&dest), before, "every backup is still there");

    // Bad arguments: exit 2 before anything happens.
    let (code, _, err) = backup(&root, &["--now", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    assert_eq!(names(&dest), before);
}

#[test]
fn only_datamigs_own_verified_backups_are_ever_removed() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    let (code, _, err) = backup(&root, &["--now", &night(0)]);
    assert_eq!(code, 0, "{err}");
    let real = dest.join(name(0));
    let copy_as = |stamp: &str, manifest: Option<&[u8]>, sha: bool| {
        let n = format!("v2-data-{stamp}.tar.zst");
        fs::copy(&real, dest.join(&n)).unwrap();
        if let Some(m) = manifest {
            fs::write(dest.join(format!("{n}.manifest.jsonl")), m).unwrap();
        }
        if sha {
            fs::copy(
                dest.join(format!("{}.sha256", name(0))),
                dest.join(format!("{n}.sha256")),
            )
            .unwrap();
        }
        n
    };
    let good_manifest = fs::read(dest.join(format!("{}.manifest.jsonl", name(0)))).unwrap();
    let mut edited = good_manifest.clone();
    let at = edited.len() / 2;
    edited[at] ^= 0x20;
    let broken = copy_as("20200101-000000", Some(&edited), true);
    let no_sha = copy_as("20200102-000000", Some(&good_manifest), false);
    let no_manifest = copy_as("20200103-000000", None, true);
    let bad_stamp = copy_as("20201301-000000", Some(&good_manifest), true);
    let link = "v2-data-20200104-000000.tar.zst".to_string();
    symlink(&real, dest.join(&link)).unwrap();
    fs::copy(
        dest.join(format!("{}.manifest.jsonl", name(0))),
        dest.join(format!("{link}.manifest.jsonl")),
    )
    .unwrap();
    fs::copy(
        dest.join(format!("{}.sha256", name(0))),
        dest.join(format!("{link}.sha256")),
    )
    .unwrap();
    let (code, _, err) = backup(&root, &["--now", &night(1)]);
    assert_eq!(code, 0, "{err}");
    let before = names(&dest);

    // keep-last 1 would remove every older candidate; only name(0) is one.
    let (code, r, err) = backup(&root, &["--keep-last", "1", "--now", &night(2)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(set(&strs(&r["removed"])), set(&[name(1), name(0)]));
    let ignored: Vec<(String, String)> = r["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["note"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let why = |n: &str| {
        ignored
            .iter()
            .find(|(p, _)| p == n)
            .unwrap_or_else(|| panic!("{n} not ignored: {ignored:?}"))
            .1
            .clone()
    };
    assert!(why(&broken).contains("cannot be used"), "{ignored:?}");
    assert!(why(&no_sha).contains("no .sha256 sidecar"), "{ignored:?}");
    assert!(
        why(&no_manifest).contains("no .manifest.jsonl sidecar"),
        "{ignored:?}"
    );
    assert!(why(&bad_stamp).contains("not named"), "{ignored:?}");
    assert!(why(&link).contains("not a regular file"), "{ignored:?}");

    let mut expect = before.clone();
    for n in [name(0), name(1)] {
        for f in trio(&n) {
            expect.remove(&f);
        }
    }
    expect.extend(trio(&name(2)));
    assert_eq!(
        names(&dest),
        expect,
        "the foreign files are all still there"
    );
}

/// Issue 12 item 10: the dry run counts the backup the real run makes, so the
/// two remove exactly the same backups, night after night, under a policy
/// that mixes count and calendar rules; and the new backup's manifest header
/// is stamped with `--now`, as its name is.
#[test]
fn issue_12_10_dry_run_and_real_run_remove_the_same_backups() {
    let d = common::tempdir();
    let root = v2_root(d.path());
    let dest = root.join("backups");
    let policy = [
        "--keep-last",
        "2",
        "--keep-daily",
        "3",
        "--keep-weekly",
        "2",
    ];
    let mut total_removed = 0;
    for i in 0..12 {
        let now = night(i);
        let mut dry_args = vec!["--dry-run", "--now", &now];
        dry_args.extend(policy);
        let (code, dry, err) = backup(&root, &dry_args);
        assert_eq!(code, 0, "night {i} dry run: {err}");
        assert_eq!(dry["would_make"], name(i), "night {i}");
        let before = names(&dest);

        let mut real_args = vec!["--now", now.as_str()];
        real_args.extend(policy);
        let (code, real, err) = backup(&root, &real_args);
        assert_eq!(code, 0, "night {i}: {err}");
        assert_eq!(
            strs(&dry["removed"]),
            strs(&real["removed"]),
            "night {i}: the dry run and the real run disagree"
        );
        assert_eq!(strs(&dry["kept"]), strs(&real["kept"]), "night {i}");
        for gone in strs(&real["removed"]) {
            assert!(before.contains(&gone), "{gone}");
            assert!(!dest.join(&gone).exists(), "{gone}");
        }
        total_removed += strs(&real["removed"]).len();

        // The manifest header tells the same time as the name.
        let m = fs::read_to_string(dest.join(format!("{}.manifest.jsonl", name(i)))).unwrap();
        let header: Value = serde_json::from_str(m.lines().next().unwrap()).unwrap();
        assert_eq!(header["created"], now.as_str(), "{header:#}");
    }
    assert!(
        total_removed > 0,
        "the policy removed nothing: a vacuous test"
    );
}
