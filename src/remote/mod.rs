//! Where a copy of an archive may live besides the disk it protects: an
//! S3-compatible object store (`s3://BUCKET/PREFIX`) or a local directory.
//!
//! This module owns the object store. Everything above it is synchronous:
//! [`Store`] offers blocking calls (create-only upload, stat, ranged read,
//! list, delete, cleanup of a dead run's unfinished uploads), and the async
//! runtime that drives opendal lives inside `s3.rs` only.
//!
//! A local directory behaves the same way (create-only, all or nothing), so a
//! command written against [`Store`] works for both.

mod aws_config;
mod dir;
mod file;
mod hints;
pub mod lock;
mod s3;

pub use file::RemoteFile;

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// A place for copies, parsed once from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `s3://BUCKET/PREFIX`: objects are `PREFIX/NAME` (no leading or
    /// trailing `/` in `prefix`; empty for the bucket's top level).
    S3 { bucket: String, prefix: String },
    /// A local directory.
    Dir(PathBuf),
}

impl Location {
    /// `s3://BUCKET[/PREFIX]`, or a local directory path. Other URL schemes
    /// are refused rather than taken for a directory named `http:`.
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket, s)?;
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|c| c == "." || c == "..")
                || prefix.contains("//")
                || prefix.contains('\0')
            {
                bail!("{s}: the prefix may not contain empty, `.` or `..` components");
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://")
            && !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        {
            bail!(
                "{s}: unsupported URL scheme {scheme:?}; use s3://BUCKET/PREFIX for any S3-compatible store (AWS_ENDPOINT_URL names a non-AWS endpoint), or a local directory"
            );
        }
        if s.is_empty() {
            bail!("an empty location was given; name s3://BUCKET/PREFIX or a directory");
        }
        Ok(Location::Dir(PathBuf::from(s)))
    }

    /// `s3://BUCKET/PREFIX/NAME.tar.zst`: the location and the archive's
    /// name; None for anything else (a location, or a local path, which the
    /// local commands handle as before).
    pub fn parse_archive_url(s: &str) -> Result<Option<(Location, String)>> {
        if !s.starts_with("s3://") {
            return Ok(None);
        }
        let trimmed = s.trim_end_matches('/');
        let Some((loc, name)) = trimmed.rsplit_once('/') else {
            return Ok(None);
        };
        let archive = name.ends_with(crate::archive::EXTENSION)
            || name
                .strip_suffix(crate::crypt::AGE_SUFFIX)
                .is_some_and(|n| n.ends_with(crate::archive::EXTENSION));
        if !archive || loc == "s3:/" {
            return Ok(None);
        }
        Ok(Some((Location::parse(loc)?, name.to_string())))
    }

    /// The location as the operator wrote it (for reports and errors).
    pub fn url(&self) -> String {
        match self {
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Location::Dir(p) => p.display().to_string(),
        }
    }

    /// Where the object `name` is, as a URL or path.
    pub fn url_of(&self, name: &str) -> String {
        match self {
            Location::Dir(p) => p.join(name).display().to_string(),
            _ => format!("{}/{name}", self.url()),
        }
    }
}

/// S3's bucket naming rules, checked up front so a typo is named as such and
/// not as a signature or DNS error.
fn check_bucket(bucket: &str, url: &str) -> Result<()> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !(3..=63).contains(&bucket.len()) || !ok_chars {
        bail!(
            "{url}: {bucket:?} is not a valid bucket name (3 to 63 characters: lowercase letters, digits, `-`, `.`)"
        );
    }
    Ok(())
}

/// An object (or file) at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub size: u64,
    /// RFC 3339, when the store says.
    pub modified: Option<String>,
}

/// Why a create-only upload did not happen.
#[derive(Debug)]
pub enum PutError {
    /// The name is taken; nothing was written.
    Exists(String),
    /// A signal arrived mid-upload; the upload was aborted.
    Interrupted,
    Failed(anyhow::Error),
}

