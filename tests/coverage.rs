//! Issue 12 items 4, 5 and 12: what the nightly backup covers and says it
//! leaves out; excludes (patterns, the layout target's, CACHEDIR.TAG,
//! `--exclude-if-present`) applied inside the walk and reported; and the
//! pre-flight inventory's default scope and archive warnings.

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::write;
use serde_json::Value;

const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// A copy of the bundled root (tests change it).
fn fixture_copy(t: &Path) -> PathBuf {
    let root = t.join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(common::fixture_root())
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    root
}

/// `datamig --root ROOT backup --dest DEST -q --json --now … EXTRA`.
fn backup(root: &Path, dest: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("backup"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("-q"),
        OsStr::new("--json"),
        OsStr::new("--now"),
        OsStr::new("2025-12-20T02:00:00Z"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let (c, out, err) = common::datamig(&args);
    (c, common::json_of(&out), err)
}

/// The member names of a `.tar.zst`, as GNU tar lists them.
fn members(archive: &Path) -> Vec<String> {
    let o = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

fn notes(v: &Value, list: &str) -> Vec<(String, String)> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list {list}: {v:#}"))
        .iter()
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                n["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn archive_of(r: &Value) -> PathBuf {
    PathBuf::from(r["archive"].as_str().expect("an archive was made"))
}

#[test]
fn issue_12_4_backup_of_the_fixture_root_holds_secrets_and_names_what_it_leaves_out() {
    let t = common::tempdir();
    let root = fixture_copy(t.path());
    write(&root, "foo/bar.txt", b"unclassified\n");
    let dest = t.path().join("bk");
    let (c, r, err) = backup(&root, &dest, &[]);
    assert_eq!(c, 0, "{err}\n{r:#}");
    assert_eq!(r["target"], "backup");
    let archive = archive_of(&r);
    let m = members(&archive);
    for want in [
        "auth-keys",
        "auth-keys/wake-api.key",
        ".hub-secret",
        "shared-config/oauth-token.json",
        "vacation/vacation.json",
        "api-help.json",
        "config/global_preferences.json",
        "wisdom.md",
        "instances/Bastion-11a9/preferences.json",
    ] {
        assert!(m.iter().any(|x| x == want), "{want} not in the backup");
    }
    for never in [
        "production",
        "v2-dev-data",
        "archive",
        "backups",
        "Human-Adjacent-Coordination",
        "foo",
    ] {
        assert!(
            !m.iter()
                .any(|x| x == never || x.starts_with(&format!("{never}/"))),
            "{never} is in the backup"
        );
    }
    // It holds secrets: the archive and both sidecars are 0600.
    for p in [
        archive.clone(),
        PathBuf::from(format!("{}.sha256", archive.display())),
        PathBuf::from(format!("{}.manifest.jsonl", archive.display())),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }

    let nc = notes(&r, "not_covered");
    let want = [
        ("Human-Adjacent-Coordination/", "code checkout"),
        ("archive/", "archives"),
        ("backups/", "the backups themselves"),
        ("foo/", "not in the layout"),
        ("production/", "V1, retired: archive target production"),
        ("v2-dev-data/", "deprecated: archive target v2-dev-data"),
        ("v2-production/", "code checkout"),
        ("worktrees/", "code checkout"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(p, n)| (p.to_string(), n.to_string()))
        .collect();
    assert_eq!(nc, want);

    // The human report ends with the list; a --dry-run says the same.
    let (c, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("backup"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--dry-run"),
    ]);
    assert_eq!(c, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    let tail: Vec<&str> = text.lines().rev().take(9).collect();
    assert_eq!(tail[8], "Not covered by this backup (8):", "{text}");
    assert_eq!(
        tail[0].trim(),
        "worktrees/ (code checkout)",
        "the report ends with the list:\n{text}"
    );
    assert!(
        text.contains("production/ (V1, retired: archive target production)"),
        "{text}"
    );

    // A restore of the backup brings the keys back.
    let back = t.path().join("back");
    let (c, out, err) = common::datamig([
        OsStr::new("restore"),
        archive.as_os_str(),
        OsStr::new("--to"),
        back.as_os_str(),
        OsStr::new("-q"),
        OsStr::new("--json"),
    ]);
    assert_eq!(c, 0, "{err}\n{}", String::from_utf8_lossy(&out));
    assert_eq!(
        std::fs::read(back.join("auth-keys/wake-api.key")).unwrap(),
        std::fs::read(root.join("auth-keys/wake-api.key")).unwrap()
    );
    assert!(back.join(".hub-secret").is_file());
}

#[test]
fn issue_12_4_a_layout_without_a_backup_target_backs_up_v2_and_says_so() {
    let t = common::tempdir();
    let root = fixture_copy(t.path());
    let (_, out, _) = common::datamig(["layout"]);
    let text = String::from_utf8(out).unwrap();
    let mut layout: toml::Table = toml::from_str(&text).unwrap();
    let targets = layout["target"].as_array_mut().unwrap();
    targets.retain(|t| t["name"].as_str() != Some("backup"));
    let file = t.path().join("old-layout.toml");
    std::fs::write(&file, toml::to_string(&layout).unwrap()).unwrap();
    let dest = t.path().join("bk");
    let (c, r, err) = backup(&root, &dest, &["--layout", file.to_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["target"], "v2");
    assert!(
        r["target_note"]
            .as_str()
            .unwrap()
            .contains("no \"backup\" target"),
        "{r:#}"
    );
    let nc = notes(&r, "not_covered");
    let secret = nc
        .iter()
        .find(|(p, _)| p == "auth-keys/")
        .expect("auth-keys named");
    assert!(secret.1.contains("kind secret"), "{secret:?}");
    assert!(nc.iter().any(|(p, _)| p == ".hub-secret"), "{nc:?}");
}

#[test]
fn issue_12_5_npm_caches_are_left_out_by_the_layout_and_reported() {
    let t = common::tempdir();
    let root = fixture_copy(t.path());
    let dest = t.path().join("bk");
    let (c, r, err) = backup(&root, &dest, &[]);
    assert_eq!(c, 0, "{err}");
    let m = members(&archive_of(&r));
    assert!(!m.iter().any(|x| x.contains("/.npm")), "{m:?}");
    assert!(m.iter().any(|x| x == "instances/Bastion-11a9/.bashrc"
        || x.starts_with("instances/Bastion-11a9/.claude")));
    let ex = notes(&r, "excluded");
    let paths: Vec<&str> = ex.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "instances/Bastion-11a9/.npm",
            "instances/Crossing-7c2e/.npm"
        ]
    );
    assert_eq!(r["excluded_count"], 2);
    // The manifest records the pattern, so `verify --tree` of the root
    // against it does not call the caches new.
    let manifest = format!("{}.manifest.jsonl", archive_of(&r).display());
    let header = std::fs::read_to_string(&manifest).unwrap();
    let header: Value = serde_json::from_str(header.lines().next().unwrap()).unwrap();
    assert_eq!(
        header["exclude"],
        serde_json::json!(["instances/*/.npm/**"])
    );
}

/// A root with three directories under `instances/x`: a real cache (tagged),
/// a fake tag (wrong signature), a `.nobackup`-marked one; and plain files.
fn tagged_root(t: &Path) -> PathBuf {
    let root = t.join("root");
    write(&root, "instances/x/preferences.json", b"{}\n");
    write(
        &root,
        "instances/x/cache/CACHEDIR.TAG",
        &[SIGNATURE, b"\n# a cache\n"].concat(),
    );
    write(&root, "instances/x/cache/blob", b"regenerable\n");
    write(&root, "instances/x/cache/deep/more", b"regenerable\n");
    write(
        &root,
        "instances/x/fake/CACHEDIR.TAG",
        b"Signature: 0000000000000000000000000000000\n",
    );
    write(&root, "instances/x/fake/keep-me", b"real data\n");
    write(&root, "instances/x/scratch/.nobackup", b"");
    write(&root, "instances/x/scratch/tmp.bin", b"scratch\n");
    write(&root, "instances/x/notes/.nobackup-not", b"");
    write(&root, "instances/x/notes/n.md", b"keep\n");
    write(&root, "instances/x/junk.log", b"log\n");
    root
}

#[test]
fn issue_12_5_exclude_caches_if_present_and_globs_in_backup_archive_and_inventory() {
    let t = common::tempdir();
    let root = tagged_root(t.path());
    let dest = t.path().join("bk");
    let flags = [
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude",
        "**/*.log",
    ];
    let (c, r, err) = backup(&root, &dest, &flags);
    assert_eq!(c, 0, "{err}\n{r:#}");
    let m = members(&archive_of(&r));
    let has = |p: &str| m.iter().any(|x| x == p);
    // Tagged: the directory and its tag stay, nothing else below.
    assert!(
        has("instances/x/cache") && has("instances/x/cache/CACHEDIR.TAG"),
        "{m:?}"
    );
    assert!(
        !has("instances/x/cache/blob") && !has("instances/x/cache/deep"),
        "{m:?}"
    );
    assert!(
        has("instances/x/scratch/.nobackup") && !has("instances/x/scratch/tmp.bin"),
        "{m:?}"
    );
    // A wrong signature is no tag; a similar name is no tag.
    assert!(has("instances/x/fake/keep-me"), "{m:?}");
    assert!(has("instances/x/notes/n.md"), "{m:?}");
    assert!(
        !has("instances/x/junk.log") && has("instances/x/preferences.json"),
        "{m:?}"
    );
    let ex = notes(&r, "excluded");
    let paths: Vec<&str> = ex.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "instances/x/cache",
            "instances/x/junk.log",
            "instances/x/scratch"
        ]
    );
    assert!(ex[0].1.contains("CACHEDIR.TAG"), "{ex:?}");
    assert!(ex[2].1.contains(".nobackup"), "{ex:?}");

    // archive takes the same flags (patterns relative to the archived directory).
    let adest = t.path().join("ar");
    let (c, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new("instances"),
        OsStr::new("--dest"),
        adest.as_os_str(),
        OsStr::new("--exclude-caches"),
        OsStr::new("--exclude-if-present"),
        OsStr::new(".nobackup"),
        OsStr::new("-q"),
        OsStr::new("--json"),
    ]);
    assert_eq!(c, 0, "{err}");
    let a = common::json_of(&out);
    let am = members(&archive_of(&a));
    assert!(am.iter().any(|x| x == "x/cache/CACHEDIR.TAG"), "{am:?}");
    assert!(
        !am.iter()
            .any(|x| x == "x/cache/blob" || x == "x/scratch/tmp.bin"),
        "{am:?}"
    );
    assert_eq!(a["excluded_count"], 2);

    // inventory previews the same: its files0 list lacks what was skipped.
    let (c, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("inventory"),
        OsStr::new("--exclude-caches"),
        OsStr::new("--exclude-if-present"),
        OsStr::new(".nobackup"),
        OsStr::new("--format"),
        OsStr::new("files0"),
    ]);
    assert!(c == 0 || c == 1, "{err}");
    let files: Vec<&[u8]> = out.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    assert!(files.contains(&b"instances/x/cache/CACHEDIR.TAG".as_slice()));
    assert!(files.contains(&b"instances/x/fake/keep-me".as_slice()));
    assert!(!files.contains(&b"instances/x/cache/blob".as_slice()));
    assert!(!files.contains(&b"instances/x/scratch/tmp.bin".as_slice()));
    let (_, s, _) = common::inventory_json(&root, &[OsStr::new("--exclude-caches")]);
    assert_eq!(common::note_paths(&s, "excluded"), ["instances/x/cache"]);

    // A bad tag name is refused before anything runs.
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("inventory"),
        OsStr::new("--exclude-if-present"),
        OsStr::new("a/b"),
    ]);
    assert_eq!(c, 2);
    assert!(err.contains("not a file name"), "{err}");
}

