//! Encryption at rest, the writing side (issue 14): `archive`, `backup` and
//! `copy` with `--encrypt-to` / `--recipients-file`. Keys are made at run time
//! with `age-keygen` and `ssh-keygen`; what datamig writes is opened only with
//! the standard tools (`age -d`, GNU tar, `sha256sum -c`), so the format is
//! the contract in src/crypt/mod.rs and nothing datamig-specific.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::moto::Moto;
use common::{code, json_of, output_within, write};
use serde_json::Value;

const DATE: &str = "20251225";
const DEADLINE: Duration = Duration::from_secs(120);
/// In a file's content and in a file's name: neither may ever be readable
/// in the destination (the archive's literals, the manifest's paths).
const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

/// An age key pair: (identity file, public key).
fn age_key(dir: &Path) -> (PathBuf, String) {
    common::require_tool("age-keygen");
    let key = dir.join("key.txt");
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success());
    (key, String::from_utf8(o.stdout).unwrap().trim().to_string())
}

/// An SSH ed25519 key pair without passphrase: (private key, public key file).
fn ssh_key(dir: &Path) -> (PathBuf, PathBuf) {
    common::require_tool("ssh-keygen");
    let key = dir.join("id_ed25519");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@laptop", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (key.clone(), dir.join("id_ed25519.pub"))
}

