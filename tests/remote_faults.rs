//! Off-site copies (issue 13), the faults and the scale: a one-file restore
//! from a ≥ 1 GiB remote archive, a server restarted mid-upload, SIGINT and
//! SIGTERM mid-upload, wrong keys and denied access (moto's IAM auth mode),
//! and configuration from `~/.aws` profiles. Each test starts its own moto
//! server (tests/common/moto.rs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::{code, json_of, output_within};

const DATE: &str = "20251225";
/// S3's smallest part, so the upload of a small archive is multipart.
const PART: &str = "5242880";
const DEADLINE: Duration = Duration::from_secs(240);

/// `datamig archive data` of `root` into `dir/archives`; the archive's path.
fn archive(root: &Path, dir: &Path) -> PathBuf {
    let dest = dir.join("archives");
    let mut c = common::cmd(["--root", root.to_str().unwrap(), "-q", "-j", "2"]);
    c.args(["archive", "data", "--dest", dest.to_str().unwrap()])
        .args(["--date", DATE, "--no-verify"]);
    let o = output_within(&mut c, DEADLINE);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    dest.join(format!("data-{DATE}.tar.zst"))
}

/// A root whose `data/` holds `mib` MiB of incompressible bytes and two
/// small notes; its archive.
fn archive_of(dir: &Path, mib: usize) -> PathBuf {
    let root = dir.join("root");
    common::write(&root, "data/big.bin", &common::prng_bytes(7, mib << 20));
    common::write(&root, "data/notes/a.txt", b"alpha\n");
    archive(&root, dir)
}

fn name_of(a: &Path) -> String {
    a.file_name().unwrap().to_str().unwrap().to_string()
}

/// `datamig --json ARGS` against `moto`, with its test environment.
fn datamig(moto: &Moto, args: &[&str]) -> Command {
    let mut c = common::cmd(["--json"]);
    c.args(args).env("DATAMIG_PART_SIZE", PART);
    moto.env(&mut c);
    c
}

/// Run to completion: (exit code, JSON report, stdout, stderr).
fn run(c: &mut Command) -> (i32, serde_json::Value, String, String) {
    let o = output_within(c, DEADLINE);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (code(&o), json_of(&o.stdout), out, err)
}

/// Start `datamig copy A URL` and return once the multipart upload of the
/// archive is listed by the server.
fn copy_in_flight(moto: &Moto, a: &Path, url: &str, key: &str) -> Child {
    let mut child = datamig(moto, &["copy", a.to_str().unwrap(), url])
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

/// 1 GiB of random bytes from the kernel (fast, and zstd stores them raw,
/// so the archive is as large as the data).
fn write_random(p: &Path, len: u64) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut src = std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), len);
    let mut dst = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(p).unwrap());
    std::io::copy(&mut src, &mut dst).unwrap();
    dst.flush().unwrap();
}

