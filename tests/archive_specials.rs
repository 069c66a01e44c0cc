//! Issue 11, writer: what GNU tar `--xattrs --acls` archives, datamig's
//! archive keeps too. A tree with a FIFO, a socket, a character device (as
//! root), a file with `user.` xattrs and a file with an access ACL, a
//! directory with a default ACL: `archive` exits 0 with the socket noted
//! (sockets are skipped, as GNU tar does), and GNU tar, bsdtar and
//! `datamig restore` each bring all of it back (kinds, device numbers,
//! xattrs by `getfattr -d`, ACLs by `getfacl`). Run again as `nobody`: the
//! FIFO and socket still make no problem (exit 0).

mod archive_support;
mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use archive_support::{archive_json, require_gnu_tar, require_tool};
use serde_json::Value;

const DATE: &str = "20251225";

/// Paths compared between the source and each extraction.
const COMPARED: &[&str] = &[
    "tree/f.txt",
    "tree/acl.txt",
    "tree/d",
    "tree/pipe",
    "tree/null",
];

/// The source: `root/tree/...`. The device only as root (mknod needs it).
fn source(root: &Path) {
    let src = root.join("tree");
    fs::create_dir_all(src.join("d")).unwrap();
    common::write(&src, "f.txt", b"with xattrs\n");
    common::write(&src, "acl.txt", b"with an ACL\n");
    common::write(&src, "d/inner.txt", &archive_support::prng_bytes(7, 3000));
    common::make_world_readable(root);
    // After the chmods above: a chmod rewrites an ACL's mask.
    run_ok(
        "setfattr",
        &["-n", "user.comment", "-v", "hello"],
        &src.join("f.txt"),
    );
    run_ok(
        "setfattr",
        &["-n", "user.bin", "-v", "0x00ff3d0a"],
        &src.join("f.txt"),
    );
    run_ok("setfacl", &["-m", "u:65534:r"], &src.join("acl.txt"));
    run_ok("setfacl", &["-d", "-m", "u:65534:rx"], &src.join("d"));
    if common::is_root() {
        // Namespaces only root reads: trusted.*, and a file capability
        // (CAP_NET_BIND_SERVICE, effective), which a later chown would drop.
        let f = src.join("f.txt");
        run_ok("setfattr", &["-n", "trusted.k", "-v", "tv"], &f);
        let cap = "0x0100000200040000000000000000000000000000";
        run_ok("setfattr", &["-n", "security.capability", "-v", cap], &f);
    }
    common::mkfifo(&src.join("pipe"));
    common::chmod(&src.join("pipe"), 0o640);
    // Bound and dropped: the socket file stays, as a dead server's would.
    drop(std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap());
    if common::is_root() {
        use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
        let dev = makedev(1, 3);
        mknodat(
            CWD,
            src.join("null"),
            FileType::CharacterDevice,
            Mode::from(0o620),
            dev,
        )
        .unwrap();
        // Whatever the umask took away.
        common::chmod(&src.join("null"), 0o620);
    }
}

