//! `datamig refs` and the reference gate of `archive --remove-source`
//! (issue 16), on a fake system root built at run time (`--etc DIR`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{datamig, json_of, write};
use serde_json::Value;

/// The server of the issue: a data root and a fake `/etc` that points into it.
struct Server {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    etc: PathBuf,
    dest: PathBuf,
}

const UNIT: &str = "systemd/system/hacs.service";
const DROP_IN: &str = "systemd/system/hacs.service.d/data.conf";
const CRONTAB: &str = "crontab";

impl Server {
    fn new() -> Server {
        let tmp = common::tempdir();
        let root = tmp.path().join("data");
        let etc = tmp.path().join("etc");
        let dest = tmp.path().join("out");
        let r = root.display().to_string();
        write(&root, "production/src/server.js", b"// V1 server\n");
        write(&root, "production/data/instances.json", b"{}\n");
        write(&root, "v2-dev-data/static/index.html", b"<html></html>\n");
        write(&root, "instances/a/preferences.json", b"{}\n");
        write(
            &root,
            "v2-production/config.js",
            format!(
                "module.exports = {{\n  port: 3444,\n  dataPath: '{r}/production/data',\n}};\n"
            )
            .as_bytes(),
        );
        let mut blob = b"\x7fELF\0\0\0".to_vec();
        blob.extend_from_slice(format!("{r}/production/data").as_bytes());
        write(&root, "v2-production/bin/indexer", &blob);
        write(
            &etc,
            UNIT,
            format!(
                "[Unit]\nDescription=the V1 production server\n\n[Service]\n\
                 WorkingDirectory={r}/production/\nExecStart=/usr/bin/node src/server.js\n"
            )
            .as_bytes(),
        );
        write(
            &etc,
            DROP_IN,
            format!("[Service]\nEnvironment=DATA_PATH={r}/production/data\n").as_bytes(),
        );
        write(
            &etc,
            "systemd/system/hacs.service.d/v2.conf",
            format!("[Service]\nEnvironment=V2_DATA_ROOT={r}/\n").as_bytes(),
        );
        write(
            &etc,
            CRONTAB,
            format!(
                "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n\
                 30 2 * * * root tar czf /var/backups/v1.tgz {r}/production/data\n"
            )
            .as_bytes(),
        );
        write(
            &etc,
            "nginx/sites-enabled/coordination",
            format!(
                "server {{\n  listen 80;\n  location /static/ {{\n    alias {r}/v2-dev-data/static/;\n  }}\n}}\n"
            )
            .as_bytes(),
        );
        write(
            &etc,
            "logrotate.d/hacs",
            format!("{r}/production/logs/*.log {{\n  daily\n  rotate 7\n}}\n").as_bytes(),
        );
        write(
            &etc,
            "systemd/system/unrelated.service",
            b"[Service]\nWorkingDirectory=/opt/other\nExecStart=/opt/other/run\n",
        );
        Server {
            _tmp: tmp,
            root,
            etc,
            dest,
        }
    }

    fn r(&self) -> String {
        self.root.display().to_string()
    }

    fn refs(&self, extra: &[&str]) -> (i32, Value) {
        let (root, etc) = (self.r(), self.etc.display().to_string());
        let mut args = vec!["--json", "--root", &root, "refs", "--etc", &etc];
        args.extend_from_slice(extra);
        let (code, out, err) = datamig(&args);
        assert!(code == 0 || code == 1, "exit {code}: {err}");
        (code, json_of(&out))
    }

    fn archive(&self, date: &str, extra: &[&str]) -> (i32, Value, String) {
        let (root, etc, dest) = (
            self.r(),
            self.etc.display().to_string(),
            self.dest.display().to_string(),
        );
        let mut args = vec![
            "--json",
            "--root",
            &root,
            "archive",
            "production",
            "--remove-source",
            "--etc",
            &etc,
            "--dest",
            &dest,
            "--date",
            date,
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = datamig(&args);
        assert!(code == 0 || code == 1, "exit {code}: {err}");
        (code, json_of(&out), err)
    }

    fn rewrite(&self, rel: &str, text: String) {
        fs::write(self.etc.join(rel), text).unwrap();
    }
}

/// (file relative to its place, kind, owner, directive) of every hit.
fn hits(report: &Value, s: &Server) -> Vec<(String, String, String, String)> {
    let strip = |f: &str| {
        for base in [&s.etc, &s.root] {
            if let Ok(rel) = Path::new(f).strip_prefix(base) {
                return rel.display().to_string();
            }
        }
        f.to_string()
    };
    let str_of = |v: &Value| v.as_str().unwrap_or("").to_string();
    report["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                strip(h["file"].as_str().unwrap()),
                str_of(&h["kind"]),
                str_of(&h["owner"]),
                str_of(&h["directive"]),
            )
        })
        .collect()
}

