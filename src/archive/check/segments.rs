//! The read-back check on several threads. A datamig archive's members start
//! at frame boundaries the manifest records, so the archive is cut there into
//! segments of about equal compressed size, each checked on its own thread
//! by the one damage-tolerant reading (`check_segment`). A thread does not
//! build a report: it logs what it met, and the logs are replayed in stream
//! order into the one report a single thread gives, byte for byte.
//!
//! Reading one segment can only differ from reading the whole stream where
//! something crosses a cut (a member running past it, a PAX global header, a
//! manifest entry met in another segment's stream, a tar offset in a message
//! after a restart): the replay notices each and the archive is read again in
//! one segment. That costs time on damaged or odd archives only.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use anyhow::{Result, anyhow};

use super::{ArchiveSource, CheckReport, Member, Restart, check_next, mark_lost, resume_after};
use crate::archive::{MANIFEST_MEMBER, SUMS_MEMBER};
use crate::entry::Entry;
use crate::frames::{Damage, FrameReader, SeekTable};
use crate::hashing::Hashed;
use crate::progress::Progress;
use crate::summary::PathNote;
use crate::tarfmt::TarReader;

/// The check of `file` on up to `jobs` threads (see the module comment).
pub(super) fn check<F: ArchiveSource>(
    file: &F,
    len: u64,
    entries: &[Entry],
    restarts: &[Restart],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let plan = plan(file, len, restarts, jobs);
    if plan.len() > 1 {
        let logs = check_all(file, len, &plan, entries, restarts, progress);
        if let Some(report) = replay(&plan, logs, entries)? {
            return Ok(report);
        }
    }
    let whole = [Segment::WHOLE];
    let log = check_segment(file.reopen()?, len, &whole[0], entries, restarts, progress);
    replay(&whole, vec![log], entries)?
        .ok_or_else(|| anyhow!("the archive's one segment did not replay as it was read"))
}

/// A stretch of the archive one thread checks: from a frame where a member
/// starts to the next segment's start (`end`, none for the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: u64,
    end: Option<u64>,
    /// The tar stream offset at `start` when nothing before it was damaged
    /// (it appears in some messages).
    tar_base: u64,
}

impl Segment {
    const WHOLE: Segment = Segment {
        start: 0,
        end: None,
        tar_base: 0,
    };
}

/// Up to `jobs` segments of about equal compressed size, cut where the seek
/// table and the manifest agree that a frame begins with a member; one
/// segment without a usable seek table.
fn plan<F: FileExt>(file: &F, len: u64, restarts: &[Restart], jobs: usize) -> Vec<Segment> {
    if jobs < 2 {
        return vec![Segment::WHOLE];
    }
    let table = match SeekTable::read(&mut At { file, len, pos: 0 }) {
        Ok(Some(t)) if t.covers_file() => t,
        _ => return vec![Segment::WHOLE],
    };
    let frames = table.frames();
    // (compressed offset, decompressed offset) of every frame a member opens.
    let cuts: Vec<(u64, u64)> = restarts
        .iter()
        .filter(|r| r.offset_in_frame == 0 && r.frame_offset > 0)
        .filter_map(|r| {
            let i = frames
                .binary_search_by_key(&r.frame_offset, |f| f.offset)
                .ok()?;
            let f = frames[i];
            (f.entry.decompressed > 0).then_some((f.offset, f.start))
        })
        .collect();
    let mut chosen: Vec<(u64, u64)> = Vec::new();
    for k in 1..jobs {
        let target = (u128::from(table.table_offset) * k as u128 / jobs as u128) as u64;
        let Some(c) = nearest(&cuts, target) else {
            break;
        };
        if chosen.last().is_none_or(|l| l.0 < c.0) {
            chosen.push(c);
        }
    }
    let mut segments = vec![Segment::WHOLE];
    for (offset, start) in chosen {
        let last = segments.last_mut().expect("one segment at least");
        last.end = Some(offset);
        segments.push(Segment {
            start: offset,
            end: None,
            tar_base: start,
        });
    }
    segments
}

/// The cut closest to `target` (cuts sorted by offset).
fn nearest(cuts: &[(u64, u64)], target: u64) -> Option<(u64, u64)> {
    let i = cuts.partition_point(|c| c.0 < target);
    let after = cuts.get(i).copied();
    let before = i.checked_sub(1).map(|j| cuts[j]);
    match (before, after) {
        (Some(b), Some(a)) if target - b.0 < a.0 - target => Some(b),
        (b, None) => b,
        (_, a) => a,
    }
}

