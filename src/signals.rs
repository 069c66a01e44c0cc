//! SIGINT/SIGTERM: remove this run's temporary files, then exit, so an
//! interrupted run never leaves anything that looks like a result.

use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
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
