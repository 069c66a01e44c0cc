//! The kernel's binary POSIX ACL attributes (linux/posix_acl_xattr.h): the
//! vocabulary shared by the archive writer, which turns them into GNU tar's
//! `SCHILY.acl.*` text, and restore, which turns that text back.

/// The attributes that hold a file's access ACL and a directory's default ACL.
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// Entry tags.
pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;

/// The id of an entry that names no user or group.
pub const UNDEFINED_ID: u32 = u32::MAX;
