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

/// The seek table of `file` when it can locate members for a PATH restore;
/// otherwise why not (the caller then refuses the PATH restore as before).
pub(super) fn usable_table(file: &fs::File) -> Result<SeekTable, String> {
    let mut f = file;
    match SeekTable::read(&mut f) {
        // Frames too large to decode are refused before DIR is touched.
        Ok(Some(t)) if t.covers_file() => match file.try_clone() {
            Ok(clone) => SeekStream::new(clone, &t)
                .map(|_| t)
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        },
        Ok(Some(_)) => Err("its seek table does not match the file".into()),
        Ok(None) => Err("it has no manifest and no seek table".into()),
        Err(e) => Err(format!("its seek table is unusable: {e:#}")),
    }
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
            let next = tar.position() + tar.data_left();
            let mut stream = tar.into_inner();
            stream.seek_to(next);
            tar = TarReader::at(stream, next);
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