/// `Read + Seek` over positional reads, for `SeekTable::read`.
struct At<'a, F> {
    file: &'a F,
    len: u64,
    pos: u64,
}

impl<F: FileExt> Read for At<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F: FileExt> Seek for At<'_, F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = at.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// Every segment on its own thread; the logs in segment order.
fn check_all<F: ArchiveSource>(
    file: &F,
    len: u64,
    plan: &[Segment],
    entries: &[Entry],
    restarts: &[Restart],
    progress: &dyn Progress,
) -> Vec<Result<Log>> {
    std::thread::scope(|s| {
        let threads: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, seg)| {
                let f = file.reopen();
                std::thread::Builder::new()
                    .name(format!("datamig-verify-{i}"))
                    .spawn_scoped(s, move || {
                        check_segment(f?, len, seg, entries, restarts, progress)
                    })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| match t {
                Ok(t) => t
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a verify thread panicked"))),
                Err(e) => Err(anyhow!("cannot start a verify thread: {e}")),
            })
            .collect()
    })
}

/// What one segment's reading met, in order.
enum Event {
    /// The manifest's entries `from..=to`, met in a row, each matching.
    Matched {
        from: usize,
        to: usize,
    },
    Mismatched {
        idx: usize,
        note: String,
    },
    Unexpected(PathNote),
    /// `.datamig/MANIFEST.jsonl` (`manifest`) or `.datamig/SHA256SUMS`.
    Embedded {
        manifest: bool,
        data: Hashed,
    },
    /// A damaged frame; reading resumed at `resume`, if anywhere.
    Lost {
        damage: Damage,
        resume: Option<Restart>,
    },
    /// Reading stopped at something other than a damaged frame; `fresh`
    /// when no restart came before it in this segment (so `why` counts tar
    /// offsets from the segment's `tar_base`).
    Failed {
        why: String,
        fresh: bool,
    },
}

/// How a segment's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At the next segment's start, between members; `tar_pos` is the tar
    /// offset there when the segment was read without a restart.
    Boundary { tar_pos: Option<u64> },
    /// Where the whole check stops: the end-of-archive marker, an error, or
    /// damage with nowhere to resume.
    Stop,
    /// Past the next segment's start, or at it with a PAX global header in
    /// force: this segment cannot be read on its own.
    Crossed,
}

struct Log {
    events: Vec<Event>,
    end: End,
}

/// What to do after reading stopped.
enum Next {
    Resume(Restart),
    End(End),
}

/// What reading a member gave.
enum Step {
    Member(Member),
    End(End),
}

/// One thread's reading of one segment.
struct Worker<'a> {
    seg: &'a Segment,
    len: u64,
    entries: &'a [Entry],
    restarts: &'a [Restart],
    progress: &'a dyn Progress,
    /// Entries met in this segment (or lost to its damaged frames).
    seen: Vec<bool>,
    events: Vec<Event>,
    /// Whether reading restarted after a damaged frame: its tar offsets then
    /// count from the restart, as the one-thread reading's do.
    restarted: bool,
}

/// The damage-tolerant reading of `seg`: a damaged frame costs only the
/// members it holds, reading resumes at the first member recorded after it.
fn check_segment<F: ArchiveSource>(
    file: F,
    len: u64,
    seg: &Segment,
    entries: &[Entry],
    restarts: &[Restart],
    progress: &dyn Progress,
) -> Result<Log> {
    let mut w = Worker {
        seg,
        len,
        entries,
        restarts,
        progress,
        seen: vec![false; entries.len()],
        events: Vec::new(),
        restarted: false,
    };
    let mut start = Restart {
        frame_offset: seg.start,
        offset_in_frame: 0,
    };
    loop {
        match w.read_from(file.reopen()?, start)? {
            Next::Resume(r) => start = r,
            Next::End(end) => {
                return Ok(Log {
                    events: w.events,
                    end,
                });
            }
        }
    }
}

