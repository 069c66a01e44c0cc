//! Byte-for-byte snapshot of the manifest format (version 1). Other programs
//! read these files: any change here is a format change.
//!
//! Fields that cannot be fixed by the test (ino, ctime_ns, uid, gid) are taken
//! from the files' real metadata; everything else is spelled out literally.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use common::*;

/// `"uid":U,"gid":G,"mtime_ns":M,"ino":I,"ctime_ns":C` for one entry, with the
/// unfixable values read from the file.
fn ids(root: &Path, rel: &[u8], mtime_ns: i64) -> String {
    let m = fs::symlink_metadata(rel_join(root, rel)).unwrap();
    assert_eq!(
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        mtime_ns,
        "the test failed to fix the mtime of {}",
        show(rel)
    );
    format!(
        "\"uid\":{},\"gid\":{},\"mtime_ns\":{mtime_ns},\"ino\":{},\"ctime_ns\":{}",
        m.uid(),
        m.gid(),
        m.ino(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec()
    )
}

/// `inventory --root ROOT -q -o M`, returning the manifest's bytes.
fn manifest_of(root: &Path, out: &Path) -> Vec<u8> {
    let m = out.join("m.jsonl");
    let (c, _, err) = datamig([
        OsStr::new("inventory"),
        "--root".as_ref(),
        root.as_os_str(),
        "-q".as_ref(),
        "-o".as_ref(),
        m.as_os_str(),
    ]);
    assert_eq!(c, 0, "{err}");
    fs::read(&m).unwrap()
}

/// Compare line by line first (readable failures), then the whole file.
fn assert_same_bytes(got: &[u8], want: &[u8]) {
    let g: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    let w: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    for (i, (g, w)) in g.iter().zip(&w).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(g),
            String::from_utf8_lossy(w),
            "line {} differs",
            i + 1
        );
    }
    assert_eq!(g.len(), w.len(), "line count");
    assert_eq!(got, want);
}

