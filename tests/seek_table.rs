//! Issue 11, item 5: every archive ends with the standard Zstandard Seekable
//! Format seek table (facebook/zstd `contrib/seekable_format`), datamig's
//! index lives in its own skippable frame, and archives written before the
//! change (layout 1, `tests/fixtures/layout-v1/`) still restore, verify and
//! list.
//!
//! The seek table is parsed here independently of datamig, and read by
//! pyzstd's `SeekableZstdFile` from `.ci/venv` (created by `.ci/run`).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const DATE: &str = "20260101";
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Low 32 bits of XXH64 of no bytes (0xEF46DB3751D8E999).
const XXH64_EMPTY_LOW: u32 = 0x51D8_E999;

/// The venv `.ci/run` makes with pyzstd; a clear failure when it is absent.
fn pyzstd_python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python3");
    let ok = py.is_file()
        && Command::new(&py)
            .args(["-c", "import pyzstd"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs pyzstd in {}: run `python3 -m venv .ci/venv && .ci/venv/bin/pip install pyzstd` \
         (`.ci/run` does it)",
        py.display()
    );
    py
}

fn python(py: &Path, script: &str, args: &[&OsStr]) -> String {
    let o = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A small tree: a few files (one spanning two 4 MiB frames), a
/// subdirectory and a symlink.
fn small_tree(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..5u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let files = vec![
        ("a.txt", b"first file\n".to_vec()),
        ("big.bin", big),
        (
            "sub/after.json",
            b"{\"after\": \"the big file\"}\n".to_vec(),
        ),
        ("sub/c.txt", b"third\n".to_vec()),
    ];
    for (p, b) in &files {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b).unwrap();
    }
    symlink("sub/c.txt", dir.join("link")).unwrap();
    files
}

fn make_archive(root: &Path, dest: &Path) -> PathBuf {
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new("data"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(DATE),
        OsStr::new("-q"),
    ]);
    assert_eq!(c, 0, "archive failed: {err}");
    dest.join(format!("data-{DATE}.tar.zst"))
}

/// One seek-table entry, parsed here without datamig.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    start: u64,
    compressed: u32,
    decompressed: u32,
    checksum: Option<u32>,
}

/// The seek table at the end of `bytes`, checked against the spec: the
/// skippable magic, Frame_Size, no reserved bits, and entries that exactly
/// cover the file before the table.
fn seek_table(bytes: &[u8]) -> Vec<Entry> {
    let n = bytes.len();
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(word(n - 4), SEEKABLE_MAGIC, "no seekable magic at the end");
    assert_eq!(bytes[n - 5] & 0x7C, 0, "reserved descriptor bits");
    let sums = bytes[n - 5] & 0x80 != 0;
    let width = if sums { 12 } else { 8 };
    let count = word(n - 9) as usize;
    let table = n - 9 - count * width - 8;
    assert_eq!(word(table), 0x184D_2A5E, "seek table skippable magic");
    assert_eq!(word(table + 4) as usize, count * width + 9, "Frame_Size");
    let (mut offset, mut start) = (0u64, 0u64);
    let entries: Vec<Entry> = (0..count)
        .map(|i| {
            let at = table + 8 + i * width;
            let e = Entry {
                offset,
                start,
                compressed: word(at),
                decompressed: word(at + 4),
                checksum: sums.then(|| word(at + 8)),
            };
            offset += u64::from(e.compressed);
            start += u64::from(e.decompressed);
            e
        })
        .collect();
    assert_eq!(
        offset, table as u64,
        "entries must cover the file up to the table"
    );
    entries
}

fn manifest_entry(archive: &Path, path: &str) -> Value {
    let side = PathBuf::from(format!("{}.manifest.jsonl", archive.display()));
    let m = common::ManifestLines::read(&side);
    m.by_path()
        .remove(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} not in the manifest"))
}

