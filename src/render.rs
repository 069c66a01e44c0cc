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

/// Where a human report goes. Every renderer writes through it so that `-q` is
/// decided once: lines written to `info()` (context, what went well) are
/// dropped when quiet; the cause, the problem lists and the result line are
/// written to the `Out` itself and always print.
pub struct Out<'a> {
    w: &'a mut dyn Write,
    quiet: bool,
    sink: io::Sink,
    /// Quiet and nothing written yet: the blank line that separates a
    /// section from the (left out) header is dropped.
    at_start: bool,
}

impl<'a> Out<'a> {
    pub fn new(w: &'a mut dyn Write, quiet: bool) -> Self {
        Out {
            w,
            quiet,
            sink: io::sink(),
            at_start: quiet,
        }
    }

    /// Context that a quiet run leaves out.
    pub fn info(&mut self) -> &mut dyn Write {
        if self.quiet { &mut self.sink } else { self.w }
    }

    /// `info()` unless `problem`: for a line that is context in a clean part
    /// of the report and a heading over problems in another.
    pub fn info_unless(&mut self, problem: bool) -> &mut dyn Write {
        if problem { self } else { self.info() }
    }
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.at_start {
            return self.w.write(buf);
        }
        let text = buf.strip_prefix(b"\n").unwrap_or(buf);
        if !text.is_empty() {
            self.at_start = false;
            self.w.write_all(text)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// At most this many entries of one list in a human report; `--json` has all.
pub const LIST_LIMIT: usize = 20;

/// The one way to print a list in a human report: a heading with the count,
/// at most [`LIST_LIMIT`] entries, then how many were left out; nothing for an
/// empty list. Write to an `Out` for a list of problems (always shown), or to
/// `Out::info()` for context a quiet run leaves out.
pub fn list<W: Write + ?Sized, T>(
    w: &mut W,
    title: &str,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> io::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(w, "\n{title} ({}):", items.len())?;
    bounded(w, "  ", items, line)
}

/// A list's entries without a heading (nested lists, the cause lines), bounded
/// as [`list`] is, each at `indent`.
pub fn bounded<W: Write + ?Sized, T>(
    w: &mut W,
    indent: &str,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> io::Result<()> {
    for i in items.iter().take(LIST_LIMIT) {
        writeln!(w, "{indent}{}", line(i))?;
    }
    if items.len() > LIST_LIMIT {
        writeln!(
            w,
            "{indent}… and {} more (all of them in --json)",
            items.len() - LIST_LIMIT
        )?;
    }
    Ok(())
}

/// The last line of every human report, the one to grep for:
/// `Result: clean…` or `Result: N problem(s) listed above (exit 1).`
fn result(w: &mut Out, problems: usize, clean: &str) -> io::Result<()> {
    result_and(w, problems, clean, "")
}

/// [`result`] with `tail` said either way (e.g. what retention removed).
fn result_and(w: &mut Out, problems: usize, clean: &str, tail: &str) -> io::Result<()> {
    if problems == 0 {
        writeln!(w, "\nResult: clean{clean}{tail}.")
    } else {
        let s = if problems == 1 { "" } else { "s" };
        writeln!(
            w,
            "\nResult: {problems} problem{s} listed above (exit 1){tail}."
        )
    }
}

pub fn inventory(w: &mut Out, s: &Summary) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig inventory of {} (layout {})\n", s.root, s.layout)?;
    writeln!(
        o,
        "{:<28} {:<11} {:>8} {:>6} {:>11}  NEWEST",
        "AREA", "KIND", "FILES", "DIRS", "BYTES"
    )?;
    for a in &s.areas {
        writeln!(
            o,
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
        o,
        "{:<28} {:<11} {:>8} {:>6} {:>11}",
        "total",
        "",
        t.files,
        t.dirs,
        human_bytes(t.bytes)
    )?;
    if t.symlinks + t.hardlinks + t.special > 0 {
        writeln!(
            o,
            "  plus {} symlinks, {} hard links, {} special files",
            t.symlinks, t.hardlinks, t.special
        )?;
    }
    entities(w, &s.entities)?;
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
        w.info(),
        "Symlinks pointing outside the root",
        &s.symlinks_outside_root,
        |n| format!("{} -> {}", n.path, n.note),
    )?;
    list(
        w.info(),
        "Special files (recorded, never read or archived)",
        &s.special_files,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    list(
        w.info(),
        "Archive warnings: not capturable, or mishandled by some tools",
        &s.archive_warnings,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    excluded(w.info(), &s.excluded)?;
    // Last before the totals, so a long report cannot bury it.
    list(
        w.info(),
        "Secrets present: any archive or backup of these is sensitive",
        &s.secrets,
        |p| p.clone(),
    )?;
    let o = w.info();
    writeln!(o)?;
    if !s.not_scanned.is_empty() {
        let names: Vec<&str> = s.not_scanned.iter().map(|n| n.path.as_str()).collect();
        writeln!(
            o,
            "Not scanned: {} (archives and backups) — name them to include them.",
            names.join(", ")
        )?;
    }
    if s.reused > 0 {
        writeln!(
            o,
            "Hashed {} files, reused {} unchanged hashes from --since.",
            s.hashed, s.reused
        )?;
    } else {
        writeln!(o, "Hashed {} files.", s.hashed)?;
    }
    if let Some(m) = &s.manifest {
        writeln!(o, "Manifest written to {m}")?;
    }
    result(w, s.problems as usize, "")
}

/// Entity counts (context) and, bounded per entity, the ones missing a
/// required file (problems).
fn entities(w: &mut Out, entities: &[crate::summary::EntitySummary]) -> io::Result<()> {
    if entities.is_empty() {
        return Ok(());
    }
    let any_missing = entities.iter().any(|e| !e.missing_required.is_empty());
    writeln!(w.info_unless(any_missing), "\nEntities:")?;
    for e in entities {
        let bad = e.missing_required.len();
        let note = if bad > 0 {
            format!(" ({bad} missing required files)")
        } else {
            String::new()
        };
        writeln!(
            w.info_unless(bad > 0),
            "  {:<16} {:>5} × {}{note}",
            e.area,
            e.count,
            e.entity
        )?;
        bounded(w, "    ", &e.missing_required, |m| {
            format!("{}/{}: missing {}", e.area, m.id, m.missing.join(", "))
        })?;
    }
    Ok(())
}

pub fn archive(w: &mut Out, r: &crate::commands::archive::ArchiveReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig archive {} ({})", r.target, r.source)?;
    writeln!(o, "  archive   {}", r.archive)?;
    writeln!(o, "  manifest  {}", r.manifest)?;
    writeln!(o, "  sha256    {}  ({})", r.archive_sha256, r.sha256_file)?;
    let ratio = if r.compressed_bytes > 0 {
        r.tar_bytes as f64 / r.compressed_bytes as f64
    } else {
        0.0
    };
    writeln!(
        o,
        "  {} members, {} files, {} of file data -> {} compressed ({ratio:.2}x, {} frames) in {:.1}s",
        r.members,
        r.files,
        human_bytes(r.file_bytes),
        human_bytes(r.compressed_bytes),
        r.frames,
        r.seconds
    )?;
    if let Some(n) = r.encrypted_bytes {
        writeln!(
            o,
            "  encrypted with age to {} recipient(s): {} on disk; only their private keys can read it",
            r.recipients,
            human_bytes(n)
        )?;
    }
    for a in &r.absent {
        writeln!(
            o,
            "  note: {a} is part of the target but does not exist; nothing to archive there"
        )?;
    }
    list(w, "Flagged: not captured cleanly", &r.flagged, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w.info(), "Notes", &r.notes, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    excluded(w.info(), &r.excluded)?;
    list(
        w.info(),
        "Secrets included: keep this archive private (it is mode 0600)",
        &r.secrets,
        |p| p.clone(),
    )?;
    let failed = r.verify != "passed" && r.verify != "skipped";
    match r.verify {
        "passed" => writeln!(
            w.info(),
            "\nVerify: passed, every member read back and matched its manifest entry."
        )?,
        "skipped" => writeln!(
            w.info(),
            "\nVerify: skipped (--no-verify); run `datamig verify {}` before relying on it.",
            r.archive
        )?,
        _ => writeln!(w, "\nVerify: FAILED")?,
    }
    if let Some(g) = &r.refs {
        refs_gate(w, g)?;
    }
    let problems = r.flagged.len()
        + usize::from(failed)
        + removal(
            w,
            &r.overrides,
            r.remove_refused.as_deref(),
            r.removed.as_ref(),
        )?;
    result(w, problems, "")
}

/// The end of `--remove-source` and `retire`: checks a flag overrode (loud:
/// the run is not clean), then what was removed or why nothing was. Returns
/// how many problems it printed.
fn removal(
    w: &mut Out,
    overrides: &[crate::archive::gates::Override],
    refused: Option<&str>,
    removed: Option<&crate::archive::remove::Removal>,
) -> io::Result<usize> {
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
    let mut kept = 0;
    if let Some(rm) = removed {
        writeln!(
            w.info(),
            "Source removed: {} files ({}), {} directories.",
            rm.files,
            human_bytes(rm.bytes),
            rm.dirs
        )?;
        list(w, "Kept (not removed)", &rm.kept, |n| {
            format!("{}: {}", n.path, n.note)
        })?;
        kept = rm.kept.len();
    }
    Ok(overrides.len() + kept + usize::from(refused.is_some()))
}

pub fn retire(w: &mut Out, r: &crate::commands::retire::RetireReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig retire {}", r.archive)?;
    writeln!(o, "  source    {} ({})", r.target, r.source)?;
    let failed = r.verify != "passed";
    if failed {
        writeln!(w, "  verify    FAILED")?;
    } else {
        writeln!(
            w.info(),
            "  verify    passed, every member matched its manifest entry"
        )?;
    }
    list(w, "Discrepancies", &r.discrepancies, |s| s.clone())?;
    let mut changed = 0;
    if let Some(a) = &r.audit {
        writeln!(
            w.info(),
            "  audit     {} entries match the archive",
            a.matched
        )?;
        notes(w, "Modified since archived", &a.modified)?;
        notes(w, "Metadata changed since archived", &a.metadata)?;
        list(w, "Missing since archived", &a.missing, |p| p.clone())?;
        list(w, "New since archived", &a.new, |p| p.clone())?;
        list(w, "Moved since archived", &a.moved, |m| {
            format!("{} -> {}", m.from, m.to)
        })?;
        notes(w, "Unreadable", &a.unreadable)?;
        changed = a.modified.len()
            + a.metadata.len()
            + a.missing.len()
            + a.new.len()
            + a.moved.len()
            + a.unreadable.len();
    }
    notes(w.info(), "Notes", &r.notes)?;
    refs_gate(w, &r.refs)?;
    list(w.info(), "Gates", &r.gates, |g| {
        format!("{}: {}, {}", g.check.name(), g.outcome.shout(), g.detail)
    })?;
    writeln!(w.info())?;
    let problems = r.discrepancies.len()
        + changed
        + removal(
            w,
            &r.overrides,
            r.remove_refused.as_deref(),
            r.removed.as_ref(),
        )?;
    result(w, problems, "; the archive stands in for the source")
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

fn notes<W: Write + ?Sized>(
    w: &mut W,
    title: &str,
    items: &[crate::summary::PathNote],
) -> io::Result<()> {
    list(w, title, items, |n| format!("{}: {}", n.path, n.note))
}

pub fn verify_archive(
    w: &mut Out,
    r: &crate::verify::archive::ArchiveVerifyReport,
) -> io::Result<()> {
    writeln!(
        w.info(),
        "datamig verify {}{}",
        r.archive,
        if r.quick { " (quick)" } else { "" }
    )?;
    // Why the archive cannot be read to its end comes before any list of
    // what that cost (a truncated archive loses every member after the cut).
    let mut cause: Vec<&String> = Vec::new();
    if let Some(m) = &r.members {
        cause.extend(m.damaged_frames.iter().chain(&m.stream));
    }
    if let Some(p) = r.foreign.as_ref().and_then(|c| c.problem.as_ref()) {
        cause.push(p);
    }
    bounded(w, "  cause              ", &cause, |s| s.to_string())?;
    let o = w.info();
    writeln!(o, "  checked against    {} manifest", r.checked_against)?;
    writeln!(o, "  embedded manifest  {}", r.embedded_manifest)?;
    writeln!(o, "  sidecar manifest   {}", r.sidecar_manifest)?;
    writeln!(o, "  sidecar .sha256    {}", r.sidecar_sha256)?;
    writeln!(o, "  archive sha256     {}", r.archive_sha256)?;
    if let Some(m) = &r.members {
        let total = m.ok + (m.mismatched.len() + m.missing.len() + m.damaged.len()) as u64;
        writeln!(o, "  members            {} ok of {total}", m.ok)?;
    }
    if let Some(c) = &r.foreign {
        writeln!(
            o,
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
    }
    if let Some(m) = &r.members {
        notes(w, "Mismatched", &m.mismatched)?;
        notes(
            w,
            "Damaged (lost to a corrupt or cut-off zstd frame)",
            &m.damaged,
        )?;
        notes(w, "Missing", &m.missing)?;
        notes(w, "Unexpected", &m.unexpected)?;
    }
    list(
        w,
        "Not captured cleanly (recorded in the manifest)",
        &r.flagged,
        |f| format!("{}: {}", f.path, f.note),
    )?;
    // Each finding under one heading: the lists above are not repeated here.
    list(w, "Other discrepancies", &r.unlisted, |s| s.clone())?;
    result(w, r.discrepancies.len(), ", every check passed")
}

pub fn tree(w: &mut Out, r: &crate::verify::tree::TreeReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig verify --tree {} against {}", r.tree, r.manifest)?;
    if r.fast {
        writeln!(
            o,
            "  (--fast: size and mtime only; content changes that keep both are not detected)"
        )?;
    }
    writeln!(o, "  matched {}", r.matched)?;
    notes(w, "Modified", &r.modified)?;
    notes(w, "Metadata changed", &r.metadata)?;
    list(w, "Missing", &r.missing, |p| p.clone())?;
    list(w, "New", &r.new, |p| p.clone())?;
    list(w, "Moved", &r.moved, |m| format!("{} -> {}", m.from, m.to))?;
    notes(w, "Unreadable", &r.unreadable)?;
    let problems = r.modified.len()
        + r.metadata.len()
        + r.missing.len()
        + r.new.len()
        + r.moved.len()
        + r.unreadable.len();
    result(w, problems, "")
}

pub fn migration(w: &mut Out, r: &crate::verify::migration::MigrationReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig verify --migration ({})", r.root)?;
    writeln!(
        o,
        "  legacy files {}, migrated (identical) {}",
        r.legacy_files, r.migrated
    )?;
    list(
        w,
        "Not migrated (nothing at the consolidated place)",
        &r.not_migrated,
        |x| {
            let fix = x
                .copy
                .as_deref()
                .unwrap_or("move what is in the way, then copy it");
            format!("{} -> {}\n      to copy it: {fix}", x.legacy, x.expected)
        },
    )?;
    list(w, "Differs", &r.differs, |d| {
        let fix = d.copy.as_deref().unwrap_or("copy it by hand");
        format!(
            "{} ({} {}) vs {} ({} {}); newer: {}\n      if the legacy copy is right: {fix}",
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
    list(
        w,
        "Accepted as obsolete (--accept; not migrated on purpose)",
        &r.accepted,
        |a| {
            format!(
                "{} ({}; --accept {})",
                a.legacy,
                a.was.replace('_', " "),
                a.accepted_by
            )
        },
    )?;
    let bad = r.not_migrated.len() + r.differs.len() + r.unmapped.len() + r.unreadable.len();
    if bad == 0 {
        writeln!(
            w,
            "\nResult: every legacy file has an identical consolidated copy{}.",
            if r.accepted.is_empty() {
                String::new()
            } else {
                format!(" or was accepted as obsolete ({})", r.accepted.len())
            }
        )
    } else {
        writeln!(
            w,
            "\nResult: {bad} legacy files are not safely migrated (exit 1).\n  \
             To resolve: copy each to its place (the cp -p lines above), or, if it is obsolete, \
             run again with --accept PATH (repeatable); the same --accept is honoured by \
             `archive v2-dev-data --remove-source`."
        )
    }
}

pub fn restore(w: &mut Out, r: &crate::restore::RestoreReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig restore {} -> {}", r.archive, r.to)?;
    writeln!(o, "  checked against {} manifest", r.manifest)?;
    writeln!(
        o,
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
        o,
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
        w.info(),
        "Foreign members restored differently from their header (what was done)",
        &r.notes,
    )?;
    list(
        w.info(),
        "Removed temporary files left by a killed datamig run",
        &r.removed_temps,
        |p| p.clone(),
    )?;
    let problems = r.refused.len()
        + r.corrupt.len()
        + r.unverified.len()
        + r.missing.len()
        + r.errors.len()
        + r.manifest_problems.len()
        + r.swapped.len();
    result(w, problems, ", every file matched its manifest")
}

/// The member table is the output itself, like `ls`: never cut short.
pub fn members(w: &mut Out, r: &crate::commands::list::ListReport) -> io::Result<()> {
    if let Some(note) = &r.note {
        writeln!(w.info(), "# {}: {note}", r.archive)?;
    }
    writeln!(
        w.info(),
        "{:<8} {:<4} {:<11} {:>12} {:<20} {:<64} PATH",
        "TYPE",
        "MODE",
        "OWNER",
        "SIZE",
        "MTIME",
        "SHA256"
    )?;
    for m in &r.members {
        let link = m
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        writeln!(
            w.info(),
            "{:<8} {:<4} {:<11} {:>12} {:<20} {:<64} {}{link}",
            m.kind,
            m.mode,
            format!("{}/{}", m.uid, m.gid),
            m.size,
            m.mtime,
            m.sha256.as_deref().unwrap_or("-"),
            m.path
        )?;
    }
    if r.not_archived > 0 {
        writeln!(
            w.info(),
            "({} entries recorded in the manifest were not archived)",
            r.not_archived
        )?;
    }
    list(
        w,
        "Not in the archive (no member at or under these paths; exit 1)",
        &r.not_found,
        |p| p.clone(),
    )?;
    if let Some(s) = &r.stream {
        match &s.problem {
            None => writeln!(
                w.info(),
                "# the stream decodes end to end: {} members, {} zstd frame(s), {} compressed bytes",
                s.members,
                s.frames,
                s.compressed_bytes
            )?,
            Some(p) => {
                writeln!(w, "# INCOMPLETE after {} members: {p}", s.members)?;
                // A clean listing ends with its last member, so scripts
                // reading the table see no trailer; a broken one says so.
                result(w, 1, "")?;
            }
        }
    }
    Ok(())
}

/// `datamig list DIR`: one row per archive, oldest first.
pub fn archives(w: &mut Out, r: &crate::commands::list_dir::ArchivesReport) -> io::Result<()> {
    let o = w.info();
    writeln!(o, "datamig list {}: {} archives", r.dir, r.archives.len())?;
    writeln!(
        o,
        "{:<20} {:>10} {:>8} {:<8} {:<10} NAME",
        "DATE", "SIZE", "MEMBERS", "KIND", "STATE"
    )?;
    for a in &r.archives {
        writeln!(
            o,
            "{:<20} {:>10} {:>8} {:<8} {:<10} {}",
            a.date,
            human_bytes(a.size),
            a.members.map_or("-".to_string(), |n| n.to_string()),
            a.kind,
            a.state,
            a.name
        )?;
    }
    let noted: Vec<_> = r.archives.iter().filter(|a| a.note.is_some()).collect();
    list(w, "Notes", &noted, |a| {
        format!("{}: {}", a.name, a.note.as_deref().unwrap_or(""))
    })?;
    writeln!(
        w.info(),
        "\n(from the sidecars only; `datamig verify --all {}` reads and checks every archive)",
        r.dir
    )
}

/// `datamig verify A B …`: a result line per archive, then what was wrong.
pub fn verify_archives(w: &mut Out, r: &crate::verify::many::ManyReport) -> io::Result<()> {
    writeln!(
        w,
        "datamig verify{}: {} archives",
        if r.quick { " --quick" } else { "" },
        r.archives.len()
    )?;
    for a in &r.archives {
        let what = match a.result {
            "clean" => "ok".to_string(),
            "discrepancies" if a.discrepancies == 1 => "1 discrepancy".to_string(),
            "discrepancies" => format!("{} discrepancies", a.discrepancies),
            _ => "could not be checked".to_string(),
        };
        writeln!(w, "  {:<24} {}", what, a.archive)?;
    }
    for a in &r.archives {
        if let Some(c) = &a.check
            && !c.discrepancies.is_empty()
        {
            list(w, &a.archive, &c.discrepancies, |s| s.clone())?;
        }
    }
    let errors: Vec<_> = r.archives.iter().filter(|a| a.error.is_some()).collect();
    list(w, "Could not be checked", &errors, |a| {
        format!("{}: {}", a.archive, a.error.as_deref().unwrap_or(""))
    })?;
    writeln!(
        w,
        "\nResult: {} clean, {} with discrepancies, {} could not be checked (exit {}).",
        r.clean, r.with_discrepancies, r.errors, r.exit
    )
}

pub fn backup(w: &mut Out, r: &crate::commands::backup::BackupReport) -> io::Result<()> {
    let o = w.info();
    if r.dry_run {
        writeln!(
            o,
            "datamig backup --dry-run: no archive made, nothing removed; retention of {} as of {}",
            r.dest, r.now
        )?;
        if let Some(n) = &r.would_make {
            writeln!(o, "  would make {n} (counted below as the newest backup)")?;
        }
    } else {
        writeln!(o, "datamig backup of {} -> {} at {}", r.root, r.dest, r.now)?;
    }
    writeln!(o, "  target    {}", r.target)?;
    if let Some(n) = &r.target_note {
        writeln!(o, "  note: {n}")?;
    }
    if let Some(why) = &r.skip_reason {
        writeln!(o, "Skipped: {why}. Nothing made, nothing removed.")?;
        result(w, 0, ", skipped")?;
        return not_covered(w.info(), &r.not_covered);
    }
    if let Some(v) = &r.newest_verify {
        writeln!(o, "  newest backup, verify --quick: {v}")?;
    }
    if let Some(c) = &r.changed {
        writeln!(o, "  changed since the newest backup: {c}")?;
    }
    if let Some(a) = &r.archive {
        writeln!(o, "  archive   {a}")?;
        if let Some(h) = &r.archive_sha256 {
            writeln!(o, "  sha256    {h}")?;
        }
        writeln!(
            o,
            "  {} files, {} of file data -> {} compressed; verify {}; {:.1}s",
            r.files,
            human_bytes(r.file_bytes),
            human_bytes(r.bytes),
            r.verify,
            r.seconds
        )?;
        if r.secrets > 0 {
            writeln!(
                o,
                "  {} secret files included: keep the backups private (mode 0600)",
                r.secrets
            )?;
        }
    }
    list(w, "Flagged: not captured cleanly", &r.flagged, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w.info(), "Notes", &r.notes, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    excluded(w.info(), &r.excluded)?;
    // The retention table is every backup there is, not a list of problems:
    // it is shown whole (it is as long as the policy keeps backups).
    let o = w.info();
    writeln!(o, "\nRetention ({}):", r.policy_text)?;
    if r.decisions.is_empty() {
        writeln!(o, "  no backups")?;
    }
    retention_decisions(o, &r.decisions, r.dry_run)?;
    list(
        w.info(),
        "Not datamig backups, left alone",
        &r.ignored,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    list(w, "Could not remove", &r.remove_errors, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    if let Some(c) = &r.remote {
        writeln!(
            w,
            "\nOff-site copy: {} ({}), read back: {}.",
            c.to, c.remote_sha256, c.remote_verify
        )?;
        list(w, "Off-site copy discrepancies", &c.discrepancies, |d| {
            d.clone()
        })?;
    }
    if let Some(e) = &r.remote_error {
        writeln!(w, "\nOff-site copy FAILED: {e}")?;
    }
    if let Some(rr) = &r.remote_retention {
        remote_retention(w, rr)?;
    }
    let remote_problems = r.remote_retention.as_ref().map_or(0, |rr| {
        rr.failed_verify.len() + rr.remove_errors.len() + usize::from(rr.error.is_some())
    });
    let n = r.removed.len();
    let what = if r.dry_run {
        "would be removed"
    } else {
        "removed"
    };
    let backups = if n == 1 { "backup" } else { "backups" };
    let tail = format!("; {n} {backups} {what}, {} kept", r.kept.len());
    result_and(
        w,
        r.flagged.len() + r.remove_errors.len() + remote_problems,
        "",
        &tail,
    )?;
    not_covered(w.info(), &r.not_covered)
}

/// `backup --to`: the retention of the remote copies, as the local table.
fn remote_retention(
    w: &mut Out,
    r: &crate::backup::remote_retention::RemoteRetention,
) -> io::Result<()> {
    let o = w.info();
    writeln!(
        o,
        "\nRemote retention at {} ({}):",
        r.location, r.policy_text
    )?;
    if let Some(n) = &r.newest_verified {
        writeln!(o, "  newest copy that passes verify --quick: {n}")?;
    }
    retention_decisions(o, &r.decisions, r.dry_run)?;
    list(
        w.info(),
        "Remote copies held by Object Lock",
        &r.locked,
        |l| format!("{}: until {} ({})", l.name, l.retain_until, l.object),
    )?;
    list(
        w.info(),
        "Remote objects that are not copies of this target, left alone",
        &r.ignored,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    let finished = if r.dry_run {
        "Sidecars of an interrupted remote removal, would be removed"
    } else {
        "Sidecars of an interrupted remote removal, removed"
    };
    list(w.info(), finished, &r.finished, |n| n.clone())?;
    list(
        w,
        "Remote copies that fail verify --quick (kept)",
        &r.failed_verify,
        |n| format!("{}: {}", n.path, n.note),
    )?;
    list(w, "Could not remove remotely", &r.remove_errors, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    if let Some(e) = &r.error {
        writeln!(w, "\nRemote retention FAILED: {e}")?;
    }
    Ok(())
}

/// What the walk left out on purpose, where it stopped.
fn excluded(w: &mut dyn Write, items: &[crate::summary::PathNote]) -> io::Result<()> {
    list(w, "Excluded (not scanned, not archived)", items, |n| {
        format!("{}: {}", n.path, n.note)
    })
}

/// The last lines of every backup report: what a rebuild from it would lack.
fn not_covered(w: &mut dyn Write, items: &[crate::summary::PathNote]) -> io::Result<()> {
    list(w, "Not covered by this backup", items, |n| {
        format!("{} ({})", n.path, n.note)
    })
}

pub fn copy(w: &mut Out, r: &crate::commands::copy::CopyReport) -> io::Result<()> {
    writeln!(w.info(), "datamig copy {} -> {}", r.archive, r.to)?;
    list(
        w.info(),
        "Unfinished uploads of a dead run, aborted",
        &r.aborted_uploads,
        |u| u.clone(),
    )?;
    list(w.info(), "Uploaded", &r.uploaded, |c| {
        format!("{}  ({})", c.url, human_bytes(c.bytes))
    })?;
    if let Some(sha) = &r.encrypted_sha256 {
        writeln!(
            w.info(),
            "Encrypted on the way to {} recipient(s): the ciphertext's SHA-256 is {sha}.",
            r.recipients
        )?;
    }
    let recorded = r.encrypted_sha256.as_ref().unwrap_or(&r.archive_sha256);
    let same = &r.remote_sha256 == recorded;
    writeln!(
        w.info_unless(!same),
        "\nRead back: {} bytes, SHA-256 {} ({} the .sha256 sidecar).",
        r.remote_bytes,
        r.remote_sha256,
        if same { "equals" } else { "DIFFERS from" }
    )?;
    if let (Some(mode), Some(until)) = (&r.lock_mode, &r.locked_until) {
        writeln!(
            w.info(),
            "Object Lock: all three objects locked ({}) until {until}.",
            mode.s3().to_lowercase()
        )?;
    }
    list(w, "Discrepancies", &r.discrepancies, |d| d.clone())?;
    let clean = format!(", the copy is the archive ({:.1}s)", r.seconds);
    result(
        w,
        r.discrepancies.len().max(usize::from(!r.clean())),
        &clean,
    )
}

/// `datamig list s3://…`: the archives there, whole (the listing is the output).
pub fn location(w: &mut Out, r: &crate::commands::remote_list::LocationReport) -> io::Result<()> {
    let o = w.info();
    writeln!(
        o,
        "datamig list {}: {} archives",
        r.location,
        r.archives.len()
    )?;
    if !r.archives.is_empty() {
        writeln!(o, "{:<25} {:>10} {:<10} NAME", "MODIFIED", "SIZE", "STATE")?;
    }
    for a in &r.archives {
        writeln!(
            o,
            "{:<25} {:>10} {:<10} {}",
            a.modified.as_deref().unwrap_or("-"),
            human_bytes(a.size),
            if a.complete { "complete" } else { "INCOMPLETE" },
            a.name
        )?;
    }
    let incomplete: Vec<_> = r.archives.iter().filter(|a| !a.complete).collect();
    list(w, "Incomplete: a sidecar is missing", &incomplete, |a| {
        a.name.clone()
    })?;
    list(
        w,
        "Sidecars without their archive",
        &r.orphan_sidecars,
        |s| s.clone(),
    )?;
    Ok(())
}

fn refs_hit(h: &crate::refs::Hit) -> String {
    let owner = h
        .owner
        .as_deref()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let directive = h
        .directive
        .as_deref()
        .map(|d| format!(" {d}"))
        .unwrap_or_default();
    let kind = serde_json::to_value(h.kind).ok();
    let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("other");
    format!(
        "{}:{} [{kind}]{owner}{directive} -> {}: {}",
        h.file, h.line, h.target, h.text
    )
}

/// `datamig refs`: what still points at the retiring paths.
pub fn refs(w: &mut Out, r: &crate::refs::RefsReport) -> io::Result<()> {
    let o = w.info();
    let names: Vec<&str> = r.targets.iter().map(|t| t.target.as_str()).collect();
    writeln!(o, "datamig refs {}", names.join(" "))?;
    for t in &r.targets {
        writeln!(o, "  {}: {}", t.target, t.spellings.join(", "))?;
    }
    writeln!(
        o,
        "  searched {} files in {} places in {:.2}s",
        r.files,
        r.searched.len(),
        r.seconds
    )?;
    list(w, "Still pointing at a retiring path", &r.hits, refs_hit)?;
    list(w, "Unreadable (not searched)", &r.unreadable, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    list(w.info(), "Skipped: binary", &r.skipped_binary, |p| {
        p.clone()
    })?;
    list(w.info(), "Skipped: over 8 MiB", &r.skipped_large, |p| {
        p.clone()
    })?;
    result(
        w,
        r.hits.len() + r.unreadable.len(),
        ": nothing points at a retiring path",
    )
}

/// The reference gate's findings inside the archive report.
fn refs_gate(w: &mut Out, g: &crate::refs::RefsGate) -> io::Result<()> {
    let title = if g.ignored {
        "References (removal went ahead: --ignore-refs)"
    } else {
        "References blocking removal"
    };
    list(w, title, &g.blocking, refs_hit)?;
    list(
        w.info(),
        "References (warnings, removal not blocked)",
        &g.warnings,
        refs_hit,
    )?;
    list(w, "Reference check could not read", &g.unreadable, |n| {
        format!("{}: {}", n.path, n.note)
    })?;
    // Keeps the lists apart from the removal line that follows.
    if !g.blocking.is_empty() || !g.warnings.is_empty() || !g.unreadable.is_empty() {
        writeln!(w.info())?;
    }
    Ok(())
}

/// One line per backup: keep or (would) remove, the name, and why.
fn retention_decisions(
    o: &mut dyn Write,
    decisions: &[crate::backup::retention::Decision],
    dry_run: bool,
) -> io::Result<()> {
    use crate::backup::retention::Action;
    let remove = if dry_run { "would remove" } else { "remove" };
    let width = decisions.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in decisions {
        let verb = match d.action {
            Action::Keep => "keep",
            Action::Remove => remove,
        };
        writeln!(
            o,
            "  {verb:<12} {:<width$}  {}",
            d.name,
            d.reasons.join("; ")
        )?;
    }
    Ok(())
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

    fn rendered(quiet: bool, f: impl FnOnce(&mut Out) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut Out::new(&mut buf, quiet)).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn list_shows_at_most_the_limit_then_counts_the_rest() {
        let items: Vec<u32> = (1..=23).collect();
        let text = rendered(false, |w| list(w, "Things", &items, |i| i.to_string()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["", "Things (23):"]);
        assert_eq!(lines[2], "  1");
        assert_eq!(lines[LIST_LIMIT + 1], "  20");
        assert_eq!(
            lines[LIST_LIMIT + 2],
            "  … and 3 more (all of them in --json)"
        );
        assert_eq!(lines.len(), LIST_LIMIT + 3);
        // Exactly the limit: no "more" line; empty: nothing at all.
        let text = rendered(false, |w| {
            list(w, "T", &items[..LIST_LIMIT], |i| i.to_string())
        });
        assert!(!text.contains("more"), "{text}");
        assert_eq!(
            rendered(false, |w| list(w, "T", &items[..0], |i| i.to_string())),
            ""
        );
    }

    #[test]
    fn quiet_out_drops_info_and_the_leading_blank_line() {
        let report = |w: &mut Out| -> io::Result<()> {
            writeln!(w.info(), "header")?;
            list(w.info(), "Context", &["c"], |s| s.to_string())?;
            list(w, "Problems", &["p"], |s| s.to_string())?;
            result(w, 1, "")
        };
        assert_eq!(
            rendered(true, report),
            "Problems (1):\n  p\n\nResult: 1 problem listed above (exit 1).\n"
        );
        assert_eq!(
            rendered(false, report),
            "header\n\nContext (1):\n  c\n\nProblems (1):\n  p\n\nResult: 1 problem listed above (exit 1).\n"
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