impl Worker<'_> {
    /// Read members from `start` until the segment ends or reading fails.
    fn read_from<F: FileExt>(&mut self, file: F, start: Restart) -> Result<Next> {
        let mut fr = FrameReader::new(file, self.len, start.frame_offset)?;
        if start.offset_in_frame > 0 {
            let skipped = std::io::copy(
                &mut (&mut fr).take(start.offset_in_frame),
                &mut std::io::sink(),
            );
            if !matches!(skipped, Ok(n) if n == start.offset_in_frame) {
                return Ok(self.failed(fr.damage.clone(), "the archive ends early".into()));
            }
        }
        let mut tar = if self.restarted {
            TarReader::new(fr)
        } else {
            TarReader::at(fr, self.seg.tar_base)
        };
        loop {
            match self.step(&mut tar) {
                Ok(Step::Member(m)) => self.record(m),
                Ok(Step::End(end)) => return Ok(Next::End(end)),
                Err(e) => {
                    let damage = tar.into_inner().damage;
                    return Ok(self.failed(damage, format!("{e:#}")));
                }
            }
        }
    }

    /// The next member, unless the segment's end is reached first.
    fn step<F: FileExt>(&self, tar: &mut TarReader<FrameReader<F>>) -> Result<Step> {
        if let Some(end) = self.seg.end {
            // What `next_member` does first anyway; here it puts the reader
            // at the next header, so its position says where that is.
            tar.skip_data()?;
            let (frame, within) = tar.get_ref().position();
            if frame >= end {
                let clean = frame == end && within == 0 && !tar.saw_global();
                return Ok(Step::End(if clean {
                    End::Boundary {
                        tar_pos: (!self.restarted).then(|| tar.position()),
                    }
                } else {
                    End::Crossed
                }));
            }
        }
        Ok(
            match check_next(tar, self.entries, &self.seen, self.progress)? {
                Some(m) => Step::Member(m),
                None => Step::End(End::Stop),
            },
        )
    }

    fn record(&mut self, m: Member) {
        let event = match m {
            Member::Checked { idx, diffs } => {
                self.seen[idx] = true;
                if !diffs.is_empty() {
                    Event::Mismatched {
                        idx,
                        note: diffs.join("; "),
                    }
                } else if let Some(Event::Matched { to, .. }) = self.events.last_mut()
                    && *to + 1 == idx
                {
                    *to = idx;
                    return;
                } else {
                    Event::Matched { from: idx, to: idx }
                }
            }
            Member::Unexpected(n) => Event::Unexpected(n),
            Member::Embedded { manifest, data } => Event::Embedded { manifest, data },
        };
        self.events.push(event);
    }

    /// Reading stopped: resume after a damaged frame, or end the segment.
    fn failed(&mut self, damage: Option<Damage>, why: String) -> Next {
        let Some(d) = damage else {
            self.events.push(Event::Failed {
                why,
                fresh: !self.restarted,
            });
            return Next::End(End::Stop);
        };
        let past_end = |at: u64| self.seg.end.is_some_and(|e| at >= e);
        if past_end(d.frame_offset) {
            return Next::End(End::Crossed);
        }
        let resume = resume_after(self.restarts, &d, self.len);
        mark_lost(self.entries, &mut self.seen, resume, |_| {});
        self.events.push(Event::Lost { damage: d, resume });
        self.restarted = true;
        match resume {
            None => Next::End(End::Stop),
            Some(r) if past_end(r.frame_offset) => Next::End(End::Boundary { tar_pos: None }),
            Some(r) => Next::Resume(r),
        }
    }
}

/// The last intact member so far, named only when a finding needs it.
enum Last {
    Entry(usize),
    Name(String),
}

/// The logs applied in stream order, as one thread would have.
struct Replay<'a> {
    entries: &'a [Entry],
    report: CheckReport,
    seen: Vec<bool>,
    last_good: Option<Last>,
}

/// The report the logs add up to, or `None` when a segment's reading may
/// differ from the one-thread reading (see the module comment).
fn replay(
    plan: &[Segment],
    logs: Vec<Result<Log>>,
    entries: &[Entry],
) -> Result<Option<CheckReport>> {
    let mut r = Replay {
        entries,
        report: CheckReport::default(),
        seen: vec![false; entries.len()],
        last_good: None,
    };
    // Whether the one-thread reading's tar offset at this segment's start is
    // the segment's `tar_base`.
    let mut base_exact = true;
    for (i, log) in logs.into_iter().enumerate() {
        let log = log?;
        for event in log.events {
            if !r.apply(event, base_exact) {
                return Ok(None);
            }
        }
        match log.end {
            End::Stop => break,
            End::Crossed => return Ok(None),
            End::Boundary { tar_pos } => {
                let next = plan.get(i + 1).map(|s| s.tar_base);
                base_exact = base_exact && tar_pos.is_some() && tar_pos == next;
            }
        }
    }
    Ok(Some(r.finish()))
}