fn is_rfc3339_utc_seconds(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The header and entry lines exactly as they must be written (the trailer,
/// which hashes them, is appended by the caller).
fn expected_manifest(root: &Path, created: &str, entries: &[String]) -> Vec<u8> {
    let root_json = serde_json::to_string(root.to_str().unwrap()).unwrap();
    let mut want = format!(
        "{{\"datamig\":\"manifest\",\"version\":1,\"tool\":\"datamig {}\",\"root\":{root_json},\
         \"created\":\"{created}\",\"hash\":\"sha256\",\"layout\":\"coordination-v2\"}}\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    for e in entries {
        want.extend_from_slice(e.as_bytes());
        want.push(b'\n');
    }
    want
}

fn trailer(body: &[u8], entries: u64, files: u64, bytes: u64) -> String {
    format!(
        "{{\"datamig\":\"trailer\",\"entries\":{entries},\"files\":{files},\"bytes\":{bytes},\
         \"sha256\":\"{}\"}}\n",
        sha256_hex(body)
    )
}

/// The header's `created`, checked for shape.
fn created_of(raw: &[u8]) -> String {
    let header_end = raw.iter().position(|&b| b == b'\n').unwrap();
    let h: serde_json::Value = serde_json::from_slice(&raw[..header_end]).unwrap();
    let created = h["created"].as_str().unwrap().to_string();
    assert!(
        is_rfc3339_utc_seconds(&created),
        "created {created:?} is not YYYY-MM-DDTHH:MM:SSZ"
    );
    assert!(created.as_str() >= "2025-01-01T00:00:00Z", "{created}");
    created
}

#[test]
fn manifest_bytes_match_the_version_1_format() {
    let dir = tempdir();
    let root = dir.path().join("root");
    let out = dir.path().join("out");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&out).unwrap();

    let non_utf8: &[u8] = b"n\xffm.bin";
    let bad_target: &[u8] = b"bad\xfetarget";
    fs::write(root.join("a.txt"), "hello\n").unwrap();
    fs::create_dir(root.join("d")).unwrap();
    symlink("../a.txt", root.join("d/l")).unwrap();
    symlink(OsStr::from_bytes(bad_target), root.join("d/z")).unwrap();
    fs::write(rel_join(&root, non_utf8), "x").unwrap();

    chmod(&root.join("a.txt"), 0o644);
    chmod(&rel_join(&root, non_utf8), 0o600);
    chmod(&root.join("d"), 0o755);
    set_symlink_mtime(&root.join("d/l"), 1_700_000_200, 250_000_000);
    set_symlink_mtime(&root.join("d/z"), 1_700_000_250, 0);
    set_mtime(&root.join("a.txt"), at(1_700_000_000, 123_456_789));
    set_mtime(&rel_join(&root, non_utf8), at(1_700_000_300, 1));
    // Last: adding the symlinks above moved d's mtime.
    set_mtime(&root.join("d"), at(1_700_000_100, 500_000_000));

    let raw = manifest_of(&root, &out);
    let created = created_of(&raw);

    let entries = [
        format!(
            "{{\"path\":\"a.txt\",\"type\":\"file\",\"size\":6,\"mode\":420,{},\
             \"sha256\":\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\",\
             \"area\":\"unclassified\"}}",
            ids(&root, b"a.txt", 1_700_000_000_123_456_789)
        ),
        format!(
            "{{\"path\":\"d\",\"type\":\"dir\",\"size\":0,\"mode\":493,{},\"area\":\"unclassified\"}}",
            ids(&root, b"d", 1_700_000_100_500_000_000)
        ),
        format!(
            "{{\"path\":\"d/l\",\"type\":\"symlink\",\"size\":8,\"mode\":511,{},\
             \"target\":\"../a.txt\",\"area\":\"unclassified\"}}",
            ids(&root, b"d/l", 1_700_000_200_250_000_000)
        ),
        format!(
            "{{\"path\":\"d/z\",\"type\":\"symlink\",\"size\":10,\"mode\":511,{},\
             \"target_b64\":\"YmFk/nRhcmdldA==\",\"area\":\"unclassified\"}}",
            ids(&root, b"d/z", 1_700_000_250_000_000_000)
        ),
        format!(
            "{{\"path_b64\":\"bv9tLmJpbg==\",\"type\":\"file\",\"size\":1,\"mode\":384,{},\
             \"sha256\":\"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\",\
             \"area\":\"unclassified\"}}",
            ids(&root, non_utf8, 1_700_000_300_000_000_001)
        ),
    ];
    let mut want = expected_manifest(&root, &created, &entries);
    want.extend_from_slice(trailer(&want, 5, 2, 7).as_bytes());
    assert_same_bytes(&raw, &want);

    // Independently of the snapshot: the trailer's hash covers every byte
    // before it, and the key orders are as documented.
    let ml = ManifestLines::parse(raw.clone());
    let trailer_start = raw.len() - ml.trailer.len() - 1;
    assert_eq!(
        ml.trailer_json()["sha256"].as_str().unwrap(),
        sha256_hex(&raw[..trailer_start])
    );
    assert_eq!(
        key_order(&ml.header),
        [
            "datamig", "version", "tool", "root", "created", "hash", "layout"
        ]
    );
    assert_eq!(
        key_order(&ml.trailer),
        ["datamig", "entries", "files", "bytes", "sha256"]
    );
}

/// Hard links, FIFOs and empty files and directories, pinned the same way.
#[test]
fn hardlink_fifo_and_empty_entries_match_the_format() {
    let dir = tempdir();
    let root = dir.path().join("root");
    let out = dir.path().join("out");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&out).unwrap();

    fs::write(root.join("h1"), "linked\n").unwrap();
    fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
    fs::write(root.join("e"), "").unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    mkfifo(&root.join("p"));
    chmod(&root.join("h1"), 0o640);
    chmod(&root.join("e"), 0o444);
    chmod(&root.join("empty"), 0o700);
    chmod(&root.join("p"), 0o600);
    set_mtime(&root.join("h1"), at(1_700_000_000, 0));
    set_mtime(&root.join("e"), at(1_600_000_000, 7));
    set_mtime(&root.join("empty"), at(1_650_000_000, 0));
    // Opening a FIFO to set its time would block: use touch (no open).
    set_symlink_mtime(&root.join("p"), 1_690_000_000, 0);

    let raw = manifest_of(&root, &out);
    let created = created_of(&raw);
    let entries = [
        format!(
            "{{\"path\":\"e\",\"type\":\"file\",\"size\":0,\"mode\":292,{},\
             \"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\
             \"area\":\"unclassified\"}}",
            ids(&root, b"e", 1_600_000_000_000_000_007)
        ),
        format!(
            "{{\"path\":\"empty\",\"type\":\"dir\",\"size\":0,\"mode\":448,{},\"area\":\"unclassified\"}}",
            ids(&root, b"empty", 1_650_000_000_000_000_000)
        ),
        format!(
            "{{\"path\":\"h1\",\"type\":\"file\",\"size\":7,\"mode\":416,{},\
             \"sha256\":\"922e77203577a854eb6ac2e383bc9fb7b8fb19be37bba31c5d912a3adf1cd336\",\
             \"area\":\"unclassified\"}}",
            ids(&root, b"h1", 1_700_000_000_000_000_000)
        ),
        format!(
            "{{\"path\":\"h2\",\"type\":\"hardlink\",\"size\":7,\"mode\":416,{},\
             \"target\":\"h1\",\"area\":\"unclassified\"}}",
            ids(&root, b"h2", 1_700_000_000_000_000_000)
        ),
        format!(
            "{{\"path\":\"p\",\"type\":\"fifo\",\"size\":0,\"mode\":384,{},\"area\":\"unclassified\"}}",
            ids(&root, b"p", 1_690_000_000_000_000_000)
        ),
    ];
    let mut want = expected_manifest(&root, &created, &entries);
    // Only "file" entries count as files and bytes; the hard link does not.
    want.extend_from_slice(trailer(&want, 5, 2, 7).as_bytes());
    assert_same_bytes(&raw, &want);
}

/// Top-level keys of a JSON object line, in the order they appear.
fn key_order(line: &[u8]) -> Vec<String> {
    // serde_json::Value sorts keys unless preserve_order is on, so walk the
    // raw text: top-level keys are the strings followed by ':' at depth 1.
    let s = std::str::from_utf8(line).unwrap();
    let b = s.as_bytes();
    let (mut depth, mut i, mut keys) = (0, 0, Vec::new());
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i + 1;
                i += 1;
                while b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && b.get(i + 1) == Some(&b':') {
                    keys.push(s[start..i].to_string());
                }
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "unbalanced JSON: {s}");
    keys
}
