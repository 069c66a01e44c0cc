//! Shared helpers for the integration tests: awkward trees built at run time,
//! a runner for the `datamig` binary (with a deadline, optionally as `nobody`),
//! and manifest line helpers.
//!
//! Each test file pulls this in with `mod common;`, and most use only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod moto;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_datamig");

/// The bundled data root (see fixtures/README.md).
pub fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/coordination-data")
}

/// Deadline for one `datamig` run unless a test asks for another.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);

/// uid/gid of `nobody`, used to test unreadable entries while CI runs as root.
pub const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------
// Temp dirs

/// A temp dir that `nobody` can traverse (a fresh one is 0700).
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("datamig-test-")
        .tempdir()
        .expect("create temp dir");
    chmod(d.path(), 0o755);
    d
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

/// Make every directory 0755 and every regular file 0644 (symlinks untouched),
/// so `nobody` can read the whole tree whatever the umask was.
pub fn make_world_readable(root: &Path) {
    for (rel, ft) in walk_tree(root) {
        let p = root.join(OsStr::from_bytes(&rel));
        match ft {
            FileKind::Dir => chmod(&p, 0o755),
            FileKind::File => chmod(&p, 0o644),
            _ => {}
        }
    }
    chmod(root, 0o755);
}

// ---------------------------------------------------------------------------
// The awkward tree

/// Names used by [`awkward_tree`], relative to its root.
pub mod awk {
    pub const SPACES: &str = "name with spaces.txt";
    pub const SPACED_DIR_FILE: &str = "dir with spaces/inner file.txt";
    pub const NEWLINE: &str = "new\nline.txt";
    pub const BACKSLASH: &str = "back\\slash.txt";
    /// Not valid UTF-8.
    pub const NON_UTF8: &[u8] = b"latin1-caf\xe9.txt";
    /// "café" precomposed (U+00E9).
    pub const NFC: &str = "caf\u{e9}.txt";
    /// "café" decomposed (e + U+0301).
    pub const NFD: &str = "cafe\u{301}.txt";
    pub const EMPTY_FILE: &str = "empty.txt";
    pub const EMPTY_DIR: &str = "empty-dir";
    pub const REAL_DIR: &str = "realdir";
    pub const DIR_LINK: &str = "link-to-dir";
    pub const DANGLING: &str = "dangling";
    pub const DANGLING_TARGET: &str = "does/not/exist";
    pub const ETC_LINK: &str = "etc-link";
    pub const UP_LINK: &str = "sub/up-link";
    pub const UP_LINK_TARGET: &str = "../../outside";
    /// First of the hard-link pair in byte order (recorded as "file").
    pub const HARD_A: &str = "hard-a.txt";
    /// Second of the pair (recorded as "hardlink" with target HARD_A).
    pub const HARD_B: &str = "hard-b.txt";
    pub const SPARSE: &str = "sparse.bin";
    pub const SPARSE_LEN: u64 = 64 << 20;
    pub const FIFO: &str = "fifo";
    pub const JSON_OK: &str = "data.json";
}

/// Relative path of the long (> 300 bytes) file made by [`awkward_tree`].
pub fn awk_long_path() -> Vec<u8> {
    let mut p = Vec::new();
    for c in ['a', 'b'] {
        p.extend(std::iter::repeat_n(c as u8, 200));
        p.push(b'/');
    }
    p.extend(std::iter::repeat_n(b'c', 100));
    p.extend_from_slice(b".txt");
    p
}

