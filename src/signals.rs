//! SIGINT/SIGTERM: remove this run's temporary files, then exit, so an
//! interrupted run never leaves anything that looks like a result.
//!
//! Some cleanup can only be done by the thread doing the work: an S3
//! multipart upload is aborted through the writer that holds its id. Such
//! work holds a [`Busy`] guard and polls [`interrupted`]; the signal thread
//! waits (a bounded time) for the guards to go before it exits.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// How long the signal thread waits for a [`Busy`] cleanup (an abort request
/// to a store that no longer answers must not keep the process alive).
const CLEANUP_WAIT: Duration = Duration::from_secs(20);

/// Held while work that must clean up itself on a signal is in progress.
pub struct Busy(());

impl Busy {
    pub fn start() -> Busy {
        BUSY.fetch_add(1, Ordering::SeqCst);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The signal that interrupted this run, if one did.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// For a [`Busy`] holder that has cleaned up after a signal: end the run as
/// the signal thread would (temporaries removed, exit 128 + the signal).
pub fn exit_interrupted(sig: i32) -> ! {
    crate::atomic::remove_temps_and_exit(128 + sig)
}

pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    // Past RLIMIT_FSIZE the kernel sends SIGXFSZ, whose default action kills
    // the process before any cleanup runs, leaving the temporary file behind.
    // Ignored, write() fails with EFBIG instead and the normal error path
    // removes the temporary file and exits 2.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let mut signals =
        match signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP]) {
            Ok(s) => s,
            Err(_) => return,
        };
    std::thread::Builder::new()
        .name("datamig-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                SIGNAL.store(sig, Ordering::SeqCst);
                let uploading = BUSY.load(Ordering::SeqCst) > 0;
                eprintln!(
                    "datamig: interrupted by signal {sig}; unfinished temporary files removed{}; no partial result was left under a final name",
                    if uploading { ", the unfinished upload is aborted before exit" } else { "" }
                );
                let start = Instant::now();
                while BUSY.load(Ordering::SeqCst) > 0 && start.elapsed() < CLEANUP_WAIT {
                    std::thread::sleep(Duration::from_millis(10));
                }
                crate::atomic::remove_temps_and_exit(128 + sig);
            }
        })
        .ok();
}
