//! Helpers for the archive, restore and reliability tests: required system
//! tools, zstd frame walking, tar header parsing and a small runner around the
//! shared `common` helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common;

pub use crate::common::require_tool;

/// GNU tar with zstd support.
pub fn require_gnu_tar() -> PathBuf {
    let tar = require_tool("tar");
    require_tool("zstd");
    let out = Command::new(&tar)
        .arg("--version")
        .output()
        .expect("tar --version");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("GNU tar"),
        "this test needs GNU tar (for --zstd and owner/mode restore); `tar --version` says:\n{v}"
    );
    tar
}

pub use crate::common::prng_bytes;

/// `datamig --root ROOT archive ARGS... -q -j 2` with the shared deadline.
pub fn archive(root: &Path, args: &[&OsStr]) -> Output {
    let mut all: Vec<OsString> = vec![
        "--root".into(),
        root.into(),
        "archive".into(),
        "-q".into(),
        "-j".into(),
        "2".into(),
    ];
    all.extend(args.iter().map(|a| a.to_os_string()));
    common::output_within(&mut common::cmd(&all), common::DEFAULT_DEADLINE)
}

/// Like [`archive`] with `--json`, asserting the exit code and parsing stdout.
pub fn archive_json(root: &Path, args: &[&OsStr], want_code: i32) -> Value {
    let mut a: Vec<&OsStr> = args.to_vec();
    a.push(OsStr::new("--json"));
    let o = archive(root, &a);
    let c = common::code(&o);
    assert_eq!(
        c,
        want_code,
        "datamig archive {:?} exited {c}, expected {want_code}\nstderr:\n{}\nstdout:\n{}",
        args,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    common::json_of(&o.stdout)
}

pub fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// Run a system command to completion (deadline 120 s); returns its output.
pub fn sys(prog: &Path, args: &[&OsStr], cwd: Option<&Path>) -> Output {
    let mut c = Command::new(prog);
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    common::output_within(&mut c, Duration::from_secs(120))
}

/// Like [`sys`], failing the test unless it exits 0.
pub fn sys_ok(prog: &Path, args: &[&OsStr], cwd: Option<&Path>) -> Output {
    let o = sys(prog, args, cwd);
    assert!(
        o.status.success(),
        "{} {:?} (in {:?}) failed with {}\nstdout:\n{}\nstderr:\n{}",
        prog.display(),
        args,
        cwd,
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `tar --zstd -xf ARCHIVE -C DIR` (GNU tar).
pub fn gnu_extract(archive: &Path, into: &Path) {
    let tar = require_gnu_tar();
    fs::create_dir_all(into).unwrap();
    sys_ok(
        &tar,
        &[
            os("--zstd"),
            os("-xf"),
            archive.as_os_str(),
            os("-C"),
            into.as_os_str(),
        ],
        None,
    );
}

/// Member names as listed by `tar --zstd -tf` (GNU tar, `--null` not available
/// for listing, so names are taken verbatim line by line; use only for names
/// without newlines).
pub fn gnu_list(archive: &Path) -> Vec<String> {
    let tar = require_gnu_tar();
    let o = sys_ok(&tar, &[os("--zstd"), os("-tf"), archive.as_os_str()], None);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|s| s.to_string())
        .collect()
}

/// Start offsets of the zstd frames of a file: (offset, is_data_frame).
/// Walked independently of datamig with libzstd's frame-size function.
pub fn zstd_frames(bytes: &[u8]) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        assert!(bytes.len() - pos >= 8, "trailing garbage at offset {pos}");
        let magic = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let data = magic == 0xFD2F_B528;
        let skippable = (0x184D_2A50..=0x184D_2A5F).contains(&magic);
        assert!(
            data || skippable,
            "no zstd frame magic at offset {pos} (found {magic:#010x})"
        );
        let n = zstd::zstd_safe::find_frame_compressed_size(&bytes[pos..])
            .unwrap_or_else(|e| panic!("bad zstd frame at offset {pos}: code {e}"));
        assert!(n > 0);
        out.push((pos as u64, data));
        pos += n;
    }
    out
}

/// A parsed 512-byte ustar/GNU header (only the fields the tests need).
#[derive(Debug)]
pub struct RawHeader {
    pub name: Vec<u8>,
    pub size: u64,
    pub typeflag: u8,
    pub mode: u32,
}

fn octal(field: &[u8]) -> u64 {
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .filter(|&&b| b != b' ')
        .map(|&b| b as char)
        .collect();
    if s.is_empty() {
        return 0;
    }
    u64::from_str_radix(&s, 8).unwrap_or_else(|_| panic!("not an octal field: {s:?}"))
}

/// Parse (and checksum-check) one tar header block.
pub fn parse_header(b: &[u8; 512]) -> RawHeader {
    let recorded = octal(&b[148..156]);
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                b' ' as u64
            } else {
                x as u64
            }
        })
        .sum();
    assert_eq!(sum, recorded, "tar header checksum mismatch");
    let name_len = b[..100].iter().position(|&x| x == 0).unwrap_or(100);
    RawHeader {
        name: b[..name_len].to_vec(),
        size: octal(&b[124..136]),
        typeflag: b[156],
        mode: octal(&b[100..108]) as u32,
    }
}

/// Decode from a member's recorded position: decompress from `frame_offset`
/// (continuing across later frames), skip `offset_in_frame` bytes, and return
/// the header there plus `data_len` bytes of the data that follows it.
pub fn read_member_at(
    archive: &[u8],
    frame_offset: u64,
    offset_in_frame: u64,
    data_len: u64,
) -> (RawHeader, Vec<u8>) {
    let mut dec = zstd::stream::read::Decoder::with_buffer(&archive[frame_offset as usize..])
        .expect("zstd decoder");
    let skipped = std::io::copy(&mut (&mut dec).take(offset_in_frame), &mut std::io::sink())
        .expect("decompress up to the member");
    assert_eq!(
        skipped, offset_in_frame,
        "frame ends before offset_in_frame"
    );
    // PAX (`x`: sub-second mtimes, xattrs) and GNU long-name members come
    // before the member's own header.
    let header = loop {
        let mut h = [0u8; 512];
        dec.read_exact(&mut h).expect("read the member's header");
        let header = parse_header(&h);
        if !matches!(header.typeflag, b'x' | b'L' | b'K') {
            break header;
        }
        let skip = header.size.div_ceil(512) * 512;
        std::io::copy(&mut (&mut dec).take(skip), &mut std::io::sink()).expect("skip");
    };
    let mut data = vec![0u8; data_len as usize];
    dec.read_exact(&mut data).expect("read the member's data");
    (header, data)
}

/// Every regular file's bytes under `root`, by relative path.
pub fn file_contents(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    common::regular_files(root)
        .into_iter()
        .map(|p| {
            let b = fs::read(common::rel_join(root, &p)).unwrap();
            (p, b)
        })
        .collect()
}

/// Names of the entries directly in `dir` (empty when it does not exist).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// The `path` values of a report list such as `flagged`.
pub fn note_paths(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("report has no list {key:?}: {report:#}"))
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
