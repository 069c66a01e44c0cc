//! `datamig verify`: archives (untouched, a flipped byte, truncated, damaged
//! sidecars and embedded manifest, --quick), tree audits against inventory and
//! archive manifests, the migration check and the `--remove-source` gate it
//! guards, and the cases where verify cannot run at all (exit 2).
//!
//! Expectations are computed independently of datamig where possible: zstd
//! frames are walked with libzstd, files hashed with coreutils `sha256sum`,
//! archives extracted with GNU tar.

mod common;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{FileExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ManifestLines, prng_bytes, small_tree, walk_tree, write};
use serde_json::Value;

const DATE: &str = "20251225";

// ---------------------------------------------------------------------------
// Helpers local to this file

const MIB: usize = 1 << 20;

/// About 17.5 MiB of incompressible data in members laid out so that (with
/// 4 MiB frames) most frames hold several members and `f04-huge.bin` (5.5 MiB)
/// spans two frames, the second of which also holds `f05`/`f06`.
fn multi_frame_tree(dir: &Path) {
    write(dir, "f00-big.bin", &prng_bytes(1, 3 * MIB));
    write(dir, "f01-small.txt", b"small one\n");
    write(dir, "f02-big.bin", &prng_bytes(2, 3 * MIB));
    write(dir, "f03-small.txt", b"small three\n");
    write(dir, "f04-huge.bin", &prng_bytes(4, 5 * MIB + MIB / 2));
    write(dir, "f05-small.txt", b"small five\n");
    write(dir, "f06-small.txt", b"small six\n");
    write(dir, "f07-big.bin", &prng_bytes(7, 3 * MIB));
    write(dir, "f08-small.txt", b"small eight\n");
    symlink("f08-small.txt", dir.join("link")).unwrap();
    write(dir, "sub/f09-big.bin", &prng_bytes(9, 3 * MIB));
    write(dir, "sub/small.txt", b"small in sub\n");
}

/// `datamig --root ROOT archive DIRNAME --dest DEST --date DATE -q`, which
/// must succeed; returns the archive path.
fn make_archive(root: &Path, dirname: &str, dest: &Path, date: &str) -> PathBuf {
    let o = common::run([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new(dirname),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(date),
        OsStr::new("-q"),
    ]);
    assert_eq!(
        common::code(&o),
        0,
        "archive {dirname} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let a = dest.join(format!("{dirname}-{date}.tar.zst"));
    assert!(a.is_file(), "{} was not written", a.display());
    a
}

/// `<archive><suffix>`, e.g. the `.manifest.jsonl` and `.sha256` sidecars.
fn sidecar(archive: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = archive.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Copy an archive and its two sidecars into `dir` (same file names).
fn copy_with_sidecars(archive: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let name = archive.file_name().unwrap();
    let to = dir.join(name);
    for suffix in ["", ".manifest.jsonl", ".sha256"] {
        fs::copy(sidecar(archive, suffix), sidecar(&to, suffix)).unwrap();
    }
    to
}

/// Run `datamig ARGS -q`: (exit code, stdout, stderr).
fn dm(args: &[&OsStr]) -> (i32, Vec<u8>, String) {
    let mut all: Vec<&OsStr> = args.to_vec();
    all.push(OsStr::new("-q"));
    common::datamig(&all)
}

/// `datamig verify ARGS --json`, requiring exit 0 or 1 and a JSON report.
fn verify_json(args: &[&OsStr]) -> (i32, Value) {
    let mut all: Vec<&OsStr> = vec![OsStr::new("verify")];
    all.extend_from_slice(args);
    all.push(OsStr::new("--json"));
    let (c, out, err) = dm(&all);
    assert!(
        c == 0 || c == 1,
        "verify {args:?} exited {c}; stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    (c, common::json_of(&out))
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_string()
        })
        .collect()
}

fn note_paths(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

fn assert_empty(report: &Value, key: &str) {
    let v = &report[key];
    assert!(
        v.as_array().is_some_and(|a| a.is_empty()),
        "{key} should be an empty list, is {v}\nreport: {report:#}"
    );
}

/// Archive member entries of a manifest (those with a recorded position), in
/// manifest (= archive) order: (path, entry).
fn members(m: &ManifestLines) -> Vec<(String, Value)> {
    m.entry_values()
        .into_iter()
        .filter(|v| v.get("frame_offset").is_some())
        .map(|v| (String::from_utf8(common::entry_path(&v)).unwrap(), v))
        .collect()
}

/// One zstd frame of a file, found with libzstd (independently of datamig).
#[derive(Debug, Clone, Copy)]
struct Frame {
    offset: u64,
    compressed: u64,
    /// Decompressed size from the frame header (0 for skippable frames).
    content: u64,
    skippable: bool,
}

fn zstd_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let magic = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let skippable = magic & 0xFFFF_FFF0 == 0x184D_2A50;
        assert!(
            skippable || magic == 0xFD2F_B528,
            "no zstd frame magic at offset {pos} ({magic:#010x})"
        );
        let n = zstd::zstd_safe::find_frame_compressed_size(&bytes[pos..])
            .unwrap_or_else(|e| panic!("bad zstd frame at offset {pos}: code {e}"));
        let content = if skippable {
            0
        } else {
            match zstd::zstd_safe::get_frame_content_size(&bytes[pos..]) {
                Ok(Some(n)) => n,
                other => panic!("frame at {pos} has no content size: {other:?}"),
            }
        };
        out.push(Frame {
            offset: pos as u64,
            compressed: n as u64,
            content,
            skippable,
        });
        pos += n;
    }
    out
}

