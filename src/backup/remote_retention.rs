//! Retention of the off-site copies of one backup target (`backup --to
//! URL`): the same policy engine as the local disk (`retention::apply`),
//! over the copies found at the location.
//!
//! What may ever be deleted: an archive named `PREFIX-YYYYMMDD-HHMMSS.tar.zst`
//! with BOTH sidecars present ([`role`] is the one place names are
//! recognised). Everything else there — another tool's objects, an archive
//! missing a sidecar (an interrupted copy) — is listed under `ignored` and
//! never touched.
//!
//! Safety rules, on top of the policy:
//! - The newest copy that passes `verify --quick` (size and SHA-256 of the
//!   remote bytes against its `.sha256`, both manifests' trailers) is never
//!   deleted. Tonight's copy counts as verified when `copy` just read it back
//!   equal; otherwise copies are verified newest first until one passes.
//!   Those newer that fail are kept too (they fill no keep slot) and listed
//!   under `failed_verify` (exit 1). When none passes, nothing is deleted.
//! - A copy with any of its three objects under S3 Object Lock retention
//!   until after `now` is never deleted (a plain DELETE in a versioned
//!   bucket would only add a delete marker and look like success); it is
//!   listed under `locked` with its date, and is an ordinary candidate once
//!   the date has passed.
//! - Deletion order: the archive, then the `.manifest.jsonl`, then the
//!   `.sha256`. A run killed midway leaves sidecars without their archive;
//!   no copy ever leaves that shape (it uploads the archive first), so the
//!   next run recognises it and finishes the removal (`finished`) — only for
//!   a stamp older than the newest verified copy; anything newer is left
//!   alone and listed.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::parse_name;
use super::retention::{self, Action, Decision, Policy};
use crate::archive::{MANIFEST_SIDECAR, SHA_SIDECAR, manifest_sidecar_name};
use crate::crypt::AGE_SUFFIX;
use crate::remote::lock::{LockMode, rfc3339};
use crate::remote::{Location, Store, Tuning};
use crate::summary::PathNote;

/// What a name at the location is to the retention of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A backup archive of the target, stamped at this time.
    Archive(Timestamp),
    /// A sidecar of the backup archive named here.
    Sidecar(String),
    /// Anything else: never a candidate.
    Other,
}