#[test]
fn issue_12_5_a_symlink_named_cachedir_tag_is_no_tag() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/x/preferences.json", b"{}\n");
    write(t.path(), "elsewhere/CACHEDIR.TAG", SIGNATURE);
    write(&root, "instances/x/data/keep", b"k\n");
    std::os::unix::fs::symlink(
        t.path().join("elsewhere/CACHEDIR.TAG"),
        root.join("instances/x/data/CACHEDIR.TAG"),
    )
    .unwrap();
    let (_, s, _) = common::inventory_json(&root, &[OsStr::new("--exclude-caches")]);
    assert_eq!(s["excluded_count"], 0, "{s:#}");
}

#[test]
fn issue_12_5_bad_target_excludes_are_refused_naming_the_target() {
    let t = common::tempdir();
    let file = t.path().join("l.toml");
    std::fs::write(
        &file,
        "name = 'x'\n[[target]]\nname = 'p'\nprefix = 'p'\npaths = ['production']\nexclude = ['instances/*/.npm/**']\n",
    )
    .unwrap();
    let (c, _, err) = common::datamig([
        OsStr::new("--layout"),
        file.as_os_str(),
        OsStr::new("layout"),
    ]);
    assert_eq!(c, 2);
    assert!(
        err.contains("target \"p\"") && err.contains("must start with"),
        "{err}"
    );
}

