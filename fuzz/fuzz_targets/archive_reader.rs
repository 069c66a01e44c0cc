//! Arbitrary bytes as (1) an uncompressed tar stream for `TarReader` and (2) an
//! archive file for `check_archive` and `verify_archive`. All must return Ok or
//! Err, never panic, with bounded memory (libFuzzer's -rss_limit_mb).
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use datamig::progress::Silent;
use datamig::tarfmt::TarReader;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("input.tar.zst");
        (d, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    // (1) the raw tar reader
    let mut r = TarReader::new(data);
    // Every member consumes at least one 512-byte block, so this is bounded;
    // the cap only guards against a reader that stops advancing.
    for _ in 0..=data.len() / 512 + 2 {
        match r.next_member() {
            Ok(Some(found)) => {
                if r.read_data(&found.header, |_, _| Ok(())).is_err() {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }

    // (2) the archive checker and verifier, on a file
    let path = scratch();
    {
        let mut f = std::fs::File::create(path).expect("create scratch file");
        f.write_all(data).expect("write scratch file");
    }
    let _ = datamig::archive::check::check_archive(path, &[], 1, &Silent);
    let _ = datamig::verify::archive::verify_archive(path, false, 1, &Silent);
});
