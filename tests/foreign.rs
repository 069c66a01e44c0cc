//! `list` and `verify` of a `.tar.zst` that datamig did not write (issue 11,
//! items 3 and 4): GNU `tar --zstd`, bsdtar `--zstd`, a tar split over several
//! zstd frames; truncated and damaged copies of them.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files of a few sizes (some over zstd's 128 KiB block, so a cut stream has
/// decoded members before the cut), a long name, a symlink and a hard link.
fn tree(root: &Path) {
    let d = root.join("src");
    fs::create_dir_all(d.join("sub/deeper")).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..24 {
        let len = [0usize, 1, 511, 512, 4096, 300_000][i % 6] + i;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(d.join(format!("sub/f{i:02}.bin")), bytes).unwrap();
    }
    fs::write(d.join("a.txt"), b"hello\n").unwrap();
    let long = format!("sub/deeper/{}.txt", "n".repeat(150));
    fs::write(d.join(long), b"long name\n").unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("link")).unwrap();
    fs::hard_link(d.join("a.txt"), d.join("hard.txt")).unwrap();
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn gnu_archive(root: &Path, out: &Path) -> PathBuf {
    let a = out.join("gnu.tar.zst");
    sh(Command::new("tar")
        .arg("--zstd")
        .arg("-cf")
        .arg(&a)
        .arg("-C")
        .arg(root)
        .arg("src"));
    a
}

fn bsd_archive(root: &Path, out: &Path) -> PathBuf {
    let a = out.join("bsd.tar.zst");
    sh(Command::new("bsdtar")
        .arg("--zstd")
        .arg("-cf")
        .arg(&a)
        .arg("-C")
        .arg(root)
        .arg("src"));
    a
}

/// (name, size) per member as GNU `tar -tvf` prints them.
fn tar_tv(a: &Path) -> Vec<(String, u64)> {
    let o = Command::new("tar").arg("-tvf").arg(a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // perms owner size date time rest; tar pads the size column.
            let f: Vec<&str> = l.split_whitespace().collect();
            let size: u64 = f[2].parse().unwrap();
            let rest = f[5..].join(" ");
            let name = match l.as_bytes()[0] {
                b'l' => rest.split(" -> ").next().unwrap().to_string(),
                b'h' => rest.split(" link to ").next().unwrap().to_string(),
                _ => rest.trim_end_matches('/').to_string(),
            };
            (name, size)
        })
        .collect()
}

fn list_json(a: &Path) -> (i32, serde_json::Value, String) {
    let (c, out, err) = common::datamig([OsStr::new("list"), a.as_os_str(), OsStr::new("--json")]);
    let v = serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null);
    (c, v, err)
}

fn rows(v: &serde_json::Value) -> Vec<(String, u64)> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_lists_like_tar_tv(a: &Path) {
    let want = tar_tv(a);
    assert!(want.len() > 25, "{want:?}");
    let (c, v, err) = list_json(a);
    assert_eq!(c, 0, "{err}\n{v:#}");
    assert_eq!(v["manifest"], "none", "{v:#}");
    assert_eq!(
        v["note"], "no manifest: listed from the tar headers",
        "{v:#}"
    );
    assert_eq!(v["stream"]["complete"], true, "{v:#}");
    assert_eq!(rows(&v), want, "{}", a.display());
    let link = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "src/link")
        .unwrap();
    assert_eq!(
        (&link["type"], &link["target"]),
        (&"symlink".into(), &"a.txt".into())
    );
    // Plain text: the note, every member, the stream verdict.
    let (c, out, err) = common::datamig([OsStr::new("list"), a.as_os_str()]);
    assert_eq!(c, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("no manifest: listed from the tar headers"),
        "{text}"
    );
    assert!(text.contains("decodes end to end"), "{text}");
    for (name, _) in &want {
        assert!(
            text.lines()
                .any(|l| l.ends_with(name.as_str()) || l.contains(&format!("{name} -> "))),
            "{name} not in:\n{text}"
        );
    }
}

