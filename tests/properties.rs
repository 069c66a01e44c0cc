//! Property tests (proptest), sized to run in CI in a debug build.
//!
//! 1. `random_trees_round_trip`: a random small tree with hostile names (spaces,
//!    newlines, backslashes, non-UTF-8 bytes, NFC/NFD "é", long components),
//!    random modes and mtimes, sparse files, symlinks (dangling, absolute, `..`)
//!    and hard links is archived, verified and restored with the `datamig`
//!    binary; the restored tree must equal the source (paths, types, bytes, modes,
//!    mtimes, symlink targets, hard-link groups), and two independent
//!    inventories of the trees must agree.
//! 2. `random_manifests_round_trip`: random entry lists written with
//!    `write_manifest` read back equal with `Manifest::read`, and any single
//!    flipped byte, or any truncation, makes `Manifest::read` fail.
//!
//! Failure persistence is off: proptest prints the minimal failing input, and a
//! `proptest-regressions/` file would land outside this test's file.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use common::{FileKind, ManifestLines, entry_path, entry_target, rel_join, run, show, walk_tree};
use datamig::entry::{Entry, FramePos, Kind};
use datamig::manifest::{Header, Manifest, write_manifest};

// ---------------------------------------------------------------------------
// 1. Random trees: archive → verify → restore

/// Pieces names are made of. No `/` or NUL (impossible in a name); `.` only
/// inside longer names (a component equal to `.` or `..` is fixed up below).
/// `.datamig` (the archive's own metadata directory, skipped by restore) cannot
/// be spelled from these.
const ATOMS: &[&[u8]] = &[
    b"a",
    b"b",
    b"Z",
    b"0",
    b" ",
    b"\n",
    b"\\",
    b"-",
    b".",
    b"\t",
    b"'",
    b"\"",
    b"*",
    b"?",
    b"[",
    b"#",
    b"~",
    "\u{e9}".as_bytes(),   // NFC "é": U+00E9
    "e\u{301}".as_bytes(), // NFD "é": e + U+0301
    "\u{2603}".as_bytes(), // a 3-byte character
];

/// Bytes that make a name invalid UTF-8.
const RAW_ATOMS: &[&[u8]] = &[
    b"\x80", b"\xff", b"\xe9", // Latin-1 "é"
    b"\xc3", // a cut UTF-8 sequence
];

fn atom() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::sample::select(ATOMS).prop_map(|a| a.to_vec()),
        1 => prop::sample::select(RAW_ATOMS).prop_map(|a| a.to_vec()),
        1 => (0x80u8..=0xff).prop_map(|b| vec![b]),
    ]
}

/// One name component: a few atoms, sometimes stretched to 100–200 bytes.
fn component() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(atom(), 1..8),
        prop_oneof![6 => Just(None), 1 => (100usize..=200).prop_map(Some)],
    )
        .prop_map(|(atoms, long)| {
            let mut name: Vec<u8> = atoms.concat();
            if let Some(len) = long {
                let unit = name.clone();
                while name.len() < len {
                    name.extend_from_slice(&unit);
                }
                name.truncate(len);
            }
            name.truncate(200);
            if name == b"." || name == b".." {
                name.insert(0, b'a');
            }
            name
        })
}

fn symlink_target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Relative, hostile, usually dangling.
        prop::collection::vec(component(), 1..4).prop_map(|c| c.join(&b'/')),
        // Escaping upwards.
        prop::collection::vec(component(), 0..3).prop_map(|c| {
            let mut t = b"../../".to_vec();
            t.extend(c.join(&b'/'));
            t
        }),
        // Absolute, existing or not.
        prop::sample::select(vec![
            &b"/etc"[..],
            b"/etc/passwd",
            b"/nonexistent/x\xff",
            b"/"
        ])
        .prop_map(|t| t.to_vec()),
        // Arbitrary bytes but NUL, up to 300 (longer than a tar header's 100).
        prop::collection::vec(1u8..=255, 1..300),
    ]
}

