//! Owner names of foreign archives, mapped as GNU tar maps them when run as
//! root without `--numeric-owner`: a user or group name that exists on this
//! system wins over the archived number; an unknown name (or none, as in
//! datamig's own archives) leaves the number as archived.
//!
//! The local databases are read from /etc/passwd and /etc/group, not NSS:
//! datamig links no libc name service, and these are what a server's
//! restore target uses.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

#[derive(Default)]
pub struct Names {
    users: Option<HashMap<Vec<u8>, u32>>,
    groups: Option<HashMap<Vec<u8>, u32>>,
}

/// `name:x:id:...` lines: name to id.
fn parse_db(text: &[u8]) -> HashMap<Vec<u8>, u32> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut f = line.split(|&b| b == b':');
            let name = f.next()?;
            let id = std::str::from_utf8(f.nth(1)?).ok()?.parse().ok()?;
            (!name.is_empty()).then(|| (name.to_vec(), id))
        })
        .collect()
}

fn load(path: &str) -> HashMap<Vec<u8>, u32> {
    let mut text = Vec::new();
    match crate::fsx::open_path(Path::new(path)) {
        Ok(f) => {
            let _ = f.take(64 << 20).read_to_end(&mut text);
            parse_db(&text)
        }
        Err(_) => HashMap::new(),
    }
}

impl Names {
    /// The uid for an archived user name, when this system knows the name.
    pub fn uid(&mut self, name: Option<&[u8]>) -> Option<u32> {
        let name = name?;
        self.users
            .get_or_insert_with(|| load("/etc/passwd"))
            .get(name)
            .copied()
    }

    /// The gid for an archived group name, when this system knows the name.
    pub fn gid(&mut self, name: Option<&[u8]>) -> Option<u32> {
        let name = name?;
        self.groups
            .get_or_insert_with(|| load("/etc/group"))
            .get(name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_map_names_to_ids() {
        let db =
            parse_db(b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/x\n\nbad\n:x:5:\n");
        assert_eq!(db.get(&b"root"[..]), Some(&0));
        assert_eq!(db.get(&b"nobody"[..]), Some(&65534));
        assert_eq!(db.len(), 2);
    }
}
