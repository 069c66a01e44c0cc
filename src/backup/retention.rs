//! Which backups to keep: a pure `apply(backups, policy, now)` in the manner of
//! restic's `forget`, returning keep/remove with the reasons for each.
//!
//! A flagged backup (its run exited 1: its manifest records entries not
//! captured cleanly) is not a complete copy, so it never fills a `keep-*`
//! slot: the rules look only at complete backups. Whatever the policy, the
//! newest backup and the newest complete backup are kept — so a flagged run
//! can never push the last complete backup out.
//!
//! Calendar buckets (day, ISO week, month) are taken in UTC, the zone backup
//! names are stamped in. Rules count backups, not age, so the same set of
//! backups gives the same decisions whatever `now` is — except that a backup
//! stamped after `now` (clock skew) is kept, "in the future", and takes part in
//! no rule until `now` passes it.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};

/// One backup as retention sees it: a name, the moment it was taken, and
/// whether it is flagged (not a complete copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub name: String,
    pub time: Timestamp,
    pub flagged: bool,
}

/// How many backups each rule keeps; 0 switches a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl Policy {
    /// What `datamig backup` keeps when no `--keep-*` flag is given.
    pub const DEFAULT: Policy = Policy {
        keep_last: 0,
        keep_daily: 7,
        keep_weekly: 0,
        keep_monthly: 0,
    };

    /// The policy from the `--keep-*` flags: the given ones (others off), or
    /// [`Policy::DEFAULT`] when none is given.
    pub fn from_flags(
        last: Option<u32>,
        daily: Option<u32>,
        weekly: Option<u32>,
        monthly: Option<u32>,
    ) -> Policy {
        if last.is_none() && daily.is_none() && weekly.is_none() && monthly.is_none() {
            return Policy::DEFAULT;
        }
        Policy {
            keep_last: last.unwrap_or(0),
            keep_daily: daily.unwrap_or(0),
            keep_weekly: weekly.unwrap_or(0),
            keep_monthly: monthly.unwrap_or(0),
        }
    }

    /// E.g. "keep-daily 7, keep-monthly 12"; "no keep rule" when all are off.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .rules()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{} {n}", r.flag()))
            .collect();
        if parts.is_empty() {
            "no keep rule (only the newest backup is kept)".into()
        } else {
            parts.join(", ")
        }
    }

    fn rules(&self) -> [(Rule, u32); 4] {
        [
            (Rule::Last, self.keep_last),
            (Rule::Daily, self.keep_daily),
            (Rule::Weekly, self.keep_weekly),
            (Rule::Monthly, self.keep_monthly),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub name: String,
    #[serde(serialize_with = "rfc3339")]
    pub time: Timestamp,
    pub action: Action,
    /// Not a complete copy (its run reported problems): counts toward no rule.
    pub flagged: bool,
    /// For a kept backup, everything that keeps it; for a removed one, why
    /// each active rule passed it over.
    pub reasons: Vec<String>,
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.strftime("%Y-%m-%dT%H:%M:%SZ"))
}

pub const REASON_NEWEST: &str = "newest backup";
pub const REASON_NEWEST_COMPLETE: &str = "newest complete backup";
pub const REASON_FLAGGED: &str =
    "flagged (its run reported entries not captured cleanly): counts toward no keep rule";
pub const REASON_FUTURE: &str = "in the future";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Last,
    Daily,
    Weekly,
    Monthly,
}

impl Rule {
    fn flag(self) -> &'static str {
        match self {
            Rule::Last => "keep-last",
            Rule::Daily => "keep-daily",
            Rule::Weekly => "keep-weekly",
            Rule::Monthly => "keep-monthly",
        }
    }

    /// The calendar bucket of a time (UTC), written for the reasons; `Last`
    /// puts every backup in a bucket of its own.
    fn bucket(self, t: Timestamp, index: usize) -> String {
        let d = t.to_zoned(TimeZone::UTC).date();
        match self {
            Rule::Last => format!("#{index}"),
            Rule::Daily => d.strftime("%Y-%m-%d").to_string(),
            Rule::Weekly => {
                let w = d.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Rule::Monthly => d.strftime("%Y-%m").to_string(),
        }
    }
}