/// A root whose `data/` holds a small tree, the marker and a few MiB of
/// incompressible bytes (so the run lasts long enough to be watched).
fn root_with_data(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let data = root.join("data");
    common::small_tree(&data);
    write(&data, &format!("secrets/{MARKER}.txt"), MARKER.as_bytes());
    write(&data, "notes/diary.md", format!("{MARKER}\n").as_bytes());
    write(&data, "big.bin", &common::prng_bytes(3, 6 << 20));
    root
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `datamig --root ROOT -q --json archive data --dest DEST --date DATE ARGS`.
fn archive_cmd(root: &Path, dest: &Path, args: &[&OsStr]) -> Command {
    let mut c = common::cmd([
        os("--root"),
        root.as_os_str(),
        os("-q"),
        os("--json"),
        os("archive"),
        os("data"),
        os("--dest"),
        dest.as_os_str(),
        os("--date"),
        os(DATE),
    ]);
    c.args(args);
    c
}

fn run_json(c: &mut Command) -> (i32, Value, String) {
    let o = output_within(c, DEADLINE);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (code(&o), json_of(&o.stdout), err)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `age -d -i KEY FILE`: the plaintext.
fn age_decrypt(key: &Path, file: &Path) -> Vec<u8> {
    common::require_tool("age");
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// `age -d -i KEY ARCHIVE | tar --zstd -xf - -C OUT`, as the README says.
fn age_and_tar(key: &Path, archive: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let script = "age -d -i \"$1\" \"$2\" | tar --zstd -xf - -C \"$3\"";
    let o = Command::new("bash")
        .args(["-o", "pipefail", "-c", script, "sh"])
        .arg(key)
        .arg(archive)
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every path and kind, and every regular file's bytes, below `dir`
/// (datamig's own `.datamig/` members left out).
fn tree_of(dir: &Path) -> Vec<(Vec<u8>, common::FileKind, Option<Vec<u8>>)> {
    common::walk_tree(dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(b".datamig"))
        .map(|(p, k)| {
            let bytes = (k == common::FileKind::File)
                .then(|| std::fs::read(common::rel_join(dir, &p)).unwrap());
            (p, k, bytes)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Lists `dest` and reads every file in it until stopped: the names seen,
/// and whether any file ever held the marker.
fn watch(
    dest: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeSet<String>, bool)> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let mut leaked = false;
        while !stop.load(Ordering::Relaxed) {
            for n in names(&dest) {
                if let Ok(bytes) = std::fs::read(dest.join(&n)) {
                    leaked |= contains(&bytes, MARKER.as_bytes());
                }
                seen.insert(n);
            }
        }
        (seen, leaked)
    })
}

fn the_three(name: &str) -> [String; 3] {
    [
        name.to_string(),
        format!("{name}.sha256"),
        format!("{}.manifest.jsonl.age", name.strip_suffix(".age").unwrap()),
    ]
}

/// Round trip through the standard tools, and nothing readable on disk.
fn round_trip(recipient_args: &[&OsStr], key: &Path, t: &Path) {
    let root = root_with_data(t);
    let dest = t.join("out");
    std::fs::create_dir_all(&dest).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(dest.clone(), Arc::clone(&stop));
    let (rc, rep, err) = run_json(&mut archive_cmd(&root, &dest, recipient_args));
    stop.store(true, Ordering::Relaxed);
    let (seen, leaked) = watcher.join().unwrap();
    assert_eq!(rc, 0, "{err}\n{rep}");

    let name = format!("data-{DATE}.tar.zst.age");
    let three = the_three(&name);
    assert_eq!(rep["encrypted"], true, "{rep}");
    assert_eq!(rep["recipients"], 1);
    assert_eq!(rep["verify"], "passed", "the read-back check ran");
    assert_eq!(rep["archive"], dest.join(&name).display().to_string());
    assert_eq!(rep["manifest"], dest.join(&three[2]).display().to_string());
    assert_eq!(names(&dest), three.iter().cloned().collect());
    // During the run: only the three names, or their temporaries, ever
    // appeared, and no file ever held the marker.
    for n in &seen {
        let base = n
            .strip_prefix('.')
            .and_then(|n| n.split(".datamig-tmp-").next());
        assert!(
            three.contains(n) || base.is_some_and(|b| three.iter().any(|t| t == b)),
            "unexpected file {n} in the destination during the run"
        );
    }
    assert!(!leaked, "a file in the destination held plaintext");
    for n in &three {
        let bytes = std::fs::read(dest.join(n)).unwrap();
        assert!(!contains(&bytes, MARKER.as_bytes()), "{n} holds plaintext");
    }

    // sha256sum -c on the ciphertext sidecar, in its directory.
    let o = Command::new("sha256sum")
        .args(["-c", &three[1]])
        .current_dir(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        rep["archive_sha256"],
        common::sha256sum_of(&dest.join(&name))
    );

    // age + GNU tar reproduce the tree.
    let back = t.join("back");
    age_and_tar(key, &dest.join(&name), &back);
    assert_eq!(tree_of(&back), tree_of(&root.join("data")));

    // The manifest sidecar decrypts to the manifest inside the archive.
    let side = age_decrypt(key, &dest.join(&three[2]));
    let inside = std::fs::read(back.join(".datamig/MANIFEST.jsonl")).unwrap();
    assert_eq!(side, inside);
    assert!(contains(&side, MARKER.as_bytes()), "the names are in it");

    // The plaintext is a complete datamig archive: its offsets are plaintext
    // offsets (datamig verifies it against its embedded manifest).
    let plain = t.join("plain.tar.zst");
    std::fs::write(&plain, age_decrypt(key, &dest.join(&name))).unwrap();
    let (rc, v, err) = run_json(&mut common::cmd([
        os("--json"),
        os("verify"),
        plain.as_os_str(),
    ]));
    assert_eq!(v["embedded_manifest"], "ok", "{err}\n{v}");
    assert_eq!(v["members"]["mismatched"], serde_json::json!([]), "{v}");
    // Exit 1 only for the sidecars, which the decrypted copy does not have.
    assert_eq!(rc, 1);
    let disc: Vec<&str> = v["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(disc.iter().all(|d| d.contains("is missing")), "{disc:?}");
}

#[test]
fn x25519_recipient_round_trip_with_age_and_tar() {
    let t = common::tempdir();
    let (key, public) = age_key(t.path());
    round_trip(&[os("--encrypt-to"), os(&public)], &key, t.path());
}

#[test]
fn ssh_ed25519_recipient_round_trip_with_age_and_tar() {
    let t = common::tempdir();
    let (key, public) = ssh_key(t.path());
    round_trip(
        &[os("--recipients-file"), public.as_os_str()],
        &key,
        t.path(),
    );
}

#[test]
fn a_recipients_file_with_comments_and_two_keys_lets_either_decrypt() {
    let t = common::tempdir();
    let (age_id, age_pub) = age_key(t.path());
    let (ssh_id, ssh_pub) = ssh_key(t.path());
    let file = t.path().join("recipients.txt");
    let ssh_line = std::fs::read_to_string(&ssh_pub).unwrap();
    std::fs::write(
        &file,
        format!("# ops team\n\n{age_pub}\n# laptop\n{ssh_line}\n"),
    )
    .unwrap();
    let root = root_with_data(t.path());
    let dest = t.path().join("out");
    let (rc, rep, err) = run_json(&mut archive_cmd(
        &root,
        &dest,
        &[os("--recipients-file"), file.as_os_str()],
    ));
    assert_eq!(rc, 0, "{err}");
    assert_eq!(rep["recipients"], 2);
    let a = dest.join(format!("data-{DATE}.tar.zst.age"));
    assert_eq!(age_decrypt(&age_id, &a), age_decrypt(&ssh_id, &a));
    // A stranger's key does not open it.
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = age_key(other.path());
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&stranger)
        .arg(&a)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn bad_recipients_and_private_keys_exit_2_and_write_nothing() {
    let t = common::tempdir();
    let root = root_with_data(t.path());
    let dest = t.path().join("out");
    let (age_id, _) = age_key(t.path());
    let (ssh_id, _) = ssh_key(t.path());
    let secret = std::fs::read_to_string(&age_id)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let absent = t.path().join("absent.txt");
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec![os("--encrypt-to"), os("age1notakey")],
            "not a valid age public key",
        ),
        (
            vec![os("--encrypt-to"), os("ssh-ed25519 AAAAnope")],
            "not a valid SSH public key",
        ),
        (
            vec![os("--encrypt-to"), os(&secret)],
            "that is a private key",
        ),
        (
            vec![os("--recipients-file"), ssh_id.as_os_str()],
            "that is a private key",
        ),
        (
            vec![os("--recipients-file"), age_id.as_os_str()],
            "that is a private key",
        ),
        (
            vec![os("--recipients-file"), absent.as_os_str()],
            "cannot read it",
        ),
    ];
    for (args, want) in cases {
        let (rc, rep, err) = run_json(&mut archive_cmd(&root, &dest, &args));
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert_eq!(rep["exit"], 2);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("AGE-SECRET-KEY-"), "never echoed: {err}");
        if want == "that is a private key" {
            assert!(err.contains("age-keygen -y") && err.contains("ssh-keygen -y"));
        } else if want != "cannot read it" {
            assert!(err.contains("age1") && err.contains("ssh-ed25519"), "{err}");
        }
        assert!(!dest.exists(), "{args:?}: nothing written");
    }
}

/// `datamig --root ROOT backup -q --json --dest DEST ARGS`, with the
/// recipients in the environment only, as the nightly unit has them.
fn backup(root: &Path, dest: &Path, public: Option<&str>, args: &[&str]) -> (i32, Value, String) {
    let mut c = common::cmd([
        os("--root"),
        root.as_os_str(),
        os("-q"),
        os("--json"),
        os("backup"),
        os("--dest"),
        dest.as_os_str(),
    ]);
    c.args(args).env_remove("DATAMIG_RECIPIENTS_FILE");
    match public {
        Some(p) => c.env("DATAMIG_ENCRYPT_TO", p),
        None => c.env_remove("DATAMIG_ENCRYPT_TO"),
    };
    run_json(&mut c)
}

fn v2_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    write(
        &root,
        "instances/a/diary.md",
        format!("{MARKER}\n").as_bytes(),
    );
    write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    write(&root, "wisdom.md", b"be kind\n");
    root
}

#[test]
fn backup_with_recipients_only_keeps_three_nights_of_retention_without_any_key() {
    let t = common::tempdir();
    let root = v2_root(t.path());
    let dest = t.path().join("backups");
    let (key, public) = age_key(t.path());
    // The key leaves the "server" (this test keeps it only to check the result).
    let key_elsewhere = t.path().join("laptop-key.txt");
    std::fs::rename(&key, &key_elsewhere).unwrap();

    // One plain night first (encryption turned on afterwards): both kinds
    // are backups of the same prefix for retention.
    let (rc, _, err) = backup(&root, &dest, None, &["--now", &common::night(0)]);
    assert_eq!(rc, 0, "{err}");
    for n in 1..=3 {
        let (rc, rep, err) = backup(
            &root,
            &dest,
            Some(&public),
            &["--now", &common::night(n), "--keep-last", "2"],
        );
        assert_eq!(rc, 0, "night {n}: {err}\n{rep}");
        let name = format!("{}.age", common::night_name(n));
        assert_eq!(
            rep["archive"],
            dest.join(&name).display().to_string(),
            "night {n}"
        );
        assert_eq!(rep["verify"], "passed");
        let mut want = vec![name];
        if n > 1 {
            want.push(format!("{}.age", common::night_name(n - 1)));
        } else {
            want.push(common::night_name(0));
        }
        let kept: Vec<String> = rep["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(kept, want, "night {n}: {rep}");
    }
    let mut want = BTreeSet::new();
    for n in [2, 3] {
        want.extend(the_three(&format!("{}.age", common::night_name(n))));
    }
    want.insert(".datamig-backup.lock".into());
    let got: BTreeSet<String> = names(&dest);
    assert_eq!(
        got.iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect::<Vec<_>>(),
        want.iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect::<Vec<_>>()
    );
    for n in &got {
        let bytes = std::fs::read(dest.join(n)).unwrap();
        assert!(!contains(&bytes, MARKER.as_bytes()), "{n} holds plaintext");
    }

    // --if-changed cannot read the newest manifest without a key: tonight's
    // backup is made (the newest still passes the key-less verify --quick).
    let (rc, rep, err) = backup(
        &root,
        &dest,
        Some(&public),
        &[
            "--now",
            &common::night(4),
            "--keep-last",
            "2",
            "--if-changed",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(rep["skipped"], false);
    assert_eq!(rep["newest_verify"], "passed");
    assert!(
        rep["changed"].as_str().unwrap().contains("is encrypted"),
        "{rep}"
    );

    // Key-less checks: verify --quick and list DIR.
    let newest = dest.join(format!("{}.age", common::night_name(4)));
    let (rc, v, err) = run_json(&mut common::cmd([
        os("--json"),
        os("verify"),
        os("--quick"),
        newest.as_os_str(),
    ]));
    assert_eq!(rc, 0, "{err}\n{v}");
    assert_eq!(v["sidecar_sha256"], "ok");
    let (rc, v, err) = run_json(&mut common::cmd([
        os("--root"),
        root.as_os_str(),
        os("--json"),
        os("list"),
        dest.as_os_str(),
    ]));
    assert_eq!(rc, 0, "{err}");
    let rows = v["archives"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert_eq!(r["manifest"], "encrypted", "{r}");
        assert_eq!(r["kind"], "backup", "{r}");
        assert_eq!(r["state"], "ok", "{r}");
        assert_eq!(r["sha256_sidecar"], "present");
    }

    // A flipped byte in the ciphertext: verify --quick fails without a key.
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&newest, &bytes).unwrap();
    let (rc, v, _) = run_json(&mut common::cmd([
        os("--json"),
        os("verify"),
        os("--quick"),
        newest.as_os_str(),
    ]));
    assert_eq!(rc, 1);
    assert_eq!(v["sidecar_sha256"], "mismatch");
    // The key, off the server, still opens the intact one.
    let older = dest.join(format!("{}.age", common::night_name(3)));
    let back = t.path().join("back");
    age_and_tar(&key_elsewhere, &older, &back);
    assert_eq!(
        std::fs::read(back.join("instances/a/diary.md")).unwrap(),
        format!("{MARKER}\n").as_bytes()
    );
}

#[test]
fn copy_encrypt_to_s3_uploads_only_ciphertext_that_age_decrypts() {
    let t = common::tempdir();
    let root = root_with_data(t.path());
    let dest = t.path().join("out");
    let (rc, _, err) = run_json(&mut archive_cmd(&root, &dest, &[os("--no-verify")]));
    assert_eq!(rc, 0, "{err}");
    let plain = dest.join(format!("data-{DATE}.tar.zst"));
    let (key, public) = age_key(t.path());
    let moto = Moto::start("offsite");
    let mut c = common::cmd([
        os("--json"),
        os("copy"),
        plain.as_os_str(),
        os(&moto.url("nightly")),
        os("--encrypt-to"),
        os(&public),
    ]);
    c.env("DATAMIG_PART_SIZE", "5242880");
    moto.env(&mut c);
    let (rc, rep, err) = run_json(&mut c);
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(rep["encrypted"], true);
    assert_eq!(rep["recipients"], 1);
    assert_eq!(rep["remote_verify"], "passed", "{rep}");
    let name = format!("data-{DATE}.tar.zst.age");
    let urls: Vec<&str> = rep["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["url"].as_str().unwrap())
        .collect();
    let base = format!("s3://offsite/nightly/data-{DATE}.tar.zst");
    assert_eq!(
        urls,
        [
            format!("{base}.age"),
            format!("{base}.age.sha256"),
            format!("{base}.manifest.jsonl.age"),
        ],
        "the archive first, then its sidecars"
    );
    // Nothing under the plain names.
    for n in ["", ".sha256", ".manifest.jsonl"] {
        assert!(!moto.has_object(&format!("nightly/data-{DATE}.tar.zst{n}")));
    }
    // The fetched object decrypts with age to the local archive, byte for byte.
    let fetched = t.path().join(&name);
    let cipher = moto.object_bytes(&format!("nightly/{name}"));
    assert!(!contains(&cipher, MARKER.as_bytes()));
    std::fs::write(&fetched, &cipher).unwrap();
    assert_eq!(age_decrypt(&key, &fetched), std::fs::read(&plain).unwrap());
    // Its .sha256 is over the ciphertext and names it.
    let line = moto.object_bytes(&format!("nightly/{name}.sha256"));
    let sha = common::sha256_hex(&cipher);
    assert_eq!(String::from_utf8(line).unwrap(), format!("{sha}  {name}\n"));
    assert_eq!(rep["encrypted_sha256"], sha);
    assert_eq!(rep["remote_sha256"], sha);
    // The manifest sidecar is encrypted, and decrypts to the local one.
    let side = t.path().join("side.age");
    let enc = moto.object_bytes(&format!("nightly/data-{DATE}.tar.zst.manifest.jsonl.age"));
    assert!(!contains(&enc, MARKER.as_bytes()));
    std::fs::write(&side, enc).unwrap();
    assert_eq!(
        age_decrypt(&key, &side),
        std::fs::read(dest.join(format!("data-{DATE}.tar.zst.manifest.jsonl"))).unwrap()
    );
    // An encrypted archive is not encrypted again.
    let mut c = common::cmd([
        os("--json"),
        os("copy"),
        fetched.as_os_str(),
        os(&moto.url("again")),
        os("--encrypt-to"),
        os(&public),
    ]);
    moto.env(&mut c);
    let (rc, _, err) = run_json(&mut c);
    assert_eq!(rc, 2);
    assert!(err.contains("already encrypted"), "{err}");
}

/// The commit of an encrypted archive killed (SIGKILL, by strace) at each of
/// its three renames: the next run recovers by itself. The dead run's
/// manifest sidecar cannot be compared without a key: the ciphertext's
/// `.sha256` match decides (src/archive/commit.rs).
#[test]
fn a_killed_commit_of_an_encrypted_archive_recovers_without_a_key() {
    common::require_tool("strace");
    let t = common::tempdir();
    let root = root_with_data(t.path());
    let (key, public) = age_key(t.path());
    let name = format!("data-{DATE}.tar.zst.age");
    let three: BTreeSet<String> = the_three(&name).into_iter().collect();
    for n in 1..=3 {
        let dest = t.path().join(format!("out{n}"));
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
            .arg(format!("inject=renameat2:signal=SIGKILL:when={n}"))
            .arg(common::BIN)
            .args(archive_cmd(&root, &dest, &[os("--encrypt-to"), os(&public)]).get_args())
            .env_remove("V2_DATA_ROOT");
        let o = output_within(&mut c, DEADLINE);
        assert!(!o.status.success(), "rename {n}: the run was not killed");
        assert!(!dest.join(&name).exists(), "rename {n}");
        assert!(
            names(&dest)
                .iter()
                .any(|s| s.starts_with(&format!(".{name}.datamig-tmp-"))),
            "rename {n}: {:?}",
            names(&dest)
        );
        let (rc, _, err) = run_json(&mut archive_cmd(
            &root,
            &dest,
            &[os("--encrypt-to"), os(&public)],
        ));
        assert_eq!(rc, 0, "rename {n}: the next run did not recover: {err}");
        assert_eq!(names(&dest), three, "rename {n}: leftovers");
        if n > 1 {
            assert!(err.contains("killed while committing"), "rename {n}: {err}");
        }
        let o = Command::new("sha256sum")
            .args(["-c", &format!("{name}.sha256")])
            .current_dir(&dest)
            .output()
            .unwrap();
        assert!(o.status.success(), "rename {n}");
        let back = t.path().join(format!("back{n}"));
        age_and_tar(&key, &dest.join(&name), &back);
        assert_eq!(tree_of(&back), tree_of(&root.join("data")));
    }
}

#[test]
fn encrypted_nightly_backups_off_site_keep_remote_retention_and_restore_with_the_key() {
    let t = common::tempdir();
    let root = v2_root(t.path());
    let dest = t.path().join("backups");
    let (key, public) = age_key(t.path());
    let moto = Moto::start("offsite");
    let to = moto.url("nightly");
    for n in 1..=4 {
        let mut c = common::cmd([
            os("--root"),
            root.as_os_str(),
            os("-q"),
            os("--json"),
            os("backup"),
            os("--dest"),
            dest.as_os_str(),
            os("--to"),
            os(&to),
            os("--now"),
            os(&common::night(n)),
            os("--keep-last"),
            os("1"),
            os("--remote-keep-last"),
            os("2"),
        ]);
        c.env("DATAMIG_ENCRYPT_TO", &public)
            .env_remove("DATAMIG_RECIPIENTS_FILE");
        moto.env(&mut c);
        let (rc, rep, err) = run_json(&mut c);
        assert_eq!(rc, 0, "night {n}: {err}\n{rep}");
        assert_eq!(rep["remote"]["remote_verify"], "passed", "night {n}: {rep}");
        let rr = &rep["remote_retention"];
        assert_eq!(rr["ignored"], serde_json::json!([]), "night {n}: {rr}");
        if n == 3 {
            let removed = format!("{}.age", common::night_name(1));
            assert_eq!(rr["removed"], serde_json::json!([removed]), "{rr}");
        }
    }
    // The remote holds exactly the two newest encrypted copies, each with
    // both (encrypted) sidecars, and no plaintext.
    let mut want: Vec<String> = [3, 4]
        .iter()
        .flat_map(|n| the_three(&format!("{}.age", common::night_name(*n))))
        .map(|k| format!("nightly/{k}"))
        .collect();
    want.sort();
    assert_eq!(moto.keys(&moto.bucket), want);

    // Only the key holder reads the copy: without it the restore says what is
    // missing; with it one file comes back from the URL.
    let newest = format!("{to}/{}.age", common::night_name(4));
    let out = t.path().join("restored");
    let mut c = common::cmd([
        os("--json"),
        os("restore"),
        os(&newest),
        os("--to"),
        out.as_os_str(),
        os("instances/a/diary.md"),
    ]);
    c.env_remove("DATAMIG_IDENTITY");
    moto.env(&mut c);
    let (rc, _, err) = run_json(&mut c);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("--identity"), "{err}");
    assert!(!out.exists());
    c.env("DATAMIG_IDENTITY", &key);
    let (rc, rep, err) = run_json(&mut c);
    assert_eq!(rc, 0, "{err}\n{rep}");
    assert_eq!(
        std::fs::read(out.join("instances/a/diary.md")).unwrap(),
        format!("{MARKER}\n").as_bytes()
    );
}