impl std::fmt::Display for PutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutError::Exists(url) => write!(
                f,
                "{url} already exists; datamig never overwrites a copy (delete it there first, or copy to another prefix)"
            ),
            PutError::Interrupted => write!(f, "interrupted; the unfinished upload was aborted"),
            PutError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for PutError {}

impl From<anyhow::Error> for PutError {
    fn from(e: anyhow::Error) -> Self {
        PutError::Failed(e)
    }
}

/// Upload tuning: parts of `part_size` bytes, `parallel` of them in flight,
/// so memory stays near `part_size * (parallel + 1)` whatever the file size.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub part_size: usize,
    pub parallel: usize,
}

/// S3's smallest part (except the last).
pub const MIN_PART: usize = 5 << 20;

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            part_size: 16 << 20,
            parallel: 4,
        }
    }
}

impl Tuning {
    /// The defaults, with `DATAMIG_PART_SIZE` (bytes, at least 5 MiB) for
    /// tests that need a multipart upload of a small archive.
    pub fn from_env() -> Result<Tuning> {
        let mut t = Tuning::default();
        if let Ok(v) = std::env::var("DATAMIG_PART_SIZE") {
            let n: usize = v
                .parse()
                .map_err(|_| anyhow::anyhow!("DATAMIG_PART_SIZE={v:?} is not a number of bytes"))?;
            if n < MIN_PART {
                bail!("DATAMIG_PART_SIZE={n} is below S3's minimum part size ({MIN_PART})");
            }
            t.part_size = n;
        }
        Ok(t)
    }
}

/// A location opened for use.
pub struct Store {
    location: Location,
    backend: Backend,
}

enum Backend {
    S3(Box<s3::S3Store>),
    Dir(dir::DirStore),
}

impl Store {
    /// Open `location`; for S3 this reads the AWS_* environment and profile
    /// files (no request is made yet). A directory is created (0700) only by
    /// the first upload.
    pub fn open(location: &Location, tuning: Tuning) -> Result<Store> {
        let backend = match location {
            Location::S3 { bucket, prefix } => {
                Backend::S3(Box::new(s3::S3Store::open(bucket, prefix, tuning)?))
            }
            Location::Dir(p) => Backend::Dir(dir::DirStore::new(p.clone())),
        };
        Ok(Store {
            location: location.clone(),
            backend,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Upload `size` bytes from `src` as `name`, never replacing an existing
    /// object: the name is checked first, and the store itself refuses at
    /// commit (S3: `If-None-Match: *` on the PUT or on completing the
    /// multipart upload; a directory: `renameat2(RENAME_NOREPLACE)`). On
    /// any error the partial upload is aborted, so nothing appears under
    /// `name`.
    pub fn put_new(&self, name: &str, src: &mut dyn Read, size: u64) -> Result<(), PutError> {
        if self.stat(name)?.is_some() {
            return Err(PutError::Exists(self.location.url_of(name)));
        }
        match &self.backend {
            Backend::S3(s) => s.put_new(name, src, size, &self.location),
            Backend::Dir(d) => d.put_new(name, src),
        }
    }

    /// The size of `name`, or None when there is no such object.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        match &self.backend {
            Backend::S3(s) => s.stat(name),
            Backend::Dir(d) => d.stat(name),
        }
    }

    /// `len` bytes of `name` from `offset` (fewer at its end).
    pub fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::S3(s) => s.read_range(name, offset, len),
            Backend::Dir(d) => d.read_range(name, offset, len),
        }
    }

    /// Read `name` back in ranged pieces, handing each to `sink`; returns
    /// the bytes read.
    pub fn read_all(&self, name: &str, sink: &mut dyn FnMut(&[u8])) -> Result<u64> {
        const PIECE: u64 = 8 << 20;
        let size = self
            .stat(name)?
            .ok_or_else(|| anyhow::anyhow!("{} does not exist", self.location.url_of(name)))?;
        if let Backend::S3(s) = &self.backend {
            let read = s.read_stream(name, size, sink)?;
            if read != size {
                bail!(
                    "{} ended after {read} of {size} bytes",
                    self.location.url_of(name)
                );
            }
            return Ok(read);
        }
        let mut at = 0;
        while at < size {
            let piece = self.read_range(name, at, PIECE.min(size - at))?;
            if piece.is_empty() {
                bail!(
                    "{} ended after {at} of {size} bytes",
                    self.location.url_of(name)
                );
            }
            sink(&piece);
            at += piece.len() as u64;
        }
        Ok(at)
    }

    /// The objects directly at the location (not below sub-prefixes).
    pub fn list(&self) -> Result<Vec<Object>> {
        let mut v = match &self.backend {
            Backend::S3(s) => s.list()?,
            Backend::Dir(d) => d.list()?,
        };
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        match &self.backend {
            Backend::S3(s) => s.delete(name),
            Backend::Dir(d) => d.delete(name),
        }
    }

    /// Unfinished uploads of datamig names (archives and sidecars) that a
    /// dead run left at the location, aborted (S3: ListMultipartUploads +
    /// AbortMultipartUpload; a directory: dead runs' temporary files).
    /// Returns what was cleaned, as URLs. Two copies into one location at
    /// the same time are not supported: the second would abort the first's
    /// upload, which then fails (nothing appears under its name).
    pub fn abort_unfinished(&self) -> Result<Vec<String>> {
        match &self.backend {
            Backend::S3(s) => s.abort_unfinished(&self.location),
            Backend::Dir(d) => d.abort_unfinished(),
        }
    }
}

