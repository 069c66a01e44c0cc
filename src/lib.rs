//! datamig: inventory, verify, archive, restore and back up a coordination
//! server's data root. The binary is a thin front door over these modules.

pub mod acl;
pub mod archive;
pub mod atomic;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod crypt;
pub mod entry;
pub mod frames;
pub mod fsx;
pub mod hashing;
pub mod layout;
pub mod manifest;
mod manifest_line;
pub mod progress;
pub mod refs;
pub mod remote;
pub mod render;
pub mod report;
pub mod restore;
pub mod scan;
pub mod signals;
pub mod suggest;
pub mod summary;
pub mod tarfmt;
pub mod verify;
pub mod workqueue;
