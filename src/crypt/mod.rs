//! Encryption at rest (issue 14): age recipients for the copies that leave
//! the machine.
//!
//! # Format (a contract: `age -d -i key.txt NAME.tar.zst.age | tar --zstd -x`)
//!
//! - `NAME.tar.zst.age` is the age v1 binary encryption of exactly the bytes
//!   the plain `NAME.tar.zst` would have (same frames, same seek table, same
//!   embedded manifest), so every offset in the manifest is a plaintext offset
//!   and one member is reached by seeking the age stream.
//! - `NAME.tar.zst.manifest.jsonl.age` is the age encryption of the manifest
//!   sidecar (file names are sensitive).
//! - `NAME.tar.zst.age.sha256` is `HASH  NAME.tar.zst.age` over the
//!   ciphertext, so `sha256sum -c` and `verify --quick` need no key.

pub mod identity;
pub mod opened;
pub mod source;

pub use identity::Identities;
pub use opened::Opened;
pub use source::{Decrypted, Sealed};

/// What an encrypted archive's name ends with, after the plain `.tar.zst`.
pub const AGE_SUFFIX: &str = ".age";

pub mod quick;
pub mod recipients;
pub mod writer;

pub use recipients::Recipients;

/// Whether an archive name is that of an encrypted archive.
pub fn is_encrypted(name: &str) -> bool {
    name.ends_with(AGE_SUFFIX)
}
