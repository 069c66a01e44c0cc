//! Decoding on a second thread for whole-archive reads (a full restore): the
//! next frames are decompressed while the current one is written out, as
//! `tar --zstd` does with its `zstd -d` child. Partial reads keep using
//! `FrameReader` directly, so they never read ahead of what they need.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::Result;

use super::{FRAME_MAX, FrameReader};

/// Decoded frames in flight: with the one being consumed and the one being
/// decoded, at most four frame buffers (16 MiB) exist at once.
const AHEAD: usize = 2;

enum Msg {
    Frame(Vec<u8>, u64),
    End(u64),
    Failed(std::io::Error, u64),
}

pub struct Prefetched {
    rx: Receiver<Msg>,
    /// Buffers handed back to the decoder for reuse.
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    state: State,
    /// Bytes read from the archive file so far (as `FrameReader::read_bytes`).
    pub read_bytes: u64,
    worker: Option<JoinHandle<()>>,
}

#[derive(PartialEq)]
enum State {
    Reading,
    Ended,
    Failed,
}

impl Prefetched {
    /// Decode the frames of `file` from compressed offset `start` to the end.
    pub fn new<F: std::os::unix::fs::FileExt + Send + 'static>(
        file: F,
        len: u64,
        start: u64,
    ) -> Result<Prefetched> {
        let mut fr = FrameReader::new(file, len, start)?;
        let (tx, rx) = sync_channel::<Msg>(AHEAD);
        let (back, spare) = sync_channel::<Vec<u8>>(AHEAD + 2);
        let worker = std::thread::Builder::new()
            .name("datamig-decode".into())
            .spawn(move || {
                loop {
                    let msg = match fr.load() {
                        Ok(true) => {
                            // Decoding writes into spare capacity: only a
                            // full-size buffer can be reused.
                            let next = spare
                                .try_recv()
                                .ok()
                                .filter(|b| b.capacity() >= FRAME_MAX)
                                .unwrap_or_else(|| Vec::with_capacity(FRAME_MAX));
                            let frame = std::mem::replace(&mut fr.out, next);
                            Msg::Frame(frame, fr.read_bytes)
                        }
                        Ok(false) => Msg::End(fr.read_bytes),
                        Err(e) => Msg::Failed(e, fr.read_bytes),
                    };
                    let last = !matches!(msg, Msg::Frame(..));
                    // A closed channel means the reader stopped early.
                    if tx.send(msg).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(Prefetched {
            rx,
            back,
            cur: Vec::new(),
            at: 0,
            state: State::Reading,
            read_bytes: 0,
            worker: Some(worker),
        })
    }
}

impl Read for Prefetched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            match self.state {
                State::Ended => return Ok(0),
                State::Failed => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "reading stopped at a damaged frame",
                    ));
                }
                State::Reading => {}
            }
            match self.rx.recv() {
                Ok(Msg::Frame(frame, n)) => {
                    let used = std::mem::replace(&mut self.cur, frame);
                    let _ = self.back.try_send(used);
                    self.at = 0;
                    self.read_bytes = n;
                }
                Ok(Msg::End(n)) => {
                    self.read_bytes = n;
                    self.state = State::Ended;
                }
                Ok(Msg::Failed(e, n)) => {
                    self.read_bytes = n;
                    self.state = State::Failed;
                    return Err(e);
                }
                Err(_) => {
                    self.state = State::Failed;
                    return Err(std::io::Error::other("the decoding thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        // Unblock a decoder waiting to send, then wait for it.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::FrameWriter;

    /// A multi-frame stream (more frames than buffers in flight, so recycled
    /// buffers are used) reads back identically through the prefetcher,
    /// and a damaged frame surfaces as an error at the same place.
    #[test]
    fn prefetched_reads_match_the_input_and_report_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zst");
        let data: Vec<u8> = (0..(FRAME_MAX * 7 + 12345))
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        let file = std::fs::File::create(&path).unwrap();
        let mut fw = FrameWriter::new(Box::new(file), 3, 2);
        fw.write_all(&data).unwrap();
        let offsets = fw.sync().unwrap();
        let index = crate::frames::ArchiveIndex {
            datamig: "archive-index".into(),
            version: crate::frames::LAYOUT_VERSION,
            manifest_frame_offset: 0,
            manifest_offset_in_frame: 0,
            manifest_size: 0,
            index_offset: 0,
            frames: offsets.len() as u64,
        };
        fw.finish(&index).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();

        let mut got = Vec::new();
        let mut p = Prefetched::new(std::fs::File::open(&path).unwrap(), len, 0).unwrap();
        p.read_to_end(&mut got).unwrap();
        assert!(got == data, "prefetched bytes differ from the input");
        assert_eq!(p.read_bytes, len);

        // Flip a byte inside the second frame: the first frame's bytes come
        // out, then the error.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offsets[1] as usize + 100] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut p = Prefetched::new(std::fs::File::open(&path).unwrap(), len, 0).unwrap();
        let mut got = Vec::new();
        let err = p.read_to_end(&mut got).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert_eq!(got.len(), FRAME_MAX);
        assert!(
            p.read(&mut [0u8; 8]).is_err(),
            "reads after damage must fail"
        );
    }
}
