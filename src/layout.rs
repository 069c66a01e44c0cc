//! The data root's layout: areas, secrets, archive targets and migration rules.
//!
//! The default layout is compiled into the binary from `layout/default.toml`, which
//! encodes the coordination server's LAYOUT.md. `--layout FILE` replaces it whole.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// The layout shipped inside the binary.
pub const DEFAULT_LAYOUT: &str = include_str!("layout/default.toml");

/// Name given to entries that no area claims.
pub const UNCLASSIFIED: &str = "unclassified";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub name: String,
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default, rename = "area")]
    pub areas: Vec<Area>,
    #[serde(default)]
    pub secrets: Secrets,
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    #[serde(default, rename = "migration")]
    pub migrations: Vec<MigrationRule>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub name: String,
    /// Relative to the root, `/`-separated; a directory or a single file.
    pub path: String,
    /// Free-form class: v1-code, v1-data, v2, deprecated, archive, backup, code, secret, server.
    pub kind: String,
    /// When set, every direct subdirectory of `path` is one entity of this name.
    #[serde(default)]
    pub entity: Option<String>,
    /// Files each entity must contain.
    #[serde(default)]
    pub required: Vec<String>,
    /// Parse `.json` / `.jsonl` files in this area and report those that do not parse.
    #[serde(default)]
    pub check_json: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    #[serde(default)]
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub prefix: String,
    pub paths: Vec<String>,
    /// Live data: `--remove-source` and `retire` need `--allow-live`.
    #[serde(default)]
    pub live: bool,
    /// `--remove-source` needs a passing migration check first.
    #[serde(default)]
    pub requires_migration_check: bool,
    /// Globs (relative to the root, like `paths`) the target never archives,
    /// e.g. npm caches. A target of one path takes only patterns below it
    /// (`path/...`) or starting with `**/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Target {
    /// The target's excludes relative to the directory archived: the root
    /// (`base_rel` empty), or the target's only path.
    pub fn excludes_below(&self, base_rel: &[u8]) -> Vec<String> {
        let base = String::from_utf8_lossy(base_rel);
        self.exclude
            .iter()
            .map(|p| match p.strip_prefix(&format!("{base}/")) {
                Some(rest) if !base.is_empty() => rest.to_string(),
                _ => p.clone(),
            })
            .collect()
    }

    fn check_excludes(&self) -> Result<()> {
        build_globset(&self.exclude)?;
        let [only] = self.paths.as_slice() else {
            return Ok(());
        };
        match self
            .exclude
            .iter()
            .find(|p| !p.starts_with(&format!("{only}/")) && !p.starts_with("**/"))
        {
            Some(p) => bail!(
                "exclude pattern {p:?} must start with {only:?}/ (the target's only path) or with **/"
            ),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationRule {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub only: BTreeMap<String, Vec<String>>,
}

impl Layout {
    pub fn default_layout() -> Layout {
        Layout::parse(DEFAULT_LAYOUT, "built-in layout").expect("built-in layout is valid")
    }

    /// Load `--layout FILE`, or the built-in layout when `None`.
    pub fn load(file: Option<&Path>) -> Result<Layout> {
        match file {
            None => Ok(Layout::default_layout()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read layout file {}", p.display()))?;
                Layout::parse(&text, &p.display().to_string())
            }
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Layout> {
        let layout: Layout = toml::from_str(text).with_context(|| {
            format!("{origin} is not a valid layout (start from `datamig layout`)")
        })?;
        layout.validate().with_context(|| origin.to_string())?;
        Ok(layout)
    }

    fn validate(&self) -> Result<()> {
        if self.version != 1 {
            bail!(
                "layout version {} is not supported (this datamig reads version 1)",
                self.version
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.areas {
            check_rel_path(&a.path).with_context(|| format!("area {:?}", a.name))?;
            if a.name == UNCLASSIFIED || !names.insert(a.name.as_str()) {
                bail!("area name {:?} is reserved or used twice", a.name);
            }
        }
        let mut tnames = std::collections::BTreeSet::new();
        for t in &self.targets {
            if !tnames.insert(t.name.as_str()) {
                bail!("target name {:?} is used twice", t.name);
            }
            if t.prefix.is_empty() || t.prefix.contains('/') {
                bail!("target {:?}: prefix must be a plain file name", t.name);
            }
            for p in &t.paths {
                check_rel_path(p).with_context(|| format!("target {:?}", t.name))?;
            }
            t.check_excludes()
                .with_context(|| format!("target {:?}", t.name))?;
        }
        self.secret_set()?;
        Ok(())
    }

    pub fn area(&self, name: &str) -> Option<&Area> {
        self.areas.iter().find(|a| a.name == name)
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn secret_set(&self) -> Result<GlobSet> {
        build_globset(&self.secrets.patterns)
    }

    /// A classifier answering "which area owns this relative path".
    pub fn classifier(&self) -> Classifier<'_> {
        let mut areas: Vec<&Area> = self.areas.iter().collect();
        // Longest path first, so `production/data` wins over `production`.
        areas.sort_by_key(|a| std::cmp::Reverse(a.path.len()));
        Classifier { areas }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("layout serializes")
    }
}

fn check_rel_path(p: &str) -> Result<()> {
    if p.is_empty()
        || p.starts_with('/')
        || p.ends_with('/')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("path {p:?} must be relative to the root, without `.`, `..` or empty components");
    }
    Ok(())
}

pub struct Classifier<'a> {
    areas: Vec<&'a Area>,
}

impl<'a> Classifier<'a> {
    /// The area owning `rel` (relative path bytes), if any.
    pub fn area_of(&self, rel: &[u8]) -> Option<&'a Area> {
        // Checking the first byte inline skips the call to memcmp for nearly
        // every area: this runs once per entry of the walk.
        let first = rel.first();
        self.areas
            .iter()
            .copied()
            .find(|a| a.path.as_bytes().first() == first && is_under(rel, a.path.as_bytes()))
    }

    pub fn name_of(&self, rel: &[u8]) -> &'a str {
        self.area_of(rel)
            .map(|a| a.name.as_str())
            .unwrap_or(UNCLASSIFIED)
    }
}

/// `rel` equals `prefix` or lies below it.
pub fn is_under(rel: &[u8], prefix: &[u8]) -> bool {
    rel == prefix
        || (rel.len() > prefix.len() && rel.starts_with(prefix) && rel[prefix.len()] == b'/')
}

/// Globs over relative paths where `*` stays within a component. A pattern ending
/// in `/**` also matches the directory itself, so excluding `x/**` prunes `x`.
pub fn build_globset(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let mut add = |pat: &str| -> Result<()> {
            let g = GlobBuilder::new(pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("bad glob {p:?}"))?;
            b.add(g);
            Ok(())
        };
        add(p)?;
        if let Some(stem) = p.strip_suffix("/**")
            && !stem.is_empty()
        {
            add(stem)?;
        }
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_layout_parses_and_round_trips() {
        let l = Layout::default_layout();
        assert!(l.area("instances").is_some());
        assert!(l.target("production").is_some());
        let again = Layout::parse(&l.to_toml(), "printed").unwrap();
        assert_eq!(again.areas.len(), l.areas.len());
        assert_eq!(again.targets.len(), l.targets.len());
    }

    #[test]
    fn longest_area_wins() {
        let l = Layout::default_layout();
        let c = l.classifier();
        assert_eq!(
            c.name_of(b"production/data/instances.json"),
            "production-data"
        );
        assert_eq!(c.name_of(b"production/data"), "production-data");
        assert_eq!(c.name_of(b"production/database"), "production");
        assert_eq!(c.name_of(b"instances/Bastion-11a9/diary.md"), "instances");
        assert_eq!(c.name_of(b"wisdom.md"), "wisdom");
        assert_eq!(c.name_of(b"wisdom.md.bak"), UNCLASSIFIED);
        assert_eq!(c.name_of(b"random"), UNCLASSIFIED);
    }

    #[test]
    fn secrets_match_credentials_but_not_neighbours() {
        let s = Layout::default_layout().secret_set().unwrap();
        assert!(s.is_match("instances/Bastion-11a9/.claude/.credentials.json"));
        assert!(s.is_match("instances/Bastion-11a9/.ssh/id_ed25519"));
        assert!(s.is_match("instances/Bastion-11a9/.ssh"));
        assert!(s.is_match(".hub-secret"));
        assert!(!s.is_match("instances/Bastion-11a9/diary.md"));
        assert!(!s.is_match("instances/a/b/.claude/.credentials.json"));
    }

    #[test]
    fn target_excludes_are_rebased_onto_a_single_path_target() {
        let l = Layout::parse(
            "name = 'x'\n[[target]]\nname = 'i'\nprefix = 'i'\npaths = ['instances']\nexclude = ['instances/*/.npm/**', '**/CACHE']\n",
            "t",
        )
        .unwrap();
        let t = l.target("i").unwrap();
        assert_eq!(t.excludes_below(b"instances"), ["*/.npm/**", "**/CACHE"]);
        assert_eq!(t.excludes_below(b""), ["instances/*/.npm/**", "**/CACHE"]);
        let b = Layout::default_layout();
        assert_eq!(b.target("backup").unwrap().exclude, ["instances/*/.npm/**"]);
        assert!(b.target("v2").unwrap().exclude.is_empty());
    }

    #[test]
    fn bad_layouts_are_refused_with_a_reason() {
        let e = Layout::parse(
            "name = 'x'\n[[area]]\nname='a'\npath='../etc'\nkind='v2'\n",
            "t",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("../etc"), "{e:#}");
        let e = Layout::parse("name = 'x'\nversion = 9\n", "t").unwrap_err();
        assert!(format!("{e:#}").contains("version 9"), "{e:#}");
        let e = Layout::parse("name = 'x'\nbogus = 1\n", "t").unwrap_err();
        assert!(format!("{e:#}").contains("not a valid layout"), "{e:#}");
    }
}
