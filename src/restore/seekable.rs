//! PATH restores of a foreign `.tar.zst` that carries the standard seek table
//! (t2sz, pyzstd's `SeekableZstdFile`, another tool's seekable writer) but no
//! datamig manifest. Without recorded member offsets the members are found by
//! walking the tar headers, but a member's data is jumped over through the
//! seek table (its next header lies at the data start plus the padded size),
//! so only frames holding headers or wanted data are fetched and decoded.

use std::fs;

use anyhow::{Result, bail};

use super::{Ctx, member};
use crate::frames::seek_table::{SeekStream, SeekTable};
use crate::layout::is_under;
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::tarfmt::TarReader;

/// Why a file's seek table cannot locate members for a PATH restore.
#[derive(Debug)]
pub(super) enum NoTable {
    Absent,
    /// The listed frames do not exactly fill the file before the table.
    Mismatch,
    /// Malformed, unreadable, or frames too large to decode.
    Unusable(String),
}

impl std::fmt::Display for NoTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoTable::Absent => write!(f, "it has no manifest and no seek table"),
            NoTable::Mismatch => write!(f, "its seek table does not match the file"),
            NoTable::Unusable(why) => write!(f, "its seek table is unusable: {why}"),
        }
    }
}

/// The seek table of `file` when it can locate members for a PATH restore;
/// otherwise why not (the caller then refuses the PATH restore as before).
pub(super) fn usable_table(file: &fs::File) -> Result<SeekTable, NoTable> {
    let unusable = |e: anyhow::Error| NoTable::Unusable(format!("{e:#}"));
    let mut f = file;
    let t = SeekTable::read(&mut f)
        .map_err(unusable)?
        .ok_or(NoTable::Absent)?;
    if !t.covers_file() {
        return Err(NoTable::Mismatch);
    }
    // Frames too large to decode are refused before DIR is touched.
    let clone = file.try_clone().map_err(|e| unusable(e.into()))?;
    SeekStream::new(clone, &t).map_err(unusable)?;
    Ok(t)
}

/// A member name as `member` restores it (`./x` is `x`).
fn normalized(path: &[u8]) -> &[u8] {
    let mut p = path;
    while let Some(rest) = p.strip_prefix(b"./") {
        p = rest;
    }
    p
}

/// Restore the members under `paths`, walking headers through the seek table.
pub(super) fn restore_paths(
    ctx: &mut Ctx,
    file: fs::File,
    table: &SeekTable,
    paths: &[String],
    progress: &dyn Progress,
) -> Result<()> {
    let want: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| normalized(p.trim_end_matches('/').as_bytes()).to_vec())
        .collect();
    let mut found_any = vec![false; want.len()];
    // The table itself was read to get here.
    ctx.report.archive_bytes_read += ctx.report.archive_size - table.table_offset;
    let mut tar = TarReader::new(SeekStream::new(file, table)?);
    // Stream offset where `tar` started reading (it counts from there).
    let mut base = 0u64;
    loop {
        let found = match tar.next_member() {
            Ok(Some(found)) => found,
            Ok(None) => break,
            Err(e) => {
                ctx.report.errors.push(PathNote {
                    path: ctx.report.archive.clone(),
                    note: format!("{e:#}; restore stopped there"),
                });
                break;
            }
        };
        let name = normalized(&found.header.path).to_vec();
        let hits: Vec<usize> = (0..want.len())
            .filter(|&i| is_under(&name, &want[i]))
            .collect();
        if hits.is_empty() {
            // Jump over the data: its frames are never fetched.
            base += tar.position() + tar.data_left();
            let mut stream = tar.into_inner();
            stream.seek_to(base);
            tar = TarReader::new(stream);
            continue;
        }
        for i in hits {
            found_any[i] = true;
        }
        let size = found.header.size;
        if let Err(e) = member::member(ctx, &mut tar, found) {
            ctx.report.errors.push(PathNote {
                path: String::from_utf8_lossy(&name).into_owned(),
                note: format!("{e:#}; restore stopped there"),
            });
            break;
        }
        progress.advance(1, size);
    }
    ctx.report.archive_bytes_read += tar.get_ref().read_bytes;
    for (w, hit) in want.iter().zip(found_any) {
        if !hit {
            ctx.report
                .missing
                .push(String::from_utf8_lossy(w).into_owned());
        }
    }
    Ok(())
}

/// Refuse what no member could be restored as, before DIR is touched.
pub(super) fn check_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        if let Some(why) = super::paths::refuse_name(p.trim_end_matches('/').as_bytes()) {
            bail!("{p:?} cannot be restored: {why}");
        }
    }
    Ok(())
}
