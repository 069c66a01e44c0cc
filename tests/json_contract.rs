//! Issue 12 items 3, 13 and 14: `--json` is one compact line for every
//! subcommand (also when the run cannot start), `--json` with a non-summary
//! `--format` is refused, typos in archive targets get a suggestion, and the
//! completion scripts and man page are generated.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{os, small_tree, write};
use serde_json::Value;

const DATE: &str = "20260102";

/// A small data root: `production/` (a plain tree) and a few V2 areas, so
/// archive, backup and the migration check all have something to do.
fn data_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    small_tree(&root.join("production"));
    write(&root, "instances/a/preferences.json", b"{\"name\":\"a\"}\n");
    write(&root, "projects/p/project.json", b"{\"id\":\"p\"}\n");
    write(&root, "wisdom.md", b"be kind\n");
    root
}

/// `datamig ARGS`: (exit code, stdout, stderr).
fn run<S: AsRef<OsStr>>(args: &[S]) -> (i32, Vec<u8>, String) {
    common::datamig(args)
}

/// The contract: stdout is exactly one line of JSON, ending in one newline,
/// carrying "report" (as expected) and "version". Returns the object.
fn one_json_line(what: &str, out: &[u8], err: &str, report: &str) -> Value {
    let text = String::from_utf8_lossy(out);
    assert!(
        text.ends_with('\n') && !text.ends_with("\n\n"),
        "{what}: stdout must end in exactly one newline:\n{text}\nstderr:\n{err}"
    );
    assert_eq!(
        text.matches('\n').count(),
        1,
        "{what}: stdout must be one line:\n{text}\nstderr:\n{err}"
    );
    let v: Value = serde_json::from_str(text.trim_end())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{text}"));
    assert_eq!(v["report"], report, "{what}: {v}");
    assert_eq!(v["version"], 1, "{what}: {v}");
    v
}

fn s(p: &Path) -> &OsStr {
    p.as_os_str()
}

#[test]
fn item_3_every_subcommand_prints_one_json_line() {
    let t = common::tempdir();
    let root = data_root(t.path());
    let dest = t.path().join("archives");
    let archive = dest.join(format!("v1-production-{DATE}.tar.zst"));
    let manifest = t.path().join("production.jsonl");

    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"--json"),
        os(b"inventory"),
    ]);
    assert!(code <= 1, "inventory exit {code}: {err}");
    one_json_line("inventory", &out, &err, "inventory");

    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"-q"),
        os(b"--json"),
        os(b"inventory"),
        os(b"production"),
        os(b"-o"),
        s(&manifest).into(),
    ]);
    assert!(code <= 1, "inventory -o exit {code}: {err}");
    one_json_line("inventory -o", &out, &err, "inventory");

    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"-q"),
        os(b"--json"),
        os(b"archive"),
        os(b"production"),
        os(b"--dest"),
        s(&dest).into(),
        os(b"--date"),
        os(DATE.as_bytes()),
    ]);
    assert_eq!(code, 0, "archive: {err}");
    one_json_line("archive", &out, &err, "archive");
    assert!(archive.is_file(), "no archive at {}", archive.display());

    let (code, out, err) = run(&[os(b"-q"), os(b"--json"), os(b"verify"), s(&archive).into()]);
    assert_eq!(code, 0, "verify archive: {err}");
    one_json_line("verify ARCHIVE", &out, &err, "verify-archive");

    let (code, out, err) = run(&[
        os(b"-q"),
        os(b"--json"),
        os(b"verify"),
        s(&manifest).into(),
        os(b"--tree"),
        s(&root).into(),
    ]);
    assert!(code <= 1, "verify --tree exit {code}: {err}");
    one_json_line("verify --tree", &out, &err, "verify-tree");

    // The bundled fixture has the legacy directories the migration check needs.
    let (code, out, err) = run(&[
        os(b"--root"),
        common::fixture_root().into(),
        os(b"-q"),
        os(b"--json"),
        os(b"verify"),
        os(b"--migration"),
    ]);
    assert!(code <= 1, "verify --migration exit {code}: {err}");
    one_json_line("verify --migration", &out, &err, "verify-migration");

    let to = t.path().join("restored");
    let (code, out, err) = run(&[
        os(b"-q"),
        os(b"--json"),
        os(b"restore"),
        s(&archive).into(),
        os(b"--to"),
        s(&to).into(),
    ]);
    assert_eq!(code, 0, "restore: {err}");
    one_json_line("restore", &out, &err, "restore");

    let (code, out, err) = run(&[os(b"--json"), os(b"list"), s(&archive).into()]);
    assert_eq!(code, 0, "list: {err}");
    one_json_line("list", &out, &err, "list");

    // Many archives (issue 12 item 11): the directory listing and the joint check.
    let (code, out, err) = run(&[os(b"--json"), os(b"list"), s(&dest).into()]);
    assert_eq!(code, 0, "list DIR: {err}");
    one_json_line("list DIR", &out, &err, "list-archives");
    let (code, out, err) = run(&[
        os(b"-q"),
        os(b"--json"),
        os(b"verify"),
        os(b"--all"),
        s(&dest).into(),
    ]);
    assert_eq!(code, 0, "verify --all: {err}");
    one_json_line("verify --all DIR", &out, &err, "verify-archives");

    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"-q"),
        os(b"--json"),
        os(b"backup"),
        os(b"--dest"),
        s(&t.path().join("backups")).into(),
        os(b"--now"),
        os(b"2026-01-02T02:00:00Z"),
    ]);
    assert!(code <= 1, "backup exit {code}: {err}");
    one_json_line("backup", &out, &err, "backup");

    let (code, out, err) = run(&[os(b"--json"), os(b"layout")]);
    assert_eq!(code, 0, "layout: {err}");
    let v = one_json_line("layout", &out, &err, "layout");
    assert!(v["layout"]["target"].is_array(), "{v}");
}

