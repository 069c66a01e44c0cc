//! Off-site copies (issue 13): `datamig copy` against a real S3 server (moto,
//! started per test on 127.0.0.1; see tests/common/moto.rs) and into a local
//! directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::{code, json_of, output_within};

const DATE: &str = "20251225";
/// S3's smallest part: small archives still take the multipart path.
const PART: &str = "5242880";
const DEADLINE: Duration = Duration::from_secs(120);

/// A root whose `data/` holds `mib` MiB of incompressible bytes and a few
/// small files; its archive is `dest/data-DATE.tar.zst`.
fn archive_of(dir: &Path, mib: usize) -> PathBuf {
    let root = dir.join("root");
    common::write(&root, "data/big.bin", &common::prng_bytes(7, mib << 20));
    common::write(&root, "data/notes/a.txt", b"alpha\n");
    common::write(&root, "data/notes/b.txt", b"bravo\n");
    let dest = dir.join("archives");
    let o = output_within(
        common::cmd([
            "--root".as_ref(),
            root.as_os_str(),
            "-q".as_ref(),
            "archive".as_ref(),
            "data".as_ref(),
            "--dest".as_ref(),
            dest.as_os_str(),
            "--date".as_ref(),
            DATE.as_ref(),
            "--no-verify".as_ref(),
        ])
        .arg("-j")
        .arg("2"),
        DEADLINE,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    dest.join(format!("data-{DATE}.tar.zst"))
}

fn copy_cmd(moto: Option<&Moto>, archive: &Path, to: &str) -> Command {
    let mut c = common::cmd(["--json".as_ref(), "copy".as_ref(), archive.as_os_str()]);
    c.arg(to).env("DATAMIG_PART_SIZE", PART);
    if let Some(m) = moto {
        m.env(&mut c);
    }
    c
}

/// Run a copy: (exit code, JSON report, stderr).
fn copy(moto: Option<&Moto>, archive: &Path, to: &str) -> (i32, serde_json::Value, String) {
    let o = output_within(&mut copy_cmd(moto, archive, to), DEADLINE);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = json_of(&o.stdout);
    (code(&o), v, err)
}

/// `ARCHIVE` + suffix: the sidecar paths.
fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn copy_to_s3_uploads_archive_then_sidecars_and_proves_the_copy() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 12);
    let moto = Moto::start("copies");
    let (rc, rep, err) = copy(Some(&moto), &a, &moto.url("nightly"));
    assert_eq!(rc, 0, "{err}\n{rep}");
    let name = a.file_name().unwrap().to_str().unwrap();
    assert_eq!(rep["report"], "copy");
    assert_eq!(rep["version"], 1);
    assert_eq!(rep["remote_verify"], "passed", "{rep}");
    let sha_line = String::from_utf8(read(&with_suffix(&a, ".sha256"))).unwrap();
    let sha = sha_line.split_whitespace().next().unwrap();
    assert_eq!(rep["archive_sha256"], sha);
    assert_eq!(
        rep["remote_sha256"], sha,
        "the bytes read back hash to the sidecar"
    );
    let size = std::fs::metadata(&a).unwrap().len();
    assert_eq!(rep["remote_bytes"], size);
    // Upload order: the archive first, then its sidecars.
    let urls: Vec<&str> = rep["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["url"].as_str().unwrap())
        .collect();
    let base = format!("s3://copies/nightly/{name}");
    assert_eq!(
        urls,
        [
            base.clone(),
            format!("{base}.sha256"),
            format!("{base}.manifest.jsonl")
        ]
    );
    for suffix in ["", ".sha256", ".manifest.jsonl"] {
        assert!(
            moto.has_object(&format!("nightly/{name}{suffix}")),
            "{name}{suffix} is not in the bucket"
        );
    }
    assert_eq!(
        moto.object(&format!("nightly/{name}.sha256")),
        sha_line.as_bytes()
    );
    assert!(
        moto.unfinished_uploads().is_empty(),
        "a finished copy leaves no multipart upload behind"
    );
    assert!(
        rep["aborted_uploads"].as_array().unwrap().is_empty(),
        "{rep}"
    );
}

#[test]
fn an_existing_name_is_refused_and_nothing_is_overwritten() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 1);
    let moto = Moto::start("copies");
    let url = moto.url("p");
    let (rc, _, err) = copy(Some(&moto), &a, &url);
    assert_eq!(rc, 0, "{err}");
    let name = a.file_name().unwrap().to_str().unwrap();
    let before = moto.object(&format!("p/{name}.manifest.jsonl"));

    // A different archive of the same name: the copy must not replace it.
    let t2 = common::tempdir();
    common::write(&t2.path().join("root"), "data/other.txt", b"other\n");
    let b = archive_of(t2.path(), 0);
    assert_eq!(b.file_name(), a.file_name());
    let (rc, rep, err) = copy(Some(&moto), &b, &url);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains(&format!("s3://copies/p/{name} already exists"))
            && err.contains("never overwrites"),
        "{err}"
    );
    assert_eq!(rep["report"], "copy");
    assert_eq!(rep["exit"], 2);
    assert_eq!(
        moto.object(&format!("p/{name}.manifest.jsonl")),
        before,
        "the existing copy is unchanged"
    );
    assert!(moto.unfinished_uploads().is_empty());
}

