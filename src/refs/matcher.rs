//! Finding the retiring paths' spellings in a file's bytes. Aho-Corasick finds
//! every candidate at once; a candidate counts only where it stands as a whole
//! path: `<root>/production` must not match `<root>/production-old`, and the
//! consolidated root `<root>/` is never a spelling at all.

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};

use super::spec::Retiring;

/// Bytes that continue a path component; a match followed by one of them is
/// part of a longer name (`production-old`, `production.bak`).
fn continues_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b'+' | b'@')
}

/// A byte before a path that makes it part of a longer path (`/srv/root/…`
/// is not `/root/…`).
fn continues_path(b: u8) -> bool {
    continues_name(b) || b == b'/'
}

#[derive(Debug, Clone, Copy)]
struct Pattern {
    /// Index into the retiring list.
    target: usize,
    relative: bool,
}

pub struct Matcher {
    ac: AhoCorasick,
    patterns: Vec<Pattern>,
    root: AhoCorasick,
}

/// One match that stands as a whole path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub target: usize,
}

impl Matcher {
    pub fn new(retiring: &[Retiring], root_spellings: &[String]) -> Result<Matcher> {
        let mut texts = Vec::new();
        let mut patterns = Vec::new();
        for (i, r) in retiring.iter().enumerate() {
            for a in &r.absolute {
                texts.push(a.clone());
                patterns.push(Pattern {
                    target: i,
                    relative: false,
                });
            }
            if let Some(rel) = &r.relative {
                texts.push(rel.clone());
                patterns.push(Pattern {
                    target: i,
                    relative: true,
                });
            }
        }
        let ac =
            AhoCorasick::new(&texts).context("cannot build the search for the retiring paths")?;
        let root =
            AhoCorasick::new(root_spellings).context("cannot build the search for the root")?;
        Ok(Matcher { ac, patterns, root })
    }

    /// Whether `hay` names the root as a whole path (then relative spellings count).
    fn names_root(&self, hay: &[u8]) -> bool {
        self.root
            .find_overlapping_iter(hay)
            .any(|m| whole_absolute(hay, m.start(), m.end()))
    }

    /// Every whole-path match in `hay`, in order of position.
    pub fn find(&self, hay: &[u8]) -> Vec<Found> {
        let mut relative_ok = None;
        let mut out = Vec::new();
        for m in self.ac.find_overlapping_iter(hay) {
            let p = self.patterns[m.pattern().as_usize()];
            let whole = if p.relative {
                whole_relative(hay, m.start(), m.end())
                    && *relative_ok.get_or_insert_with(|| self.names_root(hay))
            } else {
                whole_absolute(hay, m.start(), m.end())
            };
            if whole {
                out.push(Found {
                    start: m.start(),
                    target: p.target,
                });
            }
        }
        out.sort_by_key(|f| f.start);
        out
    }
}

fn whole_absolute(hay: &[u8], start: usize, end: usize) -> bool {
    let before_ok = start == 0 || !continues_path(hay[start - 1]);
    let after_ok = end == hay.len() || !continues_name(hay[end]);
    before_ok && after_ok
}

/// A relative spelling counts as `./production…` or as `production/…` after a
/// non-path byte; a bare word `production` (a description, a log line) does not.
fn whole_relative(hay: &[u8], start: usize, end: usize) -> bool {
    let dot_slash = start >= 2 && &hay[start - 2..start] == b"./";
    let before = if dot_slash { start - 2 } else { start };
    let before_ok = before == 0 || !continues_path(hay[before - 1]);
    let after_ok = match hay.get(end) {
        None => dot_slash,
        Some(b'/') => true,
        Some(&b) => dot_slash && !continues_name(b),
    };
    before_ok && after_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> Matcher {
        let r = Retiring {
            target: "production".into(),
            absolute: vec!["/r/production".into()],
            relative: Some("production".into()),
        };
        Matcher::new(&[r], &["/r".into()]).unwrap()
    }

    /// (text, matches?) — the prefix traps the issue names, as a table.
    #[test]
    fn only_whole_paths_match() {
        let m = matcher();
        let cases: &[(&str, bool)] = &[
            ("WorkingDirectory=/r/production/", true),
            ("WorkingDirectory=/r/production", true),
            ("DATA=\"/r/production/data\"", true),
            ("'/r/production'", true),
            ("tar czf x.tgz /r/production/data 2>&1", true),
            ("/r/production-old/data", false),
            ("/r/production.bak", false),
            ("/r/productionx", false),
            ("V2_DATA_ROOT=/r/", false),
            ("/srv/r/production", false),
            ("Description=the production server", false),
        ];
        for (text, want) in cases {
            assert_eq!(!m.find(text.as_bytes()).is_empty(), *want, "{text}");
        }
    }

    #[test]
    fn relative_spellings_count_only_in_files_that_name_the_root() {
        let m = matcher();
        assert!(m.find(b"cd production/data && ls").is_empty());
        let with_root = b"WorkingDirectory=/r\nExecStart=./production/run.sh\n";
        let f = m.find(with_root);
        assert_eq!(f.len(), 1);
        assert_eq!(&with_root[f[0].start..f[0].start + 10], b"production");
        assert!(m.find(b"root=/r\nthe production server\n").is_empty());
        assert!(m.find(b"root=/r\nsee reproduction/x\n").is_empty());
    }
}
