//! "Did you mean": names the operator types (archive targets) checked against
//! the layout, so a typo gets the right spelling and the full list instead of
//! a bare "not found".

use std::path::Path;

use crate::layout::Layout;

/// The known name closest to `typed`, if it is close enough to be a typo
/// (at most a third of the letters wrong, and at least one allowed).
pub fn closest<'a>(typed: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let allowed = (typed.chars().count() / 3).max(1);
    names
        .into_iter()
        .map(|n| (strsim::levenshtein(typed, n), n))
        .filter(|&(d, _)| d <= allowed)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

/// The message for an archive argument that is neither a layout target nor a
/// directory under the root: the likely spelling first, then every target.
pub fn not_a_target(typed: &str, layout: &Layout, root: &Path) -> String {
    let names: Vec<&str> = layout.targets.iter().map(|t| t.name.as_str()).collect();
    let mut msg = format!(
        "{typed:?} is neither an archive target of the layout nor a directory under {}",
        root.display()
    );
    if let Some(n) = closest(typed, names.iter().copied()) {
        msg.push_str(&format!("; did you mean {n:?}?"));
    }
    msg.push_str(&format!(
        "\n  targets: {} (see `datamig layout`)",
        names.join(", ")
    ));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_target_and_strangers_do_not() {
        let names = ["production", "v2-dev-data", "v2"];
        assert_eq!(closest("prodution", names), Some("production"));
        assert_eq!(closest("v2-devdata", names), Some("v2-dev-data"));
        assert_eq!(closest("v3", names), Some("v2"));
        assert_eq!(closest("instances", names), None);
    }
}
