//! Remote retention and Object Lock (issue 13 items 3 and 5): `backup --to`
//! applies the retention policy to the copies at the location, and `copy` /
//! `backup --to` with `--lock-days` lock what they upload. Against a real S3
//! server (moto, see tests/common/moto.rs).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::moto::Moto;
use common::{code, json_of, output_within};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

/// A small data root and a backup destination beside it.
fn tree(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("data");
    common::write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    common::write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    (root, dir.join("backups"))
}

/// `datamig backup` of `root` into `dest` at `now`, with `args`; (exit, report).
fn backup(moto: &Moto, root: &Path, dest: &Path, now: &str, args: &[&str]) -> (i32, Value) {
    let mut c = common::cmd(["--root", root.to_str().unwrap(), "-q", "--json", "backup"]);
    c.args(["--dest", dest.to_str().unwrap(), "--now", now])
        .args(args);
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let rep = json_of(&o.stdout);
    assert!(
        code(&o) != 2,
        "backup at {now} could not run: {}\n{rep}",
        String::from_utf8_lossy(&o.stderr)
    );
    (code(&o), rep)
}

/// The archive names (with both sidecars checked present) under `prefix/`.
fn remote_copies(moto: &Moto, bucket: &str, prefix: &str) -> Vec<String> {
    let keys = moto.keys(bucket);
    let names: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}/")))
        .filter(|n| n.ends_with(".tar.zst"))
        .map(str::to_string)
        .collect();
    for n in &names {
        for s in [".sha256", ".manifest.jsonl"] {
            assert!(
                keys.contains(&format!("{prefix}/{n}{s}")),
                "{n}{s} missing: {keys:?}"
            );
        }
    }
    names
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

fn names(nights: impl IntoIterator<Item = i64>) -> Vec<String> {
    let mut v: Vec<String> = nights.into_iter().map(common::night_name).collect();
    v.sort();
    v
}

/// Ten nights: the local disk keeps 3 days, the remote 5 (`--remote-keep-daily`);
/// after each night exactly the newest 5 copies remain remotely, each with
/// both sidecars, and the report says what was removed. A dry run shows the
/// remote plan and deletes nothing.
#[test]
fn ten_nights_keep_five_remote_copies_and_three_local() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let moto = Moto::start("copies");
    let url = moto.url("nightly");
    let args = [
        "--to",
        &url,
        "--keep-daily",
        "3",
        "--remote-keep-daily",
        "5",
    ];
    for night in 0..10i64 {
        let (rc, rep) = backup(&moto, &root, &dest, &common::night(night), &args);
        assert_eq!(rc, 0, "night {night}: {rep}");
        let rr = &rep["remote_retention"];
        assert_eq!(rr["location"], url.trim_end_matches('/'), "{rr}");
        assert_eq!(rr["policy"]["keep_daily"], 5);
        assert_eq!(rr["newest_verified"], common::night_name(night), "{rr}");
        let expect = names((night - 4).max(0)..=night);
        assert_eq!(
            remote_copies(&moto, "copies", "nightly"),
            expect,
            "night {night}"
        );
        assert_eq!(strings(&rr["kept"]), expect, "night {night}");
        let gone = if night >= 5 {
            names([night - 5])
        } else {
            vec![]
        };
        assert_eq!(strings(&rr["removed"]), gone, "night {night}");
        assert_eq!(rr["ignored"], serde_json::json!([]), "{rr}");
        let local = strings(&rep["kept"]);
        assert_eq!(local, names((night - 2).max(0)..=night), "night {night}");
    }

    let before = moto.keys("copies");
    let (rc, rep) = backup(
        &moto,
        &root,
        &dest,
        &common::night(10),
        &[&args[..], &["--dry-run"]].concat(),
    );
    assert_eq!(rc, 0, "{rep}");
    let rr = &rep["remote_retention"];
    assert_eq!(rr["dry_run"], true);
    assert_eq!(strings(&rr["removed"]), names([5]), "{rr}");
    assert_eq!(strings(&rr["kept"]), names(6..=10), "{rr}");
    assert_eq!(moto.keys("copies"), before, "a dry run deletes nothing");
}

/// Flip one byte in the middle of `bytes`.
fn flipped(mut bytes: Vec<u8>) -> Vec<u8> {
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    bytes
}

