//! Progress reporting. Library code talks to a `Progress`; only the CLI decides
//! whether that is an indicatif bar (stderr is a terminal) or nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub trait Progress: Sync {
    /// A new phase begins; `total_bytes` enables rate and ETA.
    fn phase(&self, name: &str, total_bytes: Option<u64>);
    fn advance(&self, items: u64, bytes: u64);
    fn finish(&self);
}

/// For tests, `-q` and piped runs.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}

pub struct Bar {
    pb: ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
        pb.enable_steady_tick(Duration::from_millis(250));
        Bar { pb }
    }
}

impl Progress for Bar {
    fn phase(&self, name: &str, total_bytes: Option<u64>) {
        let style = match total_bytes {
            Some(total) => {
                self.pb.set_length(total);
                self.pb.set_position(0);
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
            }
            None => {
                self.pb.unset_length();
                ProgressStyle::with_template("{prefix:>9} {spinner} {msg} {elapsed}")
            }
        };
        self.pb
            .set_style(style.expect("valid template").progress_chars("=> "));
        self.pb.set_prefix(name.to_string());
        self.pb.set_message(String::new());
        self.pb.reset_eta();
    }

    fn advance(&self, items: u64, bytes: u64) {
        if self.pb.length().is_some() {
            self.pb.inc(bytes);
        } else if items > 0 {
            // Spinner phases count entries in the message.
            let n: u64 = self.pb.message().parse().unwrap_or(0) + items;
            self.pb.set_message(format!("{n}"));
        }
    }

    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

/// The progress owner for a CLI run: a bar only when stderr is a terminal and
/// not quiet.
pub fn for_cli(quiet: bool) -> Box<dyn Progress> {
    if !quiet && std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Silent)
    }
}
