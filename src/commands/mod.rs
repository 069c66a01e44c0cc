//! One module per subcommand; each takes typed options and returns a report.

pub mod archive;
pub mod backup;
pub mod copy;
pub mod inventory;
pub mod list;
pub mod list_dir;
pub mod remote_list;
pub mod retire;
