//! Telling an age file by its first line, without any key: what `backup`,
//! `list DIR` and `copy` ask of an encrypted archive and its manifest
//! sidecar on a host that holds only public keys (`verify --quick` without a
//! key is `verify::sealed`).

use std::io::Read;
use std::path::Path;

/// The first line of every age v1 file (binary, not armored).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Whether `path` is a regular file that begins like an age v1 file.
pub fn is_age_file(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let mut head = [0u8; AGE_MAGIC.len()];
    meta.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && head == AGE_MAGIC
}