#[test]
fn an_archive_that_no_longer_matches_its_sha256_is_never_completed() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 12);
    // Flip one byte in the middle: same size, different SHA-256.
    let mut bytes = read(&a);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&a, &bytes).unwrap();
    let moto = Moto::start("copies");
    let (rc, _, err) = copy(Some(&moto), &a, &moto.url("p"));
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("upload was aborted"), "{err}");
    let name = a.file_name().unwrap().to_str().unwrap();
    assert!(!moto.has_object(&format!("p/{name}")));
    assert!(!moto.has_object(&format!("p/{name}.sha256")));
    assert!(
        moto.unfinished_uploads().is_empty(),
        "the parts already sent were aborted: {:?}",
        moto.unfinished_uploads()
    );
}

#[test]
fn a_killed_upload_leaves_no_object_and_the_next_run_aborts_it() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 48);
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start("copies");
    let url = moto.url("p");
    // SIGKILL as soon as the multipart upload has started.
    let mut child = copy_in_flight(&moto, &a, &url, &format!("p/{name}"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !moto.has_object(&format!("p/{name}")),
        "a killed upload left an object under the final name"
    );
    assert!(!moto.has_object(&format!("p/{name}.sha256")));

    let (rc, rep, err) = copy(Some(&moto), &a, &url);
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(
        rep["aborted_uploads"],
        serde_json::json!([format!("s3://copies/p/{name}")]),
        "{rep}"
    );
    assert_eq!(rep["remote_verify"], "passed");
    assert!(moto.unfinished_uploads().is_empty());
}

/// Start a copy of `a` to `url` and return once its multipart upload of the
/// archive is under way.
fn copy_in_flight(moto: &Moto, a: &Path, url: &str, key: &str) -> std::process::Child {
    let mut child = copy_cmd(Some(moto), a, url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !moto.unfinished_uploads().iter().any(|k| k == key) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy finished before its upload was seen; use a bigger archive"
        );
        assert!(start.elapsed() < DEADLINE, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The name is checked before the upload, and again by the store when the
/// upload completes (If-None-Match: * on CompleteMultipartUpload): an object
/// put there in between is kept, and the upload is aborted.
#[test]
fn an_object_that_appears_during_the_upload_is_not_overwritten() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 48);
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start("copies");
    let child = copy_in_flight(&moto, &a, &moto.url("p"), &format!("p/{name}"));
    let (status, body) = moto.http("PUT", &format!("/copies/p/{name}"));
    assert_eq!(status, 200, "{body}");
    let o = common::wait_within(child, DEADLINE, "copy");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert!(
        moto.object(&format!("p/{name}")).is_empty(),
        "the object put during the upload was replaced"
    );
    assert!(!moto.has_object(&format!("p/{name}.sha256")));
    assert!(
        moto.unfinished_uploads().is_empty(),
        "the refused upload was aborted: {:?}",
        moto.unfinished_uploads()
    );
}

#[test]
fn copy_to_a_directory_is_create_only_and_complete() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 1);
    let to = t.path().join("offsite/copies");
    let (rc, rep, err) = copy(None, &a, to.to_str().unwrap());
    assert_eq!(rc, 0, "{err}");
    assert_eq!(rep["remote_verify"], "passed");
    let name = a.file_name().unwrap();
    for suffix in ["", ".sha256", ".manifest.jsonl"] {
        let mine = with_suffix(&a, suffix);
        let theirs = with_suffix(&to.join(name), suffix);
        assert_eq!(read(&mine), read(&theirs), "{}", theirs.display());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&theirs).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", theirs.display());
    }
    let (rc, _, err) = copy(None, &a, to.to_str().unwrap());
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "no temporary left behind: {left:?}");
}

#[test]
fn store_failures_are_one_line_exit_2() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 0);
    let mut moto = Moto::start("copies");
    // A bucket that does not exist.
    let (rc, _, err) = copy(Some(&moto), &a, "s3://no-such-bucket/p");
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("s3://no-such-bucket/p/"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The server gone.
    moto.stop();
    let started = Instant::now();
    let (rc, _, err) = copy(Some(&moto), &a, &moto.url("p"));
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("s3://copies/p/"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "retries are bounded"
    );
    assert!(
        !err.contains("testing"),
        "credentials never appear in an error: {err}"
    );
}