/// Build the awkward tree in `dir` (which must exist): odd names, a long path,
/// empties, symlinks (to a dir, dangling, to /etc, escaping upwards), a hard-link
/// pair, a 64 MiB sparse file and, with `with_fifo`, a FIFO. Everything is
/// readable by everyone (dirs 0755, files 0644).
pub fn awkward_tree(dir: &Path, with_fifo: bool) {
    use awk::*;
    let w = |rel: &[u8], content: &[u8]| {
        let p = dir.join(OsStr::from_bytes(rel));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    };
    w(SPACES.as_bytes(), b"spaces in the name\n");
    w(SPACED_DIR_FILE.as_bytes(), b"inside a spaced dir\n");
    w(NEWLINE.as_bytes(), b"a newline in the name\n");
    w(BACKSLASH.as_bytes(), b"a backslash in the name\n");
    w(NON_UTF8, b"latin-1 name\n");
    w(NFC.as_bytes(), b"precomposed\n");
    w(NFD.as_bytes(), b"decomposed, different content\n");
    w(&awk_long_path(), b"far down\n");
    w(EMPTY_FILE.as_bytes(), b"");
    fs::create_dir(dir.join(EMPTY_DIR)).unwrap();
    w(format!("{REAL_DIR}/one.txt").as_bytes(), b"one\n");
    w(format!("{REAL_DIR}/two.txt").as_bytes(), b"two\n");
    symlink(REAL_DIR, dir.join(DIR_LINK)).unwrap();
    symlink(DANGLING_TARGET, dir.join(DANGLING)).unwrap();
    symlink("/etc", dir.join(ETC_LINK)).unwrap();
    fs::create_dir_all(dir.join("sub")).unwrap();
    symlink(UP_LINK_TARGET, dir.join(UP_LINK)).unwrap();
    w(HARD_A.as_bytes(), b"two names, one inode\n");
    fs::hard_link(dir.join(HARD_A), dir.join(HARD_B)).unwrap();
    w(JSON_OK.as_bytes(), br#"{"ok": true}"#);
    let f = File::create(dir.join(SPARSE)).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    // A little data at the end, so the hash is not that of plain zeros.
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"tail", SPARSE_LEN - 4).unwrap();
    drop(f);
    if with_fifo {
        mkfifo(&dir.join(FIFO));
    }
    make_world_readable(dir);
}

pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Set a file's or directory's mtime (follows symlinks; use
/// [`set_symlink_mtime`] for a symlink's own mtime).
pub fn set_mtime(p: &Path, t: SystemTime) {
    let f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.set_modified(t)
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

/// `secs.nanos` after the epoch.
pub fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Set a symlink's own mtime (`touch -h`).
pub fn set_symlink_mtime(p: &Path, secs: u64, nanos: u32) {
    let out = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}.{nanos:09}"))
        .arg(p)
        .output()
        .expect("run touch");
    assert!(
        out.status.success(),
        "touch -h {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Independent walk

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Other,
}

impl FileKind {
    fn of(ft: fs::FileType) -> FileKind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else {
            FileKind::Other
        }
    }
}

/// Every entry below `root` (not `root` itself), by relative path bytes, found
/// with `symlink_metadata` and never following a symlink.
pub fn walk_tree(root: &Path) -> BTreeMap<Vec<u8>, FileKind> {
    fn go(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, FileKind>) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        for d in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let d = d.unwrap();
            let mut r = rel.to_vec();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(d.file_name().as_bytes());
            let kind = FileKind::of(fs::symlink_metadata(d.path()).unwrap().file_type());
            out.insert(r.clone(), kind);
            if kind == FileKind::Dir {
                go(root, &r, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, b"", &mut out);
    out
}

/// Relative paths of the regular files below `root` (every hard-link path).
pub fn regular_files(root: &Path) -> BTreeSet<Vec<u8>> {
    walk_tree(root)
        .into_iter()
        .filter(|(_, k)| *k == FileKind::File)
        .map(|(p, _)| p)
        .collect()
}

pub fn rel_join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// SHA-256 of a file's content, computed by GNU `sha256sum` reading stdin (an
/// implementation independent of the one datamig uses).
pub fn sha256sum_of(p: &Path) -> String {
    let f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let out = Command::new("sha256sum")
        .stdin(f)
        .output()
        .expect("run sha256sum (coreutils)");
    assert!(out.status.success(), "sha256sum failed");
    let s = String::from_utf8(out.stdout).unwrap();
    let hex = s.split_whitespace().next().unwrap().to_string();
    assert_eq!(hex.len(), 64, "{s}");
    hex
}

/// SHA-256 of bytes (sha2 crate).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Running datamig

/// A `datamig` command with a predictable environment (no `V2_DATA_ROOT`).
pub fn cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(BIN);
    c.args(args).env_remove("V2_DATA_ROOT");
    c
}

/// Run a command to completion with a deadline; past it the child is killed
/// and the test fails (so a scan that hangs, e.g. on a FIFO, cannot hang CI).
/// Stdin is closed; stdout and stderr are captured.
pub fn output_within(c: &mut Command, deadline: Duration) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"));
    wait_within(child, deadline, &format!("{c:?}"))
}

