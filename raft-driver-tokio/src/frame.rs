//! Length-prefixed frames on QUIC streams.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes. Readers check the
//! length against a hard cap before buffering anything, so a peer cannot make a node allocate
//! more than the cap by announcing a huge frame.

use bytes::{Buf, Bytes, BytesMut};

/// Size of the length prefix.
pub const PREFIX_BYTES: usize = 4;

/// Most buffer space reserved ahead of data that has not arrived yet.
const MAX_RESERVE: usize = 64 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced frame is larger than this reader accepts.
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the partial frame.
        buffered: usize,
    },
    /// The stream failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
}

/// Appends `body` to `buf` as one frame.
pub fn put_frame(buf: &mut Vec<u8>, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(body);
}

/// Sends `body` as the one frame of a stream, then finishes the stream. A small body is copied
/// behind its length into one buffer (one write is cheaper than two tiny chunks); a large one
/// is written as it is, after its length (no copy).
pub async fn send_only_frame(
    send: &mut quinn::SendStream,
    body: Bytes,
) -> Result<(), quinn::WriteError> {
    if body.len() < ZERO_COPY_BODY_BYTES {
        let mut buf = Vec::with_capacity(PREFIX_BYTES + body.len());
        put_frame(&mut buf, &body);
        send.write_all(&buf).await?;
    } else {
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let mut chunks = [Bytes::copy_from_slice(&len.to_le_bytes()), body];
        send.write_all_chunks(&mut chunks).await?;
    }
    // Only fails if the stream was already finished or reset; the write above reported that.
    let _ = send.finish();
    Ok(())
}

/// Bodies from this size on are written without copying them.
const ZERO_COPY_BODY_BYTES: usize = 16 << 10;

/// Starts a frame in `buf` whose body the caller appends next; returns the position to pass to
/// [`finish_frame`].
pub fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; PREFIX_BYTES]);
    at
}

/// Writes the length of the frame begun at `at` (everything appended since).
pub fn finish_frame(buf: &mut [u8], at: usize) {
    let len = buf.len() - at - PREFIX_BYTES;
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    buf[at..at + PREFIX_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Undoes a frame begun at `at` (for example when encoding its body failed).
pub fn abandon_frame(buf: &mut Vec<u8>, at: usize) {
    buf.truncate(at);
}

/// Splits frames out of a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    /// A reader accepting frames of at most `max` bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            max,
        }
    }

    /// The next whole frame already buffered, if any.
    pub fn try_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < PREFIX_BYTES {
            return Ok(None);
        }
        let mut len = [0; PREFIX_BYTES];
        len.copy_from_slice(&self.buf[..PREFIX_BYTES]);
        let size = u32::from_le_bytes(len) as usize;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size,
                max: self.max,
            });
        }
        if self.buf.len() < PREFIX_BYTES + size {
            // Grow with the data that arrives, not with what the length announces: a peer
            // that announces large frames and sends little gets little memory.
            let missing = PREFIX_BYTES + size - self.buf.len();
            self.buf.reserve(missing.min(MAX_RESERVE));
            return Ok(None);
        }
        self.buf.advance(PREFIX_BYTES);
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// Adds bytes received from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads the next frame from `recv`; `Ok(None)` when the stream ended cleanly between frames.
    pub async fn next(
        &mut self,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(Some(frame));
            }
            match recv.read_chunk(256 << 10, true).await? {
                Some(chunk) => self.extend(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(FrameError::Truncated {
                        buffered: self.buf.len(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_boundary() {
        let mut wire = Vec::new();
        put_frame(&mut wire, b"hello");
        put_frame(&mut wire, b"");
        let at = begin_frame(&mut wire);
        wire.extend_from_slice(b"world!");
        finish_frame(&mut wire, at);
        for cut in 0..wire.len() {
            let mut r = FrameReader::new(100);
            r.extend(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = r.try_frame().unwrap() {
                got.push(f);
            }
            r.extend(&wire[cut..]);
            while let Some(f) = r.try_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let mut r = FrameReader::new(10);
        r.extend(&11u32.to_le_bytes());
        assert!(matches!(
            r.try_frame(),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        ));
        let mut r = FrameReader::new(10);
        r.extend(&u32::MAX.to_le_bytes());
        assert!(r.try_frame().is_err());
        assert!(r.buf.capacity() < 1024);
    }

    #[test]
    fn abandoned_frame_leaves_buffer_unchanged() {
        let mut wire = Vec::new();
        put_frame(&mut wire, b"a");
        let before = wire.clone();
        let at = begin_frame(&mut wire);
        wire.push(9);
        abandon_frame(&mut wire, at);
        assert_eq!(wire, before);
    }
}