#[test]
fn issue_12_12_inventory_leaves_out_archives_and_backups_by_default() {
    let root = common::fixture_root();
    let (_, out, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("inventory"),
        OsStr::new("--format"),
        OsStr::new("files0"),
    ]);
    assert!(err.is_empty(), "{err}");
    let files: Vec<String> = out
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("instances/")));
    let bad: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("archive/") || f.starts_with("backups/"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(
        std::fs::read_dir(root.join("backups"))
            .unwrap()
            .next()
            .is_some(),
        "the fixture has backups to leave out"
    );

    let (_, s, _) = common::inventory_json(&root, &[]);
    assert_eq!(
        common::note_paths(&s, "not_scanned"),
        ["archive/", "backups/"]
    );
    // Naming them includes them.
    let (_, s, _) = common::inventory_json(&root, &[OsStr::new("backups")]);
    assert_eq!(s["not_scanned"], serde_json::json!([]));
    assert!(s["totals"]["files"].as_u64().unwrap() > 0);
    let (_, out, _) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("inventory"),
    ]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Not scanned: archive/, backups/"), "{text}");
}

#[test]
fn issue_12_12_inventory_of_the_fixture_root_passes_verify_tree() {
    // The manifest records what the default scope left out, so the audit of
    // the same tree is clean (archive/ and backups/ are not "new").
    let t = common::tempdir();
    let root = fixture_copy(t.path());
    let m = t.path().join("m.jsonl");
    let (_, _, err) = common::inventory_json(&root, &[OsStr::new("-o"), m.as_os_str()]);
    assert!(err.is_empty(), "{err}");
    let (c, out, err) = common::datamig([
        OsStr::new("verify"),
        OsStr::new("--tree"),
        root.as_os_str(),
        m.as_os_str(),
        OsStr::new("--json"),
    ]);
    let r = common::json_of(&out);
    assert_eq!(c, 0, "{err}\n{r:#}");
}

