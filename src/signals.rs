//! SIGINT/SIGTERM: remove this run's temporary files, then exit, so an
//! interrupted run never leaves anything that looks like a result.

use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

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
                eprintln!("datamig: interrupted by signal {sig}; unfinished temporary files removed; no partial result was left under a final name");
                crate::atomic::remove_temps_and_exit(128 + sig);
            }
        })
        .ok();
}