/// `datamig ARGS` against the server: (exit code, JSON report, stderr).
fn datamig_json(moto: &Moto, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut c = common::cmd(["--json"]);
    c.args(args);
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (code(&o), json_of(&o.stdout), err)
}

#[test]
fn list_and_verify_quick_read_a_remote_copy() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 6);
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start("copies");
    let url = moto.url("nightly");
    let (rc, _, err) = copy(Some(&moto), &a, &url);
    assert_eq!(rc, 0, "{err}");
    let obj = format!("{url}/{name}");

    let (rc, rep, err) = datamig_json(&moto, &["list", &url]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(rep["location"], "s3://copies/nightly");
    let archives = rep["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 1, "{rep}");
    assert_eq!(archives[0]["name"], name.as_str());
    assert_eq!(archives[0]["size"], std::fs::metadata(&a).unwrap().len());
    assert_eq!(archives[0]["complete"], true);
    assert!(archives[0]["modified"].is_string(), "{rep}");

    // The remote list of members equals the local one.
    let (rc, remote, err) = datamig_json(&moto, &["list", &obj]);
    assert_eq!(rc, 0, "{err}");
    let (rc, local, err) = datamig_json(&moto, &["list", a.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(remote["members"], local["members"]);
    assert_eq!(remote["manifest"], "sidecar");
    assert_eq!(remote["archive"], obj.as_str());

    let (rc, v, err) = datamig_json(&moto, &["verify", "--quick", &obj]);
    assert_eq!(rc, 0, "{err}\n{v}");
    assert_eq!(v["report"], "verify-archive");
    assert_eq!(v["sidecar_sha256"], "ok");
    assert_eq!(v["sidecar_manifest"], "agrees");
    assert_eq!(v["embedded_manifest"], "ok");
    assert_eq!(v["archive_sha256"], local_sha256(&a));

    // Without its manifest sidecar the archive is listed from the manifest
    // inside it (ranged reads of its tail), and is no longer complete.
    let (status, _) = moto.http("DELETE", &format!("/copies/nightly/{name}.manifest.jsonl"));
    assert!(status < 300);
    let (rc, rep, _) = datamig_json(&moto, &["list", &url]);
    assert_eq!(rc, 1);
    assert_eq!(rep["archives"][0]["complete"], false);
    let (rc, remote, err) = datamig_json(&moto, &["list", &obj]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(remote["manifest"], "embedded");
    assert_eq!(remote["members"], local["members"]);
    let (rc, v, _) = datamig_json(&moto, &["verify", "--quick", &obj]);
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["sidecar_manifest"], "absent");

    // A .sha256 that does not match the remote bytes is a discrepancy.
    moto.put(
        &format!("nightly/{name}.sha256"),
        format!("{}  {name}\n", "0".repeat(64)).as_bytes(),
    );
    let (rc, v, _) = datamig_json(&moto, &["verify", "--quick", &obj]);
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["sidecar_sha256"], "mismatch");
}

fn local_sha256(a: &Path) -> String {
    let line = String::from_utf8(read(&with_suffix(a, ".sha256"))).unwrap();
    line.split_whitespace().next().unwrap().to_string()
}

/// A PATH restore from a remote archive fetches only the frames holding the
/// path (ranged GETs), and the file comes back byte-identical; a whole
/// remote restore streams every member back.
#[test]
fn restore_from_a_remote_copy_fetches_only_what_it_needs() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 40);
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start("copies");
    let url = moto.url("p");
    let (rc, _, err) = copy(Some(&moto), &a, &url);
    assert_eq!(rc, 0, "{err}");
    let obj = format!("{url}/{name}");

    let one = t.path().join("one");
    let (rc, rep, err) = datamig_json(
        &moto,
        &[
            "restore",
            &obj,
            "--to",
            one.to_str().unwrap(),
            "notes/a.txt",
        ],
    );
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(read(&one.join("notes/a.txt")), b"alpha\n");
    assert!(!one.join("big.bin").exists());
    let size = rep["archive_size"].as_u64().unwrap();
    let fetched = rep["archive_bytes_read"].as_u64().unwrap();
    assert!(size > 40 << 20, "{rep}");
    assert!(
        fetched <= 256 << 10,
        "a one-file restore fetched {fetched} of {size} bytes"
    );
    eprintln!("one-file remote restore fetched {fetched} of {size} bytes");

    // Without the sidecar, the manifest comes from the archive's tail: the
    // seek table, the index frame and the manifest's frames, still a few KiB.
    let (status, _) = moto.http("DELETE", &format!("/copies/p/{name}.manifest.jsonl"));
    assert!(status < 300);
    let two = t.path().join("two");
    let (rc, rep, err) = datamig_json(
        &moto,
        &[
            "restore",
            &obj,
            "--to",
            two.to_str().unwrap(),
            "notes/b.txt",
        ],
    );
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(rep["manifest"], "embedded");
    assert_eq!(read(&two.join("notes/b.txt")), b"bravo\n");
    let fetched = rep["archive_bytes_read"].as_u64().unwrap();
    assert!(fetched <= 512 << 10, "{fetched} bytes fetched: {rep}");
    eprintln!("one-file remote restore without the sidecar fetched {fetched} bytes");

    let all = t.path().join("all");
    let (rc, rep, err) = datamig_json(&moto, &["restore", &obj, "--to", all.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}\n{rep}");
    let src = t.path().join("root/data");
    assert_eq!(common::walk_tree(&all), common::walk_tree(&src));
    assert_eq!(read(&all.join("big.bin")), read(&src.join("big.bin")));
    // Every byte once, plus the manifest's lookup at the tail.
    let read_all = rep["archive_bytes_read"].as_u64().unwrap();
    assert!((size..size + (64 << 10)).contains(&read_all), "{rep}");
}

/// A full remote verify decodes every member (ranged GETs) against the
/// manifest; a remote copy with one flipped byte names the damaged member.
#[test]
fn full_verify_of_a_remote_copy_checks_every_member() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 6);
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start("copies");
    let (rc, _, err) = copy(Some(&moto), &a, &moto.url("good"));
    assert_eq!(rc, 0, "{err}");
    let (rc, v, err) = datamig_json(&moto, &["verify", &format!("{}/{name}", moto.url("good"))]);
    assert_eq!(rc, 0, "{err}\n{v}");
    assert_eq!(v["quick"], false);
    assert_eq!(v["members"]["ok"], 4, "{v}");
    assert_eq!(v["archive_sha256"], local_sha256(&a));

    // The same archive with one byte flipped inside big.bin's frames, next to
    // the true sidecars (as a store that rotted it would hold it).
    let mut bytes = read(&a);
    bytes[1 << 20] ^= 0x01;
    moto.put(&format!("bad/{name}"), &bytes);
    for suffix in [".sha256", ".manifest.jsonl"] {
        moto.put(
            &format!("bad/{name}{suffix}"),
            &read(&with_suffix(&a, suffix)),
        );
    }
    let (rc, v, err) = datamig_json(&moto, &["verify", &format!("{}/{name}", moto.url("bad"))]);
    assert_eq!(rc, 1, "{err}\n{v}");
    assert_eq!(v["sidecar_sha256"], "mismatch");
    let disc = v["discrepancies"].to_string();
    assert!(disc.contains("big.bin"), "{v}");
    assert!(
        !disc.contains("notes/a.txt"),
        "only the damaged member is named: {v}"
    );
}