/// Issue 13's must-show: one 4 KiB file restored from a ≥ 1 GiB remote
/// archive fetches a few hundred KiB at most (ranged GETs of the sidecar
/// manifest and the frames holding the file), and is byte-identical.
///
/// The archive is put into the bucket by the test in one streamed PUT, not
/// by `datamig copy`: moto answers every ranged GET by reading the whole
/// object, so copy's read-back proof (8 MiB ranges) costs minutes on 1 GiB
/// there (measured: 240 s for build + copy on the shared 2-core machine).
/// The copy path itself is pinned by tests/remote.rs at smaller sizes.
#[test]
fn a_path_restore_from_a_1_gib_remote_archive_fetches_a_few_hundred_kib() {
    let started = Instant::now();
    let t = common::tempdir();
    let root = t.path().join("root");
    write_random(&root.join("data/big.bin"), 1 << 30);
    let needle = common::prng_bytes(42, 4096);
    common::write(&root, "data/small/needle.bin", &needle);
    let written = started.elapsed();
    let a = archive(&root, t.path());
    std::fs::remove_file(root.join("data/big.bin")).unwrap();
    let size = std::fs::metadata(&a).unwrap().len();
    assert!(size >= 1 << 30, "the archive is {size} bytes");
    let archived = started.elapsed();
    let moto = Moto::start("big");
    let name = name_of(&a);
    for suffix in ["", ".sha256", ".manifest.jsonl"] {
        let mut local = a.as_os_str().to_owned();
        local.push(suffix);
        moto.put_file(&format!("p/{name}{suffix}"), Path::new(&local));
    }
    std::fs::remove_file(&a).unwrap();
    let uploaded = started.elapsed();

    let to = t.path().join("one");
    let obj = format!("{}/{name}", moto.url("p"));
    let (rc, rep, _, err) = run(&mut datamig(
        &moto,
        &[
            "restore",
            &obj,
            "--to",
            to.to_str().unwrap(),
            "small/needle.bin",
        ],
    ));
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(std::fs::read(to.join("small/needle.bin")).unwrap(), needle);
    assert!(!to.join("big.bin").exists());
    assert_eq!(rep["archive_size"], size);
    assert_eq!(rep["manifest"], "sidecar");
    let fetched = rep["archive_bytes_read"].as_u64().unwrap();
    assert!(
        fetched <= 300 << 10,
        "a one-file restore fetched {fetched} of {size} bytes"
    );
    let s = |d: Duration| d.as_secs_f64();
    eprintln!(
        "one 4 KiB file from a {size}-byte remote archive: {fetched} bytes fetched; \
         data {:.1} s, archive {:.1} s, PUT {:.1} s, restore {:.1} s",
        s(written),
        s(archived - written),
        s(uploaded - archived),
        s(started.elapsed() - uploaded)
    );
}

/// Every regular file's bytes, every symlink's target and every kind.
fn tree_contents(root: &Path) -> Vec<(Vec<u8>, common::FileKind, Vec<u8>)> {
    common::walk_tree(root)
        .into_iter()
        .map(|(rel, kind)| {
            let p = common::rel_join(root, &rel);
            let body = match kind {
                common::FileKind::File => std::fs::read(&p).unwrap(),
                common::FileKind::Symlink => {
                    use std::os::unix::ffi::OsStrExt;
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }
                _ => Vec::new(),
            };
            (rel, kind, body)
        })
        .collect()
}

/// A whole restore from a remote copy gives back the source tree: every
/// entry, kind, content and symlink target.
#[test]
fn a_whole_remote_restore_equals_the_source_tree() {
    let t = common::tempdir();
    let root = t.path().join("root");
    common::small_tree(&root.join("data"));
    common::write(&root, "data/big.bin", &common::prng_bytes(3, 9 << 20));
    let a = archive(&root, t.path());
    let moto = Moto::start("whole");
    let url = moto.url("p");
    let (rc, _, _, err) = run(&mut datamig(&moto, &["copy", a.to_str().unwrap(), &url]));
    assert_eq!(rc, 0, "{err}");
    let to = t.path().join("back");
    let obj = format!("{url}/{}", name_of(&a));
    let (rc, rep, _, err) = run(&mut datamig(
        &moto,
        &["restore", &obj, "--to", to.to_str().unwrap()],
    ));
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(tree_contents(&to), tree_contents(&root.join("data")));
}

/// moto keeps everything in memory: restarted, it has forgotten the bucket
/// and the upload, as a store that lost its state would. The copy fails
/// with one line and exit 2 within the bounded retry time, nothing is under
/// a final name, and once the bucket is back the next run completes.
#[test]
fn a_server_restarted_mid_upload_fails_the_copy_and_the_next_run_completes() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 64);
    let name = name_of(&a);
    let mut moto = Moto::start("copies");
    let url = moto.url("p");
    let child = copy_in_flight(&moto, &a, &url, &format!("p/{name}"));
    let cut = Instant::now();
    moto.restart();
    let o = common::wait_within(child, DEADLINE, "copy");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    eprintln!("restarted mid-upload: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("s3://copies/p/{name}")), "{err}");
    assert!(
        cut.elapsed() < Duration::from_secs(90),
        "the failure came within the bounded retry time ({:?})",
        cut.elapsed()
    );
    moto.recreate_bucket();
    for suffix in ["", ".sha256", ".manifest.jsonl"] {
        assert!(!moto.has_object(&format!("p/{name}{suffix}")), "{suffix}");
    }
    let (rc, rep, _, err) = run(&mut datamig(&moto, &["copy", a.to_str().unwrap(), &url]));
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(rep["remote_verify"], "passed");
    assert!(moto.unfinished_uploads().is_empty());
}

