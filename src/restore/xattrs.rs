//! Extended attributes and POSIX ACLs of foreign members (`SCHILY.xattr.*`,
//! `LIBARCHIVE.xattr.*`, `SCHILY.acl.access`/`default`, as GNU tar
//! `--xattrs --acls` and bsdtar write them), set on the open file or
//! directory handle, never by name. ACLs go in as the kernel's binary
//! `system.posix_acl_*` attributes, converted from the archived text.

use std::os::fd::AsFd;

use super::owners::Names;
use crate::acl::{GROUP, GROUP_OBJ, MASK, OTHER, UNDEFINED_ID, USER, USER_OBJ};
use crate::tarfmt::Found;

/// Attribute names and values, in the order they are set.
pub type Attrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The attributes to set on a member: its xattrs (an ACL record replaces a
/// raw `system.posix_acl_*` xattr of the same kind), then its ACLs. Records
/// that cannot be used come back as notes.
pub fn wanted(found: &Found, names: &mut Names) -> (Attrs, Vec<String>) {
    let mut out: Attrs = Vec::new();
    let mut notes = Vec::new();
    // bsdtar writes each xattr twice (SCHILY and LIBARCHIVE): the last wins.
    let mut at: std::collections::HashMap<&[u8], usize> = Default::default();
    for (k, v) in &found.xattrs {
        match at.get(k.as_slice()) {
            Some(&i) => out[i].1 = v.clone(),
            None => {
                at.insert(k, out.len());
                out.push((k.clone(), v.clone()));
            }
        }
    }
    let acls = [
        (&found.acl_access, crate::acl::ACL_ACCESS),
        (&found.acl_default, crate::acl::ACL_DEFAULT),
    ];
    for (text, key) in acls {
        let Some(text) = text else { continue };
        out.retain(|(n, _)| n != key);
        match acl_to_xattr(text, names) {
            Ok(Some(bin)) => out.push((key.to_vec(), bin)),
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "ACL {:?} not applied: {e}",
                String::from_utf8_lossy(text)
            )),
        }
    }
    (out, notes)
}

/// Set each attribute on `fd`; the ones that fail, as notes.
pub fn apply(fd: impl AsFd, attrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (k, v) in attrs {
        let r = rustix::fs::fsetxattr(&fd, k.as_slice(), v, rustix::fs::XattrFlags::empty());
        if let Err(e) = r {
            notes.push(format!(
                "extended attribute {} not set: {e}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    notes
}

/// An ACL in text form (`user::rw-,user:alice:r--,group::r--,mask::r--,
/// other::---`, separated by commas or newlines, bsdtar's fourth field with
/// the numeric id allowed) as the kernel's binary xattr; `None` when empty.
fn acl_to_xattr(text: &[u8], names: &mut Names) -> Result<Option<Vec<u8>>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let mut entries: Vec<(u16, u16, u32)> = Vec::new();
    for raw in text.split([',', '\n']) {
        let e = raw.split('#').next().unwrap_or("").trim();
        if e.is_empty() {
            continue;
        }
        let f: Vec<&str> = e.split(':').collect();
        if f.len() < 3 {
            return Err(format!("entry {e:?} has too few fields"));
        }
        let qual = f[1];
        let extra: Option<u32> = f.get(3).and_then(|s| s.parse().ok());
        let tag = match (f[0], qual.is_empty()) {
            ("user" | "u", true) => USER_OBJ,
            ("user" | "u", false) => USER,
            ("group" | "g", true) => GROUP_OBJ,
            ("group" | "g", false) => GROUP,
            ("mask" | "m", _) => MASK,
            ("other" | "o", _) => OTHER,
            (t, _) => return Err(format!("unknown ACL tag {t:?}")),
        };
        let id = match tag {
            USER | GROUP => match (extra, qual.parse::<u32>()) {
                (Some(id), _) | (None, Ok(id)) => id,
                (None, Err(_)) => {
                    let local = if tag == USER {
                        names.uid(Some(qual.as_bytes()))
                    } else {
                        names.gid(Some(qual.as_bytes()))
                    };
                    local.ok_or_else(|| format!("no local user or group {qual:?}"))?
                }
            },
            _ => UNDEFINED_ID,
        };
        let mut perm = 0u16;
        for c in f[2].chars() {
            perm |= match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                '-' => 0,
                _ => return Err(format!("bad permissions {:?}", f[2])),
            };
        }
        entries.push((tag, perm, id));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    // The kernel wants them ordered by tag, then id.
    entries.sort_by_key(|&(tag, _, id)| (tag, id));
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_and_bsdtar_acl_text_become_the_kernel_form() {
        let mut names = Names::default();
        let gnu = acl_to_xattr(
            b"user::rw-,user:1000:r--,group::r--,mask::r--,other::---",
            &mut names,
        )
        .unwrap()
        .unwrap();
        let bsd = acl_to_xattr(
            b"user::rw-\nuser:dm-nobody-here:r--:1000\ngroup::r--\nmask::r--\nother::---\n",
            &mut names,
        )
        .unwrap()
        .unwrap();
        assert_eq!(gnu, bsd);
        assert_eq!(gnu.len(), 4 + 5 * 8);
        // user:1000 sorts after user::
        assert_eq!(&gnu[12..20], &[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        assert!(acl_to_xattr(b"bogus::rw-", &mut names).is_err());
    }
}