fn run_ok(prog: &str, args: &[&str], path: &Path) {
    let tool = require_tool(prog);
    let o = Command::new(tool).args(args).arg(path).output().unwrap();
    assert!(
        o.status.success(),
        "{prog} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What is compared of one path: kind, mode, device numbers, xattrs
/// (`getfattr -d -m -`, every namespace) and ACLs (`getfacl`, numeric).
fn describe(base: &Path, rel: &str) -> String {
    let p = base.join(rel);
    let Ok(m) = fs::symlink_metadata(&p) else {
        return "absent".into();
    };
    let ft = m.file_type();
    let kind = if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    let q = format!("'{}'", p.display());
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.starts_with("# file"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (attrs, acl) = if matches!(kind, "file" | "dir") {
        (
            strip(sh(&format!("getfattr -h -d -m - -e hex {q}"))),
            strip(sh(&format!("getfacl -n {q}"))),
        )
    } else {
        (String::new(), String::new())
    };
    let rdev = if ft.is_char_device() {
        let r = m.rdev() as rustix::fs::Dev;
        format!("{}:{}", rustix::fs::major(r), rustix::fs::minor(r))
    } else {
        String::new()
    };
    format!("{kind} {:o} {rdev}\n{attrs}\n{acl}", m.mode() & 0o7777)
}

fn snapshot(base: &Path) -> BTreeMap<&'static str, String> {
    COMPARED
        .iter()
        .filter(|r| common::is_root() || !r.ends_with("null"))
        .map(|&r| (r, describe(base, r)))
        .collect()
}

fn notes_of(v: &Value, list: &str) -> Vec<(String, String)> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} list: {v:#}"))
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn datamig_restore(archive: &Path, to: &Path, as_nobody: bool) -> (i32, Value) {
    let args: Vec<OsString> = vec![
        "restore".into(),
        archive.into(),
        "--to".into(),
        to.into(),
        "--json".into(),
        "-q".into(),
    ];
    let mut c = if as_nobody {
        common::cmd_as_nobody(&args)
    } else {
        common::cmd(&args)
    };
    let o = common::output_within(&mut c, common::DEFAULT_DEADLINE);
    (common::code(&o), common::json_of(&o.stdout))
}

#[test]
fn issue_11_archive_keeps_fifo_socket_device_xattr_acl() {
    let tar = require_gnu_tar();
    let bsdtar = require_tool("bsdtar");
    let t = common::tempdir();
    let root = t.path().join("root");
    source(&root);
    let want = snapshot(&root);
    assert!(
        want["tree/f.txt"].contains("user.comment=0x68656c6c6f"),
        "{want:#?}"
    );
    assert!(want["tree/acl.txt"].contains("user:65534:r--"), "{want:#?}");
    if common::is_root() {
        let f = &want["tree/f.txt"];
        assert!(f.contains("security.capability=0x01000002"), "{f}");
        assert!(f.contains("trusted.k=0x7476"), "{f}");
        assert!(want["tree/null"].starts_with("char 620 1:3"), "{want:#?}");
    }

    // The pre-flight says what the archive will do with each special file.
    let (_, inv, _) = common::inventory_json(&root, &[]);
    let special: BTreeMap<String, String> = notes_of(&inv, "special_files").into_iter().collect();
    assert!(
        special["tree/sock"].contains("not archived (sockets are skipped, as GNU tar does)"),
        "{special:#?}"
    );
    assert!(
        special["tree/pipe"].contains("archived as a FIFO"),
        "{special:#?}"
    );

    let dest = t.path().join("out");
    let dd: Vec<&OsStr> = vec![
        OsStr::new("tree"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(DATE),
    ];
    let rep = archive_json(&root, &dd, 0);
    assert!(notes_of(&rep, "flagged").is_empty(), "{rep:#}");
    assert_eq!(
        notes_of(&rep, "notes"),
        vec![(
            "sock".to_string(),
            "not archived (sockets are skipped, as GNU tar does)".to_string()
        )],
        "{rep:#}"
    );
    assert_eq!(rep["verify"], "passed", "{rep:#}");
    let archive = dest.join(format!("tree-{DATE}.tar.zst"));

    // The manifest: the FIFO (and device) have a member, no problem; the
    // socket has neither.
    let manifest = PathBuf::from(format!("{}.manifest.jsonl", archive.display()));
    let m = common::ManifestLines::read(&manifest).by_path();
    assert!(
        m[&b"pipe"[..]].get("frame_offset").is_some(),
        "{}",
        m[&b"pipe"[..]]
    );
    assert!(
        m[&b"pipe"[..]].get("problem").is_none(),
        "{}",
        m[&b"pipe"[..]]
    );
    assert!(
        m[&b"sock"[..]].get("frame_offset").is_none(),
        "{}",
        m[&b"sock"[..]]
    );
    assert!(
        m[&b"sock"[..]].get("problem").is_none(),
        "{}",
        m[&b"sock"[..]]
    );

    // `verify` checks the special members for presence and kind.
    let (code, _, err) =
        common::datamig([OsStr::new("verify"), archive.as_os_str(), OsStr::new("-q")]);
    assert_eq!(code, 0, "verify: {err}");

    // GNU tar, bsdtar and datamig restore all of it.
    let extract = |label: &str, cmd: String| -> PathBuf {
        let to = t.path().join(label).join("tree");
        fs::create_dir_all(&to).unwrap();
        sh(&format!(
            "cd '{}' && {cmd} '{}'",
            to.display(),
            archive.display()
        ));
        to.parent().unwrap().to_path_buf()
    };
    let gnu = extract(
        "gnu",
        format!(
            "{} --xattrs --xattrs-include='*' --acls --zstd -xf",
            tar.display()
        ),
    );
    let bsd = extract("bsd", format!("{} --xattrs --acls -xf", bsdtar.display()));
    let ours = t.path().join("ours");
    fs::create_dir(&ours).unwrap();
    let (code, r) = datamig_restore(&archive, &ours.join("tree"), false);
    assert_eq!(code, 0, "{r:#}");
    assert!(notes_of(&r, "notes").is_empty(), "{r:#}");
    for (label, base) in [("GNU tar", &gnu), ("bsdtar", &bsd), ("datamig", &ours)] {
        assert_eq!(snapshot(base), want, "{label} restored something else");
        assert!(
            !base.join("tree/sock").exists(),
            "{label}: a socket came back"
        );
    }

    // As nobody: FIFO and socket are still no problem.
    let nb = t.path().join("nb-root");
    source(&nb);
    let nb_dest = t.path().join("nb-out");
    fs::create_dir(&nb_dest).unwrap();
    common::give_to_nobody(&nb_dest);
    let args: Vec<OsString> = vec![
        "--root".into(),
        nb.clone().into(),
        "archive".into(),
        "tree".into(),
        "--dest".into(),
        nb_dest.clone().into(),
        "--date".into(),
        DATE.into(),
        "--json".into(),
        "-q".into(),
    ];
    let o = common::output_within(&mut common::cmd_as_nobody(&args), common::DEFAULT_DEADLINE);
    let rep = common::json_of(&o.stdout);
    assert_eq!(common::code(&o), 0, "as nobody: {rep:#}");
    assert_eq!(notes_of(&rep, "notes").len(), 1, "{rep:#}");
    assert!(notes_of(&rep, "flagged").is_empty(), "{rep:#}");
    if common::is_root() {
        // Reading a device's numbers needs no privilege: archived as GNU tar
        // does it as any user.
        let nb_manifest = nb_dest.join(format!("tree-{DATE}.tar.zst.manifest.jsonl"));
        let m = common::ManifestLines::read(&nb_manifest).by_path();
        let e = &m[&b"null"[..]];
        assert_eq!(e["type"], "char", "{e}");
        assert!(e.get("frame_offset").is_some(), "{e}");
    }
    // A device in the archive is skipped by a restore run as nobody, with a
    // note; the run is still exit 0.
    let nb_archive = nb_dest.join(format!("tree-{DATE}.tar.zst"));
    let nb_to = t.path().join("nb-restore");
    fs::create_dir(&nb_to).unwrap();
    common::give_to_nobody(&nb_to);
    let (code, r) = datamig_restore(&nb_archive, &nb_to.join("tree"), true);
    assert_eq!(code, 0, "{r:#}");
    assert!(
        fs::symlink_metadata(nb_to.join("tree/pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let got = describe(&nb_to, "tree/f.txt");
    assert!(got.contains("user.comment=0x68656c6c6f"), "{got}");
    let got = describe(&nb_to, "tree/acl.txt");
    assert!(got.contains("user:65534:r--"), "{got}");
    if common::is_root() {
        let notes = notes_of(&r, "notes");
        assert!(
            notes
                .iter()
                .any(|(p, n)| p == "null" && n.contains("only root")),
            "{r:#}"
        );
        assert!(!nb_to.join("tree/null").exists());
    }
}

/// The nightly backup of a data root holding a FIFO and a socket (instance
/// directories are Unix homes) is complete and clean: exit 0, the socket in
/// the notes, nothing flagged.
#[test]
fn issue_11_nightly_backup_with_a_fifo_and_a_socket_exits_0() {
    let t = common::tempdir();
    let root = t.path().join("data");
    common::write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    common::write(&root, "wisdom.md", b"be kind\n");
    common::mkfifo(&root.join("instances/a/pipe"));
    drop(std::os::unix::net::UnixListener::bind(root.join("instances/a/agent.sock")).unwrap());
    let (code, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("backup"),
        OsStr::new("-q"),
        OsStr::new("--json"),
        OsStr::new("--now"),
        OsStr::new("2025-12-20T02:00:00Z"),
    ]);
    let r = common::json_of(&out);
    assert_eq!(code, 0, "{err}\n{r:#}");
    assert!(notes_of(&r, "flagged").is_empty(), "{r:#}");
    let notes = notes_of(&r, "notes");
    assert_eq!(notes.len(), 1, "{r:#}");
    assert!(notes[0].0.ends_with("agent.sock"), "{r:#}");
}
