//! What every verb's report has in common. `cli` prints any of them the same
//! way (`--json` as one line, else the human text; `-q` and a clean run print
//! nothing) and turns `clean()` into the exit code, so those rules live in one
//! place instead of one copy per verb.

use std::io;

use serde::Serialize;

use crate::render::{self, Out};

pub trait Report: Serialize {
    /// Nothing to report: exit 0, and `-q` prints nothing at all.
    fn clean(&self) -> bool;
    /// The human report; with a quiet `Out`, only the cause, the problems and
    /// the result line.
    fn human(&self, w: &mut Out) -> io::Result<()>;
}

/// Each report keeps its own `clean()`; the trait only points at it and at
/// its renderer.
macro_rules! report {
    ($ty:ty, $clean:expr, $render:path) => {
        impl Report for $ty {
            fn clean(&self) -> bool {
                let clean: fn(&$ty) -> bool = $clean;
                clean(self)
            }
            fn human(&self, w: &mut Out) -> io::Result<()> {
                $render(w, self)
            }
        }
    };
}

report!(
    crate::summary::Summary,
    |s| s.problems == 0,
    render::inventory
);
report!(
    crate::commands::archive::ArchiveReport,
    |r| r.clean(),
    render::archive
);
report!(
    crate::commands::retire::RetireReport,
    |r| r.clean(),
    render::retire
);
report!(
    crate::verify::archive::ArchiveVerifyReport,
    |r| r.clean(),
    render::verify_archive
);
report!(crate::verify::tree::TreeReport, |r| r.clean(), render::tree);
report!(
    crate::verify::migration::MigrationReport,
    |r| r.clean(),
    render::migration
);
report!(
    crate::restore::RestoreReport,
    |r| r.clean(),
    render::restore
);
report!(
    crate::commands::list::ListReport,
    |r| r.clean(),
    render::members
);
report!(
    crate::commands::backup::BackupReport,
    |r| r.clean(),
    render::backup
);
report!(
    crate::commands::list_dir::ArchivesReport,
    |r| r.clean(),
    render::archives
);
report!(
    crate::verify::many::ManyReport,
    |r| r.exit == 0,
    render::verify_archives
);
report!(
    crate::commands::copy::CopyReport,
    |r| r.clean(),
    render::copy
);
report!(
    crate::commands::remote_list::LocationReport,
    |r| r.clean(),
    render::location
);
report!(crate::refs::RefsReport, |r| r.clean(), render::refs);