/// Names datamig writes at a location: archives and their two sidecars.
pub fn is_datamig_name(name: &str) -> bool {
    use crate::archive::{EXTENSION, MANIFEST_SIDECAR, SHA_SIDECAR};
    [
        EXTENSION.to_string(),
        format!("{EXTENSION}{SHA_SIDECAR}"),
        format!("{EXTENSION}{MANIFEST_SIDECAR}"),
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix.as_str()) && name.len() > suffix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_and_directories_parse_once() {
        assert_eq!(
            Location::parse("s3://my-bucket/backups/nightly/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "backups/nightly".into()
            }
        );
        assert_eq!(
            Location::parse("s3://my-bucket").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("/srv/copies").unwrap(),
            Location::Dir("/srv/copies".into())
        );
        assert_eq!(
            Location::parse("s3://b-1/x").unwrap().url_of("a.tar.zst"),
            "s3://b-1/x/a.tar.zst"
        );
    }

    #[test]
    fn archive_urls_split_into_location_and_name() {
        let (loc, name) = Location::parse_archive_url("s3://b-1/x/y/a-20251225.tar.zst")
            .unwrap()
            .unwrap();
        assert_eq!(loc.url(), "s3://b-1/x/y");
        assert_eq!(name, "a-20251225.tar.zst");
        let (loc, _) = Location::parse_archive_url("s3://b-1/a.tar.zst")
            .unwrap()
            .unwrap();
        assert_eq!(loc.url(), "s3://b-1");
        assert!(Location::parse_archive_url("s3://b-1/x").unwrap().is_none());
        assert!(
            Location::parse_archive_url("/tmp/a.tar.zst")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_locations_are_named() {
        for (bad, says) in [
            ("s3://Bad_Bucket/x", "not a valid bucket name"),
            ("s3:///x", "not a valid bucket name"),
            ("s3://bucket/a/../b", "`..`"),
            ("http://host/bucket", "unsupported URL scheme"),
            ("", "empty location"),
        ] {
            let e = Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn datamig_names_are_archives_and_sidecars() {
        assert!(is_datamig_name("v2-data-20251225-020000.tar.zst"));
        assert!(is_datamig_name("x.tar.zst.sha256"));
        assert!(is_datamig_name("x.tar.zst.manifest.jsonl"));
        assert!(!is_datamig_name(".tar.zst"));
        assert!(!is_datamig_name("notes.txt"));
    }
}
