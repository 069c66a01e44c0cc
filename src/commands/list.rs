//! `datamig list ARCHIVE`: the members, from the sidecar manifest or, without
//! it, from the manifest inside the archive found through the tail index —
//! never by decompressing the whole archive.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::archive::{MANIFEST_SIDECAR, sidecar};
use crate::frames::read_index;
use crate::manifest::Manifest;
use crate::summary::rfc3339_ns;

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
}

#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub report: &'static str,
    pub version: u32,
    pub archive: String,
    /// "sidecar" or "embedded".
    pub manifest: &'static str,
    pub members: Vec<Member>,
    /// Entries recorded but not in the archive (special files, unreadable).
    pub not_archived: u64,
}

pub fn run(archive: &PathBuf) -> Result<ListReport> {
    crate::atomic::refuse_temp_name(archive)?;
    let len = std::fs::metadata(archive)
        .with_context(|| format!("cannot open archive {}", archive.display()))?
        .len();
    let side = sidecar(archive, MANIFEST_SIDECAR);
    let (m, source) = if side.exists() {
        (Manifest::read_file(&side)?, "sidecar")
    } else {
        let mut f = std::fs::File::open(archive)?;
        let Some(ix) = read_index(&mut f)? else {
            bail!(
                "{} has no sidecar manifest and no index at its end (truncated, or not made by datamig); \
                 `datamig verify` names the last intact member",
                archive.display()
            );
        };
        let bytes = crate::verify::archive::read_embedded(
            archive,
            len,
            ix.manifest_frame_offset,
            ix.manifest_offset_in_frame,
        )?;
        (
            Manifest::read(&bytes[..]).context("the manifest inside the archive is damaged")?,
            "embedded",
        )
    };
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
        })
        .collect();
    Ok(ListReport {
        report: "list",
        version: 1,
        archive: archive.display().to_string(),
        manifest: source,
        members,
        not_archived,
    })
}
