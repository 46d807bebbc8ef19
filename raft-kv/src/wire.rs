//! Byte-level building blocks shared by every format of this crate: commands, responses and
//! snapshots.
//!
//! Integers are unsigned LEB128 varints (1 to 10 bytes) in their shortest form only, so every
//! value has exactly one encoding and `encode(decode(bytes)) == bytes` whenever decoding succeeds.
//! Byte strings are a varint length followed by the bytes. Optional byte strings and booleans are
//! one flag byte, `0` or `1`; any other flag is rejected.
//!
//! Writing goes to any [`Sink`]: a `Vec<u8>` to build a buffer, or a [`Fnv64`] hasher to digest
//! the same bytes without building them. Reading slices a [`Bytes`] buffer, so byte strings are
//! returned without copying, and never allocates.

use bytes::Bytes;

/// Most bytes a varint takes.
pub(crate) const MAX_VARINT_BYTES: usize = 10;

/// A low-level decoding failure, shared by the command, response and snapshot formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended in the middle of a field.
    #[error("input truncated: {needed} more bytes needed, {remaining} left")]
    Truncated {
        /// Bytes the field needed.
        needed: u64,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A varint was longer than ten bytes, overflowed 64 bits or was not in its shortest form.
    #[error("malformed varint")]
    MalformedVarint,
    /// A flag byte (option or boolean) was neither 0 nor 1.
    #[error("invalid flag byte {0:#04x}")]
    InvalidFlag(u8),
    /// Bytes were left over after the last field.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// Where encoded bytes go.
pub(crate) trait Sink {
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);

    /// Appends one byte.
    fn put_u8(&mut self, byte: u8) {
        self.put(&[byte]);
    }

    /// Appends a varint.
    fn put_varint(&mut self, mut value: u64) {
        let mut buf = [0u8; MAX_VARINT_BYTES];
        let mut n = 0;
        loop {
            // The mask keeps the value below 128, so the cast is lossless.
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                buf[n] = low;
                n += 1;
                break;
            }
            buf[n] = low | 0x80;
            n += 1;
        }
        self.put(&buf[..n]);
    }

    /// Appends a length-prefixed byte string.
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.put_varint(bytes.len() as u64);
        self.put(bytes);
    }

    /// Appends a boolean as a flag byte.
    fn put_bool(&mut self, flag: bool) {
        self.put_u8(u8::from(flag));
    }

    /// Appends an optional byte string: a flag, then the string if present.
    fn put_opt_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            None => self.put_u8(0),
            Some(b) => {
                self.put_u8(1);
                self.put_bytes(b);
            }
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Number of bytes [`Sink::put_varint`] writes for `value`.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Number of bytes [`Sink::put_bytes`] writes for a string of `len` bytes.
pub(crate) fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// The 64-bit FNV-1a hash, used as the snapshot checksum and the state digest.
///
/// Not cryptographic; it catches corruption, not tampering. A change of any single byte always
/// changes the hash, because each step (xor with the byte, multiply by an odd prime modulo 2^64)
/// is a bijection of the running state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher that has seen no bytes.
    pub(crate) fn new() -> Self {
        Fnv64(Self::OFFSET_BASIS)
    }

    /// The hash of the bytes seen so far.
    pub(crate) fn finish(self) -> u64 {
        self.0
    }

    /// The hash of `bytes`.
    pub(crate) fn hash(bytes: &[u8]) -> u64 {
        let mut h = Self::new();
        h.put(bytes);
        h.finish()
    }
}

impl Sink for Fnv64 {
    fn put(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }
}

/// A cursor over a [`Bytes`] buffer. Every method checks the remaining length first, so reads
/// never panic; byte strings come back as slices of the buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated {
            needed: 1,
            remaining: 0,
        })?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads a varint in its shortest form.
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_BYTES {
            let byte = self.u8()?;
            let low = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 only.
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                return Err(WireError::MalformedVarint);
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                // A zero final byte after the first means the encoding was padded.
                if i > 0 && byte == 0 {
                    return Err(WireError::MalformedVarint);
                }
                return Ok(value);
            }
        }
        Err(WireError::MalformedVarint)
    }

    /// Takes the next `len` bytes as a slice of the buffer.
    pub(crate) fn take(&mut self, len: u64) -> Result<Bytes, WireError> {
        let remaining = self.remaining();
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or(WireError::Truncated {
                needed: len,
                remaining,
            })?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Reads a flag byte as a boolean.
    pub(crate) fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError::InvalidFlag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_varint(v);
        out
    }

    fn decode_varint(bytes: &[u8]) -> Result<u64, WireError> {
        let buf = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&buf);
        let v = r.varint()?;
        r.finish()?;
        Ok(v)
    }

    #[test]
    fn varint_round_trips_at_boundaries() {
        for shift in 0..64 {
            for v in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1] {
                let bytes = encode_varint(v);
                assert_eq!(bytes.len(), varint_len(v), "length of {v}");
                assert_eq!(decode_varint(&bytes), Ok(v), "value {v}");
            }
        }
        let max = encode_varint(u64::MAX);
        assert_eq!(max.len(), MAX_VARINT_BYTES);
        assert_eq!(decode_varint(&max), Ok(u64::MAX));
    }

    #[test]
    fn varint_rejects_padding_overflow_and_truncation() {
        // 0 padded to two bytes.
        assert_eq!(
            decode_varint(&[0x80, 0x00]),
            Err(WireError::MalformedVarint)
        );
        // 1 padded to two bytes.
        assert_eq!(
            decode_varint(&[0x81, 0x00]),
            Err(WireError::MalformedVarint)
        );
        // Ten bytes whose last one carries more than bit 63.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(decode_varint(&over), Err(WireError::MalformedVarint));
        // Eleven bytes.
        assert_eq!(decode_varint(&[0xff; 11]), Err(WireError::MalformedVarint));
        // Continuation bit on the last byte of the input.
        assert!(matches!(
            decode_varint(&[0x80]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn take_checks_the_remaining_length() {
        let buf = Bytes::from_static(b"abc");
        let mut r = Reader::new(&buf);
        assert_eq!(
            r.take(4),
            Err(WireError::Truncated {
                needed: 4,
                remaining: 3
            })
        );
        assert_eq!(
            r.take(u64::MAX),
            Err(WireError::Truncated {
                needed: u64::MAX,
                remaining: 3
            })
        );
        assert_eq!(r.take(2).as_deref(), Ok(&b"ab"[..]));
        assert_eq!(r.finish(), Err(WireError::TrailingBytes(1)));
        assert_eq!(r.bool(), Err(WireError::InvalidFlag(b'c')));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(Fnv64::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::hash(b"foobar"), 0x8594_4171_f739_67e8);
        // Streaming in pieces gives the same hash as one call.
        let mut h = Fnv64::new();
        h.put(b"foo");
        h.put(b"bar");
        assert_eq!(h.finish(), Fnv64::hash(b"foobar"));
    }
}
