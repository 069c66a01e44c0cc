//! Finding and checking many archives (issue 12 item 11): `datamig list DIR`
//! (one row per archive or backup, from the sidecars, oldest first, with a
//! header), `datamig list ARCHIVE PATH...` (a filter, with mode and owner
//! columns), and `datamig verify A B` / `verify --all DIR` (one report, a
//! result line per archive, exit = the worst).

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{json_of, prng_bytes, walk_tree, write};
use serde_json::Value;

/// A root with a directory to archive and the V2 areas a backup needs.
fn root_with_data(root: &Path) {
    write(root, "data/a.txt", b"alpha\n");
    write(root, "data/sub/b.txt", b"bravo\n");
    write(root, "data/sub/deeper/c.bin", &prng_bytes(3, 200_000));
    write(root, "instances/Bastion-11a9/preferences.json", b"{}\n");
    write(root, "wisdom.md", b"wisdom\n");
}

fn archive(root: &Path, dest: &Path, date: &str) -> PathBuf {
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new("data"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(date),
        OsStr::new("-q"),
    ]);
    assert_eq!(c, 0, "{err}");
    dest.join(format!("data-{date}.tar.zst"))
}

fn backup(root: &Path, dest: &Path, now: &str) {
    let (c, _, err) = common::datamig([
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("backup"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--now"),
        OsStr::new(now),
        OsStr::new("-q"),
    ]);
    assert_eq!(c, 0, "{err}");
}

fn dm_json(args: &[&OsStr]) -> (i32, Value, String) {
    let mut v: Vec<OsString> = args.iter().map(|a| a.to_os_string()).collect();
    v.push("--json".into());
    let (c, out, err) = common::datamig(&v);
    (c, json_of(&out), err)
}

fn names(rows: &Value, key: &str) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not a list: {rows}"))
        .iter()
        .map(|r| {
            let s = r[key].as_str().unwrap();
            Path::new(s)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Flip one byte in the middle of the file (inside the big member's data).
fn flip_middle_byte(p: &Path) {
    let mut bytes = std::fs::read(p).unwrap();
    let i = bytes.len() / 3;
    bytes[i] ^= 0x55;
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn item_11_list_dir_shows_archives_and_backups_oldest_first_with_a_header() {
    let t = common::tempdir();
    let root = t.path().join("root");
    root_with_data(&root);
    let dest = t.path().join("dest");
    let a1 = archive(&root, &dest, "20251224");
    let a2 = archive(&root, &dest, "20251225");
    // Made "in the past" by its clock: the oldest, though its name sorts last.
    backup(&root, &dest, "2025-12-20T02:00:00Z");
    let tar = common::require_tool("tar");
    let foreign = dest.join("handmade.tar.zst");
    let st = std::process::Command::new(tar)
        .arg("--zstd")
        .arg("-cf")
        .arg(&foreign)
        .arg("-C")
        .arg(&root)
        .arg("data")
        .status()
        .unwrap();
    assert!(st.success());
    write(&dest, "README.txt", b"operator's notes\n");

    let (c, r, err) = dm_json(&[OsStr::new("list"), dest.as_os_str()]);
    assert_eq!(c, 0, "{err}\n{r:#}");
    assert_eq!(r["report"], "list-archives", "{r:#}");
    let rows = r["archives"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{r:#}");
    let backup_name = "v2-data-20251220-020000.tar.zst";
    assert_eq!(rows[0]["name"], backup_name, "oldest first: {r:#}");
    assert_eq!(rows[0]["kind"], "backup");
    assert_eq!(rows[0]["date"], "2025-12-20T02:00:00Z");
    assert_eq!(rows[0]["date_from"], "manifest");
    let data_members = walk_tree(&root.join("data")).len() as u64;
    for a in [&a1, &a2] {
        let name = a.file_name().unwrap().to_str().unwrap();
        let row = rows.iter().find(|x| x["name"] == name).unwrap();
        assert_eq!(row["kind"], "archive", "{row:#}");
        assert_eq!(row["size"], std::fs::metadata(a).unwrap().len(), "{row:#}");
        assert_eq!(row["members"], data_members, "{row:#}");
        assert_eq!(row["files"], 3, "{row:#}");
        assert_eq!(row["manifest"], "sidecar", "{row:#}");
        assert_eq!(row["sha256_sidecar"], "present", "{row:#}");
        assert_eq!(row["state"], "ok", "{row:#}");
    }
    let f = rows
        .iter()
        .find(|x| x["name"] == "handmade.tar.zst")
        .unwrap();
    assert_eq!(f["kind"], "foreign", "{f:#}");
    assert!(
        f["members"].is_null(),
        "a listing never decompresses: {f:#}"
    );
    assert_eq!(f["date_from"], "mtime", "{f:#}");
    let dates: Vec<&str> = rows.iter().map(|x| x["date"].as_str().unwrap()).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted, "{r:#}");

    // The human table: a header, then the rows in the same order.
    let (c, out, _) = common::datamig([OsStr::new("list"), dest.as_os_str()]);
    assert_eq!(c, 0);
    let text = String::from_utf8(out).unwrap();
    let header = text
        .lines()
        .find(|l| l.starts_with("DATE"))
        .unwrap_or_else(|| panic!("{text}"));
    for col in ["SIZE", "MEMBERS", "KIND", "STATE", "NAME"] {
        assert!(header.contains(col), "{header}");
    }
    let pos = |n: &str| text.find(n).unwrap_or_else(|| panic!("{n} in {text}"));
    assert!(pos(backup_name) < pos("data-20251224.tar.zst"), "{text}");
    assert!(pos("data-20251224.tar.zst") < pos("data-20251225.tar.zst"));
    assert!(!text.contains("README.txt"), "{text}");

    // A damaged sidecar manifest is a problem the listing reports (exit 1).
    let side = dest.join("data-20251225.tar.zst.manifest.jsonl");
    let mut m = std::fs::read(&side).unwrap();
    let i = m.len() / 2;
    m[i] ^= 0x01;
    std::fs::write(&side, m).unwrap();
    let (c, r, _) = dm_json(&[OsStr::new("list"), dest.as_os_str()]);
    assert_eq!(c, 1, "{r:#}");
    let row = r["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "data-20251225.tar.zst")
        .unwrap()
        .clone();
    assert_eq!(row["state"], "damaged", "{row:#}");
    assert!(
        row["note"].as_str().unwrap().contains("manifest"),
        "{row:#}"
    );
}

#[test]
fn item_11_list_dir_without_archives_says_so() {
    let t = common::tempdir();
    let d = t.path().join("empty");
    write(&d, "notes.txt", b"no archives here\n");
    let (c, out, err) = common::datamig([OsStr::new("list"), d.as_os_str()]);
    assert_eq!(c, 2, "{}", String::from_utf8_lossy(&out));
    assert!(
        err.contains(&d.display().to_string()) && err.contains("no archives"),
        "{err}"
    );
    let (c, _, err) = common::datamig([OsStr::new("list"), d.as_os_str(), OsStr::new("x")]);
    assert_eq!(c, 2);
    assert!(err.contains("takes no PATH"), "{err}");
}

#[test]
fn item_11_list_archive_paths_filters_with_mode_and_owner_columns() {
    let t = common::tempdir();
    let root = t.path().join("root");
    root_with_data(&root);
    common::chmod(&root.join("data/sub/b.txt"), 0o640);
    let dest = t.path().join("dest");
    let a = archive(&root, &dest, "20251224");

    let (c, r, err) = dm_json(&[
        OsStr::new("list"),
        a.as_os_str(),
        OsStr::new("sub/"),
        OsStr::new("a.txt"),
    ]);
    assert_eq!(c, 0, "{err}\n{r:#}");
    let mut got: Vec<&str> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "a.txt",
            "sub",
            "sub/b.txt",
            "sub/deeper",
            "sub/deeper/c.bin"
        ],
        "{r:#}"
    );
    assert_eq!(r["paths"], serde_json::json!(["sub/", "a.txt"]));
    assert!(r["not_found"].as_array().unwrap().is_empty());

    // The text: a header naming the columns, each row with mode and owner.
    let (c, out, _) = common::datamig([OsStr::new("list"), a.as_os_str(), OsStr::new("sub/b.txt")]);
    assert_eq!(c, 0);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for col in ["TYPE", "MODE", "OWNER", "SIZE", "MTIME", "SHA256", "PATH"] {
        assert!(lines[0].contains(col), "{text}");
    }
    let meta = std::fs::metadata(root.join("data/sub/b.txt")).unwrap();
    let owner = format!("{}/{}", meta.uid(), meta.gid());
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cols[0], "file", "{text}");
    assert_eq!(cols[1], "0640", "{text}");
    assert_eq!(cols[2], owner, "{text}");
    assert_eq!(cols[3], "6", "{text}");
    assert_eq!(*cols.last().unwrap(), "sub/b.txt", "{text}");

    // A PATH that selects nothing is named (exit 1); the others are listed.
    let (c, r, _) = dm_json(&[
        OsStr::new("list"),
        a.as_os_str(),
        OsStr::new("a.txt"),
        OsStr::new("su"),
    ]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(r["not_found"], serde_json::json!(["su"]), "{r:#}");
    assert_eq!(r["members"].as_array().unwrap().len(), 1, "{r:#}");
}

#[test]
fn item_11_verify_a_b_checks_both_and_exits_with_the_worst() {
    let t = common::tempdir();
    let root = t.path().join("root");
    root_with_data(&root);
    let dest = t.path().join("dest");
    let good = archive(&root, &dest, "20251224");
    let bad = archive(&root, &dest, "20251225");
    flip_middle_byte(&bad);

    let (c, r, err) = dm_json(&[OsStr::new("verify"), good.as_os_str(), bad.as_os_str()]);
    assert_eq!(c, 1, "{err}\n{r:#}");
    assert_eq!(r["report"], "verify-archives", "{r:#}");
    assert_eq!(r["exit"], 1);
    let rows = r["archives"].as_array().unwrap();
    assert_eq!(
        names(&r["archives"], "archive"),
        ["data-20251224.tar.zst", "data-20251225.tar.zst"]
    );
    assert_eq!(rows[0]["result"], "clean", "{r:#}");
    assert_eq!(rows[0]["check"]["report"], "verify-archive");
    assert_eq!(rows[1]["result"], "discrepancies", "{r:#}");
    assert!(rows[1]["discrepancies"].as_u64().unwrap() > 0);
    assert_eq!(
        (r["clean"].clone(), r["with_discrepancies"].clone()),
        (1.into(), 1.into())
    );

    let (c, out, _) = common::datamig([OsStr::new("verify"), good.as_os_str(), bad.as_os_str()]);
    assert_eq!(c, 1);
    let text = String::from_utf8(out).unwrap();
    let line_of = |p: &Path| {
        text.lines()
            .find(|l| l.trim_end().ends_with(&p.display().to_string()))
            .unwrap_or_else(|| panic!("no result line for {}:\n{text}", p.display()))
            .to_string()
    };
    assert!(line_of(&good).trim_start().starts_with("ok"), "{text}");
    assert!(line_of(&bad).contains("discrepanc"), "{text}");

    // A missing archive among them: named, the others still checked, exit 2.
    let missing = dest.join("data-20251226.tar.zst");
    let (c, r, _) = dm_json(&[
        OsStr::new("verify"),
        good.as_os_str(),
        missing.as_os_str(),
        bad.as_os_str(),
    ]);
    assert_eq!(c, 2, "{r:#}");
    let rows = r["archives"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["result"], "clean");
    assert_eq!(rows[1]["result"], "error");
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("data-20251226.tar.zst")
    );
    assert_eq!(rows[2]["result"], "discrepancies");

    // One archive keeps the single report, exactly as before.
    let (c, r, _) = dm_json(&[OsStr::new("verify"), good.as_os_str()]);
    assert_eq!(c, 0);
    assert_eq!(r["report"], "verify-archive", "{r:#}");
}

#[test]
fn item_11_verify_all_dir_checks_every_archive_there() {
    let t = common::tempdir();
    let root = t.path().join("root");
    root_with_data(&root);
    let dest = t.path().join("dest");
    archive(&root, &dest, "20251224");
    archive(&root, &dest, "20251225");
    backup(&root, &dest, "2025-12-20T02:00:00Z");

    let (c, r, err) = dm_json(&[OsStr::new("verify"), OsStr::new("--all"), dest.as_os_str()]);
    assert_eq!(c, 0, "{err}\n{r:#}");
    assert_eq!(r["report"], "verify-archives");
    assert_eq!(
        names(&r["archives"], "archive"),
        [
            "data-20251224.tar.zst",
            "data-20251225.tar.zst",
            "v2-data-20251220-020000.tar.zst"
        ],
        "{r:#}"
    );
    assert_eq!(r["clean"], 3, "{r:#}");

    flip_middle_byte(&dest.join("data-20251224.tar.zst"));
    let (c, r, _) = dm_json(&[
        OsStr::new("verify"),
        OsStr::new("--quick"),
        OsStr::new("--all"),
        dest.as_os_str(),
    ]);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(r["quick"], true);
    assert_eq!(r["archives"][0]["result"], "discrepancies", "{r:#}");
    assert_eq!(r["with_discrepancies"], 1, "{r:#}");

    // A directory without archives: said so, exit 2.
    let empty = t.path().join("none");
    std::fs::create_dir(&empty).unwrap();
    let (c, r, _) = dm_json(&[OsStr::new("verify"), OsStr::new("--all"), empty.as_os_str()]);
    assert_eq!(c, 2, "{r:#}");
    assert!(
        r["archives"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no archives"),
        "{r:#}"
    );
}