impl Replay<'_> {
    /// Apply one event; false when it cannot be what one thread met.
    fn apply(&mut self, event: Event, base_exact: bool) -> bool {
        match event {
            Event::Matched { from, to } => {
                let run = &mut self.seen[from..=to];
                if run.iter().any(|&s| s) {
                    return false;
                }
                run.fill(true);
                self.report.ok += (to - from + 1) as u64;
                self.last_good = Some(Last::Entry(to));
            }
            Event::Mismatched { idx, note } => {
                if self.seen[idx] {
                    return false;
                }
                self.seen[idx] = true;
                let path = self.entries[idx].path_lossy();
                self.report.mismatched.push(PathNote { path, note });
                self.last_good = Some(Last::Entry(idx));
            }
            Event::Unexpected(n) => {
                self.last_good = Some(Last::Name(n.path.clone()));
                self.report.unexpected.push(n);
            }
            Event::Embedded { manifest, data } => {
                let name = if manifest {
                    self.report.embedded_manifest = Some(data);
                    MANIFEST_MEMBER
                } else {
                    self.report.embedded_sums = Some(data);
                    SUMS_MEMBER
                };
                self.last_good = Some(Last::Name(name.to_string()));
            }
            Event::Lost { damage, resume } => self.lost(&damage, resume),
            Event::Failed { why, fresh } => {
                if fresh && !base_exact {
                    return false;
                }
                let last = self.last_name();
                self.report.stream.push(format!(
                    "{why}; last intact member: {}",
                    last.as_deref().unwrap_or("(none)")
                ));
            }
        }
        true
    }

    /// Every member not yet seen that starts before `resume` is damaged.
    fn lost(&mut self, d: &Damage, resume: Option<Restart>) {
        let last = self.last_name();
        let note = format!("in the damaged zstd frame at offset {}", d.frame_offset);
        let damaged = &mut self.report.damaged;
        let lost = mark_lost(self.entries, &mut self.seen, resume, |e| {
            damaged.push(PathNote {
                path: e.path_lossy(),
                note: note.clone(),
            })
        });
        // The lost members are named once, in `damaged`; naming them here too
        // made one line of tens of kilobytes for a truncated archive.
        self.report.damaged_frames.push(format!(
            "frame at offset {}: {}; last intact member before it: {}; {lost} member(s) lost",
            d.frame_offset,
            d.reason,
            last.as_deref().unwrap_or("(none)"),
        ));
    }

    fn last_name(&self) -> Option<String> {
        self.last_good.as_ref().map(|l| match l {
            Last::Entry(i) => self.entries[*i].path_lossy(),
            Last::Name(n) => n.clone(),
        })
    }

    /// The report, with every entry never met as missing.
    fn finish(mut self) -> CheckReport {
        for (i, e) in self.entries.iter().enumerate() {
            if e.pos.is_some() && !self.seen[i] {
                self.report.missing.push(PathNote {
                    path: e.path_lossy(),
                    note: "in the manifest but not in the archive".into(),
                });
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_the_member_start_nearest_its_share() {
        let cuts = [(100, 1), (400, 2), (1000, 3)];
        assert_eq!(nearest(&cuts, 50), Some((100, 1)));
        assert_eq!(nearest(&cuts, 240), Some((100, 1)));
        assert_eq!(nearest(&cuts, 260), Some((400, 2)));
        assert_eq!(nearest(&cuts, 5000), Some((1000, 3)));
        assert_eq!(nearest(&[], 5), None);
    }

    #[test]
    fn one_job_or_no_seek_table_is_one_segment() {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&[7u8; 4096], 0).unwrap();
        let r = [Restart {
            frame_offset: 2048,
            offset_in_frame: 0,
        }];
        assert_eq!(plan(&file, 4096, &r, 1), vec![Segment::WHOLE]);
        assert_eq!(plan(&file, 4096, &r, 8), vec![Segment::WHOLE]);
    }
}