fn row(file: &str, kind: &str, owner: &str, directive: &str) -> (String, String, String, String) {
    (file.into(), kind.into(), owner.into(), directive.into())
}

#[test]
fn issue_16_refs_finds_the_six_references_and_not_the_consolidated_root() {
    let s = Server::new();
    let (code, r) = s.refs(&[]);
    assert_eq!(code, 1, "references found: exit 1");
    assert_eq!(r["report"], "refs");
    assert_eq!(r["version"], 1);
    let want = vec![
        row(CRONTAB, "cron", "crontab: 30 2 * * *", ""),
        row("logrotate.d/hacs", "logrotate", "hacs", ""),
        row(
            "nginx/sites-enabled/coordination",
            "web",
            "coordination",
            "alias",
        ),
        row(UNIT, "service", "hacs.service", "WorkingDirectory="),
        row(DROP_IN, "service", "hacs.service", "Environment=DATA_PATH="),
        row("v2-production/config.js", "code", "v2-production", ""),
    ];
    let mut got = hits(&r, &s);
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "{r}");
    let all = r["hits"].to_string();
    assert!(
        !all.contains("V2_DATA_ROOT"),
        "the consolidated root is not a reference: {all}"
    );
    assert!(!all.contains("unrelated"), "{all}");
    let nginx = r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "web")
        .unwrap();
    assert_eq!(nginx["target"], "v2-dev-data");
    assert_eq!(nginx["line"], 4);
    assert!(
        nginx["text"].as_str().unwrap().starts_with("alias "),
        "{nginx}"
    );
    let bin: Vec<&str> = r["skipped_binary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(bin.len(), 1, "{bin:?}");
    assert!(bin[0].ends_with("v2-production/bin/indexer"), "{bin:?}");
    assert_eq!(r["targets"][0]["target"], "production");
    assert_eq!(r["targets"][1]["target"], "v2-dev-data");
}

#[test]
fn issue_16_after_the_unit_is_changed_refs_production_reports_the_rest() {
    let s = Server::new();
    let r = s.r();
    s.rewrite(
        UNIT,
        format!("[Service]\nWorkingDirectory={r}/\nExecStart=/usr/bin/node v2.js\n"),
    );
    let (code, rep) = s.refs(&["production"]);
    assert_eq!(code, 1);
    let mut got = hits(&rep, &s);
    got.sort();
    let mut want = vec![
        row(CRONTAB, "cron", "crontab: 30 2 * * *", ""),
        row("logrotate.d/hacs", "logrotate", "hacs", ""),
        row(DROP_IN, "service", "hacs.service", "Environment=DATA_PATH="),
        row("v2-production/config.js", "code", "v2-production", ""),
    ];
    want.sort();
    assert_eq!(got, want, "{rep}");
    assert!(
        rep["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["target"] == "production")
    );
}

#[test]
fn issue_16_a_clean_server_exits_0_and_says_so() {
    let s = Server::new();
    let empty = s._tmp.path().join("empty-etc");
    fs::create_dir_all(&empty).unwrap();
    fs::remove_dir_all(s.root.join("v2-production")).unwrap();
    let (root, etc) = (s.r(), empty.display().to_string());
    let (code, out, err) = datamig(["--root", &root, "refs", "--etc", &etc]);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains("Result: clean: nothing points at a retiring path."),
        "{text}"
    );
}

#[test]
fn issue_16_human_report_names_file_line_kind_and_owner() {
    let s = Server::new();
    let (root, etc) = (s.r(), s.etc.display().to_string());
    let (code, out, _) = datamig(["--root", &root, "refs", "--etc", &etc]);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 1);
    let unit = format!(
        "{}:5 [service] hacs.service WorkingDirectory=",
        s.etc.join(UNIT).display()
    );
    assert!(text.contains(&unit), "{text}");
    assert!(
        text.contains("Still pointing at a retiring path (6):"),
        "{text}"
    );
    assert!(text.contains("Skipped: binary (1):"), "{text}");
    assert!(
        text.contains("Result: 6 problems listed above (exit 1)."),
        "{text}"
    );
}

