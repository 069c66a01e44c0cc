//! Issue 10, finding 8: a kill at any instant of the archive commit never
//! wedges the tool. A real SIGKILL is injected by strace at the Nth
//! `renameat2` (the commit's renames: `.sha256`, manifest, archive), then the
//! same command runs again and must succeed by itself; files that merely look
//! like a dead run's sidecars are never deleted.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{prng_bytes, write};

const DATE: &str = "20251225";
const NAME: &str = "big-20251225.tar.zst";

fn root_with_data(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    write(&root.join("big"), "a.bin", &prng_bytes(1, 300 << 10));
    write(&root.join("big"), "sub/b.txt", b"bravo\n");
    write(&root.join("big"), "sub/c.json", b"{\"c\":1}\n");
    root
}

fn archive_args(root: &Path, dest: &Path) -> Vec<OsString> {
    [
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("archive"),
        OsStr::new("big"),
        OsStr::new("--dest"),
        dest.as_os_str(),
        OsStr::new("--date"),
        OsStr::new(DATE),
        OsStr::new("-q"),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn trio() -> Vec<String> {
    let mut v = vec![
        NAME.to_string(),
        format!("{NAME}.manifest.jsonl"),
        format!("{NAME}.sha256"),
    ];
    v.sort();
    v
}

/// Run the archive under strace, SIGKILLed on entry to its `n`th renameat2.
fn archive_killed_at_rename(root: &Path, dest: &Path, n: u32) {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject=renameat2:signal=SIGKILL:when={n}"))
        .arg(common::BIN)
        .args(archive_args(root, dest))
        .env_remove("V2_DATA_ROOT");
    let o = common::output_within(&mut c, Duration::from_secs(120));
    assert!(
        !o.status.success(),
        "rename {n}: the run was not killed; stderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !dest.join(NAME).exists(),
        "rename {n}: the archive reached its final name although its rename was killed"
    );
}

/// The same archive command again: exit 0, exactly the archive and its two
/// sidecars, `datamig verify` and `sha256sum -c` pass.
fn rerun_recovers(root: &Path, dest: &Path, what: &str) -> String {
    let (code, _, err) = common::datamig(archive_args(root, dest));
    assert_eq!(
        code, 0,
        "{what}: the next run did not recover; stderr:\n{err}"
    );
    assert_eq!(names(dest), trio(), "{what}: leftovers in dest");
    let (code, out, verr) = common::datamig([
        OsStr::new("verify"),
        dest.join(NAME).as_os_str(),
        OsStr::new("-q"),
    ]);
    assert_eq!(
        code,
        0,
        "{what}: verify failed:\n{}\n{verr}",
        String::from_utf8_lossy(&out)
    );
    let o = Command::new("sha256sum")
        .args(["-c", &format!("{NAME}.sha256")])
        .current_dir(dest)
        .output()
        .expect("run sha256sum");
    assert!(o.status.success(), "{what}: sha256sum -c failed");
    err
}

#[test]
fn finding_8_sigkill_at_each_commit_rename_recovers() {
    common::require_tool("strace");
    let t = common::tempdir();
    let root = root_with_data(t.path());
    // What each kill leaves under final names (the renames go .sha256,
    // manifest, archive).
    let finals_after_kill: [&[&str]; 3] = [&[], &[".sha256"], &[".manifest.jsonl", ".sha256"]];
    for (i, n) in (1..=3).enumerate() {
        let dest = t.path().join(format!("out{n}"));
        archive_killed_at_rename(&root, &dest, n);
        let left = names(&dest);
        let finals: Vec<&String> = left.iter().filter(|s| !s.starts_with('.')).collect();
        let want: Vec<String> = finals_after_kill[i]
            .iter()
            .map(|s| format!("{NAME}{s}"))
            .collect();
        assert_eq!(
            finals.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            want.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "kill at rename {n}: unexpected final names in {left:?}"
        );
        assert!(
            left.iter()
                .any(|s| s.starts_with(&format!(".{NAME}.datamig-tmp-"))),
            "kill at rename {n}: the complete temporary archive is gone: {left:?}"
        );
        let err = rerun_recovers(&root, &dest, &format!("kill at rename {n}"));
        if n > 1 {
            assert!(
                err.contains("without its archive by a datamig run that was killed"),
                "kill at rename {n}: the orphan sidecars were not named; stderr:\n{err}"
            );
        }
    }
}

/// The state an older datamig left (manifest renamed first, then killed):
/// the final manifest, the temporary .sha256 and archive of a dead run.
#[test]
fn finding_8_manifest_renamed_first_by_an_older_run_recovers() {
    common::require_tool("strace");
    let t = common::tempdir();
    let root = root_with_data(t.path());
    let dest = t.path().join("out");
    archive_killed_at_rename(&root, &dest, 1);
    let tmp_manifest = names(&dest)
        .into_iter()
        .find(|s| s.starts_with(&format!(".{NAME}.manifest.jsonl.datamig-tmp-")))
        .expect("temporary manifest");
    fs::rename(
        dest.join(&tmp_manifest),
        dest.join(format!("{NAME}.manifest.jsonl")),
    )
    .unwrap();
    rerun_recovers(&root, &dest, "manifest renamed first");
}

/// A PID that is certainly not running now.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// File names with their bytes.
type Files = Vec<(String, Vec<u8>)>;

fn read_all(dest: &Path) -> Files {
    names(dest)
        .into_iter()
        .map(|n| {
            let b = fs::read(dest.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

#[test]
fn finding_8_files_that_only_look_like_a_dead_runs_sidecars_are_kept() {
    let t = common::tempdir();
    let root = root_with_data(t.path());
    let good = t.path().join("good");
    let (code, _, err) = common::datamig(archive_args(&root, &good));
    assert_eq!(code, 0, "{err}");
    let archive_bytes = fs::read(good.join(NAME)).unwrap();
    let sha_line = fs::read(good.join(format!("{NAME}.sha256"))).unwrap();
    let manifest = fs::read(good.join(format!("{NAME}.manifest.jsonl"))).unwrap();
    let dead_tmp = format!(".{NAME}.datamig-tmp-{}-7", dead_pid());

    // 1. The archive is present: its sidecars (and a user's look-alike) are
    //    never touched, even beside a dead run's temporary archive.
    let dest = t.path().join("present");
    fs::create_dir(&dest).unwrap();
    for n in trio() {
        fs::copy(good.join(&n), dest.join(&n)).unwrap();
    }
    fs::write(dest.join(&dead_tmp), &archive_bytes).unwrap();
    let before: Vec<_> = read_all(&dest)
        .into_iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    let (code, _, err) = common::datamig(archive_args(&root, &dest));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(read_all(&dest), before, "a present archive's files changed");

    // 2. A user's .sha256 naming another hash beside a dead run's archive.
    // 3. A user's manifest alone (no .sha256) beside a dead run's archive.
    // 4. A matching .sha256 but a manifest sidecar that is not the one inside.
    let mut other_manifest = manifest.clone();
    other_manifest.extend_from_slice(b"\n");
    let cases: [(&str, Files); 3] = [
        (
            "foreign .sha256",
            vec![(
                format!("{NAME}.sha256"),
                sha_line
                    .iter()
                    .map(|b| if *b == b'0' { b'1' } else { *b })
                    .collect(),
            )],
        ),
        (
            "lone manifest",
            vec![(format!("{NAME}.manifest.jsonl"), manifest.clone())],
        ),
        (
            "manifest not the archive's",
            vec![
                (format!("{NAME}.sha256"), sha_line.clone()),
                (format!("{NAME}.manifest.jsonl"), other_manifest),
            ],
        ),
    ];
    for (what, files) in cases {
        let dest = t.path().join(what.replace(' ', "-"));
        fs::create_dir(&dest).unwrap();
        for (n, b) in &files {
            fs::write(dest.join(n), b).unwrap();
        }
        fs::write(dest.join(&dead_tmp), &archive_bytes).unwrap();
        let (code, _, err) = common::datamig(archive_args(&root, &dest));
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains("already exists"), "{what}: {err}");
        assert!(
            err.contains("without its archive"),
            "{what}: the message does not say the archive is missing: {err}"
        );
        for (n, b) in &files {
            assert_eq!(
                fs::read(dest.join(n)).ok().as_ref(),
                Some(b),
                "{what}: {n} was changed or deleted"
            );
        }
        assert!(
            !dest.join(NAME).exists(),
            "{what}: an archive was put in place"
        );
    }
    // The untouched good archive still verifies.
    let (code, _, _) = common::datamig([
        OsStr::new("verify"),
        good.join(NAME).as_os_str(),
        OsStr::new("-q"),
    ]);
    assert_eq!(code, 0);
}
