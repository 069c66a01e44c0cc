//! `datamig list ARCHIVE [PATH...]`: the members (or those at or under each
//! PATH), from the sidecar manifest or, without it, from the manifest inside
//! the archive found through the tail index — never by decompressing the
//! whole archive. An archive with neither (one that `tar --zstd` or bsdtar
//! wrote, or a datamig archive that lost its tail) is listed from its tar
//! headers, decoding the whole stream. `list DIR` is in `list_dir.rs`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::frames::read_index;
use crate::manifest::Manifest;
use crate::summary::rfc3339_ns;
use crate::tarfmt::MemberHeader;
use crate::verify::foreign::{StreamCheck, walk_path};

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    pub mtime: String,
    pub sha256: Option<String>,
    pub target: Option<String>,
    pub problem: Option<String>,
    /// Permission bits, in octal.
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    /// "sidecar", "embedded", or "none" (listed from the tar headers).
    pub manifest: &'static str,
    pub members: Vec<Member>,
    /// Entries recorded but not in the archive (special files, unreadable).
    pub not_archived: u64,
    /// How the members were found when there is no manifest.
    pub note: Option<String>,
    /// Without a manifest: what decoding the whole stream found (a
    /// `problem` there means the list is incomplete: exit 1).
    pub stream: Option<StreamCheck>,
    /// The PATH arguments the members were filtered by (empty: all members).
    pub paths: Vec<String>,
    /// PATH arguments that are no member and no directory prefix of one (exit 1).
    pub not_found: Vec<String>,
    /// The archive is age-encrypted (read with `--identity`).
    pub encrypted: bool,
}

impl ListReport {
    pub fn clean(&self) -> bool {
        self.stream.as_ref().is_none_or(|s| s.problem.is_none()) && self.not_found.is_empty()
    }

    /// Keep the members at or under one of `paths`; name the paths that
    /// select nothing. A trailing `/` or leading `./` is the same path.
    pub fn select(mut self, paths: &[String]) -> ListReport {
        if paths.is_empty() {
            return self;
        }
        let wanted: Vec<&str> = paths
            .iter()
            .map(|p| {
                let p = p.trim_end_matches('/');
                p.strip_prefix("./").unwrap_or(p)
            })
            .collect();
        let mut used = vec![false; wanted.len()];
        self.members.retain(|m| {
            let mut keep = false;
            for (i, w) in wanted.iter().enumerate() {
                if member_is_under(&m.path, w) {
                    used[i] = true;
                    keep = true;
                }
            }
            keep
        });
        self.not_found = paths
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(p, _)| p.clone())
            .collect();
        self.paths = paths.to_vec();
        self
    }
}

/// A member path is selected by itself and by each directory above it.
fn member_is_under(member: &str, wanted: &str) -> bool {
    let m = member.trim_end_matches('/');
    m == wanted || (m.starts_with(wanted) && m.as_bytes().get(wanted.len()) == Some(&b'/'))
}

pub const NO_MANIFEST: &str = "no manifest: listed from the tar headers";

pub fn run(archive: &Path, paths: &[String]) -> Result<ListReport> {
    Ok(list_all(archive)?.select(paths))
}

/// The archive's manifest and where it came from ("sidecar" or "embedded"),
/// reading only the sidecar or the archive's last frames; `None` when it has
/// neither a sidecar nor a datamig index.
pub fn load_manifest(archive: &Path) -> Result<Option<(Manifest, &'static str)>> {
    crate::atomic::refuse_temp_name(archive)?;
    // An encrypted archive without a key stops here, naming what is missing.
    let (mut f, len) = crate::crypt::Opened::open_path(archive)?;
    let side = crate::archive::manifest_sidecar(archive);
    if side.exists() {
        let r = crate::verify::sealed::open_sidecar(&side, f.encrypted())?;
        let m = Manifest::read(r).with_context(|| format!("{}", side.display()))?;
        return Ok(Some((m, "sidecar")));
    }
    let Some(ix) = read_index(&mut f)? else {
        return Ok(None);
    };
    let bytes = crate::verify::archive::read_embedded_from(
        f,
        len,
        ix.manifest_frame_offset,
        ix.manifest_offset_in_frame,
    )?;
    let m = Manifest::read(&bytes[..]).context("the manifest inside the archive is damaged")?;
    Ok(Some((m, "embedded")))
}

fn list_all(archive: &Path) -> Result<ListReport> {
    let Some((m, source)) = load_manifest(archive)? else {
        return from_headers(archive);
    };
    let mut r = from_manifest(archive.display().to_string(), &m, source);
    r.encrypted =
        crate::crypt::source::sniff(&std::fs::File::open(archive)?) == crate::crypt::Sealed::Age;
    Ok(r)
}

/// The members a manifest records (`source`: "sidecar" or "embedded").
pub fn from_manifest(archive: String, m: &Manifest, source: &'static str) -> ListReport {
    let not_archived = m.entries.iter().filter(|e| e.pos.is_none()).count() as u64;
    let members = m
        .entries
        .iter()
        .filter(|e| e.pos.is_some())
        .map(|e| Member {
            path: e.path_lossy(),
            kind: e.kind.to_string(),
            size: e.size,
            mtime: rfc3339_ns(e.mtime_ns),
            sha256: e.sha256_hex(),
            target: e
                .target
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            problem: e.problem.clone(),
            mode: format!("{:04o}", e.mode),
            uid: e.uid as u64,
            gid: e.gid as u64,
        })
        .collect();
    ListReport {
        report: "list",
        version: 1,
        archive,
        manifest: source,
        members,
        not_archived,
        note: None,
        stream: None,
        paths: vec![],
        not_found: vec![],
        encrypted: false,
    }
}

/// No manifest anywhere: decode the whole stream and list what each tar
/// header says. A stream that breaks off still lists what came before it
/// (exit 1); one where not a single header could be read cannot be listed.
fn from_headers(archive: &Path) -> Result<ListReport> {
    let mut members = Vec::new();
    let check = walk_path(archive, |f| members.push(member_of(&f.header)))
        .with_context(|| no_manifest(archive))?;
    if let (true, Some(p)) = (members.is_empty(), &check.problem) {
        bail!("{}; nothing could be listed: {p}", no_manifest(archive));
    }
    Ok(ListReport {
        report: "list",
        version: 1,
        archive: archive.display().to_string(),
        manifest: "none",
        members,
        not_archived: 0,
        note: Some(NO_MANIFEST.into()),
        stream: Some(check),
        paths: vec![],
        not_found: vec![],
        encrypted: false,
    })
}

fn no_manifest(archive: &Path) -> String {
    format!(
        "{} has no sidecar manifest and no index at its end (not made by datamig, or truncated)",
        archive.display()
    )
}

fn member_of(h: &MemberHeader) -> Member {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Member {
        path: lossy(&h.path),
        // The tar reader's kinds, named as the manifest names them.
        kind: format!("{:?}", h.kind).to_lowercase(),
        size: h.size,
        mtime: rfc3339_ns(h.mtime.saturating_mul(1_000_000_000)),
        sha256: None,
        target: h.link.as_deref().map(lossy),
        problem: None,
        mode: format!("{:04o}", h.mode),
        uid: h.uid,
        gid: h.gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_selects_itself_and_what_is_below_it() {
        assert!(member_is_under("data/a.txt", "data/a.txt"));
        assert!(member_is_under("data/sub/b.txt", "data"));
        assert!(member_is_under("data/sub", "data/sub"));
        assert!(!member_is_under("data-other/x", "data"));
        assert!(!member_is_under("data", "data/sub"));
    }
}
