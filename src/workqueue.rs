//! One shared queue of jobs taken in order by every thread of a pool: the
//! scheduling the hashing phases need. A job list sorted largest first then
//! runs as "longest job first" (each idle thread takes the next biggest
//! file), so two big files are hashed at the same time on two threads.
//!
//! Why not `par_iter`: rayon splits a slice into one contiguous chunk per
//! thread up front and runs each chunk in series, re-splitting only when a
//! thread runs dry. With the jobs sorted by size the biggest ones all land in
//! the first chunk, and one thread hashed both 128 MiB files of a data root
//! while the other finished the small files and waited (issue 15, item 1).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Run `work(buf, job)` for every job of `jobs`, on every thread of `pool`;
/// each thread takes the next job not yet taken, so jobs start in list order.
/// `buf` is one scratch buffer of `buf_len` bytes per thread.
pub fn each_in_order<J: Sync>(
    pool: &rayon::ThreadPool,
    jobs: &[J],
    buf_len: usize,
    work: impl Fn(&mut [u8], &J) + Sync,
) {
    if jobs.is_empty() {
        return;
    }
    let next = AtomicUsize::new(0);
    let workers = pool.current_num_threads().min(jobs.len());
    pool.scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                let mut buf = vec![0u8; buf_len];
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(k) else { break };
                    work(&mut buf, job);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_job_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let jobs: Vec<usize> = (0..1000).collect();
        let seen = Mutex::new(vec![0u32; jobs.len()]);
        each_in_order(&pool, &jobs, 8, |buf, &j| {
            assert_eq!(buf.len(), 8);
            seen.lock().unwrap()[j] += 1;
        });
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
    }

    /// The two first (biggest) jobs run at the same time on two threads: the
    /// first waits until the second has started, which would never happen
    /// if one thread ran both in series (the test would hang, so it times
    /// out through a bounded wait instead).
    #[test]
    fn the_two_biggest_jobs_run_at_the_same_time() {
        use std::sync::mpsc;
        use std::time::Duration;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let jobs: Vec<usize> = (0..100).collect();
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let overlapped = Mutex::new(None);
        each_in_order(&pool, &jobs, 0, |_, &j| match j {
            0 => {
                let got = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
                *overlapped.lock().unwrap() = Some(got.is_ok());
            }
            1 => tx.send(()).unwrap(),
            _ => {}
        });
        assert_eq!(overlapped.into_inner().unwrap(), Some(true));
    }
}
