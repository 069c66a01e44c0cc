//! The gates a source passes before anything of it is deleted, for both
//! `archive --remove-source` and `retire`. Each gate runs one check and
//! returns a [`GateResult`]; [`Gates`] decides whether removal goes ahead
//! and records every failed check an override flag let through, so that a
//! report can never say "clean" about a removal a flag forced.
//!
//! Adding a gate: a [`Check`] variant, its override flag (if it has one) in
//! [`Overrides`], and a function returning its [`GateResult`], called from
//! [`policy`] when both verbs need it.

use std::path::Path;

use anyhow::Result;

use serde::Serialize;

use crate::archive::Source;
use crate::layout::Layout;
use crate::verify::migration::{Accepted, MigrationReport};

/// What a gate checks (the `check` field in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The archive was read back (or verified in full) against its manifest.
    Verify,
    /// Every entry was captured cleanly (nothing flagged).
    Capture,
    /// The live tree still is what the archive holds (retire).
    Audit,
    /// The target is not live V2 data.
    Live,
    /// `verify --migration` passes (targets that require it).
    Migration,
    /// No service, timer or cron entry points into the target (`datamig refs`).
    Refs,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Verify => "verify",
            Check::Capture => "capture",
            Check::Audit => "audit",
            Check::Live => "live",
            Check::Migration => "migration",
            Check::Refs => "refs",
        }
    }
}

/// How a gate's check came out (the `outcome` field in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
    /// The check did not run (`--no-verify`, or it could not run).
    Skipped,
}

/// The override flags, typed once from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--allow-live`: remove live V2 data.
    pub allow_live: bool,
    /// `--skip-migration-check`: remove although the migration check fails.
    pub skip_migration_check: bool,
    /// `--ignore-refs`: remove while services, timers or cron point into it.
    pub ignore_refs: bool,
}

impl Overrides {
    pub fn any(&self) -> bool {
        self.allow_live || self.skip_migration_check || self.ignore_refs
    }
}

pub const ALLOW_LIVE: &str = "--allow-live";
pub const SKIP_MIGRATION_CHECK: &str = "--skip-migration-check";
pub const IGNORE_REFS: &str = "--ignore-refs";

/// One gate's result.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub check: Check,
    pub outcome: Verdict,
    pub detail: String,
    /// The flag that let removal past this check although it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden_by: Option<&'static str>,
    /// What the operator is told when this gate keeps the source.
    #[serde(skip)]
    refusal: Option<String>,
}

impl GateResult {
    pub fn passed(check: Check, detail: impl Into<String>) -> GateResult {
        GateResult {
            check,
            outcome: Verdict::Passed,
            detail: detail.into(),
            overridden_by: None,
            refusal: None,
        }
    }

    /// A check that did not pass; `refusal` says why the source is kept and
    /// what to do. `flag` is its override flag and whether it was given.
    pub fn not_passed(
        check: Check,
        outcome: Verdict,
        detail: impl Into<String>,
        refusal: impl Into<String>,
        flag: Option<(&'static str, bool)>,
    ) -> GateResult {
        let overridden_by = flag.and_then(|(f, given)| given.then_some(f));
        GateResult {
            check,
            outcome,
            detail: detail.into(),
            refusal: overridden_by.is_none().then(|| refusal.into()),
            overridden_by,
        }
    }

    fn blocks(&self) -> bool {
        self.refusal.is_some()
    }
}

/// A failed or skipped check that an override flag let through (the
/// `overrides` list in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Override {
    pub flag: &'static str,
    pub check: Check,
    pub outcome: Verdict,
    pub detail: String,
}

