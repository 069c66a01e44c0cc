//! Extended attributes and POSIX ACLs of a file or directory being archived,
//! read through its open handle (never by name, so a swapped path cannot
//! lend another inode's attributes) and written as PAX records the way GNU
//! tar `--xattrs --acls` writes them: each xattr as `SCHILY.xattr.NAME` with
//! its raw value, each ACL as `SCHILY.acl.access`/`SCHILY.acl.default` text.
//! GNU tar, bsdtar and datamig's own reader restore both.

use std::os::fd::AsFd;

use rustix::io::Errno;

// The binary ACL attributes are archived as ACL text instead.
use crate::acl::{ACL_ACCESS, ACL_DEFAULT, GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ};

/// Every attribute this process may read on `fd`, as PAX records. An
/// attribute that cannot be read (not permitted, vanished in between, a
/// filesystem without xattrs) is left out: what the process may not read it
/// cannot archive, as with GNU tar.
pub fn pax_records(fd: impl AsFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    let mut acls = Vec::new();
    for name in list(fd) {
        let Some(value) = get(fd, &name) else {
            continue;
        };
        let key = match name.as_slice() {
            ACL_ACCESS => &b"SCHILY.acl.access"[..],
            ACL_DEFAULT => &b"SCHILY.acl.default"[..],
            _ => {
                let mut k = b"SCHILY.xattr.".to_vec();
                k.extend_from_slice(&name);
                out.push((k, value));
                continue;
            }
        };
        if let Some(text) = acl_text(&value) {
            acls.push((key.to_vec(), text));
        }
    }
    out.extend(acls);
    out
}

/// Attribute names on `fd`, sized by asking first; retried when a name is
/// added between the two calls.
fn list(fd: std::os::fd::BorrowedFd) -> Vec<Vec<u8>> {
    for _ in 0..4 {
        let Ok(n) = rustix::fs::flistxattr_query(fd) else {
            return Vec::new();
        };
        if n == 0 {
            return Vec::new();
        }
        let mut buf = vec![0u8; n];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(len) => {
                return buf[..len]
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
            }
            Err(Errno::RANGE) => continue,
            Err(_) => return Vec::new(),
        }
    }
    Vec::new()
}

fn get(fd: std::os::fd::BorrowedFd, name: &[u8]) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let n = rustix::fs::fgetxattr_query(fd, name).ok()?;
        let mut buf = vec![0u8; n];
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Some(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The kernel's binary ACL as the text `acl_to_text` writes (one entry a
/// line), with numeric ids: `getpwnam` is not needed to write it, and GNU
/// tar's `acl_from_text`, libarchive and datamig all read a numeric
/// qualifier. `None` for a value that is not a version-2 ACL.
pub fn acl_text(bin: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = bin.split_at_checked(4)?;
    if head != 2u32.to_le_bytes() || body.len() % 8 != 0 || body.is_empty() {
        return None;
    }
    let mut out = String::new();
    for e in body.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let who = match tag {
            USER_OBJ => "user::".to_string(),
            USER => format!("user:{id}:"),
            GROUP_OBJ => "group::".to_string(),
            GROUP => format!("group:{id}:"),
            MASK => "mask::".to_string(),
            OTHER => "other::".to_string(),
            _ => return None,
        };
        out.push_str(&who);
        for (bit, c) in [(4, 'r'), (2, 'w'), (1, 'x')] {
            out.push(if perm & bit != 0 { c } else { '-' });
        }
        out.push('\n');
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_acl_becomes_gnu_tar_text() {
        let mut bin = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (USER_OBJ, 6u16, u32::MAX),
            (USER, 4, 65534),
            (GROUP_OBJ, 4, u32::MAX),
            (MASK, 4, u32::MAX),
            (OTHER, 0, u32::MAX),
        ] {
            bin.extend_from_slice(&tag.to_le_bytes());
            bin.extend_from_slice(&perm.to_le_bytes());
            bin.extend_from_slice(&id.to_le_bytes());
        }
        assert_eq!(
            acl_text(&bin).unwrap(),
            b"user::rw-\nuser:65534:r--\ngroup::r--\nmask::r--\nother::---\n"
        );
        assert_eq!(acl_text(&bin[..7]), None);
        assert_eq!(acl_text(b"\x01\0\0\0"), None);
    }
}