/// The newest remote copy rots; on a night whose copy fails (its name is
/// taken there), retention verifies the copies newest first: the rotten one
/// is kept (and reported, exit 1), so is the newest that passes, and only
/// the older one goes.
#[test]
fn the_newest_copy_failing_verify_is_kept_and_so_is_the_newest_verified_one() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let moto = Moto::start("copies");
    let url = moto.url("nightly");
    for night in 0..3 {
        let a = [
            "--to",
            &url,
            "--keep-daily",
            "1",
            "--remote-keep-daily",
            "3",
        ];
        let (rc, rep) = backup(&moto, &root, &dest, &common::night(night), &a);
        assert_eq!(rc, 0, "{rep}");
    }
    assert_eq!(remote_copies(&moto, "copies", "nightly"), names(0..=2));
    let newest = common::night_name(2);
    let bytes = std::fs::read(dest.join(&newest)).unwrap();
    moto.put(&format!("nightly/{newest}"), &flipped(bytes));
    let tonight = common::night_name(3);
    moto.put(&format!("nightly/{tonight}"), b"not datamig's\n");

    let a = ["--to", &url, "--keep-daily", "1"];
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(3), &a);
    assert_eq!(rc, 1, "{rep}");
    assert!(dest.join(&tonight).is_file(), "the local backup is made");
    assert!(
        rep["remote_error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{rep}"
    );
    let rr = &rep["remote_retention"];
    assert_eq!(rr["newest_verified"], common::night_name(1), "{rr}");
    let failed = rr["failed_verify"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{rr}");
    assert!(failed[0]["path"].as_str().unwrap().ends_with(&newest));
    let why = failed[0]["note"].as_str().unwrap();
    assert!(why.contains("corrupt") || why.contains("SHA-256"), "{rr}");
    assert_eq!(strings(&rr["removed"]), names([0]), "{rr}");
    assert_eq!(strings(&rr["kept"]), names([1, 2]), "{rr}");
    let reasons = |name: &str| {
        rr["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["reasons"].to_string())
            .unwrap()
    };
    assert!(reasons(&newest).contains("fails verify --quick"), "{rr}");
    assert!(
        reasons(&common::night_name(1)).contains("newest copy that passes verify --quick"),
        "{rr}"
    );
    // Tonight's name, taken by someone else's object, is left alone.
    assert_eq!(
        moto.object(&format!("nightly/{tonight}")),
        b"not datamig's\n"
    );
    assert!(
        rr["ignored"].to_string().contains(&tonight),
        "listed as ignored: {rr}"
    );
    let keys = moto.keys("copies");
    assert!(
        !keys.iter().any(|k| k.contains(&common::night_name(0))),
        "{keys:?}"
    );
    assert_eq!(
        keys.len(),
        7,
        "nights 1 and 2 with sidecars, tonight's foreign object: {keys:?}"
    );
}

/// Only complete datamig copies are candidates: another tool's objects and an
/// archive missing a sidecar stay and are listed with why. Sidecars whose
/// archive is gone (what a run killed between the deletes leaves) are
/// finished off when older than the newest verified copy.
#[test]
fn foreign_objects_and_incomplete_copies_are_left_alone_and_a_killed_removal_is_finished() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let moto = Moto::start("copies");
    let url = moto.url("nightly");
    let old = "v2-data-20251201-020000.tar.zst";
    let half = "v2-data-20251202-020000.tar.zst";
    moto.put("nightly/notes.txt", b"hello\n");
    moto.put("nightly/restic-config", b"x");
    moto.put("nightly/other-20251201-020000.tar.zst", b"x");
    moto.put(&format!("nightly/{old}"), b"x");
    moto.put(&format!("nightly/{old}.sha256"), b"x");
    moto.put(&format!("nightly/{half}.manifest.jsonl"), b"x");
    moto.put(&format!("nightly/{half}.sha256"), b"x");
    let a = ["--to", &url, "--keep-last", "1"];
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(0), &a);
    assert_eq!(rc, 0, "{rep}");
    let rr = &rep["remote_retention"];
    let ignored: Vec<(String, String)> = rr["ignored"]
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
    let note = |p: &str| {
        ignored
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| panic!("{p} not listed as ignored: {rr}"))
    };
    assert!(note(old).contains(".manifest.jsonl missing"), "{rr}");
    for foreign in [
        "notes.txt",
        "restic-config",
        "other-20251201-020000.tar.zst",
    ] {
        assert!(
            note(foreign).contains("not a backup of this target"),
            "{rr}"
        );
    }
    assert_eq!(
        strings(&rr["finished"]),
        [format!("{half}.manifest.jsonl"), format!("{half}.sha256")],
        "{rr}"
    );
    let keys = moto.keys("copies");
    for k in [
        "notes.txt",
        "restic-config",
        "other-20251201-020000.tar.zst",
        old,
        &format!("{old}.sha256"),
    ] {
        assert!(
            keys.contains(&format!("nightly/{k}")),
            "{k} was touched: {keys:?}"
        );
    }
    assert!(!keys.iter().any(|k| k.contains(half)), "{keys:?}");
    assert_eq!(strings(&rr["kept"]), names([0]));
}