#[test]
fn finding_11_5_archive_ends_with_a_spec_seek_table_listing_every_frame() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("data"));
    let a = make_archive(&root, &t.path().join("dest"));
    let bytes = fs::read(&a).unwrap();
    let n = bytes.len();
    assert_eq!(
        bytes[n - 5],
        0x80,
        "descriptor: the checksum flag, nothing else"
    );
    let entries = seek_table(&bytes);
    let (index, data) = entries.split_last().unwrap();
    assert!(
        data.len() >= 2,
        "5 MiB of data spans two frames: {entries:?}"
    );
    for e in data {
        let frame = &bytes[e.offset as usize..(e.offset + u64::from(e.compressed)) as usize];
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(frame).unwrap(),
            Some(u64::from(e.decompressed)),
            "decompressed size of the frame at {}",
            e.offset
        );
        // The frame's own content checksum is the same XXH64 low half.
        let own = u32::from_le_bytes(frame[frame.len() - 4..].try_into().unwrap());
        assert_eq!(
            e.checksum,
            Some(own),
            "checksum of the frame at {}",
            e.offset
        );
    }
    // The index: its own skippable magic, listed with decompressed size 0.
    let ix = &bytes[index.offset as usize..];
    assert_eq!(&ix[..4], &0x184D_2A5Du32.to_le_bytes(), "index frame magic");
    assert_eq!(index.decompressed, 0);
    assert_eq!(index.checksum, Some(XXH64_EMPTY_LOW));
    let (c, out, err) =
        common::datamig([OsStr::new("verify"), a.as_os_str(), OsStr::new("--json")]);
    assert_eq!(c, 0, "verify: {err}\n{}", String::from_utf8_lossy(&out));

    // A seek table whose sizes no longer add up is a discrepancy for verify
    // (the sidecars are left out: only the archive is judged).
    let mut bad = bytes.clone();
    let first = n - 9 - entries.len() * 12;
    bad[first] ^= 1;
    let b = t.path().join("bad").join(a.file_name().unwrap());
    fs::create_dir(b.parent().unwrap()).unwrap();
    fs::write(&b, &bad).unwrap();
    let (c, out, _) = common::datamig([OsStr::new("verify"), b.as_os_str(), OsStr::new("--json")]);
    let v = common::json_of(&out);
    assert_eq!(c, 1, "{v:#}");
    let disc: Vec<&str> = v["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        disc.iter()
            .any(|d| d.starts_with("seek table: its frames add up to")),
        "{disc:#?}"
    );
    // The index is still found from the last entry, so members are checked.
    assert_eq!(v["embedded_manifest"], "ok", "{v:#}");
}

#[test]
fn finding_11_5_pyzstd_seekable_reader_opens_an_archive_and_reads_a_member_at_its_offset() {
    let py = pyzstd_python();
    let t = common::tempdir();
    let root = t.path().join("root");
    let files = small_tree(&root.join("data"));
    let a = make_archive(&root, &t.path().join("dest"));
    let bytes = fs::read(&a).unwrap();
    let entries = seek_table(&bytes);
    for (name, content) in files.iter().filter(|f| f.0 != "a.txt") {
        // The manifest's compressed frame offset -> decompressed offset
        // through the seek table.
        let e = manifest_entry(&a, name);
        let frame_offset = e["frame_offset"].as_u64().unwrap();
        let in_frame = e["offset_in_frame"].as_u64().unwrap();
        let f = entries
            .iter()
            .find(|x| x.offset == frame_offset)
            .unwrap_or_else(|| panic!("{name}: no seek-table frame at {frame_offset}"));
        let at = f.start + in_frame;
        let script = r#"
import sys, tarfile, hashlib, pyzstd
with pyzstd.SeekableZstdFile(sys.argv[1], "r") as f:
    f.seek(int(sys.argv[2]))
    tf = tarfile.open(fileobj=f, mode="r|")
    m = tf.next()
    data = tf.extractfile(m).read()
    print(m.name)
    print(hashlib.sha256(data).hexdigest())
"#;
        let out = python(&py, script, &[a.as_os_str(), OsStr::new(&at.to_string())]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], *name, "member at decompressed offset {at}");
        assert_eq!(lines[1], common::sha256_hex(content), "{name}'s bytes");
    }
    // pyzstd decompresses the whole archive to what zstd -d gives.
    let script = r#"
import sys, hashlib, pyzstd
with pyzstd.SeekableZstdFile(sys.argv[1], "r") as f:
    print(hashlib.sha256(f.read()).hexdigest())
"#;
    let whole = python(&py, script, &[a.as_os_str()]);
    let zstd = common::require_tool("zstd");
    let o = Command::new(zstd).arg("-dc").arg(&a).output().unwrap();
    assert!(o.status.success());
    assert_eq!(whole.trim(), common::sha256_hex(&o.stdout));
}

