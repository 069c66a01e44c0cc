//! The three checks an operator runs before deleting anything: is the archive
//! intact, what changed since a manifest, did every legacy file migrate.

pub mod archive;
pub mod foreign;
pub mod many;
pub mod migration;
pub mod remote;
pub mod sealed;
pub mod tree;