/// SIGINT or SIGTERM while the archive is uploading: the multipart upload is
/// aborted before datamig exits (128 + the signal, as every interrupted
/// run), so nothing is left under the prefix, finished or not.
#[test]
fn sigint_and_sigterm_mid_upload_abort_the_multipart_upload() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 64);
    let name = name_of(&a);
    let moto = Moto::start("copies");
    for (sig, prefix) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let url = moto.url(prefix);
        let child = copy_in_flight(&moto, &a, &url, &format!("{prefix}/{name}"));
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let o = common::wait_within(child, DEADLINE, "copy");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(128 + sig), "{err}");
        assert!(err.contains("upload"), "{err}");
        assert!(
            moto.unfinished_uploads().is_empty(),
            "signal {sig}: an unfinished upload remains: {:?}\n{err}",
            moto.unfinished_uploads()
        );
        for suffix in ["", ".sha256", ".manifest.jsonl"] {
            assert!(!moto.has_object(&format!("{prefix}/{name}{suffix}")));
        }
    }
}

const ALLOW_S3: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

/// moto in IAM auth mode checks each signature against the keys it issued
/// and each request against the user's policies. A right key works; a wrong
/// secret, an unknown key id and a user without permission each give one
/// line naming the object, the store's error code and what to check, exit
/// 2; the secret appears nowhere in the output.
#[test]
fn wrong_keys_and_denied_access_are_one_line_exit_2_without_the_secret() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 0);
    let moto = Moto::start("locked");
    let (good_id, good_secret) = moto.iam_user("writer", Some(ALLOW_S3));
    let (idle_id, idle_secret) = moto.iam_user("idle", None);
    moto.enforce_auth();
    let url = moto.url("p");
    let copy_as = |id: &str, secret: &str| {
        let mut c = datamig(&moto, &["copy", a.to_str().unwrap(), &url]);
        c.env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        run(&mut c)
    };
    let (rc, rep, _, err) = copy_as(&good_id, &good_secret);
    assert_eq!(rc, 0, "the right key works: {err}\n{rep}");

    let wrong_secret = format!("{}x", &good_secret[..good_secret.len() - 1]);
    for (id, secret, says) in [
        (
            good_id.as_str(),
            wrong_secret.as_str(),
            "SignatureDoesNotMatch",
        ),
        (
            "AKIAIOSFODNN7EXAMPLE",
            good_secret.as_str(),
            "InvalidAccessKeyId",
        ),
        (idle_id.as_str(), idle_secret.as_str(), "AccessDenied"),
    ] {
        let (rc, rep, out, err) = copy_as(id, secret);
        assert_eq!(rc, 2, "{says}: {err}");
        eprintln!("{says}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{says}: one line: {err}");
        assert!(
            err.contains("s3://locked/p/"),
            "{says}: names the object: {err}"
        );
        assert!(err.contains(says), "the store's code {says}: {err}");
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY"),
            "what to check: {err}"
        );
        assert_eq!(rep["exit"], 2, "{rep}");
        for s in [secret, good_secret.as_str(), idle_secret.as_str()] {
            assert!(
                !out.contains(s) && !err.contains(s),
                "{says}: a secret key appears in the output"
            );
        }
    }
}