#[test]
fn finding_11_5_zstd_gnu_tar_and_bsdtar_still_extract_a_seek_table_archive() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let files = small_tree(&root.join("data"));
    let a = make_archive(&root, &t.path().join("dest"));
    let check = |dir: &Path, who: &str| {
        for (name, content) in &files {
            let got = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{who}: {name}: {e}"));
            assert!(got == *content, "{who}: {name} differs");
        }
        assert_eq!(
            fs::read_link(dir.join("link")).unwrap(),
            Path::new("sub/c.txt"),
            "{who}"
        );
    };
    // zstd -d, then tar on the plain stream.
    let plain = t.path().join("plain.tar");
    let st = Command::new(common::require_tool("zstd"))
        .args(["-q", "-d", "-o"])
        .arg(&plain)
        .arg(&a)
        .status()
        .unwrap();
    assert!(st.success(), "zstd -d failed");
    let x = t.path().join("zstd");
    fs::create_dir(&x).unwrap();
    let tar = common::require_tool("tar");
    assert!(
        Command::new(&tar)
            .arg("-xf")
            .arg(&plain)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap()
            .success()
    );
    check(&x, "zstd -d");
    let x = t.path().join("gnu");
    fs::create_dir(&x).unwrap();
    let o = Command::new(&tar)
        .arg("--zstd")
        .arg("-xf")
        .arg(&a)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tar --zstd -xf: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check(&x, "GNU tar");
    let x = t.path().join("bsd");
    fs::create_dir(&x).unwrap();
    let o = Command::new(common::require_tool("bsdtar"))
        .arg("-xf")
        .arg(&a)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bsdtar -xf: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check(&x, "bsdtar");
}

/// The layout 1 fixture copied into a fresh directory, with or without its
/// sidecars.
fn layout1_copy(dir: &Path, sidecars: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layout-v1");
    let name = "oldtree-20250102.tar.zst";
    fs::create_dir_all(dir).unwrap();
    let mut names = vec![name.to_string()];
    if sidecars {
        names.push(format!("{name}.manifest.jsonl"));
        names.push(format!("{name}.sha256"));
    }
    for n in names {
        fs::copy(src.join(&n), dir.join(&n)).unwrap();
    }
    dir.join(name)
}

#[test]
fn finding_11_5_layout_1_archive_still_lists_verifies_and_restores() {
    let t = common::tempdir();
    // No sidecars: everything comes through the layout 1 index at the tail.
    let bare = layout1_copy(&t.path().join("bare"), false);
    let bytes = fs::read(&bare).unwrap();
    assert_eq!(
        &bytes[bytes.len() - 8..],
        b"DMIGIDX1",
        "the fixture is layout 1"
    );
    let (c, out, err) =
        common::datamig([OsStr::new("list"), bare.as_os_str(), OsStr::new("--json")]);
    assert_eq!(c, 0, "list: {err}");
    let l = common::json_of(&out);
    assert_eq!(l["manifest"], "embedded");
    let names: Vec<&str> = l["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    for want in ["a.txt", "link", "sub", "sub/b.json", "sub/c.bin"] {
        assert!(names.contains(&want), "list lacks {want}: {names:?}");
    }

    let to = t.path().join("restored");
    let (c, out, err) = common::datamig([
        OsStr::new("restore"),
        bare.as_os_str(),
        OsStr::new("--to"),
        to.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("-q"),
    ]);
    let r = common::json_of(&out);
    assert_eq!(c, 0, "restore: {err}\n{r:#}");
    assert_eq!(r["manifest"], "embedded");
    assert_eq!(r["files"], 3);
    assert_eq!(
        fs::read(to.join("a.txt")).unwrap(),
        b"hello from the old layout\n"
    );
    assert_eq!(fs::read(to.join("sub/b.json")).unwrap(), b"{\"k\": 1}\n");
    assert_eq!(
        fs::read_link(to.join("link")).unwrap(),
        Path::new("sub/b.json")
    );

    // One path, reached through the layout 1 index's manifest positions.
    let one = t.path().join("one");
    let (c, out, err) = common::datamig([
        OsStr::new("restore"),
        bare.as_os_str(),
        OsStr::new("--to"),
        one.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("-q"),
        OsStr::new("sub/c.bin"),
    ]);
    let r = common::json_of(&out);
    assert_eq!(c, 0, "restore sub/c.bin: {err}\n{r:#}");
    assert_eq!(r["files"], 1);
    assert_eq!(fs::read(one.join("sub/c.bin")).unwrap().len(), 4053);

    // With its sidecars: verify is clean (embedded and sidecar manifests
    // agree, the .sha256 matches).
    let full = layout1_copy(&t.path().join("full"), true);
    let (c, out, err) =
        common::datamig([OsStr::new("verify"), full.as_os_str(), OsStr::new("--json")]);
    let v = common::json_of(&out);
    assert_eq!(c, 0, "verify: {err}\n{v:#}");
    assert_eq!(v["embedded_manifest"], "ok");
    assert_eq!(v["sidecar_manifest"], "agrees");
    assert_eq!(v["sidecar_sha256"], "ok");
}