#[test]
fn finding_11_3_list_of_gnu_tar_zstd_matches_tar_tv() {
    let t = common::tempdir();
    tree(t.path());
    assert_lists_like_tar_tv(&gnu_archive(t.path(), t.path()));
}

#[test]
fn finding_11_3_list_of_bsdtar_zstd_matches_tar_tv() {
    let t = common::tempdir();
    tree(t.path());
    assert_lists_like_tar_tv(&bsd_archive(t.path(), t.path()));
}

/// `tar | zstd` in pieces: a tar stream over several zstd frames with a
/// skippable frame between them is one archive.
#[test]
fn finding_11_3_list_of_a_multi_frame_stream_matches_tar_tv() {
    let t = common::tempdir();
    tree(t.path());
    let plain = t.path().join("p.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&plain)
        .arg("-C")
        .arg(t.path())
        .arg("src"));
    let tar = fs::read(&plain).unwrap();
    let mut z = Vec::new();
    for part in tar.chunks(tar.len() / 3 + 1) {
        z.extend(zstd::encode_all(part, 3).unwrap());
        z.extend([0x5e, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    }
    let a = t.path().join("multi.tar.zst");
    fs::write(&a, z).unwrap();
    assert_lists_like_tar_tv(&a);
    let (_, v, _) = list_json(&a);
    assert_eq!(v["stream"]["frames"], 6, "{v:#}");
}

/// Cut inside the stream: the members before the cut are listed, exit 1, and
/// the report names the byte where the file ends.
#[test]
fn finding_11_3_list_of_truncated_foreign_archive_names_the_offset() {
    let t = common::tempdir();
    tree(t.path());
    let a = gnu_archive(t.path(), t.path());
    let all = tar_tv(&a);
    let bytes = fs::read(&a).unwrap();
    let cut = t.path().join("cut.tar.zst");
    let n = bytes.len() * 6 / 10;
    fs::write(&cut, &bytes[..n]).unwrap();
    let (c, v, err) = list_json(&cut);
    assert_eq!(c, 1, "{err}\n{v:#}");
    let got = rows(&v);
    assert!(!got.is_empty() && got.len() < all.len(), "{got:?}");
    assert_eq!(got[..], all[..got.len()], "the members before the cut");
    let p = v["stream"]["problem"].as_str().unwrap();
    assert!(
        p.contains(&format!("ends at byte {n}")) && p.contains("truncated"),
        "{p}"
    );
    let (c, out, _) = common::datamig([OsStr::new("list"), cut.as_os_str()]);
    assert_eq!(c, 1);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(&format!("ends at byte {n}")), "{text}");

    // Cut so early that no header decodes: nothing to list, exit 2.
    fs::write(&cut, &bytes[..200]).unwrap();
    let (c, _, err) = common::datamig([OsStr::new("list"), cut.as_os_str()]);
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("cut.tar.zst") && err.contains("ends at byte 200"),
        "{err}"
    );
}

fn verify_json(a: &Path) -> (i32, serde_json::Value) {
    let (c, out, err) =
        common::datamig([OsStr::new("verify"), a.as_os_str(), OsStr::new("--json")]);
    let v = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    (c, v)
}

fn discrepancies(v: &serde_json::Value) -> String {
    v["discrepancies"].to_string()
}

