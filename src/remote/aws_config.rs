//! The shared AWS configuration files, as every S3 tool reads them: the
//! profile (`AWS_PROFILE`, else `default`) in `~/.aws/config`
//! (`AWS_CONFIG_FILE`) gives `region` and `endpoint_url`; its keys are in
//! `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`), which reqsign's
//! credential chain reads itself. The environment wins over the files.
//!
//! Only the flat `key = value` lines of a profile are read; nested blocks
//! (`s3 =` followed by indented lines) are skipped.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// What the profile says about where the store is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Profile {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(default)))
}

/// The active profile from the files; an error when `AWS_PROFILE` names a
/// profile that is in neither file (the AWS CLI refuses that too).
pub(super) fn load() -> Result<Profile> {
    let named = env("AWS_PROFILE");
    let profile = named.clone().unwrap_or_else(|| "default".to_string());
    let config = home_file("AWS_CONFIG_FILE", ".aws/config");
    let creds = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let config_text = read(&config);
    let in_config = config_text
        .as_deref()
        .and_then(|t| section(t, &profile, true));
    let in_creds = read(&creds)
        .as_deref()
        .and_then(|t| section(t, &profile, false))
        .is_some();
    if let Some(name) = &named
        && in_config.is_none()
        && !in_creds
    {
        let show = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(no HOME)".to_string(), |p| p.display().to_string())
        };
        bail!(
            "AWS_PROFILE={name}: no such profile in {} or {}; add it there, or unset AWS_PROFILE",
            show(&config),
            show(&creds)
        );
    }
    let mut p = Profile::default();
    for (k, v) in in_config.unwrap_or_default() {
        match k.as_str() {
            "region" => p.region = Some(v),
            "endpoint_url" => p.endpoint_url = Some(v),
            _ => {}
        }
    }
    Ok(p)
}

/// The flat `key = value` pairs of profile `name`; None when the file has
/// no such section. In the config file a profile is `[profile NAME]`
/// (`[default]` for the default); in the credentials file `[NAME]`.
fn section(text: &str, name: &str, config: bool) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(head) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let head = head.trim();
            let this = if config && name != "default" {
                head.strip_prefix("profile")
                    .is_some_and(|r| r.starts_with(char::is_whitespace) && r.trim() == name)
            } else {
                head == name || (config && head == "profile default")
            };
            inside = this;
            if this {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        // An indented line belongs to a nested block (`s3 =` …).
        if !inside || line.starts_with(char::is_whitespace) {
            continue;
        }
        if let Some((k, v)) = trimmed.split_once('=') {
            let v = v.trim();
            if !v.is_empty()
                && let Some(pairs) = found.as_mut()
            {
                pairs.push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
[default]
region = eu-west-1

# the off-site store
[profile offsite]
region=us-east-2
endpoint_url = http://127.0.0.1:9000
s3 =
  addressing_style = path
[profile other]
region = ap-south-1
";

    #[test]
    fn config_profiles_are_found_by_their_section_names() {
        let d = section(CONFIG, "default", true).unwrap();
        assert_eq!(d, [("region".to_string(), "eu-west-1".to_string())]);
        let o = section(CONFIG, "offsite", true).unwrap();
        assert_eq!(
            o,
            [
                ("region".to_string(), "us-east-2".to_string()),
                (
                    "endpoint_url".to_string(),
                    "http://127.0.0.1:9000".to_string()
                ),
            ],
            "the nested s3 block is skipped"
        );
        assert!(section(CONFIG, "nosuch", true).is_none());
        // `[offsite]` in the config file is not the profile (it needs `profile`).
        assert!(section("[offsite]\nregion = x\n", "offsite", true).is_none());
    }

    #[test]
    fn credentials_sections_have_bare_names() {
        let text = "[offsite]\naws_access_key_id = A\n[default]\naws_access_key_id = B\n";
        assert_eq!(section(text, "offsite", false).unwrap()[0].1, "A");
        assert_eq!(section(text, "default", false).unwrap()[0].1, "B");
        assert!(section("[profile offsite]\n", "offsite", false).is_none());
    }
}