impl Verdict {
    /// Loud when it did not pass: it is what an operator must not miss.
    pub fn shout(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "FAILED",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

impl Override {
    /// "migration check FAILED: 1 differs, 1 not migrated".
    pub fn what(&self) -> String {
        format!(
            "{} check {}: {}",
            self.check.name(),
            self.outcome.shout(),
            self.detail
        )
    }
}

/// Every gate's result, in the order they were run.
#[derive(Debug, Clone, Default)]
pub struct Gates(pub Vec<GateResult>);

impl Gates {
    /// Why the source must be kept (every blocking gate), if it must.
    pub fn refusal(&self) -> Option<String> {
        let why: Vec<&str> = self.0.iter().filter_map(|g| g.refusal.as_deref()).collect();
        (!why.is_empty()).then(|| format!("{}; the source was kept", why.join("; ")))
    }

    pub fn overrides(&self) -> Vec<Override> {
        self.0
            .iter()
            .filter_map(|g| {
                Some(Override {
                    flag: g.overridden_by?,
                    check: g.check,
                    outcome: g.outcome,
                    detail: g.detail.clone(),
                })
            })
            .collect()
    }

    pub fn passes(&self) -> bool {
        !self.0.iter().any(GateResult::blocks)
    }
}

/// What the policy gates look at.
pub struct PolicyInput<'a> {
    pub root: &'a Path,
    pub layout: &'a Layout,
    pub threads: usize,
    pub source: &'a Source,
    pub overrides: Overrides,
    /// `--accept PATH`: legacy files the migration check takes as obsolete.
    pub accept: &'a [String],
}

/// What the policy gates found.
pub struct Policy {
    pub gates: Vec<GateResult>,
    /// Legacy files the migration check passed because of `--accept`: the
    /// archive is their only copy, so the report names them.
    pub accepted: Vec<Accepted>,
}

/// The gates that depend on what the source is, not on how it was captured:
/// shared by `archive --remove-source` and `retire`.
pub fn policy(p: &PolicyInput) -> Policy {
    let mut policy = Policy {
        gates: vec![live(p)],
        accepted: Vec::new(),
    };
    if p.source.requires_migration_check {
        let (gate, accepted) = migration(p);
        policy.gates.push(gate);
        policy.accepted = accepted;
    }
    policy
}

/// What on this server points into `target` (`datamig refs TARGET`, with
/// `etc` standing for /etc), for the reference gate of both verbs.
pub fn search_refs(
    root: &Path,
    layout: &Layout,
    etc: Option<&Path>,
    target: &str,
    overrides: Overrides,
) -> Result<crate::refs::RefsGate> {
    let r = crate::refs::RefsOptions {
        root: root.to_path_buf(),
        layout: layout.clone(),
        targets: Vec::new(),
        etc: etc.map(Path::to_path_buf),
        extra: Vec::new(),
    };
    crate::refs::gate(&r, target, overrides.ignore_refs)
}

/// The reference gate (issue 16): services, timers and cron entries that
/// still point into the target block removal; code and web hits are warnings
/// the report lists beside it.
pub fn refs(found: &crate::refs::RefsGate, target: &str, overrides: Overrides) -> GateResult {
    let n = found.blocking.len();
    if n == 0 {
        return GateResult::passed(
            Check::Refs,
            format!(
                "no service, timer or cron entry points into {target} ({} other reference(s) listed as warnings)",
                found.warnings.len()
            ),
        );
    }
    GateResult::not_passed(
        Check::Refs,
        Verdict::Failed,
        format!("{n} service/timer/cron reference(s) point into {target}"),
        found.refusal(target).unwrap_or_default(),
        Some((IGNORE_REFS, overrides.ignore_refs)),
    )
}

fn live(p: &PolicyInput) -> GateResult {
    let t = &p.source.target;
    if !p.source.live {
        return GateResult::passed(Check::Live, format!("{t} is not live V2 data"));
    }
    GateResult::not_passed(
        Check::Live,
        Verdict::Failed,
        format!("{t} is live V2 data"),
        format!("{t} is live V2 data; removing it needs {ALLOW_LIVE}"),
        Some((ALLOW_LIVE, p.overrides.allow_live)),
    )
}

/// Runs `verify --migration` even when `--skip-migration-check` is given, so
/// that the report can say what the flag overrode.
fn migration(p: &PolicyInput) -> (GateResult, Vec<Accepted>) {
    let m = crate::verify::migration::verify_migration(
        p.root,
        p.layout,
        p.threads,
        p.accept,
        &crate::progress::Silent,
    );
    let accepted = m.as_ref().map(|m| m.accepted.clone()).unwrap_or_default();
    (migration_gate(p, m), accepted)
}

fn migration_gate(p: &PolicyInput, m: Result<MigrationReport>) -> GateResult {
    let t = &p.source.target;
    let flag = Some((SKIP_MIGRATION_CHECK, p.overrides.skip_migration_check));
    match m {
        Ok(m) if m.clean() => GateResult::passed(
            Check::Migration,
            format!(
                "every legacy file ({}) has an identical consolidated copy",
                m.legacy_files
            ),
        ),
        Ok(m) => {
            let detail = migration_counts(&m);
            GateResult::not_passed(
                Check::Migration,
                Verdict::Failed,
                detail.clone(),
                format!(
                    "{t} may only be removed after `datamig verify --migration` passes \
                     (or with {SKIP_MIGRATION_CHECK}): the migration check failed ({detail})"
                ),
                flag,
            )
        }
        Err(e) => GateResult::not_passed(
            Check::Migration,
            Verdict::Skipped,
            format!("could not run: {e:#}"),
            format!(
                "{t} may only be removed after `datamig verify --migration` passes \
                 (or with {SKIP_MIGRATION_CHECK}): it could not run: {e:#}"
            ),
            flag,
        ),
    }
}

/// "1 differs, 1 not migrated": the failing counts only.
fn migration_counts(m: &MigrationReport) -> String {
    let differ = if m.differs.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    [
        (m.differs.len(), differ),
        (m.not_migrated.len(), "not migrated"),
        (m.unmapped.len(), "unmapped"),
        (m.unreadable.len(), "unreadable"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(check: Check, flag: Option<(&'static str, bool)>) -> GateResult {
        GateResult::not_passed(check, Verdict::Failed, "detail", "why", flag)
    }

    #[test]
    fn a_given_flag_overrides_and_is_recorded() {
        let g = Gates(vec![
            GateResult::passed(Check::Verify, "ok"),
            failed(Check::Migration, Some((SKIP_MIGRATION_CHECK, true))),
        ]);
        assert!(g.passes());
        assert_eq!(g.refusal(), None);
        let o = g.overrides();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].flag, SKIP_MIGRATION_CHECK);
        assert_eq!(o[0].what(), "migration check FAILED: detail");
    }

    #[test]
    fn a_flag_not_given_or_no_flag_blocks() {
        let g = Gates(vec![
            failed(Check::Live, Some((ALLOW_LIVE, false))),
            failed(Check::Verify, None),
        ]);
        assert!(!g.passes());
        assert_eq!(g.refusal().unwrap(), "why; why; the source was kept");
        assert!(g.overrides().is_empty());
    }

    #[test]
    fn json_names_are_the_contract() {
        let g = failed(Check::Migration, Some((SKIP_MIGRATION_CHECK, true)));
        let v = serde_json::to_value(Gates(vec![g]).overrides()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"flag":"--skip-migration-check","check":"migration","outcome":"failed","detail":"detail"}])
        );
    }
}