/// Wait for a child started with piped stdout and stderr, collecting both;
/// past the deadline it is killed and the test fails, naming `what`.
pub fn wait_within(mut child: std::process::Child, deadline: Duration, what: &str) -> Output {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Run `datamig ARGS` (default deadline).
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    output_within(&mut cmd(args), DEFAULT_DEADLINE)
}

/// Exit code (-1 if killed by a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Run `datamig ARGS`: (exit code, stdout bytes, stderr text).
pub fn datamig<I, S>(args: I) -> (i32, Vec<u8>, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = run(args);
    (
        code(&o),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// Nightly backups

/// 02:00 UTC on 2025-12-20 plus `days`: the `--now` of one night's backup.
pub fn night(days: i64) -> String {
    let t: jiff::Timestamp = "2025-12-20T02:00:00Z".parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The archive name a backup run at `night(days)` makes.
pub fn night_name(days: i64) -> String {
    let t: jiff::Timestamp = night(days).parse().unwrap();
    format!("v2-data-{}.tar.zst", t.strftime("%Y%m%d-%H%M%S"))
}

/// Fail (never skip) when a system tool the test needs is missing; `.ci/run`
/// installs every tool the tests use.
pub fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "this test needs the system tool `{name}`, which is not installed (.ci/run installs it)"
    );
    PathBuf::from(path)
}

/// Fail (not skip) when `setpriv` is missing: tests that need an unreadable
/// file cannot work as root without it.
pub fn require_setpriv() -> PathBuf {
    let out = Command::new("which").arg("setpriv").output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => panic!(
            "`setpriv` (util-linux) is required to run datamig as nobody for the unreadable-file \
             tests; install util-linux in the test environment"
        ),
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `datamig ARGS` run unprivileged: as root (CI), through `setpriv` as nobody
/// (uid/gid 65534, no supplementary groups), so that mode 000 really means
/// unreadable; as any other user, directly.
pub fn cmd_as_nobody<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if !is_root() {
        return cmd(args);
    }
    let setpriv = require_setpriv();
    let mut c = Command::new(setpriv);
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(BIN)
        .args(args)
        .env_remove("V2_DATA_ROOT");
    c
}

/// Make `dir` writable by whoever [`cmd_as_nobody`] runs as.
pub fn give_to_nobody(dir: &Path) {
    if is_root() {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
            .unwrap_or_else(|e| panic!("chown nobody {}: {e}", dir.display()));
    }
}

/// Parse stdout as the single JSON object `--json` prints.
pub fn json_of(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// `inventory --root ROOT -q --json EXTRA...`: (exit code, summary, stderr).
pub fn inventory_json(root: &Path, extra: &[&OsStr]) -> (i32, Value, String) {
    let mut args: Vec<OsString> = vec!["inventory".into(), "--root".into(), root.into()];
    args.push("-q".into());
    args.push("--json".into());
    args.extend(extra.iter().map(|s| s.to_os_string()));
    let (c, out, err) = datamig(&args);
    assert!(
        c == 0 || c == 1,
        "inventory exited {c}; stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&out)
    );
    (c, json_of(&out), err)
}

/// The `path` strings of a summary list such as `unreadable` or `changed`.
pub fn note_paths(summary: &Value, list: &str) -> Vec<String> {
    summary[list]
        .as_array()
        .unwrap_or_else(|| panic!("summary has no list {list:?}: {summary:#}"))
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Manifests

/// A manifest split into its raw lines (each without its final newline).
#[derive(Debug, Clone)]
pub struct ManifestLines {
    pub raw: Vec<u8>,
    pub header: Vec<u8>,
    pub entries: Vec<Vec<u8>>,
    pub trailer: Vec<u8>,
}

impl ManifestLines {
    pub fn read(path: &Path) -> ManifestLines {
        let raw = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        ManifestLines::parse(raw)
    }

    /// Names never hold a raw newline (JSON escapes it), so lines split on `\n`.
    pub fn parse(raw: Vec<u8>) -> ManifestLines {
        assert!(raw.ends_with(b"\n"), "manifest does not end with a newline");
        let mut lines: Vec<Vec<u8>> = raw[..raw.len() - 1]
            .split(|&b| b == b'\n')
            .map(|l| l.to_vec())
            .collect();
        assert!(lines.len() >= 2, "manifest has fewer than two lines");
        let trailer = lines.pop().unwrap();
        let header = lines.remove(0);
        ManifestLines {
            raw,
            header,
            entries: lines,
            trailer,
        }
    }

    pub fn header_json(&self) -> Value {
        serde_json::from_slice(&self.header).expect("header is JSON")
    }

    pub fn trailer_json(&self) -> Value {
        serde_json::from_slice(&self.trailer).expect("trailer is JSON")
    }

    pub fn entry_values(&self) -> Vec<Value> {
        self.entries
            .iter()
            .map(|l| {
                serde_json::from_slice(l).unwrap_or_else(|e| {
                    panic!(
                        "entry line is not JSON ({e}): {}",
                        String::from_utf8_lossy(l)
                    )
                })
            })
            .collect()
    }

    /// Entries keyed by their decoded path bytes.
    pub fn by_path(&self) -> BTreeMap<Vec<u8>, Value> {
        let mut m = BTreeMap::new();
        for v in self.entry_values() {
            let p = entry_path(&v);
            assert!(m.insert(p.clone(), v).is_none(), "duplicate path {p:?}");
        }
        m
    }

    /// Raw entry lines keyed by decoded path bytes.
    pub fn lines_by_path(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.entries
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_slice(l).unwrap();
                (entry_path(&v), l.clone())
            })
            .collect()
    }
}

/// An entry's path: `path`, or `path_b64` decoded.
pub fn entry_path(v: &Value) -> Vec<u8> {
    name_field(v, "path").unwrap_or_else(|| panic!("entry without a path: {v}"))
}

/// An entry's target (`target` or `target_b64`), if any.
pub fn entry_target(v: &Value) -> Option<Vec<u8>> {
    name_field(v, "target")
}

fn name_field(v: &Value, key: &str) -> Option<Vec<u8>> {
    let plain = v.get(key).and_then(|x| x.as_str());
    let b64 = v.get(format!("{key}_b64")).and_then(|x| x.as_str());
    match (plain, b64) {
        (Some(_), Some(_)) => panic!("both {key} and {key}_b64 in {v}"),
        (Some(s), None) => Some(s.as_bytes().to_vec()),
        (None, Some(b)) => Some(B64.decode(b).expect("valid base64")),
        (None, None) => None,
    }
}

/// Lossy display of path bytes, for messages.
pub fn show(p: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(p))
}

/// Write bytes to a new file.
pub fn write_file(p: &Path, bytes: &[u8]) {
    let mut f = File::create(p).unwrap();
    f.write_all(bytes).unwrap();
}

/// OsString from raw bytes.
pub fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

/// Write `bytes` to `root/rel`, creating the parent directories.
pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
}

/// A small ordinary tree: nested files, an empty dir, a symlink, a hard-link pair.
pub fn small_tree(dir: &Path) {
    write(dir, "a.txt", b"alpha\n");
    write(dir, "sub/b.txt", b"bravo\n");
    write(dir, "sub/deeper/c.txt", b"charlie\n");
    fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link-to-a")).unwrap();
    write(dir, "h1.txt", b"hard linked\n");
    fs::hard_link(dir.join("h1.txt"), dir.join("h2.txt")).unwrap();
}

/// Deterministic xorshift64 bytes: incompressible, so zstd frames stay large.
pub fn prng_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
