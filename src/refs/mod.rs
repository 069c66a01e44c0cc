//! `datamig refs`: what on this server (systemd units, cron, nginx,
//! logrotate, environment files, the code checkouts) still points at the
//! paths being retired, and the gate `archive --remove-source` runs before
//! removing them. The search spec comes from the layout (`spec`), the
//! matching from Aho-Corasick with whole-path boundaries (`matcher`), the
//! walk from ripgrep's `ignore` crate (`search`).

pub mod matcher;
pub mod search;
pub mod spec;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::layout::Layout;
use crate::summary::PathNote;

#[derive(Debug, Clone)]
pub struct RefsOptions {
    pub root: PathBuf,
    pub layout: Layout,
    /// Targets or root-relative paths; empty: every target removal allows.
    pub targets: Vec<String>,
    /// `/etc`, or `--etc DIR` (then the other system directories are looked up under it).
    pub etc: Option<PathBuf>,
    /// `--in DIR`, searched as "other".
    pub extra: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Service,
    Timer,
    Cron,
    Web,
    Logrotate,
    Code,
    Other,
}

impl HitKind {
    /// Something that runs on its own and breaks when the path is gone.
    pub fn blocks_removal(self) -> bool {
        matches!(self, HitKind::Service | HitKind::Timer | HitKind::Cron)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub file: String,
    /// 1-based; 0 for a symlink whose target is the reference.
    pub line: u64,
    pub kind: HitKind,
    /// The unit (`hacs.service`), the cron schedule (`crontab: 0 3 * * *`),
    /// the checkout, or the file.
    pub owner: Option<String>,
    /// `WorkingDirectory=`, `Environment=DATA_PATH=`, `alias`, `NAME=`.
    pub directive: Option<String>,
    /// The target (or PATH argument) the hit points into.
    pub target: String,
    /// The line, trimmed and cut to 160 characters.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Searched {
    pub target: String,
    pub spellings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefsReport {
    pub report: &'static str,
    pub version: u32,
    pub targets: Vec<Searched>,
    /// The places that exist on this server and were searched.
    pub searched: Vec<String>,
    pub files: u64,
    pub hits: Vec<Hit>,
    pub skipped_binary: Vec<String>,
    pub skipped_large: Vec<String>,
    pub unreadable: Vec<PathNote>,
    pub seconds: f64,
}

impl RefsReport {
    /// Nothing points at a retiring path, and every place could be read.
    pub fn clean(&self) -> bool {
        self.hits.is_empty() && self.unreadable.is_empty()
    }
}

pub fn run(opts: &RefsOptions) -> Result<RefsReport> {
    let started = Instant::now();
    let etc = match &opts.etc {
        Some(d) if !d.is_dir() => bail!(
            "--etc {} is not a directory; name the directory that stands for /etc",
            d.display()
        ),
        Some(d) => d.clone(),
        None => PathBuf::from("/etc"),
    };
    for d in &opts.extra {
        if !d.exists() {
            bail!(
                "--in {} does not exist; name a file or directory to search",
                d.display()
            );
        }
    }
    let retiring = spec::retiring(&opts.root, &opts.layout, &opts.targets)?;
    let mut places = spec::system_places(&etc, opts.etc.is_some());
    places.extend(spec::code_places(&opts.root, &opts.layout));
    places.extend(opts.extra.iter().map(|p| spec::Place {
        path: p.clone(),
        kind: spec::PlaceKind::Other,
    }));
    let matcher = matcher::Matcher::new(&retiring, &spec::root_spellings(&opts.root))?;
    let found = search::search(&places, &retiring, &matcher);
    Ok(RefsReport {
        report: "refs",
        version: 1,
        targets: retiring
            .iter()
            .map(|r| Searched {
                target: r.target.clone(),
                spellings: r.absolute.clone(),
            })
            .collect(),
        searched: places
            .iter()
            .filter(|p| std::fs::symlink_metadata(&p.path).is_ok())
            .map(|p| p.path.display().to_string())
            .collect(),
        files: found.files,
        hits: found.hits,
        skipped_binary: found.skipped_binary,
        skipped_large: found.skipped_large,
        unreadable: found.unreadable,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the removal gate found for one target; part of the archive report.
#[derive(Debug, Clone, Serialize)]
pub struct RefsGate {
    /// Services, timers and cron entries pointing into the target.
    pub blocking: Vec<Hit>,
    /// Everything else (code, web, logrotate, other) and unreadable places.
    pub warnings: Vec<Hit>,
    pub unreadable: Vec<PathNote>,
    /// `--ignore-refs`: removal went ahead regardless.
    pub ignored: bool,
}

impl RefsGate {
    /// Why removal must wait, naming what still points into the target.
    pub fn refusal(&self, target: &str) -> Option<String> {
        if self.blocking.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .blocking
            .iter()
            .take(5)
            .map(|h| {
                format!(
                    "{} ({}:{})",
                    h.owner.as_deref().unwrap_or("?"),
                    h.file,
                    h.line
                )
            })
            .collect();
        let more = self.blocking.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "{} service/timer/cron reference(s) still point into {target}: {}{more}; \
             change them (see `datamig refs {target}`) or pass --ignore-refs",
            self.blocking.len(),
            names.join(", ")
        ))
    }
}

/// The search of [`run`] scoped to `target`, split into what blocks removal
/// and what only warns. Self-contained so every removal path (archive,
/// retire) can run the same gate.
pub fn gate(opts: &RefsOptions, target: &str, ignore: bool) -> Result<RefsGate> {
    let scoped = RefsOptions {
        targets: vec![target.to_string()],
        ..opts.clone()
    };
    let r = run(&scoped)?;
    let (blocking, warnings) = r.hits.into_iter().partition(|h| h.kind.blocks_removal());
    Ok(RefsGate {
        blocking,
        warnings,
        unreadable: r.unreadable,
        ignored: ignore,
    })
}
