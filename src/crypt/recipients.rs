//! `--encrypt-to` and `--recipients-file`: the public keys an archive is
//! encrypted to, parsed once into [`Recipients`] before anything is written.
//!
//! Accepted, as the `age` command accepts them: X25519 recipients (`age1…`)
//! and SSH public keys (`ssh-ed25519 …`, `ssh-rsa …`, as in `id_ed25519.pub`
//! or `authorized_keys`). A recipients file holds one per line; `#` starts a
//! comment line and blank lines are skipped. A private key given where a
//! public one belongs is refused with how to derive the public one: the
//! host that makes the archives must never hold what decrypts them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// One public key.
#[derive(Clone)]
enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

/// The recipients of one run (never empty).
#[derive(Clone)]
pub struct Recipients(Vec<Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

/// What a valid recipient looks like, for the error messages.
const VALID: &str = "an age public key (age1…, from `age-keygen -y key.txt`) or an SSH public key \
     (ssh-ed25519 AAAA… or ssh-rsa AAAA…, a line of id_ed25519.pub)";

/// What a private key given as a recipient is told.
const PRIVATE: &str = "that is a private key; give the public one (age-keygen -y KEYFILE prints an \
     age key's, ssh-keygen -y -f KEYFILE an SSH key's), and keep the private key off this server";

impl Recipients {
    /// `--encrypt-to` values and `--recipients-file` paths; None when both are empty.
    pub fn parse(encrypt_to: &[String], files: &[PathBuf]) -> Result<Option<Recipients>> {
        let mut all = Vec::new();
        for r in encrypt_to
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
        {
            // A private key is never echoed (error output ends up in logs).
            let shown = if looks_private(r) {
                "(a value not shown)".to_string()
            } else {
                format!("{r:?}")
            };
            all.push(parse_one(r).with_context(|| format!("--encrypt-to {shown}"))?);
        }
        for f in files {
            all.extend(read_file(f)?);
        }
        Ok((!all.is_empty()).then_some(Recipients(all)))
    }

    /// How many recipients the header names (the read-back key not counted).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An age encryptor to every recipient, plus `extra` (the run's own
    /// read-back key, see `crypt::writer`).
    pub fn encryptor(&self, extra: Option<&age::x25519::Recipient>) -> Result<age::Encryptor> {
        let extra = extra.map(|r| r as &dyn age::Recipient);
        let list = self.0.iter().map(Recipient::as_age).chain(extra);
        age::Encryptor::with_recipients(list).map_err(|e| anyhow::anyhow!("age: {e}"))
    }
}

fn looks_private(s: &str) -> bool {
    s.starts_with("AGE-SECRET-KEY-")
        || s.starts_with("AGE-PLUGIN-")
        || (s.starts_with("-----BEGIN") && s.contains("PRIVATE KEY"))
}

fn parse_one(s: &str) -> Result<Recipient> {
    if looks_private(s) {
        bail!(PRIVATE);
    }
    if s.starts_with("age1") {
        return s
            .parse::<age::x25519::Recipient>()
            .map(Recipient::X25519)
            .map_err(|e| anyhow::anyhow!("not a valid age public key ({e}); expected {VALID}"));
    }
    if s.starts_with("ssh-") {
        return s
            .parse::<age::ssh::Recipient>()
            .map(Recipient::Ssh)
            .map_err(|e| {
                use age::ssh::ParseRecipientKeyError as P;
                let why = match e {
                    P::RsaModulusTooSmall => {
                        "an ssh-rsa key under 2048 bits is too weak".to_string()
                    }
                    P::RsaModulusTooLarge => "the ssh-rsa key is larger than age supports".into(),
                    P::Unsupported(t) => format!("{t} keys are not supported"),
                    _ => "not a valid SSH public key".into(),
                };
                anyhow::anyhow!("{why}; expected {VALID}")
            });
    }
    if Path::new(s).is_file() {
        bail!("this is a file, not a key; give it with --recipients-file, or give {VALID}");
    }
    bail!("not a recipient; expected {VALID}")
}

/// age's recipients-file format.
fn read_file(path: &Path) -> Result<Vec<Recipient>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "--recipients-file {}: cannot read it as text (a file of public keys, one per line)",
            path.display()
        )
    })?;
    if text.lines().any(|l| looks_private(l.trim())) {
        bail!("--recipients-file {}: {PRIVATE}", path.display());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        out.push(
            parse_one(l)
                .with_context(|| format!("--recipients-file {} line {}", path.display(), i + 1))?,
        );
    }
    if out.is_empty() {
        bail!(
            "--recipients-file {}: no recipient in it; put one public key per line ({VALID})",
            path.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn age_and_ssh_keys_parse_and_private_keys_are_refused() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN comment";
        let r = Recipients::parse(&[public.clone(), ssh.into()], &[])
            .unwrap()
            .unwrap();
        assert_eq!(r.len(), 2);
        assert!(Recipients::parse(&[], &[]).unwrap().is_none());

        let secret = id.to_string().expose_secret().to_string();
        let e = format!("{:#}", Recipients::parse(&[secret], &[]).unwrap_err());
        assert!(e.contains("that is a private key"), "{e}");
        assert!(!e.contains("AGE-SECRET-KEY"), "the key is not echoed: {e}");
        for bad in ["age1xyz", "ssh-ed25519 AAAA", "hello"] {
            let e = format!("{:#}", Recipients::parse(&[bad.into()], &[]).unwrap_err());
            assert!(e.contains("expected an age public key"), "{bad}: {e}");
        }
    }

    #[test]
    fn recipients_files_skip_comments_and_refuse_private_keys() {
        let d = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let f = d.path().join("r.txt");
        std::fs::write(&f, format!("# ops\n\n  {}\n", id.to_public())).unwrap();
        let r = Recipients::parse(&[], std::slice::from_ref(&f)).unwrap();
        assert_eq!(r.unwrap().len(), 1);

        std::fs::write(&f, "# nothing\n").unwrap();
        let e = format!(
            "{:#}",
            Recipients::parse(&[], std::slice::from_ref(&f)).unwrap_err()
        );
        assert!(e.contains("no recipient"), "{e}");

        std::fs::write(&f, "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").unwrap();
        let e = format!(
            "{:#}",
            Recipients::parse(&[], std::slice::from_ref(&f)).unwrap_err()
        );
        assert!(e.contains("that is a private key"), "{e}");

        let e = format!(
            "{:#}",
            Recipients::parse(&[], &[d.path().join("absent")]).unwrap_err()
        );
        assert!(e.contains("absent: cannot read"), "{e}");
    }
}
