//! Where a whole-archive restore reads its tar stream from.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use anyhow::Result;

use crate::frames::{FRAME_MAX, Prefetched};

pub enum TarSource {
    /// datamig's independent frames, decoded ahead on a second thread.
    Frames(Prefetched),
    /// Any other zstd stream (`tar --zstd`, `zstd` on a tar file: one frame of
    /// any size), decoded as one stream on a second thread (issue 11: a
    /// foreign single-frame restore decoded and wrote on one thread).
    Stream(crate::verify::foreign::Decoded),
}

impl TarSource {
    /// Frame by frame when the first frame declares at most `FRAME_MAX`
    /// bytes, as every frame datamig writes does (so a datamig archive that
    /// lost its tail is still checked frame by frame, each frame's checksum
    /// before any of its bytes is used); anything else as a plain zstd stream.
    pub fn open(mut file: fs::File, len: u64) -> Result<TarSource> {
        let mut head = [0u8; 18]; // the largest zstd frame header
        let n = file.read_at(&mut head, 0)?;
        let framed = matches!(
            zstd::zstd_safe::get_frame_content_size(&head[..n]),
            Ok(Some(size)) if size <= FRAME_MAX as u64
        );
        if framed {
            return Ok(TarSource::Frames(Prefetched::new(file, len, 0)?));
        }
        file.seek(SeekFrom::Start(0))?;
        Ok(TarSource::Stream(crate::verify::foreign::Decoded::new(
            file,
        )?))
    }

    /// A remote archive (ranged reads), decoded frame by frame ahead on a
    /// second thread. Only datamig's frames: a foreign remote stream is
    /// refused (fetch it and restore the file).
    pub fn open_remote(file: crate::remote::RemoteFile) -> Result<TarSource> {
        let mut head = [0u8; 18];
        let n = file.read_at(&mut head, 0)?;
        let framed = matches!(
            zstd::zstd_safe::get_frame_content_size(&head[..n]),
            Ok(Some(size)) if size <= FRAME_MAX as u64
        );
        if !framed {
            anyhow::bail!(
                "{} is not made of datamig's frames (a foreign .tar.zst); fetch it and restore the file",
                file.url()
            );
        }
        let len = file.len();
        Ok(TarSource::Frames(Prefetched::new(file, len, 0)?))
    }

    /// An encrypted archive (local or remote), decrypted as it is read and
    /// decoded frame by frame ahead on a second thread. Only datamig's frames:
    /// an encrypted foreign stream is refused with the standard tools' way.
    pub(super) fn open_sealed(
        d: crate::crypt::Decrypted<super::bytes::Bytes>,
        archive: &std::path::Path,
    ) -> Result<TarSource> {
        let mut head = [0u8; 18];
        let n = d.read_at(&mut head, 0)?;
        let framed = matches!(
            zstd::zstd_safe::get_frame_content_size(&head[..n]),
            Ok(Some(size)) if size <= FRAME_MAX as u64
        );
        if !framed {
            anyhow::bail!(
                "{} decrypts to a zstd stream not made of datamig's frames; restore it with `age -d -i KEY {} | tar --zstd -x`",
                archive.display(),
                archive.display()
            );
        }
        let len = d.len();
        Ok(TarSource::Frames(Prefetched::new(d, len, 0)?))
    }

    /// Bytes read from the archive file so far.
    pub fn read_bytes(&self) -> u64 {
        match self {
            TarSource::Frames(p) => p.read_bytes,
            TarSource::Stream(d) => d.read_bytes,
        }
    }
}

impl Read for TarSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            TarSource::Frames(p) => p.read(buf),
            TarSource::Stream(d) => d.read(buf),
        }
    }
}