fn flip_byte(p: &Path, pos: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, pos).unwrap();
}

/// Replace the hex digit at `i` by another hex digit (same length).
fn flip_hex(bytes: &mut [u8], i: usize) {
    assert!(bytes[i].is_ascii_hexdigit(), "not a hex digit at {i}");
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
}

/// Position of the first hex digit of the first entry line's `sha256` value in
/// a manifest (header and trailer excluded).
fn first_entry_sha_pos(manifest: &[u8]) -> usize {
    let first_nl = manifest.iter().position(|&b| b == b'\n').unwrap();
    let trailer = find(manifest, br#"{"datamig":"trailer""#).unwrap();
    let key = br#""sha256":""#;
    let at = find(&manifest[first_nl..], key).expect("an entry with a sha256") + first_nl;
    assert!(at < trailer, "first sha256 is the trailer's");
    at + key.len()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn inventory_manifest(root: &Path, out: &Path) {
    let (c, so, err) = dm(&[
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("inventory"),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(
        (c == 0 || c == 1) && out.is_file(),
        "inventory exited {c}; stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&so)
    );
}

fn copy_fixture(into: &Path) -> PathBuf {
    let root = into.join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(common::fixture_root())
        .arg(&root)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp -a of the fixture failed");
    root
}

const NOT_MIGRATED: &str = "v2-dev-data/projects/coordination-v2/documents/legacy-notes.md";
const DIFFERS: &str = "v2-dev-data/instances/Bastion-11a9/diary.md";

/// Copy the two unmigrated legacy files to their consolidated places.
fn finish_migration(root: &Path) {
    for legacy in [NOT_MIGRATED, DIFFERS] {
        let to = root.join(legacy.strip_prefix("v2-dev-data/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(root.join(legacy), &to).unwrap();
    }
}

// ---------------------------------------------------------------------------
// 1. An untouched archive

#[test]
fn untouched_archive_verifies_clean() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("data"));
    let dest = t.path().join("dest");
    let a = make_archive(&root, "data", &dest, DATE);
    let archived = walk_tree(&root.join("data")).len() as u64;
    assert_eq!(archived, 9, "test tree changed");

    let (c, _, err) = dm(&[OsStr::new("verify"), a.as_os_str()]);
    assert_eq!(c, 0, "stderr:\n{err}");

    let (c, r) = verify_json(&[a.as_os_str()]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["report"], "verify-archive");
    assert_empty(&r, "discrepancies");
    assert_eq!(r["checked_against"], "embedded", "{r:#}");
    assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
    assert_eq!(r["sidecar_manifest"], "agrees", "{r:#}");
    assert_eq!(r["sidecar_sha256"], "ok", "{r:#}");
    assert_eq!(r["archive_sha256"], common::sha256sum_of(&a), "{r:#}");
    let m = &r["members"];
    assert_eq!(m["ok"], archived, "{r:#}");
    for k in [
        "mismatched",
        "missing",
        "unexpected",
        "damaged",
        "damaged_frames",
        "stream",
    ] {
        assert_empty(m, k);
    }
}

// ---------------------------------------------------------------------------
// 2. One flipped byte costs only the members of its frame

#[test]
fn flipped_byte_damages_only_the_members_of_its_frame() {
    let t = common::tempdir();
    let root = t.path().join("root");
    multi_frame_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);
    let manifest = ManifestLines::read(&sidecar(&a, ".manifest.jsonl"));
    let mem = members(&manifest);
    let total = mem.len() as u64;
    assert_eq!(total, walk_tree(&root.join("data")).len() as u64);

    let bytes = fs::read(&a).unwrap();
    let frames = zstd_frames(&bytes);
    let data_frames: Vec<Frame> = frames.iter().copied().filter(|f| !f.skippable).collect();
    assert!(
        data_frames.len() >= 6,
        "expected many frames, got {frames:?}"
    );
    // Decompressed start of every data frame.
    let mut ustart = Vec::new();
    let mut acc = 0u64;
    for f in &data_frames {
        ustart.push(acc);
        acc += f.content;
    }
    let frame_index = |off: u64| -> usize {
        data_frames
            .iter()
            .position(|f| f.offset == off)
            .unwrap_or_else(|| panic!("manifest frame_offset {off} is not a frame start"))
    };
    // Each member's decompressed [start, end) in the tar stream.
    let span = |v: &Value| -> (u64, u64) {
        let k = frame_index(v["frame_offset"].as_u64().unwrap());
        let start = ustart[k] + v["offset_in_frame"].as_u64().unwrap();
        let data = if v["type"] == "file" {
            v["size"].as_u64().unwrap().div_ceil(512) * 512
        } else {
            0
        };
        (start, start + 512 + data)
    };

    // Damage the frame where `victim` starts: once a frame with only ordinary
    // starts, once the continuation frame of the 5.5 MiB member.
    for (victim, must_include) in [
        (
            "f07-big.bin",
            &["f07-big.bin", "f08-small.txt", "link", "sub"][..],
        ),
        (
            "f05-small.txt",
            &["f04-huge.bin", "f05-small.txt", "f06-small.txt"][..],
        ),
    ] {
        let dir = t.path().join(format!("flip-{victim}"));
        let copy = copy_with_sidecars(&a, &dir);
        let v = &mem.iter().find(|(p, _)| p == victim).unwrap().1;
        let off = v["frame_offset"].as_u64().unwrap();
        let k = frame_index(off);
        let frame = data_frames[k];
        let next = frame.offset + frame.compressed;
        let pos = off + 1000;
        assert!(pos < next, "frame at {off} is too small: {frame:?}");
        flip_byte(&copy, pos);

        // Expected: members starting in this frame, plus one that starts in an
        // earlier frame and runs into it.
        let frame_u = ustart[k];
        let expected: BTreeSet<String> = mem
            .iter()
            .filter(|(_, e)| {
                let (s, end) = span(e);
                e["frame_offset"].as_u64() == Some(off) || (s < frame_u && end > frame_u)
            })
            .map(|(p, _)| p.clone())
            .collect();
        let want: BTreeSet<String> = must_include.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            expected, want,
            "test layout is not what it was designed to be"
        );

        let (c, r) = verify_json(&[copy.as_os_str()]);
        assert_eq!(c, 1, "{r:#}");
        let m = &r["members"];
        let damaged: BTreeSet<String> = note_paths(&m["damaged"]).into_iter().collect();
        assert_eq!(damaged, expected, "flip in frame at {off}: {r:#}");
        assert_eq!(
            note_paths(&m["damaged"]).len(),
            expected.len(),
            "a member listed twice: {r:#}"
        );
        assert_eq!(m["ok"], total - expected.len() as u64, "{r:#}");
        assert_empty(m, "mismatched");
        assert_empty(m, "missing");
        assert_empty(m, "unexpected");
        assert_empty(m, "stream");
        let df = str_list(&m["damaged_frames"]);
        assert_eq!(df.len(), 1, "{r:#}");
        assert!(df[0].contains(&format!("offset {off}")), "{df:?}");
        assert_eq!(r["sidecar_sha256"], "mismatch", "{r:#}");
        assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
        assert_eq!(r["sidecar_manifest"], "agrees", "{r:#}");
        let disc = str_list(&r["discrepancies"]);
        for p in &expected {
            assert!(
                disc.iter()
                    .any(|d| d.starts_with("damaged: ") && d.contains(p.as_str())),
                "{p} not among the discrepancies: {disc:#?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 3. A truncated archive names its last intact member

#[test]
fn truncated_archive_names_last_intact_member_and_uses_sidecar() {
    let t = common::tempdir();
    let root = t.path().join("root");
    multi_frame_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);
    let mem = members(&ManifestLines::read(&sidecar(&a, ".manifest.jsonl")));
    let names: Vec<String> = mem.iter().map(|(p, _)| p.clone()).collect();

    let len = fs::metadata(&a).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&a).unwrap();
    f.set_len(len * 6 / 10).unwrap();
    drop(f);

    let (c, out, err) = dm(&[OsStr::new("verify"), a.as_os_str()]);
    assert!(c == 1 || c == 2, "exit {c}; stderr:\n{err}");
    let text = format!("{}{err}", String::from_utf8_lossy(&out));
    let at = text
        .find("last intact member")
        .unwrap_or_else(|| panic!("no \"last intact member\" in:\n{text}"));
    // "last intact member[ before it]: NAME ..." — NAME ends at " (" or a newline.
    let rest = &text[at..];
    let rest = &rest[rest.find(": ").expect("a name after it") + 2..];
    let end = ["\n", ";", " ("]
        .iter()
        .filter_map(|sep| rest.find(sep))
        .min()
        .unwrap_or(rest.len());
    let last = rest[..end].trim();
    assert!(
        names.iter().any(|n| n == last),
        "last intact member {last:?} is not a member; members: {names:?}\noutput:\n{text}"
    );

    let (c, r) = verify_json(&[a.as_os_str()]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(r["checked_against"], "sidecar", "{r:#}");
    let em = r["embedded_manifest"].as_str().unwrap();
    assert_ne!(em, "ok", "{r:#}");
    assert!(em.contains("index"), "{r:#}");
    assert!(
        r["sidecar_manifest"].as_str().unwrap().starts_with("ok"),
        "{r:#}"
    );
    assert_eq!(r["sidecar_sha256"], "mismatch", "{r:#}");
    // Everything up to the last intact member was read and matched; everything
    // after it is lost.
    let m = &r["members"];
    let k = names.iter().position(|n| n == last).unwrap();
    assert_eq!(m["ok"], (k + 1) as u64, "{r:#}");
    let mut lost: Vec<String> = note_paths(&m["damaged"]);
    lost.extend(note_paths(&m["missing"]));
    lost.sort();
    assert_eq!(lost, names[k + 1..].to_vec(), "{r:#}");
    assert_empty(m, "mismatched");
}

// ---------------------------------------------------------------------------
// 4. Sidecar manifest deleted, then edited

#[test]
fn missing_or_edited_sidecar_manifest_is_a_discrepancy() {
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);
    let side = sidecar(&a, ".manifest.jsonl");
    let original = fs::read(&side).unwrap();

    fs::remove_file(&side).unwrap();
    let (c, r) = verify_json(&[a.as_os_str()]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(r["sidecar_manifest"], "absent", "{r:#}");
    assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
    assert_eq!(r["sidecar_sha256"], "ok", "{r:#}");
    let disc = str_list(&r["discrepancies"]);
    assert!(
        disc.iter()
            .any(|d| d.contains("sidecar manifest") && d.contains("missing")),
        "{disc:#?}"
    );

    let mut edited = original.clone();
    let at = first_entry_sha_pos(&edited) + 5;
    flip_hex(&mut edited, at);
    fs::write(&side, &edited).unwrap();
    let (c, r) = verify_json(&[a.as_os_str()]);
    assert_eq!(c, 1, "{r:#}");
    let sm = r["sidecar_manifest"].as_str().unwrap();
    assert!(sm.contains("trailer"), "{r:#}");
    assert_eq!(r["checked_against"], "embedded", "{r:#}");
    assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
    let disc = str_list(&r["discrepancies"]);
    assert!(
        disc.iter()
            .any(|d| d.starts_with("sidecar manifest") && d.contains("trailer")),
        "{disc:#?}"
    );

    // Restored, it is clean again.
    fs::write(&side, &original).unwrap();
    let (c, r) = verify_json(&[a.as_os_str()]);
    assert_eq!(c, 0, "{r:#}");
}

// ---------------------------------------------------------------------------
// 5. One byte of the embedded manifest edited

#[test]
fn edited_embedded_manifest_fails_its_trailer_check() {
    let tar = common::require_tool("tar");
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);
    let bytes = fs::read(&a).unwrap();
    let sidecar_manifest = fs::read(sidecar(&a, ".manifest.jsonl")).unwrap();

    // Find the frame holding the embedded manifest (libzstd, frame by frame),
    // edit one hex digit of an entry's sha256 there, and put the re-encoded
    // frame back in place. Frames before it are untouched, so the index at
    // the tail still points at the manifest.
    let frames = zstd_frames(&bytes);
    let (f, mut plain, start) = frames
        .iter()
        .filter(|f| !f.skippable)
        .find_map(|f| {
            let raw = &bytes[f.offset as usize..(f.offset + f.compressed) as usize];
            let plain = zstd::bulk::decompress(raw, f.content as usize).unwrap();
            let at = find(&plain, br#"{"datamig":"manifest""#)?;
            Some((*f, plain, at))
        })
        .expect("a frame holding the embedded manifest");
    assert_eq!(
        &plain[start..start + sidecar_manifest.len()],
        &sidecar_manifest[..],
        "embedded manifest is not the sidecar"
    );
    let at = start + first_entry_sha_pos(&plain[start..start + sidecar_manifest.len()]);
    flip_hex(&mut plain, at + 7);
    let edited_manifest = plain[start..start + sidecar_manifest.len()].to_vec();
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    c.include_contentsize(true).unwrap();
    let reframed = c.compress(&plain).unwrap();
    let mut spliced = bytes[..f.offset as usize].to_vec();
    spliced.extend_from_slice(&reframed);
    spliced.extend_from_slice(&bytes[(f.offset + f.compressed) as usize..]);
    let b = t.path().join("edited").join(a.file_name().unwrap());
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    fs::write(&b, &spliced).unwrap();
    fs::copy(
        sidecar(&a, ".manifest.jsonl"),
        sidecar(&b, ".manifest.jsonl"),
    )
    .unwrap();
    fs::copy(sidecar(&a, ".sha256"), sidecar(&b, ".sha256")).unwrap();

    // Still a well-formed .tar.zst whose manifest member is the edited one.
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let st = Command::new(&tar)
        .arg("--zstd")
        .arg("-xf")
        .arg(&b)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success(), "GNU tar cannot read the spliced archive");
    assert_eq!(
        fs::read(x.join(".datamig/MANIFEST.jsonl")).unwrap(),
        edited_manifest
    );

    let (code, r) = verify_json(&[b.as_os_str()]);
    assert_eq!(code, 1, "{r:#}");
    let em = r["embedded_manifest"].as_str().unwrap();
    assert!(em.contains("trailer checksum mismatch"), "{r:#}");
    assert_eq!(r["checked_against"], "sidecar", "{r:#}");
    assert!(
        r["sidecar_manifest"].as_str().unwrap().starts_with("ok"),
        "{r:#}"
    );
    let disc = str_list(&r["discrepancies"]);
    assert!(
        disc.iter()
            .any(|d| d.starts_with("embedded manifest") && d.contains("trailer checksum mismatch")),
        "{disc:#?}"
    );
    // The members themselves are intact and were checked against the sidecar.
    let total = walk_tree(&root.join("data")).len() as u64;
    assert_eq!(r["members"]["ok"], total, "{r:#}");
    assert_empty(&r["members"], "damaged");
    assert_empty(&r["members"], "mismatched");

    // The edited bytes as a manifest file: refused outright.
    let m = t.path().join("edited.manifest.jsonl");
    fs::write(&m, &edited_manifest).unwrap();
    let (c, out, err) = dm(&[
        OsStr::new("verify"),
        OsStr::new("--tree"),
        root.join("data").as_os_str(),
        m.as_os_str(),
    ]);
    assert_eq!(
        c,
        2,
        "stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out)
    );
    assert!(err.contains("trailer checksum mismatch"), "{err}");
    assert!(err.contains("edited.manifest.jsonl"), "{err}");
}

// ---------------------------------------------------------------------------
// 6. Tree audit against an inventory

#[test]
fn tree_audit_classifies_every_kind_of_change() {
    let t = common::tempdir();
    let dir = t.path().join("tree");
    write(&dir, "f1-modified.txt", b"original content\n");
    write(&dir, "f2-chmod.txt", b"mode will change\n");
    write(
        &dir,
        "f3-deleted.txt",
        b"will be deleted, a unique content\n",
    );
    write(&dir, "f5-renamed.txt", b"will be renamed\n");
    write(&dir, "sub/unchanged.txt", b"stays\n");
    write(&dir, "sub/also-unchanged.txt", b"stays too\n");
    common::make_world_readable(&dir);
    let m = t.path().join("tree.manifest.jsonl");
    inventory_manifest(&dir, &m);

    let (c, r) = verify_json(&[OsStr::new("--tree"), dir.as_os_str(), m.as_os_str()]);
    assert_eq!(c, 0, "{r:#}");

    fs::write(
        dir.join("f1-modified.txt"),
        b"changed, and longer than before\n",
    )
    .unwrap();
    common::chmod(&dir.join("f2-chmod.txt"), 0o600);
    fs::remove_file(dir.join("f3-deleted.txt")).unwrap();
    write(&dir, "sub/f4-new.txt", b"brand new\n");
    fs::rename(dir.join("f5-renamed.txt"), dir.join("f5-renamed-now.txt")).unwrap();

    for fast in [false, true] {
        let mut args = vec![OsStr::new("--tree"), dir.as_os_str(), m.as_os_str()];
        if fast {
            args.push(OsStr::new("--fast"));
        }
        let (c, r) = verify_json(&args);
        assert_eq!(c, 1, "{r:#}");
        assert_eq!(r["report"], "verify-tree");
        assert_eq!(r["fast"], fast, "{r:#}");
        assert_eq!(note_paths(&r["modified"]), ["f1-modified.txt"], "{r:#}");
        assert_eq!(note_paths(&r["metadata"]), ["f2-chmod.txt"], "{r:#}");
        let note = r["metadata"][0]["note"].as_str().unwrap();
        assert!(note.contains("mode"), "{r:#}");
        assert!(note.contains("644") && note.contains("600"), "{r:#}");
        assert_eq!(str_list(&r["missing"]), ["f3-deleted.txt"], "{r:#}");
        assert_eq!(str_list(&r["new"]), ["sub/f4-new.txt"], "{r:#}");
        let moved = r["moved"].as_array().unwrap();
        assert_eq!(moved.len(), 1, "{r:#}");
        assert_eq!(moved[0]["from"], "f5-renamed.txt", "{r:#}");
        assert_eq!(moved[0]["to"], "f5-renamed-now.txt", "{r:#}");
        assert_empty(&r, "unreadable");
        // sub, sub/unchanged.txt, sub/also-unchanged.txt.
        assert_eq!(r["matched"], 3, "{r:#}");
    }
}

// ---------------------------------------------------------------------------
// 7. Tree audit of an extracted archive against its sidecar manifest

#[test]
fn extracted_archive_matches_its_sidecar_manifest() {
    let tar = common::require_tool("tar");
    let t = common::tempdir();
    let root = t.path().join("root");
    small_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let st = Command::new(&tar)
        .arg("--zstd")
        .arg("-xf")
        .arg(&a)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success(), "tar --zstd -xf failed");
    assert!(x.join(".datamig/MANIFEST.jsonl").is_file());
    let side = sidecar(&a, ".manifest.jsonl");

    for fast in [false, true] {
        let mut args = vec![OsStr::new("--tree"), x.as_os_str(), side.as_os_str()];
        if fast {
            args.push(OsStr::new("--fast"));
        }
        let (c, r) = verify_json(&args);
        assert_eq!(c, 0, "fast={fast}: {r:#}");
        for k in [
            "modified",
            "metadata",
            "missing",
            "new",
            "moved",
            "unreadable",
        ] {
            assert_empty(&r, k);
        }
        assert_eq!(r["matched"], walk_tree(&root.join("data")).len() as u64);
    }

    // A real change in the extracted copy is still seen.
    fs::write(x.join("sub/b.txt"), b"bravo!\n").unwrap();
    let (c, r) = verify_json(&[OsStr::new("--tree"), x.as_os_str(), side.as_os_str()]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(note_paths(&r["modified"]), ["sub/b.txt"], "{r:#}");
}

// ---------------------------------------------------------------------------
// 8. The migration check on the bundled fixture

#[test]
fn migration_check_on_the_fixture() {
    let t = common::tempdir();
    let root = copy_fixture(t.path());
    // Make "newer" meaningful: the legacy diary is older than its twin.
    let legacy_diary = root.join(DIFFERS);
    let new_diary = root.join("instances/Bastion-11a9/diary.md");
    common::set_mtime(&legacy_diary, common::at(1_700_000_000, 0));
    common::set_mtime(&new_diary, common::at(1_750_000_000, 0));

    let args = [
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("--migration"),
    ];
    let (c, r) = verify_json(&args);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(r["report"], "verify-migration");
    let nm = r["not_migrated"].as_array().unwrap();
    assert_eq!(nm.len(), 1, "{r:#}");
    assert_eq!(nm[0]["legacy"], NOT_MIGRATED, "{r:#}");
    assert_eq!(
        nm[0]["expected"],
        "projects/coordination-v2/documents/legacy-notes.md"
    );
    let d = r["differs"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{r:#}");
    let d = &d[0];
    assert_eq!(d["legacy"], DIFFERS, "{r:#}");
    assert_eq!(d["consolidated"], "instances/Bastion-11a9/diary.md");
    assert_eq!(d["legacy_sha256"], common::sha256sum_of(&legacy_diary));
    assert_eq!(d["consolidated_sha256"], common::sha256sum_of(&new_diary));
    assert_ne!(d["legacy_sha256"], d["consolidated_sha256"]);
    assert_eq!(d["legacy_mtime"], "2023-11-14T22:13:20.000000000Z", "{r:#}");
    assert_eq!(
        d["consolidated_mtime"], "2025-06-15T15:06:40.000000000Z",
        "{r:#}"
    );
    assert_eq!(d["newer"], "consolidated", "{r:#}");
    assert_empty(&r, "unmapped");
    assert_empty(&r, "unreadable");
    // fixtures/README.md: v2-dev-data holds 76 files.
    assert_eq!(r["legacy_files"], 76, "{r:#}");
    assert_eq!(r["migrated"], 74, "{r:#}");

    finish_migration(&root);
    let (c, r) = verify_json(&args);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["migrated"], 76, "{r:#}");
    assert_empty(&r, "not_migrated");
    assert_empty(&r, "differs");
}

// ---------------------------------------------------------------------------
// 9. The migration check gates --remove-source of v2-dev-data

#[test]
fn remove_source_of_v2_dev_data_waits_for_the_migration() {
    let t = common::tempdir();
    let root = copy_fixture(t.path());
    let dest = t.path().join("dest");
    let run = |date: &str| {
        let (c, out, err) = dm(&[
            OsStr::new("--root"),
            root.as_os_str(),
            OsStr::new("archive"),
            OsStr::new("v2-dev-data"),
            OsStr::new("--dest"),
            dest.as_os_str(),
            OsStr::new("--date"),
            OsStr::new(date),
            OsStr::new("--remove-source"),
            OsStr::new("--json"),
        ]);
        assert!(
            c == 0 || c == 1,
            "archive exited {c}; stderr:\n{err}\nstdout:\n{}",
            String::from_utf8_lossy(&out)
        );
        (c, common::json_of(&out))
    };

    let (c, r) = run("20251225");
    assert_eq!(c, 1, "{r:#}");
    let why = r["remove_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(why.contains("verify --migration"), "{why}");
    assert!(r["removed"].is_null(), "{r:#}");
    assert!(root.join("v2-dev-data").is_dir());
    assert!(root.join(NOT_MIGRATED).is_file());
    // The archive itself was still written and verified.
    assert!(dest.join("v2-dev-data-20251225.tar.zst").is_file());

    finish_migration(&root);
    let (c, r) = run("20251226");
    assert_eq!(c, 0, "{r:#}");
    assert!(r["remove_refused"].is_null(), "{r:#}");
    let removed = &r["removed"];
    assert_eq!(removed["files"], 76, "{r:#}");
    assert_empty(removed, "kept");
    assert!(
        !root.join("v2-dev-data").exists(),
        "v2-dev-data is still there"
    );
    // The consolidated copies are untouched.
    assert!(
        root.join("projects/coordination-v2/documents/legacy-notes.md")
            .is_file()
    );
    assert!(root.join("instances/Bastion-11a9/diary.md").is_file());
}

// ---------------------------------------------------------------------------
// 10. Cases where verify cannot run

#[test]
fn verify_exits_2_when_it_cannot_run() {
    let t = common::tempdir();
    let expect2 = |args: &[&OsStr], needle: &str| {
        let mut all = vec![OsStr::new("verify")];
        all.extend_from_slice(args);
        let (c, out, err) = dm(&all);
        assert_eq!(
            c,
            2,
            "verify {args:?}: stdout:\n{}\nstderr:\n{err}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            err.contains(needle),
            "verify {args:?}: {needle:?} not in:\n{err}"
        );
    };

    let missing = t.path().join("nope.tar.zst");
    expect2(&[missing.as_os_str()], "nope.tar.zst");
    let empty = t.path().join("empty.tar.zst");
    fs::write(&empty, b"").unwrap();
    expect2(&[empty.as_os_str()], "not a zstd stream");
    let text = t.path().join("notes.txt");
    fs::write(&text, b"just some text, not an archive\n").unwrap();
    expect2(&[text.as_os_str()], "not a zstd stream");
    expect2(&[t.path().as_os_str()], "not a file");

    // A manifest of a newer format version.
    let dir = t.path().join("tree");
    write(&dir, "a.txt", b"a\n");
    let m = t.path().join("m.jsonl");
    inventory_manifest(&dir, &m);
    let raw = fs::read_to_string(&m).unwrap();
    let (head, rest) = raw.split_once('\n').unwrap();
    assert!(head.contains(r#""version":1,"#), "{head}");
    let v2 = t.path().join("v2.jsonl");
    fs::write(
        &v2,
        format!(
            "{}\n{rest}",
            head.replace(r#""version":1,"#, r#""version":2,"#)
        ),
    )
    .unwrap();
    expect2(
        &[OsStr::new("--tree"), dir.as_os_str(), v2.as_os_str()],
        "version 2",
    );
    // And a manifest that does not exist.
    expect2(
        &[OsStr::new("--tree"), dir.as_os_str(), missing.as_os_str()],
        "nope.tar.zst",
    );
}

// ---------------------------------------------------------------------------
// 11. --quick

#[test]
fn quick_checks_only_the_sha256_and_trailers() {
    let t = common::tempdir();
    let root = t.path().join("root");
    multi_frame_tree(&root.join("data"));
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);

    let (c, r) = verify_json(&[a.as_os_str(), OsStr::new("--quick")]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["quick"], true);
    assert!(r["members"].is_null(), "{r:#}");
    assert_eq!(r["sidecar_sha256"], "ok", "{r:#}");
    assert_eq!(r["embedded_manifest"], "ok", "{r:#}");
    assert_eq!(r["sidecar_manifest"], "agrees", "{r:#}");
    assert_eq!(r["archive_sha256"], common::sha256sum_of(&a));
    assert_empty(&r, "discrepancies");

    // A byte flipped inside the first data frame.
    flip_byte(&a, 1000);
    let (c, r) = verify_json(&[a.as_os_str(), OsStr::new("--quick")]);
    assert_eq!(c, 1, "{r:#}");
    assert!(r["members"].is_null(), "{r:#}");
    assert_eq!(r["sidecar_sha256"], "mismatch", "{r:#}");
    assert_eq!(r["archive_sha256"], common::sha256sum_of(&a));
    let disc = str_list(&r["discrepancies"]);
    assert_eq!(disc.len(), 1, "{disc:#?}");
    assert!(disc[0].contains("does not match"), "{disc:#?}");
}

// ---------------------------------------------------------------------------
// Issue 15: the parallel check reports exactly what one thread does

/// `verify ARCHIVE --json -jN`: (exit code, the report's bytes).
fn verify_bytes(archive: &Path, jobs: u32) -> (i32, Vec<u8>) {
    let j = format!("-j{jobs}");
    let (c, out, err) = dm(&[
        OsStr::new("verify"),
        archive.as_os_str(),
        OsStr::new(&j),
        OsStr::new("--json"),
    ]);
    assert!(c == 0 || c == 1, "verify {j} exited {c}; stderr:\n{err}");
    (c, out)
}

#[test]
fn parallel_check_reports_exactly_what_one_thread_does() {
    let t = common::tempdir();
    let root = t.path().join("root");
    let data = root.join("data");
    // Many members, some opening frames of their own (cuts for the
    // segments), some sharing frames.
    for i in 0..40u64 {
        let size = [900, 300_000, 2 * MIB + 7, 5 * MIB][(i % 4) as usize];
        write(&data, &format!("f{i:03}.bin"), &prng_bytes(100 + i, size));
    }
    let a = make_archive(&root, "data", &t.path().join("dest"), DATE);

    let (c1, one) = verify_bytes(&a, 1);
    let (c4, four) = verify_bytes(&a, 4);
    assert_eq!(c1, 0, "{}", String::from_utf8_lossy(&one));
    assert_eq!(
        (c4, &four),
        (c1, &one),
        "-j4 differs from -j1 on a clean archive"
    );
    assert_eq!(common::json_of(&one)["members"]["ok"], 40);

    // Two damaged frames, in the first and the last quarter of the archive.
    let manifest = ManifestLines::read(&sidecar(&a, ".manifest.jsonl"));
    let mem = members(&manifest);
    let copy = copy_with_sidecars(&a, &t.path().join("bad"));
    let mut victims = Vec::new();
    for k in [6, 33] {
        let (path, v) = &mem[k];
        flip_byte(&copy, v["frame_offset"].as_u64().unwrap() + 4000);
        victims.push(path.clone());
    }
    let (c1, one) = verify_bytes(&copy, 1);
    for jobs in [2, 4, 16] {
        let (c, out) = verify_bytes(&copy, jobs);
        assert_eq!(
            (c, String::from_utf8_lossy(&out)),
            (c1, String::from_utf8_lossy(&one)),
            "-j{jobs} differs from -j1 on a damaged archive"
        );
    }
    assert_eq!(c1, 1);
    let r = common::json_of(&one);
    let damaged = note_paths(&r["members"]["damaged"]);
    for v in &victims {
        assert!(damaged.contains(v), "{v} not reported damaged: {r:#}");
    }
    assert_eq!(str_list(&r["members"]["damaged_frames"]).len(), 2, "{r:#}");
}