#[test]
fn issue_16_in_adds_a_place_and_a_relative_spelling_counts_beside_the_root() {
    let s = Server::new();
    let r = s.r();
    let extra = s._tmp.path().join("scripts");
    write(
        &extra,
        "health.sh",
        format!("cd {r}\ncat ./production/data/instances.json\n").as_bytes(),
    );
    write(&extra, "other.sh", b"cat production/data/instances.json\n");
    let extra_s = extra.display().to_string();
    let (_, rep) = s.refs(&["production", "--in", &extra_s]);
    let other: Vec<&Value> = rep["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "other")
        .collect();
    assert_eq!(other.len(), 1, "{rep}");
    assert!(other[0]["file"].as_str().unwrap().ends_with("health.sh"));
    assert_eq!(other[0]["line"], 2);
}

#[test]
fn issue_16_archive_remove_source_waits_for_the_unit_and_the_cron_line() {
    let s = Server::new();
    let (code, rep, _) = s.archive("20250101", &[]);
    assert_eq!(code, 1, "{rep}");
    assert!(rep["removed"].is_null(), "{rep}");
    let why = rep["remove_refused"].as_str().unwrap();
    assert!(
        why.contains("hacs.service") && why.contains("crontab: 30 2 * * *"),
        "{why}"
    );
    assert!(why.contains("--ignore-refs"), "{why}");
    assert!(s.root.join("production/data/instances.json").exists());
    assert_eq!(
        rep["refs"]["blocking"].as_array().unwrap().len(),
        3,
        "{rep}"
    );
    assert_eq!(rep["refs"]["ignored"], false);
    // The archive itself was written and verified; only removal waits.
    assert_eq!(rep["verify"], "passed");

    // The unit moves to the consolidated root, its drop-in and the cron line go.
    let r = s.r();
    s.rewrite(UNIT, format!("[Service]\nWorkingDirectory={r}/\n"));
    fs::remove_file(s.etc.join(DROP_IN)).unwrap();
    s.rewrite(CRONTAB, "SHELL=/bin/sh\n".into());
    let (code, rep, _) = s.archive("20250102", &[]);
    assert_eq!(code, 0, "{rep}");
    assert!(rep["remove_refused"].is_null(), "{rep}");
    assert!(
        !s.root.join("production").exists(),
        "production was removed"
    );
    // What does not run on its own (logrotate, code) only warns.
    let warn: Vec<&str> = rep["refs"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(warn, ["code", "logrotate"], "{rep}");
}

#[test]
fn issue_16_ignore_refs_removes_and_is_recorded() {
    let s = Server::new();
    let (root, etc, dest) = (
        s.r(),
        s.etc.display().to_string(),
        s.dest.display().to_string(),
    );
    let (code, out, err) = datamig([
        "--root",
        &root,
        "archive",
        "production",
        "--remove-source",
        "--ignore-refs",
        "--etc",
        &etc,
        "--dest",
        &dest,
        "--date",
        "20250101",
    ]);
    let text = String::from_utf8_lossy(&out);
    // An override that let removal past a failed gate is never "clean".
    assert_eq!(code, 1, "{text}{err}");
    assert!(
        text.contains("refs check FAILED: 3 service/timer/cron reference(s) point into production; removed anyway because of --ignore-refs"),
        "{text}"
    );
    assert!(
        text.contains("References (removal went ahead: --ignore-refs) (3):"),
        "{text}"
    );
    assert!(!s.root.join("production").exists());

    let s = Server::new();
    let (code, rep, _) = s.archive("20250101", &["--ignore-refs"]);
    assert_eq!(code, 1, "{rep}");
    assert_eq!(rep["refs"]["ignored"], true);
    assert_eq!(rep["overrides"][0]["flag"], "--ignore-refs");
    assert_eq!(rep["overrides"][0]["check"], "refs");
    assert_eq!(rep["refs"]["blocking"].as_array().unwrap().len(), 3);
    assert!(rep["removed"].is_object());
}

#[test]
fn issue_16_a_missing_etc_is_a_clear_error() {
    let s = Server::new();
    let root = s.r();
    let (code, _, err) = datamig(["--root", &root, "refs", "--etc", "/nonexistent/etc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--etc /nonexistent/etc is not a directory"),
        "{err}"
    );
}

#[test]
fn issue_16_a_unit_linked_in_from_the_retiring_tree_is_a_hit() {
    let s = Server::new();
    let target = s.root.join("production/hacs-worker.service");
    write(
        &s.root,
        "production/hacs-worker.service",
        b"[Service]\nExecStart=/bin/true\n",
    );
    std::os::unix::fs::symlink(&target, s.etc.join("systemd/system/hacs-worker.service")).unwrap();
    let (_, rep) = s.refs(&["production"]);
    let linked: Vec<&Value> = rep["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["directive"] == "symlink")
        .collect();
    assert_eq!(linked.len(), 1, "{rep}");
    assert_eq!(linked[0]["owner"], "hacs-worker.service");
    assert_eq!(linked[0]["kind"], "service");
    assert_eq!(linked[0]["line"], 0);
}

#[test]
fn issue_16_json_is_one_line() {
    let s = Server::new();
    let (root, etc) = (s.r(), s.etc.display().to_string());
    let (code, out, _) = datamig(["--root", &root, "--json", "-q", "refs", "--etc", &etc]);
    assert_eq!(code, 1);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.ends_with('\n'));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["hits"].as_array().unwrap().len(), 6);
}

/// Root reads everything, so the unreadable crontab spool is seen as nobody.
#[test]
fn issue_16_an_unreadable_place_is_listed_not_taken_as_clean() {
    let s = Server::new();
    let r = s.r();
    let spool = s.etc.join("var/spool/cron/crontabs");
    write(
        &spool,
        "bastion",
        format!("0 * * * * {r}/production/health.sh\n").as_bytes(),
    );
    common::chmod(&spool, 0o700);
    let etc = s.etc.display().to_string();
    let out = common::output_within(
        &mut common::cmd_as_nobody(["--root", &r, "--json", "refs", "--etc", &etc]),
        common::DEFAULT_DEADLINE,
    );
    assert_eq!(common::code(&out), 1);
    let rep = json_of(&out.stdout);
    let unreadable = rep["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{rep}");
    assert!(
        unreadable[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("var/spool/cron/crontabs")
    );
    assert!(
        unreadable[0]["note"]
            .as_str()
            .unwrap()
            .contains("run as root"),
        "{rep}"
    );
    // As root the same spool is read and its schedule line found.
    if common::is_root() {
        let (_, rep) = s.refs(&["production"]);
        let owners = rep["hits"].to_string();
        assert!(owners.contains("bastion: 0 * * * *"), "{owners}");
    }
}

/// The retiring paths and the checkouts come from the layout: another layout
/// gets its own answer from the same server.
#[test]
fn issue_16_another_layout_gets_its_own_answer() {
    let s = Server::new();
    let r = s.r();
    let layout = s._tmp.path().join("layout.toml");
    fs::write(
        &layout,
        "name = \"other\"\n\
         [[area]]\nname = \"apps\"\npath = \"apps\"\nkind = \"code\"\n\
         [[target]]\nname = \"legacy\"\nprefix = \"legacy\"\npaths = [\"v2-dev-data\"]\n\
         [[target]]\nname = \"live\"\nprefix = \"live\"\nlive = true\npaths = [\"production\"]\n",
    )
    .unwrap();
    write(
        &s.root,
        "apps/site/conf.env",
        format!("STATIC={r}/v2-dev-data/static\n").as_bytes(),
    );
    let (root, etc, l) = (
        r.clone(),
        s.etc.display().to_string(),
        layout.display().to_string(),
    );
    let (code, out, err) = datamig([
        "--root", &root, "--layout", &l, "--json", "refs", "--etc", &etc,
    ]);
    assert_eq!(code, 1, "{err}");
    let rep = json_of(&out);
    let mut got = hits(&rep, &s);
    got.sort();
    let mut want = vec![
        row("apps/site/conf.env", "code", "apps", "STATIC="),
        row(
            "nginx/sites-enabled/coordination",
            "web",
            "coordination",
            "alias",
        ),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "production is live in this layout, v2-production no checkout: {rep}"
    );
    assert!(
        rep["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["target"] == "legacy")
    );
}
