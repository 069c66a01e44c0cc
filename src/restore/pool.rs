//! Writer threads for a full restore: creating, writing, hashing, chowning and
//! renaming tens of thousands of small files is most of a restore's work, and
//! one thread doing it all (beside the decoder) left the other cores idle.
//!
//! The main thread still reads the archive in order and decides everything
//! about a member; only small dense files whose outcome nothing later depends
//! on go to the pool, each with its own handle on its parent. Outcomes are
//! recorded in archive order at the next [`Pool::wait_all`], which the main
//! thread calls before any member it handles itself and before anything else
//! goes into the report's lists, so the report is the one a single thread
//! writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::land::{Landing, Outcome, from_memory};
use crate::fsx::Dir;

/// Files up to this size go to the pool (read into memory whole first).
pub(super) const MAX_POOLED: u64 = 1 << 20;

/// Files are handed over in batches: one wake-up per file cost more than
/// the parallel writing gained.
const BATCH_FILES: usize = 64;
const BATCH_BYTES: usize = 1 << 20;

pub(super) struct Job {
    pub dir: Dir,
    pub land: Landing,
    pub data: Vec<u8>,
}

type Batch = (u64, Vec<Job>);
type Done = (u64, Vec<(Landing, Outcome)>);

pub(super) struct Pool {
    jobs: Option<SyncSender<Batch>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Paths handed out (or batched) and not yet recorded.
    pending: HashSet<Vec<u8>>,
    batch: Vec<Job>,
    batch_bytes: usize,
    /// Batches sent and not yet answered.
    sent: usize,
    next: u64,
}

impl Pool {
    /// `n` writers into DIR (`to`, for the signal handler's list of temporaries).
    pub fn new(n: usize, to: PathBuf) -> Pool {
        // Two batches per writer queued: enough to keep them busy, and a
        // few MiB of file data held at most.
        let (jobs, rx) = sync_channel::<Batch>(2 * n);
        let rx = Arc::new(Mutex::new(rx));
        let (tx, done) = channel();
        let to = Arc::new(to);
        let workers = (0..n)
            .map(|i| {
                let (rx, tx, to) = (rx.clone(), tx.clone(), to.clone());
                std::thread::Builder::new()
                    .name(format!("datamig-write-{i}"))
                    .spawn(move || work(&rx, &tx, &to))
                    .expect("spawn a writer thread")
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            done,
            workers,
            pending: HashSet::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            sent: 0,
            next: 0,
        }
    }

    /// Whether PATH, or a directory above it, is a file not yet recorded:
    /// a member under a pending file must see what one thread would have.
    pub fn is_pending(&self, path: &[u8]) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let ancestors = path
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| &path[..i]);
        self.pending.contains(path) || ancestors.into_iter().any(|a| self.pending.contains(a))
    }

    pub fn submit(&mut self, job: Job) {
        self.pending.insert(job.land.path.clone());
        self.batch_bytes += job.data.len();
        self.batch.push(job);
        if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let sent = self.jobs.as_ref().map(|j| j.send((self.next, batch)));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the writer threads stopped early"
        );
        self.next += 1;
        self.sent += 1;
    }

    /// Every outcome handed out so far, in the order the files were submitted.
    pub fn wait_all(&mut self) -> Vec<(Landing, Outcome)> {
        self.send();
        let mut out: Vec<Done> = (0..self.sent)
            .map(|_| {
                self.done
                    .recv()
                    .expect("a writer thread answers every batch")
            })
            .collect();
        self.sent = 0;
        self.pending.clear();
        out.sort_by_key(|d| d.0);
        out.into_iter().flat_map(|(_, d)| d).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(rx: &Mutex<Receiver<Batch>>, tx: &Sender<Done>, to: &Path) {
    loop {
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok((seq, batch))) = next else { return };
        let done = batch.into_iter().map(|job| write_one(job, to)).collect();
        if tx.send((seq, done)).is_err() {
            return;
        }
    }
}

fn write_one(job: Job, to: &Path) -> (Landing, Outcome) {
    let hash = job.land.want.is_some();
    // A panic must still answer, or `wait_all` would wait for ever.
    let placed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job.land
            .place(to, &job.dir, |f| Ok(from_memory(f, &job.data, hash)))
    }));
    let outcome = match placed {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::Error {
            notes: Vec::new(),
            why: format!("{e:#}"),
        },
        Err(_) => Outcome::Error {
            notes: Vec::new(),
            why: "internal error while writing it (a bug: please report it); nothing was put under its name".into(),
        },
    };
    (job.land, outcome)
}
