//! The private keys that open encrypted archives (`--identity FILE`,
//! `DATAMIG_IDENTITY`): age identity files (`age-keygen` output) and SSH
//! private keys, parsed once before any verb runs.
//!
//! They are installed process-wide because every reader of an archive (verify,
//! list, restore, retire's verify, `list DIR`, the remote readers) may meet an
//! encrypted one; a passphrase-protected SSH key is decrypted here, once, so
//! opening the many readers of one verify never prompts again.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, bail};

pub type Key = Box<dyn age::Identity + Send + Sync>;

/// The loaded keys and the files they came from (named in messages).
#[derive(Clone, Default)]
pub struct Identities {
    keys: Arc<Vec<Key>>,
    pub files: Vec<PathBuf>,
}

static INSTALLED: OnceLock<Identities> = OnceLock::new();

/// Make `ids` the keys every archive reader uses (the CLI calls this once).
pub fn install(ids: Identities) {
    let _ = INSTALLED.set(ids);
}

/// The installed keys; none when no `--identity` was given.
pub fn installed() -> Identities {
    INSTALLED.get().cloned().unwrap_or_default()
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }

    /// Every key in `files`, each file an age identity file or an SSH private key.
    pub fn load(files: &[PathBuf]) -> Result<Identities> {
        let mut keys = Vec::new();
        for f in files {
            keys.extend(load_file(f)?);
        }
        Ok(Identities {
            keys: Arc::new(keys),
            files: files.to_vec(),
        })
    }

    /// "a.txt, b.key": the files, for messages.
    pub fn named(&self) -> String {
        self.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn load_file(path: &Path) -> Result<Vec<Key>> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read identity file {}", path.display()))?;
    if text.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
    {
        return ssh_key(path, &text).map(|k| vec![k]);
    }
    let file = age::IdentityFile::from_buffer(BufReader::new(&text[..])).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an age identity file or SSH private key ({e}); give the file age-keygen wrote, or an SSH private key",
            path.display()
        )
    })?;
    let keys = file
        .into_identities()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if keys.is_empty() {
        bail!(
            "{} holds no identity (no AGE-SECRET-KEY-1… line); give the file age-keygen wrote",
            path.display()
        );
    }
    Ok(keys)
}

fn ssh_key(path: &Path, text: &[u8]) -> Result<Key> {
    let name = path.display().to_string();
    let id = age::ssh::Identity::from_buffer(BufReader::new(text), Some(name.clone()))
        .with_context(|| format!("{name} is not a usable SSH private key"))?;
    match id {
        age::ssh::Identity::Unencrypted(_) => Ok(Box::new(id)),
        age::ssh::Identity::Unsupported(k) => bail!(
            "{name}: unsupported SSH key ({k:?}); use an ed25519 or RSA key, or an age identity"
        ),
        age::ssh::Identity::Encrypted(k) => {
            let pass = prompt_passphrase(&name)?;
            let key = k.decrypt(pass).map_err(|_| {
                anyhow::anyhow!("wrong passphrase for the SSH key {name}; nothing was read")
            })?;
            Ok(Box::new(age::ssh::Identity::Unencrypted(key)))
        }
    }
}

/// Ask on the terminal, echo off. Scripts have no terminal: they get a clear
/// refusal rather than a hang on stdin.
fn prompt_passphrase(name: &str) -> Result<age::secrecy::SecretString> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
        .filter(|t| t.is_terminal());
    let Some(mut tty) = tty else {
        bail!(
            "the SSH key {name} is passphrase-protected and no terminal is attached to ask for the passphrase; \
             run on a terminal, or give an unprotected age identity (age-keygen)"
        );
    };
    write!(tty, "Passphrase for {name}: ")?;
    tty.flush()?;
    let echo = EchoOff::new(&tty);
    let mut line = String::new();
    BufReader::new(&tty).read_line(&mut line)?;
    drop(echo);
    writeln!(tty)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string().into())
}

/// Terminal echo off while it lives.
struct EchoOff {
    fd: i32,
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new(tty: &std::fs::File) -> EchoOff {
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on an open terminal descriptor with a
        // termios we own.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(fd, &mut t) == 0).then(|| {
                let mut quiet = t;
                quiet.c_lflag &= !libc::ECHO;
                libc::tcsetattr(fd, libc::TCSANOW, &quiet);
                t
            })
        };
        EchoOff { fd, saved }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes read in `new` on the same fd.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSANOW, &t);
            }
        }
    }
}
