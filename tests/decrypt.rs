//! Reading encrypted archives (issue 14): `verify`, `list` and `restore` of a
//! `NAME.tar.zst.age` with `--identity` (age X25519 and SSH ed25519 keys),
//! what each verb says without a key or with the wrong one, `verify --quick`
//! with no key at all, damage to one age chunk, truncation, and a PATH
//! restore from a 1 GiB encrypted archive that reads only a few chunks,
//! locally and from the local S3 server.
//!
//! The encrypted archives are made the way the format contract says a
//! writer must (src/crypt/mod.rs), with the standard `age` CLI over a plain
//! datamig archive and its manifest sidecar, and `sha256sum` for the
//! ciphertext's `.sha256`; the plaintext files are then removed.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::moto::Moto;
use common::{code, json_of, output_within, prng_bytes, write};
use serde_json::Value;

const DATE: &str = "20251225";
const MIB: usize = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(240);

/// `PATH` + suffix.
fn plus(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn run_ok(c: &mut Command, what: &str) -> Vec<u8> {
    let o = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// An age X25519 key pair in `dir`: (identity file, recipient).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    fs::create_dir_all(dir).unwrap();
    let key = dir.join(name);
    run_ok(
        Command::new(common::require_tool("age-keygen"))
            .arg("-o")
            .arg(&key),
        "age-keygen",
    );
    let public = run_ok(
        Command::new("age-keygen").arg("-y").arg(&key),
        "age-keygen -y",
    );
    (key, String::from_utf8(public).unwrap().trim().to_string())
}

/// An unprotected SSH ed25519 key pair: (private key, public key line).
fn ssh_key(dir: &Path) -> (PathBuf, String) {
    fs::create_dir_all(dir).unwrap();
    let key = dir.join("id_ed25519");
    run_ok(
        Command::new(common::require_tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key),
        "ssh-keygen",
    );
    let public = fs::read_to_string(plus(&key, ".pub")).unwrap();
    (key, public.trim().to_string())
}

/// `datamig archive DIRNAME` of `root` into `dest`; the archive's path.
fn make_archive(root: &Path, dirname: &str, dest: &Path) -> PathBuf {
    let o = output_within(
        &mut common::cmd([
            "--root".as_ref(),
            root.as_os_str(),
            "-q".as_ref(),
            "archive".as_ref(),
            OsStr::new(dirname),
            "--dest".as_ref(),
            dest.as_os_str(),
            "--date".as_ref(),
            DATE.as_ref(),
            "--no-verify".as_ref(),
            "-j".as_ref(),
            "2".as_ref(),
        ]),
        DEADLINE,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    dest.join(format!("{dirname}-{DATE}.tar.zst"))
}

/// Encrypt the plain archive `a` and its manifest sidecar to `recipient` with
/// the `age` CLI, write the ciphertext's `.sha256` with `sha256sum`, and
/// remove the plaintext files (`keep_plain`: move them into `keep` instead).
/// Returns `A.tar.zst.age`.
fn encrypt(a: &Path, recipient: &str, keep: Option<&Path>) -> PathBuf {
    let sealed = plus(a, ".age");
    let man = plus(a, ".manifest.jsonl");
    let age = common::require_tool("age");
    for (from, to) in [
        (a.to_path_buf(), sealed.clone()),
        (
            man.clone(),
            plus(&sealed, "").with_extension("manifest.jsonl.age"),
        ),
    ] {
        run_ok(
            Command::new(&age)
                .arg("-r")
                .arg(recipient)
                .arg("-o")
                .arg(&to)
                .arg(&from),
            "age -r",
        );
    }
    assert!(
        plus(a, ".manifest.jsonl.age").is_file(),
        "the encrypted sidecar is NAME.tar.zst.manifest.jsonl.age"
    );
    let dir = a.parent().unwrap();
    let line = run_ok(
        Command::new("sha256sum")
            .arg(sealed.file_name().unwrap())
            .current_dir(dir),
        "sha256sum",
    );
    fs::write(plus(&sealed, ".sha256"), line).unwrap();
    for p in [a.to_path_buf(), man, plus(a, ".sha256")] {
        match keep {
            Some(k) => {
                fs::create_dir_all(k).unwrap();
                fs::rename(&p, k.join(p.file_name().unwrap())).unwrap();
            }
            None => fs::remove_file(&p).unwrap(),
        }
    }
    sealed
}

/// `datamig --json ARGS` with `env` set: (exit code, report, stderr).
fn dm(args: &[&OsStr], env: &[(&str, &OsStr)]) -> (i32, Value, String) {
    let mut c = common::cmd(["--json"]);
    c.args(args).env_remove("DATAMIG_IDENTITY");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = output_within(&mut c, DEADLINE);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = if o.stdout.is_empty() {
        Value::Null
    } else {
        json_of(&o.stdout)
    };
    (code(&o), v, err)
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// About 20 MiB over several 4 MiB frames: most frames hold several members.
fn multi_frame_tree(dir: &Path) {
    write(dir, "f00-big.bin", &prng_bytes(1, 3 * MIB));
    write(dir, "f01-small.txt", b"small one\n");
    write(dir, "f02-big.bin", &prng_bytes(2, 3 * MIB));
    write(dir, "f03-small.txt", b"small three\n");
    write(dir, "f04-huge.bin", &prng_bytes(4, 5 * MIB + MIB / 2));
    write(dir, "f05-small.txt", b"small five\n");
    write(dir, "f07-big.bin", &prng_bytes(7, 3 * MIB));
    write(dir, "f08-small.txt", b"small eight\n");
    std::os::unix::fs::symlink("f08-small.txt", dir.join("link")).unwrap();
    write(dir, "sub/f09-big.bin", &prng_bytes(9, 3 * MIB));
    write(dir, "sub/small.txt", b"small in sub\n");
}

fn damaged_paths(r: &Value) -> BTreeSet<String> {
    r["members"]["damaged"]
        .as_array()
        .unwrap_or_else(|| panic!("no members.damaged: {r:#}"))
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

/// Where the first age chunk starts: after the header's MAC line and the
/// 16-byte nonce.
fn payload_start(bytes: &[u8]) -> u64 {
    let text = &bytes[..bytes.len().min(64 << 10)];
    let mac = text
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("age header MAC line");
    let nl = text[mac + 1..].iter().position(|&b| b == b'\n').unwrap();
    (mac + 1 + nl + 1 + 16) as u64
}

/// The ciphertext offset of plaintext byte `pos` (64 KiB chunks, each 16
/// bytes longer on disk).
fn cipher_offset(bytes: &[u8], pos: u64) -> u64 {
    payload_start(bytes) + (pos / 65536) * 65552 + pos % 65536
}

fn flip(p: &Path, at: u64) {
    let mut b = fs::read(p).unwrap();
    b[at as usize] ^= 0x5a;
    fs::write(p, b).unwrap();
}

/// Copy an encrypted archive and its sidecars into `dir`.
fn copy_sealed(sealed: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let to = dir.join(sealed.file_name().unwrap());
    fs::copy(sealed, &to).unwrap();
    fs::copy(plus(sealed, ".sha256"), plus(&to, ".sha256")).unwrap();
    let side = sealed.with_file_name(
        sealed
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".tar.zst.age", ".tar.zst.manifest.jsonl.age"),
    );
    fs::copy(&side, dir.join(side.file_name().unwrap())).unwrap();
    to
}

fn member_paths(list: &Value) -> Vec<String> {
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_string())
        .collect()
}

/// Everything the three verbs do with an encrypted archive and its key.
fn round_trip(key: &Path, recipient: &str) {
    let t = common::tempdir();
    let root = t.path().join("root");
    multi_frame_tree(&root.join("data"));
    let plain_dir = t.path().join("plain");
    let a = make_archive(&root, "data", &t.path().join("dest"));
    let sealed = encrypt(&a, recipient, Some(&plain_dir));
    let id = ["--identity".as_ref(), key.as_os_str()];

    // verify: every member decrypted, decoded and hashed.
    let (rc, r, err) = dm(
        &[&[os("verify"), sealed.as_os_str()][..], &id].concat(),
        &[],
    );
    assert_eq!(rc, 0, "{err}\n{r:#}");
    assert_eq!(r["encrypted"], true, "{r:#}");
    assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
    assert_eq!(r["sidecar_manifest"], "agrees", "{r:#}");
    assert_eq!(r["sidecar_sha256"], "ok", "{r:#}");
    assert_eq!(r["archive_sha256"], common::sha256sum_of(&sealed), "{r:#}");
    let members = common::walk_tree(&root.join("data")).len() as u64;
    assert_eq!(r["members"]["ok"], members, "{r:#}");

    // list: the same members as the plain archive's.
    let plain = plain_dir.join(a.file_name().unwrap());
    let (rc, want, err) = dm(&[os("list"), plain.as_os_str()], &[]);
    assert_eq!(rc, 0, "{err}");
    let (rc, got, err) = dm(&[&[os("list"), sealed.as_os_str()][..], &id].concat(), &[]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(got["members"], want["members"]);
    assert_eq!(got["manifest"], "sidecar");
    assert_eq!(got["encrypted"], true);

    // restore whole: the tree back, byte for byte.
    let all = t.path().join("all");
    let (rc, r, err) = dm(
        &[
            &[
                os("restore"),
                sealed.as_os_str(),
                os("--to"),
                all.as_os_str(),
            ][..],
            &id,
        ]
        .concat(),
        &[],
    );
    assert_eq!(rc, 0, "{err}\n{r:#}");
    assert_eq!(r["encrypted"], true);
    assert_eq!(
        common::walk_tree(&all),
        common::walk_tree(&root.join("data"))
    );
    assert_eq!(
        fs::read(all.join("f04-huge.bin")).unwrap(),
        fs::read(root.join("data/f04-huge.bin")).unwrap()
    );

    // restore PATH: one small file, reading a few chunks of the ciphertext.
    let one = t.path().join("one");
    let (rc, r, err) = dm(
        &[
            &[
                os("restore"),
                sealed.as_os_str(),
                os("--to"),
                one.as_os_str(),
                os("f05-small.txt"),
            ][..],
            &id,
        ]
        .concat(),
        &[],
    );
    assert_eq!(rc, 0, "{err}\n{r:#}");
    assert_eq!(
        fs::read(one.join("f05-small.txt")).unwrap(),
        b"small five\n"
    );
    assert!(!one.join("f04-huge.bin").exists());
    let read = r["archive_bytes_read"].as_u64().unwrap();
    assert_eq!(r["archive_size"], fs::metadata(&sealed).unwrap().len());
    // The frame holding it (at most 4 MiB) plus a chunk at each end.
    assert!(read <= (4 << 20) + (256 << 10), "{read} bytes read: {r:#}");

    // `age -d` and GNU tar restore the same tree with no datamig at all.
    let std_dir = t.path().join("std");
    fs::create_dir_all(&std_dir).unwrap();
    let sh = format!(
        "age -d -i '{}' '{}' | tar --zstd -x -C '{}'",
        key.display(),
        sealed.display(),
        std_dir.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(&sh), "age -d | tar");
    assert_eq!(
        fs::read(std_dir.join("f07-big.bin")).unwrap(),
        fs::read(root.join("data/f07-big.bin")).unwrap()
    );
}

#[test]
fn verify_list_restore_an_x25519_encrypted_archive() {
    let t = common::tempdir();
    let (key, recipient) = age_key(t.path(), "key.txt");
    round_trip(&key, &recipient);
}

#[test]
fn verify_list_restore_an_ssh_ed25519_encrypted_archive() {
    let t = common::tempdir();
    let (key, recipient) = ssh_key(t.path());
    round_trip(&key, &recipient);
}

/// A small encrypted archive in `t`: (archive, identity file).
fn small_sealed(t: &Path) -> (PathBuf, PathBuf) {
    let root = t.join("root");
    common::small_tree(&root.join("data"));
    let (key, recipient) = age_key(&t.join("keys"), "key.txt");
    let a = make_archive(&root, "data", &t.join("dest"));
    (encrypt(&a, &recipient, None), key)
}

#[test]
fn without_a_key_only_verify_quick_runs_and_the_rest_say_what_is_missing() {
    let t = common::tempdir();
    let (sealed, key) = small_sealed(t.path());
    let name = sealed.display().to_string();
    let want = format!(
        "{name} is encrypted to age recipients; give --identity FILE (the private key matching one of them)"
    );
    let to = t.path().join("out");
    for args in [
        vec![os("verify"), sealed.as_os_str()],
        vec![os("list"), sealed.as_os_str()],
        vec![
            os("restore"),
            sealed.as_os_str(),
            os("--to"),
            to.as_os_str(),
        ],
    ] {
        let (rc, _, err) = dm(&args, &[]);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    assert!(!to.exists(), "a refused restore created its destination");

    // --quick needs no key: the ciphertext against its .sha256.
    let (rc, r, err) = dm(&[os("verify"), os("--quick"), sealed.as_os_str()], &[]);
    assert_eq!(rc, 0, "{err}\n{r:#}");
    assert_eq!(r["encrypted"], true);
    assert_eq!(r["sidecar_sha256"], "ok", "{r:#}");
    assert_eq!(r["embedded_manifest"], "not checked without a key", "{r:#}");
    assert_eq!(r["sidecar_manifest"], "not checked without a key", "{r:#}");
    assert_eq!(r["discrepancies"], serde_json::json!([]));

    // DATAMIG_IDENTITY stands for --identity.
    let (rc, r, err) = dm(
        &[os("list"), sealed.as_os_str()],
        &[("DATAMIG_IDENTITY", key.as_os_str())],
    );
    assert_eq!(rc, 0, "{err}");
    assert!(
        member_paths(&r).contains(&"sub/deeper/c.txt".to_string()),
        "{r:#}"
    );

    // One flipped ciphertext byte: --quick without a key sees it.
    let len = fs::metadata(&sealed).unwrap().len();
    flip(&sealed, len / 2);
    let (rc, r, _) = dm(&[os("verify"), os("--quick"), sealed.as_os_str()], &[]);
    assert_eq!(rc, 1, "{r:#}");
    assert_eq!(r["sidecar_sha256"], "mismatch", "{r:#}");
}

#[test]
fn a_wrong_key_an_armored_file_and_a_truncated_file_each_say_so() {
    let t = common::tempdir();
    let (sealed, key) = small_sealed(t.path());
    let (other, _) = age_key(&t.path().join("keys"), "other.txt");
    let name = sealed.display().to_string();
    for verb in ["verify", "list"] {
        let (rc, _, err) = dm(
            &[
                os(verb),
                sealed.as_os_str(),
                os("--identity"),
                other.as_os_str(),
            ],
            &[],
        );
        assert_eq!(rc, 2, "{verb}: {err}");
        assert!(
            err.contains("none of the given identities")
                && err.contains(&other.display().to_string())
                && err.contains(&name),
            "{verb}: {err}"
        );
    }

    // Armored: refused with what to do.
    let armored = t.path().join("arm/data-20251225.tar.zst.age");
    fs::create_dir_all(armored.parent().unwrap()).unwrap();
    let sh = format!(
        "age -d -i '{}' '{}' | age -a -r \"$(age-keygen -y '{}')\" > '{}'",
        key.display(),
        sealed.display(),
        key.display(),
        armored.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(&sh), "age -a");
    let (rc, _, err) = dm(
        &[
            os("list"),
            armored.as_os_str(),
            os("--identity"),
            key.as_os_str(),
        ],
        &[],
    );
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("ASCII-armored"), "{err}");

    // Truncated: the last chunk no longer authenticates as the last one.
    let cut = copy_sealed(&sealed, &t.path().join("cut"));
    let len = fs::metadata(&cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let (rc, r, err) = dm(
        &[
            os("verify"),
            cut.as_os_str(),
            os("--identity"),
            key.as_os_str(),
        ],
        &[],
    );
    assert!(rc == 1 || rc == 2, "{err}\n{r}");
    let text = format!("{err}{r}");
    assert!(
        text.contains("damaged or truncated"),
        "a truncated encrypted archive must say so: {text}"
    );
    let (rc, r, _) = dm(&[os("verify"), os("--quick"), cut.as_os_str()], &[]);
    assert_eq!(rc, 1, "{r:#}");
    assert_eq!(r["sidecar_sha256"], "mismatch");
}

/// A flipped byte in one age chunk costs exactly the members the same damage
/// to the plain archive's frame costs: the decryption fails for that chunk
/// only, and verify resumes at the next frame.
#[test]
fn a_flipped_byte_in_one_chunk_names_only_the_members_of_its_frame() {
    let t = common::tempdir();
    let root = t.path().join("root");
    multi_frame_tree(&root.join("data"));
    let (key, recipient) = age_key(&t.path().join("keys"), "key.txt");
    let plain_dir = t.path().join("plain");
    let a = make_archive(&root, "data", &t.path().join("dest"));
    let sealed = encrypt(&a, &recipient, Some(&plain_dir));
    let plain = plain_dir.join(a.file_name().unwrap());

    // A plaintext offset well inside the frame where f07-big.bin starts.
    let lines = common::ManifestLines::read(&plus(&plain, ".manifest.jsonl"));
    let f07 = lines
        .entry_values()
        .into_iter()
        .find(|v| v["path"] == "f07-big.bin")
        .unwrap();
    let pos = f07["frame_offset"].as_u64().unwrap() + 70_000;

    // The same frame damaged in the plain archive: what plain verify names.
    flip(&plain, pos);
    let (rc, want, err) = dm(&[os("verify"), plain.as_os_str()], &[]);
    assert_eq!(rc, 1, "{err}");
    let want = damaged_paths(&want);
    assert!(
        want.contains("f07-big.bin") && !want.contains("f00-big.bin"),
        "{want:?}"
    );

    let bytes = fs::read(&sealed).unwrap();
    flip(&sealed, cipher_offset(&bytes, pos));
    let (rc, got, err) = dm(
        &[
            os("verify"),
            sealed.as_os_str(),
            os("--identity"),
            key.as_os_str(),
        ],
        &[],
    );
    assert_eq!(rc, 1, "{err}\n{got:#}");
    assert_eq!(damaged_paths(&got), want, "{got:#}");
    assert!(
        !got["members"]["damaged_frames"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Members after the damage were still checked.
    let total = common::walk_tree(&root.join("data")).len() as u64;
    assert_eq!(
        got["members"]["ok"].as_u64().unwrap() + want.len() as u64,
        total,
        "{got:#}"
    );

    // A member outside the damaged frame still restores; one inside fails
    // alone.
    let out = t.path().join("out");
    let (rc, r, err) = dm(
        &[
            os("restore"),
            sealed.as_os_str(),
            os("--to"),
            out.as_os_str(),
            os("--identity"),
            key.as_os_str(),
            os("f01-small.txt"),
            os("f07-big.bin"),
        ],
        &[],
    );
    assert_eq!(rc, 1, "{err}\n{r:#}");
    assert_eq!(fs::read(out.join("f01-small.txt")).unwrap(), b"small one\n");
    assert!(!out.join("f07-big.bin").exists(), "{r:#}");
}

/// A 1 GiB file of kernel random bytes (incompressible; a few seconds,
/// where xorshift in a debug build took 16 s).
fn big_file(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut src = fs::File::open("/dev/urandom").unwrap();
    let mut f = fs::File::create(p).unwrap();
    let n = std::io::copy(&mut std::io::Read::take(&mut src, 1 << 30), &mut f).unwrap();
    assert_eq!(n, 1 << 30);
}

#[test]
fn one_file_from_a_1_gib_encrypted_archive_reads_a_few_chunks_locally_and_from_s3() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let started = std::time::Instant::now();
    big_file(&root.join("data/big.bin"));
    eprintln!("1 GiB of input written in {:?}", started.elapsed());
    write(&root, "data/notes/a.txt", b"alpha\n");
    let (key, recipient) = age_key(&t.path().join("keys"), "key.txt");
    let started = std::time::Instant::now();
    let a = make_archive(&root, "data", &t.path().join("dest"));
    eprintln!("archive of 1 GiB took {:?}", started.elapsed());
    fs::remove_file(root.join("data/big.bin")).unwrap();
    let started = std::time::Instant::now();
    let sealed = encrypt(&a, &recipient, None);
    eprintln!("age -r of 1 GiB took {:?}", started.elapsed());
    let size = fs::metadata(&sealed).unwrap().len();
    assert!(size >= 1 << 30, "{size}");
    let id = [os("--identity"), key.as_os_str()];

    let local = t.path().join("local");
    let (rc, r, err) = dm(
        &[
            &[
                os("restore"),
                sealed.as_os_str(),
                os("--to"),
                local.as_os_str(),
                os("notes/a.txt"),
            ][..],
            &id,
        ]
        .concat(),
        &[],
    );
    assert_eq!(rc, 0, "{err}\n{r:#}");
    assert_eq!(fs::read(local.join("notes/a.txt")).unwrap(), b"alpha\n");
    let read = r["archive_bytes_read"].as_u64().unwrap();
    eprintln!("local one-file restore read {read} of {size} ciphertext bytes");
    assert!(read <= 512 << 10, "{read} bytes read: {r:#}");

    let moto = Moto::start("sealed");
    let url = moto.url("p");
    let mut c = common::cmd(["--json".as_ref(), "copy".as_ref(), sealed.as_os_str()]);
    c.arg(&url).env("DATAMIG_PART_SIZE", (64 << 20).to_string());
    moto.env(&mut c);
    let started = std::time::Instant::now();
    let o = output_within(&mut c, DEADLINE);
    eprintln!(
        "copy of the encrypted archive to S3 took {:?}",
        started.elapsed()
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let obj = format!("{url}/{}", sealed.file_name().unwrap().to_str().unwrap());

    let remote = t.path().join("remote");
    let mut c = common::cmd(["--json", "restore", &obj, "--to"]);
    c.arg(&remote)
        .arg("notes/a.txt")
        .arg("--identity")
        .arg(&key)
        .env_remove("DATAMIG_IDENTITY");
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json_of(&o.stdout);
    assert_eq!(fs::read(remote.join("notes/a.txt")).unwrap(), b"alpha\n");
    let fetched = r["archive_bytes_read"].as_u64().unwrap();
    eprintln!("remote one-file restore fetched {fetched} of {size} ciphertext bytes");
    assert!(fetched <= 512 << 10, "{fetched} bytes fetched: {r:#}");
    assert_eq!(r["encrypted"], true);

    // Without a key the remote verbs refuse, naming what is missing; the
    // remote --quick check needs none.
    let mut c = common::cmd(["--json", "list", &obj]);
    c.env_remove("DATAMIG_IDENTITY");
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    assert_eq!(code(&o), 2);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("is encrypted to age recipients; give --identity FILE"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut c = common::cmd(["--json", "verify", "--quick", &obj]);
    c.env_remove("DATAMIG_IDENTITY");
    moto.env(&mut c);
    let o = output_within(&mut c, DEADLINE);
    let v = json_of(&o.stdout);
    assert_eq!(code(&o), 0, "{v:#}");
    assert_eq!(v["sidecar_sha256"], "ok");
    assert_eq!(v["embedded_manifest"], "not checked without a key");
}