#[test]
fn finding_11_5_pyzstd_seekable_tar_gets_a_path_restore_reading_only_a_few_frames() {
    let py = pyzstd_python();
    let t = common::tempdir();
    // Four 1.5 MiB incompressible files around two small members: the small
    // ones' frames are a few of ~92 64 KiB frames.
    let src = t.path().join("src");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("d/big1.bin", noise(1_500_000)),
        ("d/small.txt", b"the small one\n".to_vec()),
        ("d/big2.bin", noise(1_500_000)),
        ("d/sub/y.json", b"{\"y\": 1}\n".to_vec()),
        ("d/big3.bin", noise(1_500_000)),
        ("d/big4.bin", noise(1_500_000)),
    ];
    for (p, b) in &files {
        let path = src.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b).unwrap();
    }
    // GNU tar in a fixed member order, then pyzstd's seekable writer.
    let plain = t.path().join("a.tar");
    let mut c = Command::new(common::require_tool("tar"));
    c.arg("-C")
        .arg(&src)
        .arg("--no-recursion")
        .arg("-cf")
        .arg(&plain);
    c.args([
        "d",
        "d/big1.bin",
        "d/small.txt",
        "d/big2.bin",
        "d/sub",
        "d/sub/y.json",
    ]);
    c.args(["d/big3.bin", "d/big4.bin"]);
    assert!(c.status().unwrap().success(), "tar -cf");
    let a = t.path().join("foreign").join("a.tar.zst");
    fs::create_dir(a.parent().unwrap()).unwrap();
    let script = r#"
import sys, pyzstd
with open(sys.argv[1], "rb") as i, pyzstd.SeekableZstdFile(sys.argv[2], "w", max_frame_content_size=65536) as o:
    o.write(i.read())
"#;
    python(&py, script, &[plain.as_os_str(), a.as_os_str()]);
    let size = fs::metadata(&a).unwrap().len();
    let frames = seek_table(&fs::read(&a).unwrap()).len();
    assert!(
        frames >= 90,
        "pyzstd wrote {frames} frames, not one per 64 KiB"
    );

    let to = t.path().join("out");
    let (c, out, err) = common::datamig([
        OsStr::new("restore"),
        a.as_os_str(),
        OsStr::new("--to"),
        to.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("-q"),
        OsStr::new("d/small.txt"),
        OsStr::new("d/sub"),
    ]);
    let r = common::json_of(&out);
    // No manifest: restored unverified (exit 1), nothing else wrong.
    assert_eq!(c, 1, "restore: {err}\n{r:#}");
    for list in ["refused", "corrupt", "missing", "errors"] {
        assert_eq!(r[list].as_array().unwrap().len(), 0, "{list}: {r:#}");
    }
    assert_eq!(r["files"], 2, "{r:#}");
    assert_eq!(
        fs::read(to.join("d/small.txt")).unwrap(),
        b"the small one\n"
    );
    assert_eq!(fs::read(to.join("d/sub/y.json")).unwrap(), b"{\"y\": 1}\n");
    assert!(
        !to.join("d/big1.bin").exists(),
        "an unrequested member was written"
    );
    let read = r["archive_bytes_read"].as_u64().unwrap();
    assert!(
        read * 10 < size,
        "a PATH restore read {read} of {size} bytes: more than a tenth"
    );
    eprintln!("foreign PATH restore read {read} of {size} archive bytes");

    // A requested path the archive lacks is reported missing.
    let none = t.path().join("none");
    let (_, out, _) = common::datamig([
        OsStr::new("restore"),
        a.as_os_str(),
        OsStr::new("--to"),
        none.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("-q"),
        OsStr::new("d/absent"),
    ]);
    let r = common::json_of(&out);
    assert_eq!(r["missing"][0], "d/absent", "{r:#}");

    // A seek table that does not add up to the file is not trusted: exit 2,
    // DIR never made.
    let mut bytes = fs::read(&a).unwrap();
    let n = bytes.len();
    let count = u32::from_le_bytes(bytes[n - 9..n - 5].try_into().unwrap()) as usize;
    let first = n - 9 - count * 8; // pyzstd writes no checksums: 8-byte entries
    bytes[first] ^= 1;
    let bad = t.path().join("bad").join("a.tar.zst");
    fs::create_dir(bad.parent().unwrap()).unwrap();
    fs::write(&bad, &bytes).unwrap();
    let never = t.path().join("never");
    let (c, _, err) = common::datamig([
        OsStr::new("restore"),
        bad.as_os_str(),
        OsStr::new("--to"),
        never.as_os_str(),
        OsStr::new("d/small.txt"),
    ]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("seek table does not match the file"), "{err}");
    assert!(
        !never.exists(),
        "DIR was created by a restore that could not run"
    );
}