/// Decide, for every backup, keep or remove — newest first.
///
/// Each rule walks the backups from newest to oldest and keeps the first
/// backup of each bucket until it has kept N (`keep-last`: the N newest;
/// `keep-daily`: the newest of each of the last N distinct days with backups;
/// weekly by ISO week, monthly by calendar month). A backup kept by any rule is
/// kept. The newest backup not after `now` is always kept, whatever the policy,
/// and so is the newest complete (unflagged) one; backups after `now` are kept
/// and left out of the rules, and flagged ones are left out of the rules.
pub fn apply(backups: &[Backup], policy: &Policy, now: Timestamp) -> Vec<Decision> {
    let mut sorted: Vec<&Backup> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut decisions: Vec<Decision> = sorted
        .iter()
        .map(|b| Decision {
            name: b.name.clone(),
            time: b.time,
            action: Action::Remove,
            flagged: b.flagged,
            reasons: vec![],
        })
        .collect();
    let present: Vec<usize> = (0..sorted.len())
        .filter(|&i| sorted[i].time <= now)
        .collect();
    for (i, d) in decisions.iter_mut().enumerate() {
        if sorted[i].time > now {
            d.action = Action::Keep;
            d.reasons.push(REASON_FUTURE.into());
        }
    }
    if let Some(&i) = present.first() {
        decisions[i].action = Action::Keep;
        decisions[i].reasons.push(REASON_NEWEST.into());
    }
    let complete: Vec<usize> = present
        .iter()
        .copied()
        .filter(|&i| !sorted[i].flagged)
        .collect();
    if let Some(&i) = complete.first()
        && Some(&i) != present.first()
    {
        decisions[i].action = Action::Keep;
        decisions[i].reasons.push(REASON_NEWEST_COMPLETE.into());
    }
    let mut passed_over: Vec<Vec<String>> = vec![vec![]; sorted.len()];
    for &i in &present {
        if sorted[i].flagged {
            passed_over[i].push(REASON_FLAGGED.into());
        }
    }
    for (rule, n) in policy.rules() {
        if n == 0 {
            continue;
        }
        let mut kept = 0u32;
        let mut last_bucket: Option<String> = None;
        for (k, &i) in complete.iter().enumerate() {
            let bucket = rule.bucket(sorted[i].time, k);
            if last_bucket.as_deref() == Some(bucket.as_str()) {
                passed_over[i].push(format!("{}: {bucket} has a newer backup", rule.flag()));
                continue;
            }
            last_bucket = Some(bucket.clone());
            if kept < n {
                kept += 1;
                let d = &mut decisions[i];
                d.action = Action::Keep;
                d.reasons.push(match rule {
                    Rule::Last => rule.flag().to_string(),
                    _ => format!("{} ({bucket})", rule.flag()),
                });
            } else {
                passed_over[i].push(match rule {
                    Rule::Last => format!("{}: beyond the {n} newest", rule.flag()),
                    _ => format!(
                        "{}: older than the {n} newest {}",
                        rule.flag(),
                        rule.unit(n)
                    ),
                });
            }
        }
    }
    for (d, why) in decisions.iter_mut().zip(passed_over) {
        if d.action == Action::Remove {
            d.reasons = if why.is_empty() {
                vec!["no keep rule".into()]
            } else {
                why
            };
        }
    }
    decisions
}