#[test]
fn issue_12_12_inventory_warns_about_mtimes_past_2038_and_before_1970_and_sockets() {
    let t = common::tempdir();
    let root = t.path().join("root");
    write(&root, "instances/x/preferences.json", b"{}\n");
    write(&root, "instances/x/future.md", b"f\n");
    write(&root, "instances/x/old.md", b"o\n");
    write(&root, "instances/x/2038.md", b"edge\n");
    let set = |p: &str, secs: i64| {
        let st = Command::new("touch")
            .arg("-d")
            .arg(format!("@{secs}"))
            .arg(root.join(p))
            .status()
            .unwrap();
        assert!(st.success());
    };
    set("instances/x/future.md", i64::from(i32::MAX) + 1);
    set("instances/x/old.md", -86_400);
    set("instances/x/2038.md", i64::from(i32::MAX));
    let _sock = std::os::unix::net::UnixListener::bind(root.join("instances/x/sock")).unwrap();
    let (c, s, _) = common::inventory_json(&root, &[]);
    assert_eq!(c, 0, "warnings do not make problems: {s:#}");
    let w = notes(&s, "archive_warnings");
    let paths: Vec<&str> = w.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "instances/x/future.md",
            "instances/x/old.md",
            "instances/x/sock"
        ],
        "{w:?}"
    );
    assert!(w[0].1.contains("past 2038"), "{w:?}");
    assert!(w[1].1.contains("before 1970"), "{w:?}");
    assert!(w[2].1.contains("socket"), "{w:?}");
}
