//! Human-readable rendering of reports. The only place that formats text for
//! the operator; `--json` output is the report structs serialized as-is.

use std::io::{self, Write};

use crate::entry::{Entry, Kind};
use crate::scan::problem;
use crate::summary::Summary;

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn list<T>(
    w: &mut dyn Write,
    title: &str,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> io::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(w, "\n{title} ({}):", items.len())?;
    for i in items {
        writeln!(w, "  {}", line(i))?;
    }
    Ok(())
}

pub fn inventory(w: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(w, "datamig inventory of {} (layout {})\n", s.root, s.layout)?;
    writeln!(
        w,
        "{:<28} {:<11} {:>8} {:>6} {:>11}  NEWEST",
        "AREA", "KIND", "FILES", "DIRS", "BYTES"
    )?;
    for a in &s.areas {
        writeln!(
            w,
            "{:<28} {:<11} {:>8} {:>6} {:>11}  {}",
            a.name,
            a.kind,
            a.counts.files,
            a.counts.dirs,
            human_bytes(a.counts.bytes),
            a.newest.as_deref().unwrap_or("-")
        )?;
    }
    let t = &s.totals;
    writeln!(
        w,
        "{:<28} {:<11} {:>8} {:>6} {:>11}",
        "total",
        "",
        t.files,
        t.dirs,
        human_bytes(t.bytes)
    )?;
    if t.symlinks + t.hardlinks + t.special > 0 {
        writeln!(
            w,
            "  plus {} symlinks, {} hard links, {} special files",
            t.symlinks, t.hardlinks, t.special
        )?;
    }

    if !s.entities.is_empty() {
        writeln!(w, "\nEntities:")?;
        for e in &s.entities {
            let bad = e.missing_required.len();
            let note = if bad > 0 {
                format!(" ({bad} missing required files)")
            } else {
                String::new()
            };
            writeln!(w, "  {:<16} {:>5} × {}{note}", e.area, e.count, e.entity)?;
            for m in &e.missing_required {
                writeln!(
                    w,
                    "    {}/{}: missing {}",
                    e.area,
                    m.id,
                    m.missing.join(", ")
                )?;
            }
        }
    }
    list(w, "JSON files that do not parse", &s.invalid_json, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w, "Unreadable", &s.unreadable, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(
        w,
        "Changed or vanished during the scan (run again when quiet)",
        &s.changed,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    list(
        w,
        "Secrets present: any archive or backup of these is sensitive",
        &s.secrets,
        |p| p.clone(),
    )?;
    list(
        w,
        "Symlinks pointing outside the root",
        &s.symlinks_outside_root,
        |n| format!("{} -> {}", n.path, n.note),
    )?;
    list(
        w,
        "Special files (recorded, never read or archived)",
        &s.special_files,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    writeln!(w)?;
    if s.reused > 0 {
        writeln!(
            w,
            "Hashed {} files, reused {} unchanged hashes from --since.",
            s.hashed, s.reused
        )?;
    } else {
        writeln!(w, "Hashed {} files.", s.hashed)?;
    }
    if let Some(m) = &s.manifest {
        writeln!(w, "Manifest written to {m}")?;
    }
    if s.problems == 0 {
        writeln!(w, "Result: clean.")?;
    } else {
        writeln!(
            w,
            "Result: {} problem(s) listed above (exit 1).",
            s.problems
        )?;
    }
    Ok(())
}

pub fn archive(w: &mut dyn Write, r: &crate::commands::archive::ArchiveReport) -> io::Result<()> {
    writeln!(w, "datamig archive {} ({})", r.target, r.source)?;
    writeln!(w, "  archive   {}", r.archive)?;
    writeln!(w, "  manifest  {}", r.manifest)?;
    writeln!(w, "  sha256    {}  ({})", r.archive_sha256, r.sha256_file)?;
    let ratio = if r.compressed_bytes > 0 {
        r.tar_bytes as f64 / r.compressed_bytes as f64
    } else {
        0.0
    };
    writeln!(
        w,
        "  {} members, {} files, {} of file data -> {} compressed ({ratio:.2}x, {} frames) in {:.1}s",
        r.members,
        r.files,
        human_bytes(r.file_bytes),
        human_bytes(r.compressed_bytes),
        r.frames,
        r.seconds
    )?;
    for a in &r.absent {
        writeln!(
            w,
            "  note: {a} is part of the target but does not exist; nothing to archive there"
        )?;
    }
    list(w, "Flagged: not captured cleanly", &r.flagged, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w, "Notes", &r.notes, |n| format!("{}: {}", n.path, n.note))?;
    list(
        w,
        "Secrets included: keep this archive private (it is mode 0600)",
        &r.secrets,
        |p| p.clone(),
    )?;
    match r.verify {
        "passed" => writeln!(
            w,
            "\nVerify: passed, every member read back and matched its manifest entry."
        )?,
        "skipped" => writeln!(
            w,
            "\nVerify: skipped (--no-verify); run `datamig verify {}` before relying on it.",
            r.archive
        )?,
        _ => writeln!(w, "\nVerify: FAILED")?,
    }
    removal(
        w,
        &r.overrides,
        r.remove_refused.as_deref(),
        r.removed.as_ref(),
    )?;
    if r.clean() {
        writeln!(w, "Result: clean.")?;
    } else {
        writeln!(w, "Result: problems listed above (exit 1).")?;
    }
    Ok(())
}

/// The end of `--remove-source` and `retire`: checks a flag overrode (loud:
/// the run is not clean), then what was removed or why nothing was.
fn removal(
    w: &mut dyn Write,
    overrides: &[crate::archive::gates::Override],
    refused: Option<&str>,
    removed: Option<&crate::archive::remove::Removal>,
) -> io::Result<()> {
    let consequence = if removed.is_some() {
        "removed anyway because of"
    } else {
        "the source was kept for another reason, though overridden by"
    };
    list(w, "OVERRIDDEN checks (not clean)", overrides, |o| {
        format!("{}; {consequence} {}", o.what(), o.flag)
    })?;
    if let Some(why) = refused {
        writeln!(w, "Source NOT removed: {why}")?;
    }
    if let Some(rm) = removed {
        writeln!(
            w,
            "Source removed: {} files ({}), {} directories.",
            rm.files,
            human_bytes(rm.bytes),
            rm.dirs
        )?;
        list(w, "Kept (not removed)", &rm.kept, |n| {
            format!("{}: {}", n.path, n.note)
        })?;
    }
    Ok(())
}

pub fn retire(w: &mut dyn Write, r: &crate::commands::retire::RetireReport) -> io::Result<()> {
    writeln!(w, "datamig retire {}", r.archive)?;
    writeln!(w, "  source    {} ({})", r.target, r.source)?;
    let verify = if r.verify == "passed" {
        "passed, every member matched its manifest entry"
    } else {
        "FAILED"
    };
    writeln!(w, "  verify    {verify}")?;
    list(w, "Discrepancies", &r.discrepancies, |s| s.clone())?;
    if let Some(a) = &r.audit {
        writeln!(w, "  audit     {} entries match the archive", a.matched)?;
        notes(w, "Modified since archived", &a.modified)?;
        notes(w, "Metadata changed since archived", &a.metadata)?;
        list(w, "Missing since archived", &a.missing, |p| p.clone())?;
        list(w, "New since archived", &a.new, |p| p.clone())?;
        list(w, "Moved since archived", &a.moved, |m| {
            format!("{} -> {}", m.from, m.to)
        })?;
        notes(w, "Unreadable", &a.unreadable)?;
    }
    list(w, "Gates", &r.gates, |g| {
        format!("{}: {}, {}", g.check.name(), g.outcome.shout(), g.detail)
    })?;
    writeln!(w)?;
    removal(
        w,
        &r.overrides,
        r.remove_refused.as_deref(),
        r.removed.as_ref(),
    )?;
    if r.clean() {
        writeln!(w, "Result: clean; the archive stands in for the source.")
    } else {
        writeln!(w, "Result: problems listed above (exit 1).")
    }
}

/// GNU sha256sum lines (text mode), escaped as GNU does for `\` and newline.
pub fn sha256sum_lines(
    w: &mut dyn Write,
    entries: &[Entry],
    hash_of: impl Fn(&Entry) -> Option<[u8; 32]>,
) -> io::Result<()> {
    for e in entries {
        if !matches!(e.kind, Kind::File | Kind::Hardlink) {
            continue;
        }
        if e.problem
            .as_deref()
            .is_some_and(|p| !p.starts_with(problem::INVALID_JSON))
        {
            continue;
        }
        let Some(h) = hash_of(e) else { continue };
        w.write_all(&sha256sum_line(&h, &e.path))?;
    }
    Ok(())
}

pub fn sha256sum_line(h: &[u8; 32], path: &[u8]) -> Vec<u8> {
    let escape = path.iter().any(|&b| b == b'\\' || b == b'\n');
    let mut line = Vec::with_capacity(path.len() + 68);
    if escape {
        line.push(b'\\');
    }
    line.extend_from_slice(crate::entry::hex(h).as_bytes());
    line.extend_from_slice(b"  ");
    for &b in path {
        match b {
            b'\\' if escape => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

/// NUL-separated relative paths of regular files (hard-link paths included).
pub fn files0(w: &mut dyn Write, entries: &[Entry]) -> io::Result<()> {
    for e in entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Hardlink))
    {
        w.write_all(&e.path)?;
        w.write_all(b"\0")?;
    }
    Ok(())
}

fn notes(w: &mut dyn Write, title: &str, items: &[crate::summary::PathNote]) -> io::Result<()> {
    list(w, title, items, |n| format!("{}: {}", n.path, n.note))
}

pub fn verify_archive(
    w: &mut dyn Write,
    r: &crate::verify::archive::ArchiveVerifyReport,
) -> io::Result<()> {
    writeln!(
        w,
        "datamig verify {}{}",
        r.archive,
        if r.quick { " (quick)" } else { "" }
    )?;
    writeln!(w, "  checked against    {} manifest", r.checked_against)?;
    writeln!(w, "  embedded manifest  {}", r.embedded_manifest)?;
    writeln!(w, "  sidecar manifest   {}", r.sidecar_manifest)?;
    writeln!(w, "  sidecar .sha256    {}", r.sidecar_sha256)?;
    writeln!(w, "  archive sha256     {}", r.archive_sha256)?;
    if let Some(m) = &r.members {
        let total = m.ok + (m.mismatched.len() + m.missing.len() + m.damaged.len()) as u64;
        writeln!(w, "  members            {} ok of {total}", m.ok)?;
        notes(w, "Mismatched", &m.mismatched)?;
        notes(w, "Damaged (lost to a corrupt zstd frame)", &m.damaged)?;
        notes(w, "Missing", &m.missing)?;
        notes(w, "Unexpected", &m.unexpected)?;
        list(w, "Damaged frames", &m.damaged_frames, |s| s.clone())?;
        list(w, "Stream", &m.stream, |s| s.clone())?;
    }
    if let Some(c) = &r.foreign {
        writeln!(
            w,
            "  no manifest        the stream {}: {} members, {} zstd frame(s), {} compressed bytes",
            if c.complete {
                "decodes end to end"
            } else {
                "does NOT decode end to end"
            },
            c.members,
            c.frames,
            c.compressed_bytes
        )?;
        if let Some(p) = &c.problem {
            writeln!(w, "  stream             {p}")?;
        }
    }
    list(
        w,
        "Not captured cleanly (recorded in the manifest)",
        &r.flagged,
        |f| format!("{}: {}", f.path, f.note),
    )?;
    if r.clean() {
        writeln!(w, "\nResult: clean, every check passed.")
    } else {
        list(w, "Discrepancies", &r.discrepancies, |s| s.clone())?;
        writeln!(
            w,
            "\nResult: {} discrepancies (exit 1).",
            r.discrepancies.len()
        )
    }
}

pub fn tree(w: &mut dyn Write, r: &crate::verify::tree::TreeReport) -> io::Result<()> {
    writeln!(w, "datamig verify --tree {} against {}", r.tree, r.manifest)?;
    if r.fast {
        writeln!(
            w,
            "  (--fast: size and mtime only; content changes that keep both are not detected)"
        )?;
    }
    writeln!(w, "  matched {}", r.matched)?;
    notes(w, "Modified", &r.modified)?;
    notes(w, "Metadata changed", &r.metadata)?;
    list(w, "Missing", &r.missing, |p| p.clone())?;
    list(w, "New", &r.new, |p| p.clone())?;
    list(w, "Moved", &r.moved, |m| format!("{} -> {}", m.from, m.to))?;
    notes(w, "Unreadable", &r.unreadable)?;
    if r.clean() {
        writeln!(w, "\nResult: clean.")
    } else {
        writeln!(w, "\nResult: differences listed above (exit 1).")
    }
}

pub fn migration(
    w: &mut dyn Write,
    r: &crate::verify::migration::MigrationReport,
) -> io::Result<()> {
    writeln!(w, "datamig verify --migration ({})", r.root)?;
    writeln!(
        w,
        "  legacy files {}, migrated (identical) {}",
        r.legacy_files, r.migrated
    )?;
    list(
        w,
        "Not migrated (nothing at the consolidated place)",
        &r.not_migrated,
        |x| format!("{} -> {}", x.legacy, x.expected),
    )?;
    list(w, "Differs", &r.differs, |d| {
        format!(
            "{} ({} {}) vs {} ({} {}); newer: {}",
            d.legacy,
            d.legacy_sha256,
            d.legacy_mtime,
            d.consolidated,
            d.consolidated_sha256,
            d.consolidated_mtime,
            d.newer
        )
    })?;
    list(
        w,
        "Unmapped (no migration rule covers them)",
        &r.unmapped,
        |p| p.clone(),
    )?;
    notes(w, "Unreadable", &r.unreadable)?;
    let bad = r.not_migrated.len() + r.differs.len() + r.unmapped.len() + r.unreadable.len();
    if bad == 0 {
        writeln!(
            w,
            "\nResult: every legacy file has an identical consolidated copy."
        )
    } else {
        writeln!(
            w,
            "\nResult: {bad} legacy files are not safely migrated (exit 1)."
        )
    }
}

pub fn restore(w: &mut dyn Write, r: &crate::restore::RestoreReport) -> io::Result<()> {
    writeln!(w, "datamig restore {} -> {}", r.archive, r.to)?;
    writeln!(w, "  checked against {} manifest", r.manifest)?;
    writeln!(
        w,
        "  {} files ({}), {} directories, {} symlinks, {} hard links{} in {:.1}s",
        r.files,
        human_bytes(r.bytes),
        r.dirs,
        r.symlinks,
        r.hardlinks,
        if r.specials > 0 {
            format!(", {} FIFOs/devices", r.specials)
        } else {
            String::new()
        },
        r.seconds
    )?;
    writeln!(
        w,
        "  read {} of the {} archive",
        human_bytes(r.archive_bytes_read),
        human_bytes(r.archive_size)
    )?;
    notes(w, "Refused (not written; each with its reason)", &r.refused)?;
    notes(
        w,
        "Corrupt: content does not match the manifest, NOT restored",
        &r.corrupt,
    )?;
    list(
        w,
        "Restored without a manifest to check against",
        &r.unverified,
        |p| p.clone(),
    )?;
    list(w, "Missing from the archive", &r.missing, |p| p.clone())?;
    notes(w, "Errors", &r.errors)?;
    notes(
        w,
        "Recorded by the archive's manifest as not captured cleanly",
        &r.manifest_problems,
    )?;
    notes(
        w,
        "Directories replaced while the restore ran (nothing written through them)",
        &r.swapped,
    )?;
    notes(
        w,
        "Foreign members restored differently from their header (what was done)",
        &r.notes,
    )?;
    list(
        w,
        "Removed temporary files left by a killed datamig run",
        &r.removed_temps,
        |p| p.clone(),
    )?;
    if r.clean() {
        writeln!(w, "\nResult: clean, every file matched its manifest.")
    } else {
        writeln!(w, "\nResult: problems listed above (exit 1).")
    }
}

pub fn members(w: &mut dyn Write, r: &crate::commands::list::ListReport) -> io::Result<()> {
    if let Some(note) = &r.note {
        writeln!(w, "# {}: {note}", r.archive)?;
    }
    for m in &r.members {
        let link = m
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        writeln!(
            w,
            "{:<8} {} {:>12} {} {:<64} {}{link}",
            m.kind,
            m.mode,
            m.size,
            m.mtime,
            m.sha256.as_deref().unwrap_or("-"),
            m.path
        )?;
    }
    if r.not_archived > 0 {
        writeln!(
            w,
            "({} entries recorded in the manifest were not archived)",
            r.not_archived
        )?;
    }
    if let Some(s) = &r.stream {
        match &s.problem {
            None => writeln!(
                w,
                "# the stream decodes end to end: {} members, {} zstd frame(s), {} compressed bytes",
                s.members, s.frames, s.compressed_bytes
            )?,
            Some(p) => writeln!(w, "# INCOMPLETE after {} members: {p} (exit 1)", s.members)?,
        }
    }
    Ok(())
}

pub fn backup(w: &mut dyn Write, r: &crate::commands::backup::BackupReport) -> io::Result<()> {
    use crate::backup::retention::Action;
    if r.dry_run {
        writeln!(
            w,
            "datamig backup --dry-run: no archive made, nothing removed; retention of {} as of {}",
            r.dest, r.now
        )?;
        if let Some(n) = &r.would_make {
            writeln!(w, "  would make {n} (counted below as the newest backup)")?;
        }
    } else {
        writeln!(w, "datamig backup of {} -> {} at {}", r.root, r.dest, r.now)?;
    }
    if let Some(why) = &r.skip_reason {
        writeln!(w, "Skipped: {why}. Nothing made, nothing removed.")?;
        return Ok(());
    }
    if let Some(v) = &r.newest_verify {
        writeln!(w, "  newest backup, verify --quick: {v}")?;
    }
    if let Some(c) = &r.changed {
        writeln!(w, "  changed since the newest backup: {c}")?;
    }
    if let Some(a) = &r.archive {
        writeln!(w, "  archive   {a}")?;
        if let Some(h) = &r.archive_sha256 {
            writeln!(w, "  sha256    {h}")?;
        }
        writeln!(
            w,
            "  {} files, {} of file data -> {} compressed; verify {}; {:.1}s",
            r.files,
            human_bytes(r.file_bytes),
            human_bytes(r.bytes),
            r.verify,
            r.seconds
        )?;
        if r.secrets > 0 {
            writeln!(
                w,
                "  {} secret files included: keep the backups private (mode 0600)",
                r.secrets
            )?;
        }
    }
    list(w, "Flagged: not captured cleanly", &r.flagged, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w, "Notes", &r.notes, |n| format!("{}: {}", n.path, n.note))?;
    writeln!(w, "\nRetention ({}):", r.policy_text)?;
    if r.decisions.is_empty() {
        writeln!(w, "  no backups")?;
    }
    let remove = if r.dry_run { "would remove" } else { "remove" };
    let width = r.decisions.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in &r.decisions {
        let verb = match d.action {
            Action::Keep => "keep",
            Action::Remove => remove,
        };
        writeln!(
            w,
            "  {verb:<12} {:<width$}  {}",
            d.name,
            d.reasons.join("; ")
        )?;
    }
    list(w, "Not datamig backups, left alone", &r.ignored, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w, "Could not remove", &r.remove_errors, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    let n = r.removed.len();
    let what = if r.dry_run {
        "would be removed"
    } else {
        "removed"
    };
    let backups = if n == 1 { "backup" } else { "backups" };
    if r.clean() {
        writeln!(
            w,
            "\nResult: clean; {n} {backups} {what}, {} kept.",
            r.kept.len()
        )
    } else {
        writeln!(
            w,
            "\nResult: problems listed above (exit 1); {n} {backups} {what}, {} kept.",
            r.kept.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_escaping_matches_gnu() {
        let h = [0u8; 32];
        let z = "0".repeat(64);
        assert_eq!(
            sha256sum_line(&h, b"a b"),
            format!("{z}  a b\n").into_bytes()
        );
        assert_eq!(
            sha256sum_line(&h, b"a\nb"),
            format!("\\{z}  a\\nb\n").into_bytes()
        );
        assert_eq!(
            sha256sum_line(&h, b"a\\b"),
            format!("\\{z}  a\\\\b\n").into_bytes()
        );
    }

    #[test]
    fn human_bytes_table() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