impl Rule {
    fn unit(self, n: u32) -> &'static str {
        match (self, n == 1) {
            (Rule::Daily, true) => "day",
            (Rule::Daily, false) => "days",
            (Rule::Weekly, true) => "week",
            (Rule::Weekly, false) => "weeks",
            (Rule::Monthly, true) => "month",
            (Rule::Monthly, false) => "months",
            (Rule::Last, _) => "backups",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// `YYYYMMDD-HHMMSS` (UTC) as a backup named after it.
    fn b(stamp: &str) -> Backup {
        let dt = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", stamp).unwrap();
        Backup {
            name: stamp.to_string(),
            time: dt.to_zoned(TimeZone::UTC).unwrap().timestamp(),
            flagged: false,
        }
    }

    /// `b`, but flagged when the stamp ends in `!` ("20260110-020000!").
    fn bf(stamp: &str) -> Backup {
        match stamp.strip_suffix('!') {
            Some(s) => Backup {
                flagged: true,
                ..b(s)
            },
            None => b(stamp),
        }
    }

    fn pol(last: u32, daily: u32, weekly: u32, monthly: u32) -> Policy {
        Policy {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        }
    }

    /// "NAME keep: r1, r2" or "NAME remove", newest first.
    fn show(ds: &[Decision]) -> Vec<String> {
        ds.iter()
            .map(|d| match d.action {
                Action::Keep => format!("{} keep: {}", d.name, d.reasons.join(", ")),
                Action::Remove => format!("{} remove", d.name),
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        backups: &'static [&'static str],
        policy: Policy,
        /// Every decision, newest first.
        expect: &'static [&'static str],
    }

    /// 02:00 UTC on 2026-01-10, a Saturday (ISO 2026-W02).
    const NOW: &str = "2026-01-10T02:00:00Z";

    /// Ten nightly backups, 2026-01-01 .. 2026-01-10 at 02:00.
    const TEN_NIGHTS: &[&str] = &[
        "20260101-020000",
        "20260102-020000",
        "20260103-020000",
        "20260104-020000",
        "20260105-020000",
        "20260106-020000",
        "20260107-020000",
        "20260108-020000",
        "20260109-020000",
        "20260110-020000",
    ];

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "nothing to decide",
                backups: &[],
                policy: Policy::DEFAULT,
                expect: &[],
            },
            Case {
                name: "a single backup is the newest",
                backups: &["20260110-020000"],
                policy: Policy::DEFAULT,
                expect: &["20260110-020000 keep: newest backup, keep-daily (2026-01-10)"],
            },
            Case {
                name: "default keeps the seven newest days",
                backups: TEN_NIGHTS,
                policy: Policy::DEFAULT,
                expect: &[
                    "20260110-020000 keep: newest backup, keep-daily (2026-01-10)",
                    "20260109-020000 keep: keep-daily (2026-01-09)",
                    "20260108-020000 keep: keep-daily (2026-01-08)",
                    "20260107-020000 keep: keep-daily (2026-01-07)",
                    "20260106-020000 keep: keep-daily (2026-01-06)",
                    "20260105-020000 keep: keep-daily (2026-01-05)",
                    "20260104-020000 keep: keep-daily (2026-01-04)",
                    "20260103-020000 remove",
                    "20260102-020000 remove",
                    "20260101-020000 remove",
                ],
            },
            Case {
                name: "keep-last",
                backups: TEN_NIGHTS,
                policy: pol(3, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-last",
                    "20260109-020000 keep: keep-last",
                    "20260108-020000 keep: keep-last",
                    "20260107-020000 remove",
                    "20260106-020000 remove",
                    "20260105-020000 remove",
                    "20260104-020000 remove",
                    "20260103-020000 remove",
                    "20260102-020000 remove",
                    "20260101-020000 remove",
                ],
            },
            Case {
                name: "keep-last counts every backup, several a day",
                backups: &[
                    "20260109-010000",
                    "20260110-010000",
                    "20260110-013000",
                    "20260110-020000",
                ],
                policy: pol(2, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-last",
                    "20260110-013000 keep: keep-last",
                    "20260110-010000 remove",
                    "20260109-010000 remove",
                ],
            },
            Case {
                name: "two on one day: only the newest of the day counts for daily",
                backups: &[
                    "20260108-020000",
                    "20260109-020000",
                    "20260109-140000",
                    "20260110-020000",
                ],
                policy: pol(0, 2, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-daily (2026-01-10)",
                    "20260109-140000 keep: keep-daily (2026-01-09)",
                    "20260109-020000 remove",
                    "20260108-020000 remove",
                ],
            },
            Case {
                name: "daily counts days that have backups, not calendar days",
                backups: &["20251201-020000", "20251215-020000", "20260110-020000"],
                policy: pol(0, 2, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-daily (2026-01-10)",
                    "20251215-020000 keep: keep-daily (2025-12-15)",
                    "20251201-020000 remove",
                ],
            },
            Case {
                name: "days are UTC days (23:59:59 and 00:00:00 differ)",
                backups: &["20260108-235959", "20260109-000000", "20260110-020000"],
                policy: pol(0, 3, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-daily (2026-01-10)",
                    "20260109-000000 keep: keep-daily (2026-01-09)",
                    "20260108-235959 keep: keep-daily (2026-01-08)",
                ],
            },
            Case {
                name: "weekly by ISO week (Sunday ends the week, Monday starts one)",
                backups: TEN_NIGHTS,
                policy: pol(0, 0, 3, 0),
                // 2026-01-01 (Thu) .. 01-04 (Sun) are 2026-W01; 01-05 (Mon) .. 01-10 W02.
                expect: &[
                    "20260110-020000 keep: newest backup, keep-weekly (2026-W02)",
                    "20260109-020000 remove",
                    "20260108-020000 remove",
                    "20260107-020000 remove",
                    "20260106-020000 remove",
                    "20260105-020000 remove",
                    "20260104-020000 keep: keep-weekly (2026-W01)",
                    "20260103-020000 remove",
                    "20260102-020000 remove",
                    "20260101-020000 remove",
                ],
            },
            Case {
                name: "ISO week 1 of 2026 starts on 2025-12-29",
                backups: &["20251228-020000", "20251229-020000", "20260104-020000"],
                policy: pol(0, 0, 5, 0),
                expect: &[
                    "20260104-020000 keep: newest backup, keep-weekly (2026-W01)",
                    "20251229-020000 remove",
                    "20251228-020000 keep: keep-weekly (2025-W52)",
                ],
            },
            Case {
                name: "monthly by calendar month",
                backups: &[
                    "20251015-020000",
                    "20251031-020000",
                    "20251101-020000",
                    "20251130-020000",
                    "20251201-020000",
                    "20251231-230000",
                    "20260110-020000",
                ],
                policy: pol(0, 0, 0, 3),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-monthly (2026-01)",
                    "20251231-230000 keep: keep-monthly (2025-12)",
                    "20251201-020000 remove",
                    "20251130-020000 keep: keep-monthly (2025-11)",
                    "20251101-020000 remove",
                    "20251031-020000 remove",
                    "20251015-020000 remove",
                ],
            },
            Case {
                name: "rules combine; reasons list every rule that keeps a backup",
                backups: &[
                    "20251130-020000",
                    "20251231-020000",
                    "20260103-020000",
                    "20260104-020000",
                    "20260108-020000",
                    "20260109-020000",
                    "20260110-020000",
                ],
                policy: pol(1, 2, 2, 3),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-last, keep-daily (2026-01-10), keep-weekly (2026-W02), keep-monthly (2026-01)",
                    "20260109-020000 keep: keep-daily (2026-01-09)",
                    "20260108-020000 remove",
                    "20260104-020000 keep: keep-weekly (2026-W01)",
                    "20260103-020000 remove",
                    "20251231-020000 keep: keep-monthly (2025-12)",
                    "20251130-020000 keep: keep-monthly (2025-11)",
                ],
            },
            Case {
                name: "keep-daily 0 still keeps the newest",
                backups: &["20260108-020000", "20260109-020000", "20260110-020000"],
                policy: pol(0, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260109-020000 remove",
                    "20260108-020000 remove",
                ],
            },
            Case {
                name: "a rule with fewer backups than N keeps them all",
                backups: &["20260109-020000", "20260110-020000"],
                policy: pol(0, 30, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-daily (2026-01-10)",
                    "20260109-020000 keep: keep-daily (2026-01-09)",
                ],
            },
            Case {
                name: "after now: kept, in the future, and out of the rules",
                backups: &[
                    "20260108-020000",
                    "20260109-020000",
                    "20260110-020000",
                    "20260110-020001",
                    "20260201-020000",
                ],
                policy: pol(1, 0, 0, 0),
                expect: &[
                    "20260201-020000 keep: in the future",
                    "20260110-020001 keep: in the future",
                    "20260110-020000 keep: newest backup, keep-last",
                    "20260109-020000 remove",
                    "20260108-020000 remove",
                ],
            },
            Case {
                name: "only future backups: all kept, none is the newest",
                backups: &["20270101-000000", "20270102-000000"],
                policy: pol(0, 0, 0, 0),
                expect: &[
                    "20270102-000000 keep: in the future",
                    "20270101-000000 keep: in the future",
                ],
            },
            // Finding 5 (issue 10): a stamp ending in `!` is a flagged backup.
            Case {
                name: "finding 5: a flagged newest fills no keep-last slot; the complete one stays",
                backups: &["20260109-020000", "20260110-020000!"],
                policy: pol(1, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260109-020000 keep: newest complete backup, keep-last",
                ],
            },
            Case {
                name: "finding 5: flagged nights fill no daily slot",
                backups: &[
                    "20260104-020000",
                    "20260105-020000",
                    "20260106-020000",
                    "20260107-020000",
                    "20260108-020000!",
                    "20260109-020000!",
                    "20260110-020000!",
                ],
                policy: pol(0, 3, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260109-020000 remove",
                    "20260108-020000 remove",
                    "20260107-020000 keep: newest complete backup, keep-daily (2026-01-07)",
                    "20260106-020000 keep: keep-daily (2026-01-06)",
                    "20260105-020000 keep: keep-daily (2026-01-05)",
                    "20260104-020000 remove",
                ],
            },
            Case {
                name: "finding 5: the day's slot goes to its newest complete backup",
                backups: &["20260109-020000", "20260110-010000", "20260110-020000!"],
                policy: pol(0, 1, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260110-010000 keep: newest complete backup, keep-daily (2026-01-10)",
                    "20260109-020000 remove",
                ],
            },
            Case {
                name: "finding 5: no keep rule still keeps the newest complete backup",
                backups: &["20260108-020000", "20260109-020000!", "20260110-020000!"],
                policy: pol(0, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260109-020000 remove",
                    "20260108-020000 keep: newest complete backup",
                ],
            },
            Case {
                name: "finding 5: every backup flagged: only the newest is kept",
                backups: &["20260109-020000!", "20260110-020000!"],
                policy: Policy::DEFAULT,
                expect: &[
                    "20260110-020000 keep: newest backup",
                    "20260109-020000 remove",
                ],
            },
            Case {
                name: "finding 5: a flagged older backup is not kept by keep-last",
                backups: &["20260108-020000", "20260109-020000!", "20260110-020000"],
                policy: pol(2, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-last",
                    "20260109-020000 remove",
                    "20260108-020000 keep: keep-last",
                ],
            },
            Case {
                name: "the order of the input does not matter",
                backups: &["20260109-020000", "20260110-020000", "20260108-020000"],
                policy: pol(2, 0, 0, 0),
                expect: &[
                    "20260110-020000 keep: newest backup, keep-last",
                    "20260109-020000 keep: keep-last",
                    "20260108-020000 remove",
                ],
            },
        ]
    }

    #[test]
    fn retention_table() {
        let now = ts(NOW);
        for c in cases() {
            let backups: Vec<Backup> = c.backups.iter().map(|s| bf(s)).collect();
            let got = apply(&backups, &c.policy, now);
            assert_eq!(show(&got), c.expect, "case {:?}", c.name);
            // Decisions are total: one per backup, and none is kept without a reason.
            assert_eq!(got.len(), backups.len(), "case {:?}", c.name);
            assert!(got.iter().all(|d| !d.reasons.is_empty()), "{:?}", c.name);
        }
    }

    /// An hour later nothing changes, except that backups taken in that hour
    /// stop being "in the future" and join the rules.
    #[test]
    fn an_hour_later_changes_nothing_unexpected() {
        let now = ts(NOW);
        let later = now + SignedDuration::from_hours(1);
        for c in cases() {
            let backups: Vec<Backup> = c.backups.iter().map(|s| bf(s)).collect();
            let before = apply(&backups, &c.policy, now);
            let after = apply(&backups, &c.policy, later);
            let crossed = |d: &Decision| d.time > now && d.time <= later;
            if !before.iter().any(crossed) {
                assert_eq!(before, after, "case {:?}", c.name);
                continue;
            }
            for (x, y) in before.iter().zip(&after) {
                assert_eq!(x.name, y.name, "case {:?}", c.name);
                if crossed(x) {
                    assert_eq!(x.reasons, [REASON_FUTURE], "case {:?}", c.name);
                    assert!(!y.reasons.iter().any(|r| r == REASON_FUTURE));
                } else if x.time > later {
                    assert_eq!(x, y, "case {:?}", c.name);
                }
            }
            // The newest present backup an hour later is the newest crossed one.
            let newest = after
                .iter()
                .find(|d| d.time <= later)
                .expect("a present backup");
            assert!(crossed(newest), "case {:?}", c.name);
            assert!(newest.reasons.iter().any(|r| r == REASON_NEWEST));
        }
    }

    #[test]
    fn the_newest_is_never_removed() {
        let now = ts(NOW);
        let backups: Vec<Backup> = TEN_NIGHTS.iter().map(|s| b(s)).collect();
        for last in 0..3 {
            for daily in 0..3 {
                for weekly in 0..3 {
                    for monthly in 0..3 {
                        let p = pol(last, daily, weekly, monthly);
                        let ds = apply(&backups, &p, now);
                        assert_eq!(ds[0].name, "20260110-020000");
                        assert_eq!(ds[0].action, Action::Keep, "{p:?}");
                        assert_eq!(ds[0].reasons[0], REASON_NEWEST);
                    }
                }
            }
        }
    }

    /// Whatever the policy and whichever backups are flagged: no flagged backup
    /// is kept by a rule, the newest complete one is always kept, and the
    /// newest is always kept.
    #[test]
    fn finding_5_flagged_fill_no_slot_and_newest_complete_is_never_removed() {
        let now = ts(NOW);
        for mask in 0u32..64 {
            // Flag any of the six newest nights.
            let backups: Vec<Backup> = TEN_NIGHTS
                .iter()
                .enumerate()
                .map(|(i, s)| Backup {
                    flagged: i >= 4 && mask & (1 << (i - 4)) != 0,
                    ..b(s)
                })
                .collect();
            let newest_complete = backups.iter().rev().find(|b| !b.flagged).map(|b| &b.name);
            for last in 0..2 {
                for daily in 0..3 {
                    for weekly in 0..2 {
                        let p = pol(last, daily, weekly, 1);
                        let ds = apply(&backups, &p, now);
                        assert_eq!(ds[0].action, Action::Keep, "{mask:b} {p:?}");
                        for d in &ds {
                            if d.flagged {
                                assert!(
                                    d.reasons.iter().all(|r| !r.starts_with("keep-")),
                                    "{mask:b} {p:?}: {d:?}"
                                );
                            }
                            if Some(&d.name) == newest_complete {
                                assert_eq!(d.action, Action::Keep, "{mask:b} {p:?}: {d:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn removed_backups_say_why() {
        let now = ts(NOW);
        let backups: Vec<Backup> = [
            "20260108-020000",
            "20260109-020000",
            "20260109-140000",
            "20260110-020000",
        ]
        .iter()
        .map(|s| b(s))
        .collect();
        let ds = apply(&backups, &pol(1, 1, 0, 0), now);
        let why = |name: &str| {
            ds.iter()
                .find(|d| d.name == name)
                .map(|d| (d.action, d.reasons.clone()))
                .unwrap()
        };
        assert_eq!(
            why("20260109-140000"),
            (
                Action::Remove,
                vec![
                    "keep-last: beyond the 1 newest".to_string(),
                    "keep-daily: older than the 1 newest day".to_string(),
                ]
            )
        );
        assert_eq!(
            why("20260109-020000").1,
            [
                "keep-last: beyond the 1 newest",
                "keep-daily: 2026-01-09 has a newer backup"
            ]
        );
        let none = apply(&backups, &pol(0, 0, 0, 0), now);
        assert_eq!(none[1].reasons, ["no keep rule"]);
    }

    #[test]
    fn policy_from_flags() {
        assert_eq!(Policy::from_flags(None, None, None, None), Policy::DEFAULT);
        assert_eq!(Policy::DEFAULT.describe(), "keep-daily 7");
        let p = Policy::from_flags(Some(2), None, None, Some(12));
        assert_eq!(p, pol(2, 0, 0, 12));
        assert_eq!(p.describe(), "keep-last 2, keep-monthly 12");
        // Asking for keep-daily 0 alone is not "no flags": it keeps only the newest.
        assert_eq!(
            Policy::from_flags(None, Some(0), None, None),
            pol(0, 0, 0, 0)
        );
    }

    #[test]
    fn decisions_serialize_for_monitoring() {
        let ds = apply(&[b("20260110-020000")], &Policy::DEFAULT, ts(NOW));
        let v = serde_json::to_value(&ds[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "name": "20260110-020000",
                "time": "2026-01-10T02:00:00Z",
                "action": "keep",
                "flagged": false,
                "reasons": ["newest backup", "keep-daily (2026-01-10)"],
            })
        );
    }
}