/// The error object of a run that cannot start; the human message stays on stderr.
fn error_object(what: &str, args: &[&OsStr], report: &str) -> (Value, String) {
    let (code, out, err) = run(args);
    assert_eq!(code, 2, "{what}: exit {code}\nstderr:\n{err}");
    let v = one_json_line(what, &out, &err, report);
    assert_eq!(v["exit"], 2, "{what}: {v}");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!msg.is_empty(), "{what}: no error.message in {v}");
    assert!(!err.trim().is_empty(), "{what}: nothing on stderr");
    (v, msg)
}

#[test]
fn item_3_a_run_that_cannot_start_prints_the_error_object() {
    let t = common::tempdir();
    let missing = t.path().join("no-such-root");
    let (_, msg) = error_object(
        "inventory of a missing root",
        &[
            OsStr::new("--root"),
            s(&missing),
            OsStr::new("--json"),
            OsStr::new("inventory"),
        ],
        "inventory",
    );
    assert!(msg.contains("no-such-root"), "{msg}");

    let (_, msg) = error_object(
        "verify of a missing archive",
        &[
            OsStr::new("--json"),
            OsStr::new("verify"),
            s(&t.path().join("gone.tar.zst")),
        ],
        "verify-archive",
    );
    assert!(msg.contains("gone.tar.zst"), "{msg}");

    error_object(
        "verify --tree without its manifest",
        &[
            OsStr::new("--json"),
            OsStr::new("verify"),
            OsStr::new("--tree"),
            s(t.path()),
        ],
        "verify-tree",
    );

    // clap refuses the command line itself: the object still comes.
    let (_, msg) = error_object(
        "unknown flag",
        &[
            OsStr::new("--json"),
            OsStr::new("backup"),
            OsStr::new("--no-such-flag"),
        ],
        "backup",
    );
    assert!(msg.contains("--no-such-flag"), "{msg}");
}

#[test]
fn item_3_json_with_a_non_summary_format_is_refused() {
    let root = common::fixture_root();
    for format in ["sha256sum", "files0"] {
        let (v, msg) = error_object(
            &format!("--json --format {format}"),
            &[
                OsStr::new("--root"),
                s(&root),
                OsStr::new("--json"),
                OsStr::new("inventory"),
                OsStr::new("--format"),
                OsStr::new(format),
            ],
            "inventory",
        );
        assert!(
            msg.contains("--json") && msg.contains(format),
            "the message must name both flags: {v}"
        );
    }
    // Without --json the format still works.
    let (code, out, err) = run(&[
        OsStr::new("--root"),
        s(&root),
        OsStr::new("-q"),
        OsStr::new("inventory"),
        OsStr::new("--format"),
        OsStr::new("files0"),
    ]);
    assert!(code <= 1, "files0 exit {code}: {err}");
    assert!(out.contains(&0), "files0 output has no NUL");
}

