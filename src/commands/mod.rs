//! One module per subcommand; each takes typed options and returns a report.

pub mod inventory;