/// The one place a remote name is recognised (extend it here for new
/// archive shapes, e.g. encrypted names).
pub fn role(prefix: &str, name: &str) -> Role {
    if let Some(t) = parse_name(prefix, name) {
        return Role::Archive(t);
    }
    // An encrypted archive's manifest sidecar drops the archive's `.age`
    // and ends with its own (`NAME.tar.zst.manifest.jsonl.age`).
    let encrypted_manifest = format!("{MANIFEST_SIDECAR}{AGE_SUFFIX}");
    let candidates = [
        name.strip_suffix(SHA_SIDECAR).map(str::to_string),
        name.strip_suffix(MANIFEST_SIDECAR).map(str::to_string),
        name.strip_suffix(encrypted_manifest.as_str())
            .map(|plain| format!("{plain}{AGE_SUFFIX}")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|a| parse_name(prefix, a).is_some() && sidecars(a).iter().any(|s| s == name))
        .map_or(Role::Other, Role::Sidecar)
}

/// The two sidecars of `archive`, in the order they are deleted (after the
/// archive): the manifest, then the `.sha256` last.
pub fn sidecars(archive: &str) -> [String; 2] {
    [
        manifest_sidecar_name(archive),
        format!("{archive}{SHA_SIDECAR}"),
    ]
}

#[derive(Debug, Clone)]
pub struct RemoteRetentionOptions {
    /// The backup target's archive prefix (`v2-data`).
    pub prefix: String,
    pub policy: Policy,
    pub now: Timestamp,
    /// Read and decide, delete nothing.
    pub dry_run: bool,
    /// Tonight's copy when `copy` read it back equal to the archive: the
    /// newest verified copy without a second read.
    pub proved: Option<String>,
    /// With `dry_run`: the copy the real run would make, counted as the
    /// newest (and verified) copy, as it will be.
    pub would_copy: Option<String>,
}

/// A copy kept because it is locked.
#[derive(Debug, Clone, Serialize)]
pub struct LockedCopy {
    pub name: String,
    /// The object whose retention holds it (the latest date of the three).
    pub object: String,
    pub mode: Option<LockMode>,
    pub retain_until: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteRetention {
    pub location: String,
    pub policy: Policy,
    pub policy_text: String,
    pub dry_run: bool,
    /// The newest copy that passes `verify --quick` (never removed).
    pub newest_verified: Option<String>,
    /// Copies newer than `newest_verified` that fail `verify --quick`, with
    /// why: kept, and a problem (exit 1).
    pub failed_verify: Vec<PathNote>,
    /// Copy names kept / removed (with --dry-run: that would be removed).
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    /// Every decision with its reasons, newest first.
    pub decisions: Vec<Decision>,
    /// Objects at the location that are not candidates, with why; never
    /// touched.
    pub ignored: Vec<PathNote>,
    /// Copies the policy would remove but Object Lock holds, with the date.
    pub locked: Vec<LockedCopy>,
    /// Sidecars a killed removal left without their archive, removed now
    /// (with --dry-run: that would be).
    pub finished: Vec<String>,
    /// Objects that could not be removed (or whose lock could not be read),
    /// with the store's error (exit 1).
    pub remove_errors: Vec<PathNote>,
    /// Retention could not run at all (e.g. the store cannot be listed).
    pub error: Option<String>,
}

impl RemoteRetention {
    pub fn clean(&self) -> bool {
        self.failed_verify.is_empty() && self.remove_errors.is_empty() && self.error.is_none()
    }
}

/// A complete copy: an archive with both sidecars.
struct Candidate {
    name: String,
    time: Timestamp,
    /// The copy a dry run stands in for: not there to verify.
    planned: bool,
}

/// The remote policy: the local one, with each `--remote-keep-*` given
/// replacing its rule (`[last, daily, weekly, monthly]`).
pub fn remote_policy(local: Policy, overrides: [Option<u32>; 4]) -> Policy {
    let [last, daily, weekly, monthly] = overrides;
    Policy {
        keep_last: last.unwrap_or(local.keep_last),
        keep_daily: daily.unwrap_or(local.keep_daily),
        keep_weekly: weekly.unwrap_or(local.keep_weekly),
        keep_monthly: monthly.unwrap_or(local.keep_monthly),
    }
}

/// Apply retention to the copies at `location`. Never fails: a problem is
/// in the report (`error`, `remove_errors`), so the local outcome stands.
pub fn run(location: &Location, o: &RemoteRetentionOptions) -> RemoteRetention {
    let mut r = RemoteRetention {
        location: location.url(),
        policy: o.policy,
        policy_text: o.policy.describe(),
        dry_run: o.dry_run,
        newest_verified: None,
        failed_verify: vec![],
        kept: vec![],
        removed: vec![],
        decisions: vec![],
        ignored: vec![],
        locked: vec![],
        finished: vec![],
        remove_errors: vec![],
        error: None,
    };
    let store = Tuning::from_env().and_then(|t| Store::open(location, t));
    if let Err(e) = store.and_then(|s| apply(&s, o, &mut r)) {
        r.error = Some(format!("{e:#}; no remote copy was removed"));
    }
    r
}

fn apply(store: &Store, o: &RemoteRetentionOptions, r: &mut RemoteRetention) -> anyhow::Result<()> {
    let names: BTreeSet<String> = store.list()?.into_iter().map(|x| x.name).collect();
    let (mut candidates, orphans) = sort_names(&names, &o.prefix, &mut r.ignored);
    // A name already taken there makes the real copy fail: then it is not
    // counted.
    if let Some(n) = o.would_copy.as_ref().filter(|n| !names.contains(*n)) {
        candidates.push(Candidate {
            name: n.clone(),
            time: o.now,
            planned: true,
        });
    }
    let flagged = find_newest_verified(store, o, &candidates, r);
    let input: Vec<retention::Backup> = candidates
        .iter()
        .map(|c| retention::Backup {
            name: c.name.clone(),
            time: c.time,
            flagged: flagged.contains(&c.name),
        })
        .collect();
    r.decisions = retention::apply(&input, &o.policy, o.now);
    explain(&mut r.decisions, r.newest_verified.as_deref());
    let lockable = r.decisions.iter().any(|d| d.action == Action::Remove) || !orphans.is_empty();
    let lockable = lockable && store.lock_enabled()?;
    for i in 0..r.decisions.len() {
        if r.decisions[i].action == Action::Remove {
            remove_copy(store, o, lockable, i, r);
        }
    }
    let newest_verified_time = r
        .newest_verified
        .as_ref()
        .and_then(|n| candidates.iter().find(|c| &c.name == n))
        .map(|c| c.time);
    for (archive, present) in orphans {
        finish_removal(
            store,
            o,
            lockable,
            &archive,
            &present,
            newest_verified_time,
            r,
        );
    }
    r.kept = r
        .decisions
        .iter()
        .filter(|d| d.action == Action::Keep)
        .map(|d| d.name.clone())
        .collect();
    Ok(())
}

/// Split the listing into complete copies, sidecars without their archive
/// (by archive name), and everything else (into `ignored`).
fn sort_names(
    names: &BTreeSet<String>,
    prefix: &str,
    ignored: &mut Vec<PathNote>,
) -> (Vec<Candidate>, BTreeMap<String, Vec<String>>) {
    let mut candidates = Vec::new();
    let mut orphans: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        match role(prefix, name) {
            Role::Archive(time) => {
                let missing: Vec<String> = sidecars(name)
                    .into_iter()
                    .filter(|s| !names.contains(s))
                    .collect();
                if missing.is_empty() {
                    candidates.push(Candidate {
                        name: name.clone(),
                        time,
                        planned: false,
                    });
                } else {
                    ignored.push(PathNote {
                        path: name.clone(),
                        note: format!(
                            "{} missing (an interrupted copy, or not datamig's): never removed",
                            missing.join(" and ")
                        ),
                    });
                }
            }
            Role::Sidecar(a) if !names.contains(&a) => {
                orphans.entry(a).or_default().push(name.clone())
            }
            Role::Sidecar(_) => {}
            Role::Other => ignored.push(PathNote {
                path: name.clone(),
                note: format!(
                    "not a backup of this target ({prefix}-YYYYMMDD-HHMMSS.tar.zst with both sidecars): never removed"
                ),
            }),
        }
    }
    (candidates, orphans)
}

/// Walk the copies newest first (not after `now`) until one passes `verify
/// --quick`; returns those that failed before it.
fn find_newest_verified(
    store: &Store,
    o: &RemoteRetentionOptions,
    candidates: &[Candidate],
    r: &mut RemoteRetention,
) -> BTreeSet<String> {
    let mut order: Vec<&Candidate> = candidates.iter().filter(|c| c.time <= o.now).collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut failed = BTreeSet::new();
    for c in order {
        let trusted = c.planned || o.proved.as_ref() == Some(&c.name);
        match if trusted {
            None
        } else {
            fails_verify(store, &c.name)
        } {
            None => {
                r.newest_verified = Some(c.name.clone());
                break;
            }
            Some(why) => {
                r.failed_verify.push(PathNote {
                    path: store.location().url_of(&c.name),
                    note: why,
                });
                failed.insert(c.name.clone());
            }
        }
    }
    failed
}

/// Why the remote copy `name` fails `verify --quick`, or None.
fn fails_verify(store: &Store, name: &str) -> Option<String> {
    let silent = crate::progress::Silent;
    match crate::verify::remote::verify_remote(store.location(), name, true, 1, &silent) {
        Err(e) => Some(format!("{e:#}")),
        Ok(v) if v.clean() => None,
        Ok(v) => {
            let n = v.discrepancies.len();
            let first = v.discrepancies.into_iter().next().unwrap_or_default();
            Some(match n {
                0 | 1 => first,
                _ => format!("{first}; and {} more", n - 1),
            })
        }
    }
}

pub const REASON_FAILS_VERIFY: &str = "fails verify --quick: counts toward no keep rule";
pub const REASON_NEWEST_VERIFIED: &str = "newest copy that passes verify --quick";
pub const REASON_NONE_VERIFIED: &str = "no copy passes verify --quick: nothing is removed";

/// The reasons in the remote's words; with no verified copy, keep all.
fn explain(decisions: &mut [Decision], newest_verified: Option<&str>) {
    for d in decisions.iter_mut() {
        for why in d.reasons.iter_mut() {
            if why == retention::REASON_FLAGGED {
                *why = REASON_FAILS_VERIFY.into();
            }
            if why == retention::REASON_NEWEST_COMPLETE {
                *why = REASON_NEWEST_VERIFIED.into();
            }
        }
        if d.flagged && !d.reasons.iter().any(|r| r == REASON_FAILS_VERIFY) {
            d.reasons.push(REASON_FAILS_VERIFY.into());
        }
        if newest_verified.is_none() && d.action == Action::Remove {
            d.action = Action::Keep;
            d.reasons = vec![REASON_NONE_VERIFIED.into()];
        }
    }
}

/// The latest retention date after `now` among `objects`: Ok(None) when
/// none is locked.
fn locked_until(
    store: &Store,
    now: Timestamp,
    objects: &[String],
) -> anyhow::Result<Option<(String, crate::remote::lock::Retention)>> {
    let mut latest: Option<(String, crate::remote::lock::Retention)> = None;
    for obj in objects {
        if let Some(ret) = store.retention(obj)?
            && ret.until > now
            && latest.as_ref().is_none_or(|(_, l)| ret.until > l.until)
        {
            latest = Some((obj.clone(), ret));
        }
    }
    Ok(latest)
}

/// Remove the copy of decision `i` unless a lock holds it: archive, then
/// manifest, then `.sha256`; the first failure stops (the rest stays).
fn remove_copy(
    store: &Store,
    o: &RemoteRetentionOptions,
    lockable: bool,
    i: usize,
    r: &mut RemoteRetention,
) {
    let name = r.decisions[i].name.clone();
    let [manifest, sha] = sidecars(&name);
    let objects = [name.clone(), manifest, sha];
    if lockable
        && let Err(why) = held_free(
            store,
            o.now,
            &name,
            &objects,
            &mut r.locked,
            &mut r.remove_errors,
        )
    {
        let d = &mut r.decisions[i];
        d.action = Action::Keep;
        d.reasons.insert(0, why);
        return;
    }
    if o.dry_run {
        r.removed.push(name);
        return;
    }
    for obj in &objects {
        if let Err(e) = store.delete(obj) {
            r.remove_errors.push(PathNote {
                path: store.location().url_of(obj),
                note: format!("{e:#}"),
            });
            return;
        }
    }
    r.removed.push(name);
}

/// Ok when the copy `name` may go; Err(why not) when a lock holds it (listed
/// under `locked`) or its lock cannot be read (under `errors`).
fn held_free(
    store: &Store,
    now: Timestamp,
    name: &str,
    objects: &[String],
    locked: &mut Vec<LockedCopy>,
    errors: &mut Vec<PathNote>,
) -> Result<(), String> {
    match locked_until(store, now, objects) {
        Ok(None) => Ok(()),
        Ok(Some((obj, ret))) => {
            let until = rfc3339(ret.until);
            locked.push(LockedCopy {
                name: name.to_string(),
                object: store.location().url_of(&obj),
                mode: ret.mode,
                retain_until: until.clone(),
            });
            Err(format!(
                "locked until {until} (Object Lock): not removed before then"
            ))
        }
        Err(e) => {
            errors.push(PathNote {
                path: store.location().url_of(name),
                note: format!("{e:#}; not removed"),
            });
            Err("its Object Lock retention could not be read: not removed".into())
        }
    }
}

/// Sidecars left by a killed removal: removed (manifest, then `.sha256`)
/// when their stamp is older than the newest verified copy; else listed.
fn finish_removal(
    store: &Store,
    o: &RemoteRetentionOptions,
    lockable: bool,
    archive: &str,
    present: &[String],
    newest_verified: Option<Timestamp>,
    r: &mut RemoteRetention,
) {
    let older = parse_name(&o.prefix, archive)
        .zip(newest_verified)
        .is_some_and(|(t, n)| t < n);
    if !older {
        for p in present {
            r.ignored.push(PathNote {
                path: p.clone(),
                note: "a sidecar without its archive, not older than the newest verified copy: left alone".into(),
            });
        }
        return;
    }
    let ordered: Vec<String> = sidecars(archive)
        .into_iter()
        .filter(|s| present.contains(s))
        .collect();
    if lockable
        && held_free(
            store,
            o.now,
            archive,
            &ordered,
            &mut r.locked,
            &mut r.remove_errors,
        )
        .is_err()
    {
        return;
    }
    for obj in &ordered {
        if !o.dry_run
            && let Err(e) = store.delete(obj)
        {
            r.remove_errors.push(PathNote {
                path: store.location().url_of(obj),
                note: format!("{e:#}"),
            });
            return;
        }
        r.finished.push(obj.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_flags_override_the_local_policy_per_rule() {
        let local = Policy {
            keep_last: 2,
            keep_daily: 3,
            keep_weekly: 0,
            keep_monthly: 1,
        };
        assert_eq!(remote_policy(local, [None; 4]), local);
        let p = remote_policy(local, [None, Some(10), Some(4), None]);
        assert_eq!(
            (p.keep_last, p.keep_daily, p.keep_weekly, p.keep_monthly),
            (2, 10, 4, 1)
        );
    }

    #[test]
    fn names_are_recognised_in_one_place() {
        let p = "v2-data";
        let a = "v2-data-20270101-020000.tar.zst";
        assert!(matches!(role(p, a), Role::Archive(_)));
        assert_eq!(
            role(p, &format!("{a}.sha256")),
            Role::Sidecar(a.to_string())
        );
        assert_eq!(
            role(p, &format!("{a}.manifest.jsonl")),
            Role::Sidecar(a.to_string())
        );
        let e = "v2-data-20270101-020000.tar.zst.age";
        assert!(matches!(role(p, e), Role::Archive(_)));
        assert_eq!(
            role(p, &format!("{e}.sha256")),
            Role::Sidecar(e.to_string())
        );
        assert_eq!(
            role(p, &format!("{a}.manifest.jsonl.age")),
            Role::Sidecar(e.to_string())
        );
        assert_eq!(role(p, &format!("{e}.manifest.jsonl")), Role::Other);
        for other in [
            "notes.txt",
            "v2-data-latest.tar.zst",
            "other-20270101-020000.tar.zst",
            "v2-data-20270101-020000.tar.zst.bak",
            "v2-data-20271301-020000.tar.zst.sha256",
        ] {
            assert_eq!(role(p, other), Role::Other, "{other}");
        }
        assert_eq!(
            sidecars(a),
            [format!("{a}.manifest.jsonl"), format!("{a}.sha256")]
        );
    }
}