/// No bucket, and the server down: one line each, naming the object, the
/// store's code (NoSuchBucket) or the unreachable endpoint, and what to do.
#[test]
fn a_missing_bucket_and_a_server_down_name_the_object_and_what_to_do() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 0);
    let mut moto = Moto::start("copies");
    let (rc, rep, _, err) = run(&mut datamig(
        &moto,
        &["copy", a.to_str().unwrap(), "s3://no-such-bucket/p"],
    ));
    assert_eq!(rc, 2, "{err}");
    assert_eq!(rep["exit"], 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("s3://no-such-bucket/p/"), "{err}");
    assert!(err.contains("NoSuchBucket"), "the store's code: {err}");
    assert!(err.contains("check that the bucket exists"), "{err}");
    moto.stop();
    let (rc, _, _, err) = run(&mut datamig(
        &moto,
        &["copy", a.to_str().unwrap(), &moto.url("p")],
    ));
    assert_eq!(rc, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("s3://copies/p/"), "{err}");
    assert!(err.contains("AWS_ENDPOINT_URL"), "what to check: {err}");
}

/// Configured as every S3 tool is, with no AWS_* variable at all: the
/// profile named by AWS_PROFILE in ~/.aws/config gives the region and the
/// endpoint_url, ~/.aws/credentials the keys.
#[test]
fn a_profile_in_home_aws_config_and_credentials_reaches_the_store() {
    let t = common::tempdir();
    let a = archive_of(t.path(), 0);
    let moto = Moto::start("profiled");
    let (id, secret) = moto.iam_user("writer", Some(ALLOW_S3));
    moto.enforce_auth();
    let home = t.path().join("home");
    common::write(
        &home,
        ".aws/config",
        format!(
            "[default]\nregion = eu-west-1\nendpoint_url = {e}\n\n[profile offsite]\nregion = us-east-1\nendpoint_url = {e}\n",
            e = moto.endpoint()
        )
        .as_bytes(),
    );
    common::write(
        &home,
        ".aws/credentials",
        format!(
            "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG1\naws_secret_access_key = wrong\n\n[offsite]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"
        )
        .as_bytes(),
    );
    let mut c = common::cmd(["--json", "copy", a.to_str().unwrap(), &moto.url("p")]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", &home).env("AWS_PROFILE", "offsite");
    let (rc, rep, _, err) = run(&mut c);
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(rep["remote_verify"], "passed");

    // The default profile's unknown key is refused: the profile chose.
    c.env_remove("AWS_PROFILE");
    let (rc, _, _, err) = run(&mut c);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    // A profile that is in neither file is named, not silently replaced.
    c.env("AWS_PROFILE", "nosuch");
    let (rc, _, _, err) = run(&mut c);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

/// On a terminal, `copy` shows the upload and the read-back as progress
/// bars (bytes, rate, ETA); piped, it shows none (the JSON stays clean).
#[test]
fn copy_shows_upload_and_read_back_progress_on_a_terminal() {
    let script = common::require_tool("script");
    let t = common::tempdir();
    let a = archive_of(t.path(), 24);
    let moto = Moto::start("copies");
    let inner = datamig(&moto, &["copy", a.to_str().unwrap(), &moto.url("tty")]);
    // util-linux script(1): the command runs on a pseudo-terminal.
    let line = std::iter::once(common::BIN.to_string())
        .chain(
            inner
                .get_args()
                .filter(|a| *a != "--json")
                .map(|a| a.to_str().unwrap().to_string()),
        )
        .map(|w| shlex::try_quote(&w).unwrap().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new(script);
    c.args(["-qefc", &line, "/dev/null"]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = output_within(&mut c, DEADLINE);
    let tty = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{tty}");
    for phase in ["uploading", "proving"] {
        assert!(
            tty.contains(phase),
            "no {phase} bar on the terminal: {tty:?}"
        );
    }
    assert!(tty.contains("ETA"), "{tty:?}");
    // Piped: no bar on stderr.
    let (rc, rep, _, err) = run(&mut datamig(
        &moto,
        &["copy", a.to_str().unwrap(), &moto.url("pipe")],
    ));
    assert_eq!(rc, 0, "{err}");
    assert!(!err.contains("uploading"), "{err}");
    // The upload's share of the run, before the read-back.
    let up = rep["upload_seconds"].as_f64().unwrap();
    assert!(0.0 < up && up <= rep["seconds"].as_f64().unwrap(), "{rep}");
}