#[test]
fn item_13_a_misspelt_archive_target_suggests_the_right_one() {
    let t = common::tempdir();
    let root = data_root(t.path());
    let dest = t.path().join("archives");
    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"archive"),
        os(b"prodution"),
        os(b"--dest"),
        s(&dest).into(),
    ]);
    assert_eq!(code, 2, "stderr:\n{err}");
    assert!(
        out.is_empty(),
        "stdout without --json: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        err.contains("did you mean \"production\""),
        "stderr:\n{err}"
    );
    for target in ["production", "v2-dev-data", "v2"] {
        assert!(err.contains(target), "stderr must list {target}:\n{err}");
    }
    assert!(!dest.exists(), "dest created for a refused run");
}

#[test]
fn item_13_inventory_accepts_an_archive_target_name() {
    let t = common::tempdir();
    let root = data_root(t.path());
    let (code, out, err) = run(&[
        os(b"--root"),
        s(&root).into(),
        os(b"-q"),
        os(b"inventory"),
        os(b"v2"),
        os(b"--format"),
        os(b"files0"),
    ]);
    assert!(code <= 1, "inventory v2 exit {code}: {err}");
    let files: Vec<&[u8]> = out.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    for want in [
        &b"instances/a/preferences.json"[..],
        b"projects/p/project.json",
        b"wisdom.md",
    ] {
        assert!(
            files.contains(&want),
            "{} missing: {files:?}",
            common::show(want)
        );
    }
    assert!(
        !files.iter().any(|p| p.starts_with(b"production/")),
        "production/ is not in the v2 target: {files:?}"
    );
}

#[test]
fn item_13_level_shows_its_range_and_refuses_outside_it() {
    for verb in ["archive", "backup"] {
        let (code, out, err) = run(&[verb, "--help"]);
        assert_eq!(code, 0, "{err}");
        let help = String::from_utf8_lossy(&out);
        let line = help
            .lines()
            .find(|l| l.contains("--level"))
            .unwrap_or_else(|| panic!("no --level in `{verb} --help`:\n{help}"));
        assert!(line.contains('1') && line.contains("19"), "{verb}: {line}");
    }
    let (code, _, err) = run(&["archive", "production", "--level", "25"]);
    assert_eq!(code, 2);
    assert!(err.contains("1..=19"), "stderr:\n{err}");
}

#[test]
fn item_14_bash_completions_pass_bash_n() {
    let bash = common::require_tool("bash");
    let (code, out, err) = run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("datamig"));
    let t = common::tempdir();
    let script = t.path().join("datamig.bash");
    std::fs::write(&script, &out).unwrap();
    let o = std::process::Command::new(bash)
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bash -n rejects the script: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn item_14_zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        let text = String::from_utf8_lossy(&out);
        for word in ["datamig", "inventory", "backup", "restore"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let (code, _, err) = run(&["completions", "tcsh-ish"]);
    assert_eq!(code, 2, "an unknown shell is refused: {err}");
}

#[test]
fn item_14_man_page_is_roff_with_a_title_and_every_subcommand() {
    let (code, out, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    // clap_mangen puts a two-line quote-macro preamble before the title.
    assert!(
        text.lines().take(5).any(|l| l.starts_with(".TH datamig 1")),
        "no .TH title near the top:\n{}",
        &text[..text.len().min(400)]
    );
    for word in [
        "inventory",
        "archive",
        "verify",
        "restore",
        "backup",
        "Exit codes",
    ] {
        assert!(text.contains(word), "man page lacks {word}");
    }
}

#[test]
fn item_14_json_does_not_apply_to_completions() {
    let (code, out, err) = run(&["--json", "completions", "bash"]);
    assert_eq!(code, 2, "{err}");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["report"], "completions");
    assert_eq!(v["exit"], 2);
}