/// Nights in the future of the real clock, so a lock counted from `--now`
/// is one the store accepts.
fn future_night(days: i64) -> String {
    let t: jiff::Timestamp = "2030-03-01T02:00:00Z".parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn future_name(days: i64) -> String {
    let t: jiff::Timestamp = future_night(days).parse().unwrap();
    format!("v2-data-{}.tar.zst", t.strftime("%Y%m%d-%H%M%S"))
}

/// `--lock-days 2` locks all three objects; retention keeps a locked copy
/// the policy would remove, says until when, and removes it on the night its
/// date has passed.
#[test]
fn a_locked_copy_is_kept_until_its_date_then_removed() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let moto = Moto::start("copies");
    moto.create_bucket("locked", true);
    let url = "s3://locked/nightly";
    let a = ["--to", url, "--keep-last", "1", "--lock-days", "2"];

    let (rc, rep) = backup(&moto, &root, &dest, &future_night(0), &a);
    assert_eq!(rc, 0, "{rep}");
    assert_eq!(rep["remote"]["lock_mode"], "governance", "{rep}");
    assert_eq!(rep["remote"]["locked_until"], future_night(2), "{rep}");
    let n0 = future_name(0);
    for s in ["", ".sha256", ".manifest.jsonl"] {
        let (status, headers) = moto.head("locked", &format!("nightly/{n0}{s}"));
        assert_eq!(status, 200);
        let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            h("x-amz-object-lock-mode").as_deref(),
            Some("GOVERNANCE"),
            "{s}"
        );
        let until = h("x-amz-object-lock-retain-until-date").unwrap();
        assert!(until.starts_with(&future_night(2)[..19]), "{s}: {until}");
    }

    let (rc, rep) = backup(&moto, &root, &dest, &future_night(1), &a);
    assert_eq!(rc, 0, "{rep}");
    let rr = &rep["remote_retention"];
    assert_eq!(rr["removed"], serde_json::json!([]), "{rr}");
    let locked = rr["locked"].as_array().unwrap();
    assert_eq!(locked.len(), 1, "{rr}");
    assert_eq!(locked[0]["name"], n0);
    assert_eq!(locked[0]["retain_until"], future_night(2));
    assert_eq!(locked[0]["mode"], "governance");
    assert_eq!(
        remote_copies(&moto, "locked", "nightly"),
        [n0.clone(), future_name(1)]
    );

    // The operator's view an hour later (a dry run, nothing deleted): with
    // the planned copy newest, both copies are due and both are held.
    let mut c = common::cmd(["--root", root.to_str().unwrap(), "backup"]);
    c.args(["--dest", dest.to_str().unwrap(), "--dry-run"])
        .args(["--now", &future_night(1).replace("02:00:00", "03:00:00")])
        .args(a);
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{text}");
    assert!(
        text.contains("Remote retention at s3://locked/nightly"),
        "{text}"
    );
    assert!(
        text.contains("Remote copies held by Object Lock (2):"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{n0}: until {}", future_night(2))),
        "{text}"
    );

    let (rc, rep) = backup(&moto, &root, &dest, &future_night(2), &a);
    assert_eq!(rc, 0, "{rep}");
    let rr = &rep["remote_retention"];
    assert_eq!(strings(&rr["removed"]), [n0], "{rr}");
    // Night 1's copy is locked until night 3: kept although keep-last is 1.
    assert_eq!(rr["locked"][0]["name"], future_name(1), "{rr}");
    assert_eq!(
        remote_copies(&moto, "locked", "nightly"),
        [future_name(1), future_name(2)]
    );
}