#[derive(Debug, Clone)]
enum NodeSpec {
    File {
        /// 0o400..=0o777 with the owner read bit.
        mode: u32,
        size: usize,
        seed: u64,
    },
    /// `set_len(len)` and a small chunk at `offset`.
    Sparse {
        mode: u32,
        len: u64,
        offset: Index,
        chunk: Vec<u8>,
    },
    /// Owner rwx, anything for group and other.
    Dir {
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to one of the files made before it (a plain file when none).
    Hardlink {
        to: Index,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    /// Which existing directory (of depth < 4) gets this entry.
    parent: Index,
    name: Vec<u8>,
    node: NodeSpec,
    mtime_s: i64,
    mtime_ns: u32,
}

fn file_mode() -> impl Strategy<Value = u32> {
    0o400u32..=0o777
}

fn node() -> impl Strategy<Value = NodeSpec> {
    prop_oneof![
        5 => (
            file_mode(),
            prop_oneof![4 => 0usize..4096, 1 => 0usize..=200 * 1024],
            any::<u64>()
        )
            .prop_map(|(mode, size, seed)| NodeSpec::File { mode, size, seed }),
        1 => (
            file_mode(),
            1u64..=200 * 1024,
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(mode, len, offset, chunk)| NodeSpec::Sparse { mode, len, offset, chunk }),
        3 => (0u32..=0o77).prop_map(|m| NodeSpec::Dir { mode: 0o700 | m }),
        2 => symlink_target().prop_map(|target| NodeSpec::Symlink { target }),
        1 => any::<Index>().prop_map(|to| NodeSpec::Hardlink { to }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<Index>(),
        component(),
        node(),
        // 1875 to 2255 (before 1970, after 2038), with nanoseconds.
        //
        // Manifests hold i64 nanoseconds, so mtimes at or after 2262-04-11
        // are clamped (entry::nanos) and would not round-trip exactly; the
        // strategy stays inside the representable range.
        -3_000_000_000i64..9_000_000_000,
        0u32..1_000_000_000,
    )
        .prop_map(|(parent, name, node, mtime_s, mtime_ns)| Spec {
            parent,
            name,
            node,
            mtime_s,
            mtime_ns,
        })
}

/// Cheap deterministic content.
fn content(size: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 8);
    seed |= 1;
    while v.len() < size {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(size);
    v
}

/// `utimensat(…, AT_SYMLINK_NOFOLLOW)`: works on files, dirs and symlinks alike,
/// and needs no write access.
fn set_times(p: &Path, secs: i64, nanos: u32) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as _,
    };
    let times = [ts, ts];
    // SAFETY: a valid NUL-terminated path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut r = parent.to_vec();
    if !r.is_empty() {
        r.push(b'/');
    }
    r.extend_from_slice(name);
    r
}

/// (seconds, nanoseconds) since the epoch.
type Mtime = (i64, u32);

/// Materialize the specs under `root` (which exists). Metadata is applied once
/// everything exists: files and symlinks first, then directories deepest first,
/// so no later step moves an mtime already set.
fn build_tree(root: &Path, specs: &[Spec]) {
    // (relative path, depth, mode, mtime); the root first.
    let mut dirs: Vec<(Vec<u8>, usize, u32, Mtime)> = vec![(Vec::new(), 0, 0o755, (0, 0))];
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    let mut file_meta: Vec<(Vec<u8>, u32, Mtime)> = Vec::new();
    let mut link_meta: Vec<(Vec<u8>, Mtime)> = Vec::new();

    for s in specs {
        let parents: Vec<usize> = (0..dirs.len()).filter(|&i| dirs[i].1 < 4).collect();
        let pi = parents[s.parent.index(parents.len())];
        let (parent, depth) = (dirs[pi].0.clone(), dirs[pi].1);
        let mut rel = join(&parent, &s.name);
        while taken.contains(&rel) {
            rel.push(b'~');
        }
        taken.insert(rel.clone());
        let p = rel_join(root, &rel);
        let mtime = (s.mtime_s, s.mtime_ns);
        let mut node = s.node.clone();
        if let NodeSpec::Hardlink { .. } = node
            && files.is_empty()
        {
            node = NodeSpec::File {
                mode: 0o644,
                size: 10,
                seed: 1,
            };
        }
        match node {
            NodeSpec::File { mode, size, seed } => {
                fs::write(&p, content(size, seed))
                    .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
                files.push(rel.clone());
                file_meta.push((rel, mode, mtime));
            }
            NodeSpec::Sparse {
                mode,
                len,
                offset,
                chunk,
            } => {
                let f = File::create(&p).unwrap();
                f.set_len(len).unwrap();
                let chunk = &chunk[..chunk.len().min(len as usize)];
                let max_off = len - chunk.len() as u64;
                let off = offset.index(max_off as usize + 1) as u64;
                f.write_all_at(chunk, off).unwrap();
                drop(f);
                files.push(rel.clone());
                file_meta.push((rel, mode, mtime));
            }
            NodeSpec::Dir { mode } => {
                fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
                dirs.push((rel, depth + 1, mode, mtime));
            }
            NodeSpec::Symlink { target } => {
                symlink(OsStr::from_bytes(&target), &p)
                    .unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
                link_meta.push((rel, mtime));
            }
            NodeSpec::Hardlink { to } => {
                let first = &files[to.index(files.len())];
                fs::hard_link(rel_join(root, first), &p)
                    .unwrap_or_else(|e| panic!("link {}: {e}", p.display()));
                // Shares the inode (mode, mtime) of `first`.
            }
        }
    }
    for (rel, mode, (s, ns)) in &file_meta {
        let p = rel_join(root, rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        set_times(&p, *s, *ns);
    }
    for (rel, (s, ns)) in &link_meta {
        set_times(&rel_join(root, rel), *s, *ns);
    }
    let mut dirs = dirs.split_off(1);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.1));
    for (rel, _, mode, (s, ns)) in &dirs {
        let p = rel_join(root, rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        set_times(&p, *s, *ns);
    }
}

/// What must survive a round trip, for one path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: FileKind,
    /// Permission bits; `None` for symlinks.
    mode: Option<u32>,
    mtime_s: i64,
    /// Files: the content. Symlinks: the target.
    bytes: Vec<u8>,
}

