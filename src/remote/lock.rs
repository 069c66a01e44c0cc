//! S3 Object Lock: the retention datamig sets on what it uploads
//! (`--lock-days N`, `--lock-mode`) and reads back before retention deletes
//! anything. The requests themselves are in `s3_lock.rs`.
//!
//! The two modes, as S3 defines them:
//! - **governance** (the default): nobody can delete the locked version or
//!   shorten its retention, except a user granted
//!   `s3:BypassGovernanceRetention` who sends
//!   `x-amz-bypass-governance-retention: true`. An operator can still undo a
//!   mistake; a stolen ordinary key cannot.
//! - **compliance**: nobody can delete the version or shorten its retention
//!   until the date, not even the account's root user. Only time undoes it.

use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    #[default]
    Governance,
    Compliance,
}

impl LockMode {
    /// The value S3 uses in `<Mode>`.
    pub fn s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn from_s3(s: &str) -> Option<LockMode> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// Retention to set on each uploaded object: `mode` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub until: Timestamp,
}

impl Lock {
    /// `days` days after `now` (the run's clock).
    pub fn days_after(now: Timestamp, days: u32, mode: LockMode) -> anyhow::Result<Lock> {
        let until = now
            .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
            .map_err(|e| anyhow::anyhow!("--lock-days {days}: {e}"))?;
        Ok(Lock { mode, until })
    }
}

/// `--lock-days N --lock-mode M` as given; the date is fixed by the run's
/// clock ([`Lock::days_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSpec {
    pub days: u32,
    pub mode: LockMode,
}

impl LockSpec {
    pub fn at(&self, now: Timestamp) -> anyhow::Result<Lock> {
        Lock::days_after(now, self.days, self.mode)
    }
}

/// An object's retention as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub mode: Option<LockMode>,
    pub until: Timestamp,
}

/// RFC 3339 in UTC, to the second: how dates appear in reports.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

use super::{Backend, Store};

impl Store {
    /// Refuse, before anything is uploaded, a location whose objects cannot
    /// be locked: a bucket created without Object Lock (it cannot be turned
    /// on for the objects of an existing bucket in a way datamig relies on),
    /// or a local directory.
    pub fn check_lockable(&self) -> anyhow::Result<()> {
        let url = self.location.url();
        match &self.backend {
            Backend::Dir(_) => anyhow::bail!(
                "{url}: --lock-days needs an s3:// location with Object Lock; a directory cannot be locked"
            ),
            Backend::S3(s) => {
                if !s.lock_enabled()? {
                    anyhow::bail!(
                        "{url}: the bucket does not have Object Lock enabled, so --lock-days cannot lock the copy; create the bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket …) or drop --lock-days; nothing was uploaded"
                    );
                }
                Ok(())
            }
        }
    }

    /// Whether objects here can carry Object Lock retention (an S3 bucket
    /// with Object Lock enabled).
    pub fn lock_enabled(&self) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Dir(_) => Ok(false),
            Backend::S3(s) => s.lock_enabled(),
        }
    }

    /// Lock `name` until `lock.until`.
    pub fn set_retention(&self, name: &str, lock: &Lock) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Dir(_) => {
                anyhow::bail!("{}: a directory cannot be locked", self.location.url())
            }
            Backend::S3(s) => s.set_retention(name, lock),
        }
    }

    /// The retention set on `name`, if any.
    pub fn retention(&self, name: &str) -> anyhow::Result<Option<Retention>> {
        match &self.backend {
            Backend::Dir(_) => Ok(None),
            Backend::S3(s) => s.retention(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_days_count_from_the_run_clock() {
        let now: Timestamp = "2027-01-01T02:00:00Z".parse().unwrap();
        let l = Lock::days_after(now, 3, LockMode::Governance).unwrap();
        assert_eq!(rfc3339(l.until), "2027-01-04T02:00:00Z");
        assert_eq!(l.mode.s3(), "GOVERNANCE");
        assert_eq!(LockMode::from_s3("COMPLIANCE"), Some(LockMode::Compliance));
        assert_eq!(LockMode::from_s3("x"), None);
    }
}