/// `backup --to URL`: tonight's verified backup is copied off-site; when the
/// store is down the run says so, exits 1, and keeps the local backup.
#[test]
fn backup_to_a_url_copies_tonights_backup_and_keeps_it_when_the_store_fails() {
    let t = common::tempdir();
    let root = t.path().join("data");
    common::write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    common::write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    let dest = t.path().join("backups");
    let mut moto = Moto::start("copies");
    let url = moto.url("nightly");
    let night = |moto: &Moto, days: i64| {
        let mut c = common::cmd(["--root", root.to_str().unwrap(), "-q", "--json", "backup"]);
        c.args([
            "--dest",
            dest.to_str().unwrap(),
            "--now",
            &common::night(days),
        ])
        .args(["--to", &url]);
        moto.env(&mut c);
        let o = output_within(&mut c, DEADLINE);
        (
            code(&o),
            json_of(&o.stdout),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (rc, rep, err) = night(&moto, 0);
    assert_eq!(rc, 0, "{err}\n{rep}");
    let name = common::night_name(0);
    assert_eq!(rep["remote"]["remote_verify"], "passed", "{rep}");
    assert_eq!(rep["remote_error"], serde_json::Value::Null);
    for suffix in ["", ".sha256", ".manifest.jsonl"] {
        assert!(
            moto.has_object(&format!("nightly/{name}{suffix}")),
            "{name}{suffix}"
        );
    }

    moto.stop();
    let (rc, rep, err) = night(&moto, 1);
    assert_eq!(rc, 1, "{err}\n{rep}");
    let tonight = common::night_name(1);
    assert!(dest.join(&tonight).is_file(), "the local backup is kept");
    assert_eq!(rep["verify"], "passed");
    let e = rep["remote_error"].as_str().unwrap();
    assert!(
        e.contains("s3://copies/nightly/") && e.contains("is kept"),
        "{e}"
    );
}