/// `--lock-days` on a bucket without Object Lock: `copy` is exit 2 with one
/// line saying how to create the bucket, and uploads nothing; `backup --to`
/// keeps its local backup and is exit 1, nothing uploaded either. (And the
/// same `copy` into a bucket with Object Lock locks all three objects, here
/// in compliance mode.)
#[test]
fn lock_days_on_a_bucket_without_object_lock_uploads_nothing() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let moto = Moto::start("plain");
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(0), &[]);
    assert_eq!(rc, 0, "{rep}");
    let archive = dest.join(common::night_name(0));

    let mut c = common::cmd(["-q", "copy"]);
    c.arg(&archive).args(["s3://plain/x", "--lock-days", "3"]);
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("s3://plain/x") && err.contains("Object Lock enabled"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(moto.keys("plain"), Vec::<String>::new());

    // The same copy into a bucket with Object Lock: all three objects locked.
    moto.create_bucket("locked", true);
    let mut c = common::cmd(["-q", "--json", "copy"]);
    c.arg(&archive).args([
        "s3://locked/x",
        "--lock-days",
        "1",
        "--lock-mode",
        "compliance",
    ]);
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let rep = json_of(&o.stdout);
    assert_eq!(code(&o), 0, "{rep}");
    assert_eq!(rep["lock_mode"], "compliance", "{rep}");
    let name = common::night_name(0);
    for s in ["", ".sha256", ".manifest.jsonl"] {
        let (_, headers) = moto.head("locked", &format!("x/{name}{s}"));
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-amz-object-lock-mode" && v == "COMPLIANCE"),
            "{s}: {headers:?}"
        );
    }

    let a = ["--to", "s3://plain/x", "--lock-days", "3"];
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(1), &a);
    assert_eq!(rc, 1, "{rep}");
    assert!(dest.join(common::night_name(1)).is_file());
    assert!(
        rep["remote_error"]
            .as_str()
            .unwrap()
            .contains("Object Lock enabled"),
        "{rep}"
    );
    assert_eq!(moto.keys("plain"), Vec::<String>::new());
}

/// `chattr +i` on a file for the life of the guard (root cannot delete an
/// immutable file either), undone on drop so the temp dir can go.
struct Immutable(PathBuf);

impl Immutable {
    fn set(p: &Path) -> Immutable {
        let chattr = common::require_tool("chattr");
        let st = std::process::Command::new(&chattr)
            .arg("+i")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "chattr +i {}", p.display());
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A remote delete that fails (here: the manifest sidecar of a copy in a
/// directory location is immutable) is exit 1 with one line naming the
/// object; the local backup stays; the archive is already gone and the
/// `.sha256` is kept, so the set is recognisable, and the next run finishes
/// the removal.
#[test]
fn a_failed_remote_delete_is_exit_1_and_the_next_run_finishes_it() {
    let t = common::tempdir();
    let (root, dest) = tree(t.path());
    let remote = t.path().join("offsite");
    let moto = Moto::start("unused");
    let to = remote.to_str().unwrap();
    let a = ["--to", to, "--keep-last", "1"];
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(0), &a);
    assert_eq!(rc, 0, "{rep}");
    let n0 = common::night_name(0);
    let guard = Immutable::set(&remote.join(format!("{n0}.manifest.jsonl")));

    let (rc, rep) = backup(&moto, &root, &dest, &common::night(1), &a);
    assert_eq!(rc, 1, "{rep}");
    assert!(
        dest.join(common::night_name(1)).is_file(),
        "the local backup stays"
    );
    let rr = &rep["remote_retention"];
    let errors = rr["remove_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{rr}");
    let path = errors[0]["path"].as_str().unwrap();
    assert!(path.ends_with(&format!("{n0}.manifest.jsonl")), "{rr}");
    assert!(!errors[0]["note"].as_str().unwrap().contains('\n'), "{rr}");
    assert!(!remote.join(&n0).exists(), "the archive goes first");
    assert!(
        remote.join(format!("{n0}.sha256")).exists(),
        ".sha256 goes last"
    );

    drop(guard);
    let (rc, rep) = backup(&moto, &root, &dest, &common::night(2), &a);
    assert_eq!(rc, 0, "{rep}");
    let rr = &rep["remote_retention"];
    assert_eq!(
        strings(&rr["finished"]),
        [format!("{n0}.manifest.jsonl"), format!("{n0}.sha256")],
        "{rr}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&remote)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let n2 = common::night_name(2);
    assert_eq!(
        left,
        [
            n2.clone(),
            format!("{n2}.manifest.jsonl"),
            format!("{n2}.sha256")
        ]
    );
}