type Nodes = BTreeMap<Vec<u8>, Node>;
type LinkGroups = BTreeSet<BTreeSet<Vec<u8>>>;

/// Every path below `root` with its node, and the hard-link groups (paths
/// sharing an inode, groups of two or more).
fn snapshot(root: &Path) -> (Nodes, LinkGroups) {
    let mut nodes = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    for (rel, kind) in walk_tree(root) {
        let p = rel_join(root, &rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let bytes = match kind {
            FileKind::File => {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .insert(rel.clone());
                fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            }
            FileKind::Symlink => fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes(),
            _ => Vec::new(),
        };
        let mode = (kind != FileKind::Symlink).then_some(m.mode() & 0o7777);
        nodes.insert(
            rel,
            Node {
                kind,
                mode,
                mtime_s: m.mtime(),
                bytes,
            },
        );
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    (nodes, groups)
}

/// Human-readable differences between two snapshots (empty when equal).
fn diff_nodes(src: &BTreeMap<Vec<u8>, Node>, got: &BTreeMap<Vec<u8>, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in src {
        match got.get(p) {
            None => out.push(format!("missing from restore: {} ({:?})", show(p), a.kind)),
            Some(b) => {
                if a.kind != b.kind {
                    out.push(format!(
                        "{}: type {:?} became {:?}",
                        show(p),
                        a.kind,
                        b.kind
                    ));
                    continue;
                }
                if a.mode != b.mode {
                    out.push(format!(
                        "{}: mode {:?} became {:?}",
                        show(p),
                        a.mode.map(|m| format!("{m:o}")),
                        b.mode.map(|m| format!("{m:o}"))
                    ));
                }
                if a.mtime_s != b.mtime_s {
                    out.push(format!(
                        "{} ({:?}): mtime {} became {}",
                        show(p),
                        a.kind,
                        a.mtime_s,
                        b.mtime_s
                    ));
                }
                if a.bytes != b.bytes {
                    out.push(format!(
                        "{} ({:?}): content/target differs ({} bytes became {} bytes)",
                        show(p),
                        a.kind,
                        a.bytes.len(),
                        b.bytes.len()
                    ));
                }
            }
        }
    }
    for (p, b) in got {
        if !src.contains_key(p) {
            out.push(format!("unexpected in restore: {} ({:?})", show(p), b.kind));
        }
    }
    out
}

fn run_ok(args: &[&OsStr], want: i32) {
    let o = run(args);
    let code = o.status.code().unwrap_or(-1);
    assert_eq!(
        code,
        want,
        "datamig {:?} exited {code}\nstdout:\n{}\nstderr:\n{}",
        args,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `--root ROOT inventory -q -o OUT`, keyed by path: the fields that must not
/// depend on where or when the tree was made (mtime to the second).
fn inventory(root: &Path, out: &Path) -> BTreeMap<Vec<u8>, Value> {
    let o = run([
        OsStr::new("--root"),
        root.as_os_str(),
        "inventory".as_ref(),
        "-q".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let code = o.status.code().unwrap_or(-1);
    // 1 is "complete, with problems": e.g. symlinks leaving the root.
    assert!(
        code == 0 || code == 1,
        "inventory of {} exited {code}: {}",
        root.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = ManifestLines::read(out);
    lines
        .entry_values()
        .into_iter()
        .map(|v| {
            let path = entry_path(&v);
            let target = entry_target(&v).map(|t| format!("{t:?}"));
            let mtime_s = v["mtime_ns"].as_i64().unwrap().div_euclid(1_000_000_000);
            let kept = serde_json::json!({
                "type": v["type"],
                "size": v["size"],
                "mode": v["mode"],
                "uid": v["uid"],
                "gid": v["gid"],
                "mtime_s": mtime_s,
                "sha256": v.get("sha256"),
                "target": target,
                "problem": v.get("problem"),
            });
            (path, kept)
        })
        .collect()
}

fn tree_round_trip(specs: &[Spec]) -> Result<(), TestCaseError> {
    let work = common::tempdir();
    let root = work.path().join("root");
    let src = root.join("t");
    let dest = work.path().join("dest");
    let restored = work.path().join("restored");
    fs::create_dir_all(&src).unwrap();
    build_tree(&src, specs);

    let archive = dest.join("t-20251225.tar.zst");
    run_ok(
        &[
            "--root".as_ref(),
            root.as_os_str(),
            "archive".as_ref(),
            "t".as_ref(),
            "--dest".as_ref(),
            dest.as_os_str(),
            "--date".as_ref(),
            "20251225".as_ref(),
            "-q".as_ref(),
            "-j".as_ref(),
            "2".as_ref(),
        ],
        0,
    );
    run_ok(&["verify".as_ref(), archive.as_os_str()], 0);
    run_ok(
        &[
            "restore".as_ref(),
            archive.as_os_str(),
            "--to".as_ref(),
            restored.as_os_str(),
            "-q".as_ref(),
        ],
        0,
    );

    let (a, a_groups) = snapshot(&src);
    let (b, b_groups) = snapshot(&restored);
    let diffs = diff_nodes(&a, &b);
    prop_assert!(
        diffs.is_empty(),
        "restored tree differs from the source:\n{}",
        diffs.join("\n")
    );
    prop_assert_eq!(a_groups, b_groups, "hard-link groups differ");

    let m1 = inventory(&src, &work.path().join("m1.jsonl"));
    let m2 = inventory(&restored, &work.path().join("m2.jsonl"));
    let keys1: Vec<String> = m1.keys().map(|k| show(k)).collect();
    let keys2: Vec<String> = m2.keys().map(|k| show(k)).collect();
    prop_assert_eq!(keys1, keys2, "inventories name different paths");
    for (p, v1) in &m1 {
        prop_assert_eq!(v1, &m2[p], "inventory entries differ for {}", show(p));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_trees_round_trip(specs in prop::collection::vec(spec(), 1..=25)) {
        tree_round_trip(&specs)?;
    }
}

// ---------------------------------------------------------------------------
// 2. Random manifests: write → read, and damage is always detected

/// A path component: arbitrary bytes but `/` and NUL, or arbitrary unicode;
/// never `.` or `..`.
fn manifest_component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..12
        ),
        prop::collection::vec(any::<char>(), 1..6).prop_map(|cs| {
            cs.into_iter()
                .collect::<String>()
                .replace(['/', '\0'], "_")
                .into_bytes()
        }),
        prop::sample::select(vec![
            &b"a"[..],
            b"b",
            b"a b",
            b"\xff",
            b".x",
            b"x.",
            b"...",
            b"\n"
        ])
        .prop_map(|c| c.to_vec()),
    ]
    .prop_map(|mut c| {
        if c == b"." || c == b".." {
            c.push(b'x');
        }
        c
    })
}

fn manifest_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(manifest_component(), 1..5).prop_map(|cs| cs.join(&b'/'))
}

fn any_string() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..16).prop_map(|cs| cs.into_iter().collect())
}

const KINDS: [Kind; 8] = [
    Kind::File,
    Kind::Dir,
    Kind::Symlink,
    Kind::Hardlink,
    Kind::Fifo,
    Kind::Socket,
    Kind::Char,
    Kind::Block,
];

fn manifest_entry() -> impl Strategy<Value = Entry> {
    (
        (
            manifest_path(),
            prop::sample::select(&KINDS[..]),
            // Mostly sums that fit in u64; a huge size now and then, so the
            // overflow of the trailer's `bytes` is exercised too.
            prop_oneof![8 => 0u64..(1 << 48), 1 => any::<u64>()],
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
        ),
        (
            any::<u64>(),
            any::<i64>(),
            any::<[u8; 32]>(),
            prop::option::of(any::<[u8; 32]>()),
            prop::collection::vec(any::<u8>(), 0..40),
            any_string(),
            prop::option::of(any_string()),
            prop::option::of((any::<u64>(), any::<u64>())),
        ),
    )
        .prop_map(
            |(
                (path, kind, size, mode, uid, gid, mtime_ns),
                (ino, ctime_ns, file_hash, other_hash, target, area, problem, pos),
            )| Entry {
                path,
                kind,
                size,
                mode,
                uid,
                gid,
                mtime_ns,
                ino,
                ctime_ns,
                sha256: if kind == Kind::File {
                    Some(file_hash)
                } else {
                    other_hash
                },
                target: matches!(kind, Kind::Symlink | Kind::Hardlink).then_some(target),
                area: area.into(),
                problem,
                pos: pos.map(|(frame_offset, offset_in_frame)| FramePos {
                    frame_offset,
                    offset_in_frame,
                }),
            },
        )
}

fn manifest_header() -> impl Strategy<Value = Header> {
    (
        prop::collection::vec(1u8..=255, 1..20),
        any_string(),
        any_string(),
        prop::collection::vec(any_string(), 0..3),
    )
        .prop_map(|(root, layout, created, scope)| {
            Header::new(
                Path::new(&OsString::from(OsStr::from_bytes(&root))),
                &layout,
                created,
                scope,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_manifests_round_trip(
        header in manifest_header(),
        entries in prop::collection::vec(manifest_entry(), 0..40),
        flip_at in any::<Index>(),
        flip_with in 1u8..=255,
        cut_at in any::<Index>(),
    ) {
        let mut entries = entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);

        let total = entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .try_fold(0u64, |acc, e| acc.checked_add(e.size));
        if total.is_none() {
            // File sizes beyond 2^64 in all: refused (this used to panic with
            // "attempt to add with overflow" at src/manifest.rs:259).
            prop_assert!(write_manifest(Vec::new(), &header, &entries).is_err());
            return Ok(());
        }
        let (bytes, trailer) = write_manifest(Vec::new(), &header, &entries)
            .map_err(|e| TestCaseError::fail(format!("write_manifest: {e:#}")))?;
        let m = Manifest::read(&bytes[..])
            .map_err(|e| TestCaseError::fail(format!("read back: {e:#}")))?;
        prop_assert_eq!(&m.header, &header);
        prop_assert_eq!(&m.entries, &entries);
        prop_assert_eq!(m.trailer, trailer);
        let files = entries.iter().filter(|e| e.kind == Kind::File);
        prop_assert_eq!(trailer.entries, entries.len() as u64);
        prop_assert_eq!(trailer.files, files.clone().count() as u64);
        prop_assert_eq!(trailer.bytes, files.map(|e| e.size).sum::<u64>());

        // One flipped byte anywhere (header, entries, the trailer, its hash, a
        // newline) must be caught.
        let i = flip_at.index(bytes.len());
        let mut damaged = bytes.clone();
        damaged[i] ^= flip_with;
        prop_assert!(
            Manifest::read(&damaged[..]).is_err(),
            "flipping byte {} ({:?} -> {:?}) went unnoticed",
            i,
            bytes[i] as char,
            damaged[i] as char
        );

        // So must any truncation.
        let n = cut_at.index(bytes.len());
        prop_assert!(
            Manifest::read(&bytes[..n]).is_err(),
            "truncation to {} of {} bytes went unnoticed",
            n,
            bytes.len()
        );
    }
}

/// A manifest whose file sizes add up to more than 2^64 is refused, not a panic
/// ("attempt to add with overflow" at src/manifest.rs:365 before the fix) or a
/// wrapped total. Built line by line, since `write_manifest` refuses it too.
#[test]
fn manifest_with_overflowing_sizes_is_refused() {
    let header = Header::new(
        Path::new("/r"),
        "test",
        "2025-12-25T00:00:00Z".into(),
        vec![],
    );
    let mut bytes = serde_json::to_vec(&header).unwrap();
    bytes.push(b'\n');
    for p in [&b"a"[..], b"b"] {
        bytes.extend(datamig::manifest::entry_line(&Entry {
            path: p.to_vec(),
            size: u64::MAX,
            sha256: Some([0; 32]),
            ..Default::default()
        }));
    }
    bytes.extend_from_slice(
        br#"{"datamig":"trailer","entries":2,"files":2,"bytes":18446744073709551614,"sha256":"00"}"#,
    );
    bytes.push(b'\n');
    let err = Manifest::read(&bytes[..]).expect_err("overflowing sizes accepted");
    assert!(format!("{err:#}").contains("2^64"), "{err:#}");
}