/// A sound foreign archive: exit 1 (never "clean": there is no manifest to
/// check content against), saying so and that the stream decodes end to end.
#[test]
fn finding_11_3_verify_of_foreign_archive_says_no_manifest_and_decodes_end_to_end() {
    let t = common::tempdir();
    tree(t.path());
    for a in [
        gnu_archive(t.path(), t.path()),
        bsd_archive(t.path(), t.path()),
    ] {
        let n = tar_tv(&a).len();
        let (c, v) = verify_json(&a);
        assert_eq!(c, 1, "{v:#}");
        assert_eq!(v["checked_against"], "none", "{v:#}");
        assert_eq!(v["foreign"]["complete"], true, "{v:#}");
        assert_eq!(v["foreign"]["members"], n as u64, "{v:#}");
        let d = discrepancies(&v);
        assert!(d.contains("no manifest"), "{d}");
        assert!(
            d.contains(&format!("decodes end to end, {n} members")),
            "{d}"
        );
        assert_eq!(v["discrepancies"].as_array().unwrap().len(), 1, "{d}");
        let (c, out, _) = common::datamig([OsStr::new("verify"), a.as_os_str()]);
        assert_eq!(c, 1);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("no manifest") && text.contains("decodes end to end"),
            "{text}"
        );
    }
}

/// A flipped byte in the middle and a cut: exit 1, the damage named with its
/// compressed offset.
#[test]
fn finding_11_3_verify_of_corrupted_foreign_archive_names_the_damage() {
    let t = common::tempdir();
    tree(t.path());
    let a = gnu_archive(t.path(), t.path());
    let bytes = fs::read(&a).unwrap();

    let bad = t.path().join("bad.tar.zst");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    fs::write(&bad, &flipped).unwrap();
    let (c, v) = verify_json(&bad);
    assert_eq!(c, 1, "{v:#}");
    assert_eq!(v["foreign"]["complete"], false, "{v:#}");
    let p = v["foreign"]["problem"].as_str().unwrap();
    assert!(
        p.contains("damaged") && p.contains("starts at byte 0"),
        "{p}"
    );
    let d = discrepancies(&v);
    assert!(
        d.contains("no manifest") && d.contains("does not decode end to end"),
        "{d}"
    );

    let cut = t.path().join("cut.tar.zst");
    fs::write(&cut, &bytes[..mid]).unwrap();
    let (c, v) = verify_json(&cut);
    assert_eq!(c, 1, "{v:#}");
    let p = v["foreign"]["problem"].as_str().unwrap();
    assert!(
        p.contains(&format!("ends at byte {mid}")) && p.contains("truncated"),
        "{p}"
    );
    assert!(p.contains("last intact member: src/"), "{p}");
}

fn restore_json(a: &Path, to: &Path) -> (i32, serde_json::Value) {
    let (c, out, err) = common::datamig([
        OsStr::new("restore"),
        a.as_os_str(),
        OsStr::new("--to"),
        to.as_os_str(),
        OsStr::new("--json"),
    ]);
    let v = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    (c, v)
}

/// Item 4: a foreign single-frame archive is decoded on a second thread
/// (`verify::foreign::Decoded`): every byte comes back, the whole file is
/// read once, and a cut is reported with the byte where the file ends.
#[test]
fn finding_11_4_foreign_single_frame_restore_reads_once_and_names_a_cut() {
    let t = common::tempdir();
    tree(t.path());
    let a = gnu_archive(t.path(), t.path());
    let to = t.path().join("r");
    let (c, v) = restore_json(&a, &to);
    // No manifest: every file is "unverified" (exit 1), none is an error.
    assert_eq!(c, 1, "{v:#}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v:#}");
    assert_eq!(
        v["archive_bytes_read"],
        fs::metadata(&a).unwrap().len(),
        "{v:#}"
    );
    for i in 0..24 {
        let rel = format!("src/sub/f{i:02}.bin");
        assert!(
            fs::read(t.path().join(&rel)).unwrap() == fs::read(to.join(&rel)).unwrap(),
            "{rel} differs"
        );
    }

    let bytes = fs::read(&a).unwrap();
    let n = bytes.len() * 6 / 10;
    let cut = t.path().join("cut.tar.zst");
    fs::write(&cut, &bytes[..n]).unwrap();
    let (c, v) = restore_json(&cut, &t.path().join("r2"));
    assert_eq!(c, 1, "{v:#}");
    let errs = v["errors"].to_string();
    assert!(
        errs.contains(&format!("ends at byte {n}")) && errs.contains("truncated"),
        "{v:#}"
    );
}
