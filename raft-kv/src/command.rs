//! Commands, the payload of a Raft log entry, and their wire format.
//!
//! # Layout
//!
//! ```text
//! version    u8      = COMMAND_FORMAT_VERSION
//! client_id  varint  0 = no session
//! seq        varint
//! op         u8      1 Put, 2 Get, 3 Delete, 4 Cas
//! key        bytes   varint length, then at most MAX_KEY_BYTES bytes
//! Put:    value     bytes
//! Cas:    expected  option (flag 0 | flag 1, bytes), new  option
//! ```
//!
//! Varints, byte strings and options are those of the `wire` module; every value has exactly
//! one encoding, so a successful decode re-encodes to the same bytes. Decoding checks every
//! length against its limit and against the bytes actually left before using it, never panics,
//! and allocates nothing: [`Command::decode_bytes`] returns slices of its input, and
//! [`Command::decode`] makes one copy of its input (after checking its size) and slices that.

use bytes::Bytes;

use crate::wire::{bytes_len, varint_len, Reader, Sink, WireError};

/// The version byte that starts every encoded command.
pub const COMMAND_FORMAT_VERSION: u8 = 1;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// The longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// An upper bound on the size of any valid encoded command (a CAS with a key and two values of
/// the largest sizes); longer input is rejected before it is looked at.
pub const MAX_COMMAND_BYTES: usize =
    1 + 10 + 10 + 1 + (10 + MAX_KEY_BYTES) + 2 * (11 + MAX_VALUE_BYTES);

const TAG_PUT: u8 = 1;
const TAG_GET: u8 = 2;
const TAG_DELETE: u8 = 3;
const TAG_CAS: u8 = 4;

/// Why a command or a response could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The input is longer than any valid encoding.
    #[error("input of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte is not one this build understands.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The operation or response tag is unknown.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A key is longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes exceeds the {max}-byte limit")]
    KeyTooLarge {
        /// Length of the key.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A value is longer than [`MAX_VALUE_BYTES`].
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    ValueTooLarge {
        /// Length of the value.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The reason of a [`Response::Invalid`](crate::Response::Invalid) is longer than
    /// [`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES).
    #[error("reason of {len} bytes exceeds the {max}-byte limit")]
    ReasonTooLarge {
        /// Length of the reason.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The reason of a [`Response::Invalid`](crate::Response::Invalid) is not UTF-8.
    #[error("reason is not valid UTF-8")]
    ReasonNotUtf8,
    /// The bytes are malformed below the level of fields.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// What a command does to the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Reads `key`.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Compare-and-swap: if the value of `key` equals `expected` (`None` meaning "absent"), sets
    /// it to `new` (`None` meaning "delete").
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must have, or `None` if it must be absent.
        expected: Option<Bytes>,
        /// The value to set on success, or `None` to delete the key.
        new: Option<Bytes>,
    },
}

impl Op {
    /// A put.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A get.
    pub fn get(key: impl Into<Bytes>) -> Op {
        Op::Get { key: key.into() }
    }

    /// A delete.
    pub fn delete(key: impl Into<Bytes>) -> Op {
        Op::Delete { key: key.into() }
    }

    /// A compare-and-swap.
    pub fn cas(key: impl Into<Bytes>, expected: Option<Bytes>, new: Option<Bytes>) -> Op {
        Op::Cas {
            key: key.into(),
            expected,
            new,
        }
    }

    /// The key the operation reads or writes.
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// Whether the operation never changes the store.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Op::Get { .. })
    }

    fn tag(&self) -> u8 {
        match self {
            Op::Put { .. } => TAG_PUT,
            Op::Get { .. } => TAG_GET,
            Op::Delete { .. } => TAG_DELETE,
            Op::Cas { .. } => TAG_CAS,
        }
    }
}

/// A client request, as carried by a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// The client's session, or `0` for none (no duplicate detection).
    pub client_id: u64,
    /// The client's request number. Within a session, a retry reuses the number and a new
    /// request takes a larger one.
    pub seq: u64,
    /// The operation.
    pub op: Op,
}

impl Command {
    /// A command.
    pub fn new(client_id: u64, seq: u64, op: Op) -> Command {
        Command { client_id, seq, op }
    }

    /// Checks the key and value sizes against [`MAX_KEY_BYTES`] and [`MAX_VALUE_BYTES`].
    pub fn validate(&self) -> Result<(), CommandError> {
        check_key(self.op.key().len() as u64)?;
        match &self.op {
            Op::Put { value, .. } => check_value(value.len() as u64),
            Op::Get { .. } | Op::Delete { .. } => Ok(()),
            Op::Cas { expected, new, .. } => {
                for v in [expected, new].into_iter().flatten() {
                    check_value(v.len() as u64)?;
                }
                Ok(())
            }
        }
    }

    /// The exact number of bytes [`Command::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        let opt = |v: &Option<Bytes>| 1 + v.as_ref().map_or(0, |v| bytes_len(v.len()));
        let body = match &self.op {
            Op::Put { key, value } => bytes_len(key.len()) + bytes_len(value.len()),
            Op::Get { key } | Op::Delete { key } => bytes_len(key.len()),
            Op::Cas { key, expected, new } => bytes_len(key.len()) + opt(expected) + opt(new),
        };
        1 + varint_len(self.client_id) + varint_len(self.seq) + 1 + body
    }

    /// Encodes the command into a new buffer. Fails, without encoding, if a key or value is
    /// over its size limit.
    pub fn encode(&self) -> Result<Bytes, CommandError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Appends the encoded command to `out`. Fails, leaving `out` unchanged, if a key or value
    /// is over its size limit.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        self.validate()?;
        out.reserve(self.encoded_len());
        out.put_u8(COMMAND_FORMAT_VERSION);
        out.put_varint(self.client_id);
        out.put_varint(self.seq);
        out.put_u8(self.op.tag());
        match &self.op {
            Op::Put { key, value } => {
                out.put_bytes(key);
                out.put_bytes(value);
            }
            Op::Get { key } | Op::Delete { key } => out.put_bytes(key),
            Op::Cas { key, expected, new } => {
                out.put_bytes(key);
                out.put_opt_bytes(expected.as_deref());
                out.put_opt_bytes(new.as_deref());
            }
        }
        Ok(())
    }

    /// Decodes a command, copying the input once.
    pub fn decode(data: &[u8]) -> Result<Command, CommandError> {
        check_input_len(data.len())?;
        Command::decode_bytes(&Bytes::copy_from_slice(data))
    }

    /// Decodes a command without copying: keys and values are slices of `data`, so they keep
    /// `data`'s whole buffer alive.
    pub fn decode_bytes(data: &Bytes) -> Result<Command, CommandError> {
        check_input_len(data.len())?;
        let mut r = Reader::new(data);
        let version = r.u8()?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(CommandError::UnsupportedVersion(version));
        }
        let client_id = r.varint()?;
        let seq = r.varint()?;
        let tag = r.u8()?;
        let op = match tag {
            TAG_PUT => {
                let key = read_key(&mut r)?;
                let value = read_value(&mut r)?;
                Op::Put { key, value }
            }
            TAG_GET => Op::Get {
                key: read_key(&mut r)?,
            },
            TAG_DELETE => Op::Delete {
                key: read_key(&mut r)?,
            },
            TAG_CAS => {
                let key = read_key(&mut r)?;
                let expected = read_opt_value(&mut r)?;
                let new = read_opt_value(&mut r)?;
                Op::Cas { key, expected, new }
            }
            other => return Err(CommandError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(Command { client_id, seq, op })
    }
}

fn check_input_len(len: usize) -> Result<(), CommandError> {
    if len > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge {
            len,
            max: MAX_COMMAND_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_key(len: u64) -> Result<(), CommandError> {
    if len > MAX_KEY_BYTES as u64 {
        return Err(CommandError::KeyTooLarge {
            len,
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_value(len: u64) -> Result<(), CommandError> {
    if len > MAX_VALUE_BYTES as u64 {
        return Err(CommandError::ValueTooLarge {
            len,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Reads a length-prefixed key, checking the limit before taking the bytes.
pub(crate) fn read_key(r: &mut Reader<'_>) -> Result<Bytes, CommandError> {
    let len = r.varint()?;
    check_key(len)?;
    Ok(r.take(len)?)
}

/// Reads a length-prefixed value, checking the limit before taking the bytes.
pub(crate) fn read_value(r: &mut Reader<'_>) -> Result<Bytes, CommandError> {
    let len = r.varint()?;
    check_value(len)?;
    Ok(r.take(len)?)
}

/// Reads an optional value.
pub(crate) fn read_opt_value(r: &mut Reader<'_>) -> Result<Option<Bytes>, CommandError> {
    if r.bool()? {
        Ok(Some(read_value(r)?))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn samples() -> Vec<Command> {
        vec![
            Command::new(0, 0, Op::put("k", "v")),
            Command::new(7, 300, Op::get("key")),
            Command::new(u64::MAX, u64::MAX, Op::delete("")),
            Command::new(1, 2, Op::cas("k", None, None)),
            Command::new(1, 3, Op::cas("k", Some(b("old")), Some(b("")))),
            Command::new(1, 4, Op::cas("k", Some(b("x")), None)),
        ]
    }

    #[test]
    fn round_trips_every_op_and_predicts_its_length() {
        for cmd in samples() {
            let bytes = cmd.encode().unwrap();
            assert_eq!(bytes.len(), cmd.encoded_len(), "{cmd:?}");
            assert_eq!(Command::decode(&bytes), Ok(cmd.clone()));
            assert_eq!(Command::decode_bytes(&bytes), Ok(cmd));
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = Command::new(1, 300, Op::put("k", "vv")).encode().unwrap();
        assert_eq!(
            &bytes[..],
            &[1, 1, 0xac, 0x02, TAG_PUT, 1, b'k', 2, b'v', b'v']
        );
    }

    #[test]
    fn decode_bytes_does_not_copy_values() {
        let bytes = Command::new(1, 1, Op::put("key", "value"))
            .encode()
            .unwrap();
        let cmd = Command::decode_bytes(&bytes).unwrap();
        let Op::Put { value, .. } = cmd.op else {
            panic!("not a put")
        };
        let start = bytes.as_ptr() as usize;
        let at = value.as_ptr() as usize;
        assert!(at >= start && at < start + bytes.len());
    }

    #[test]
    fn encode_enforces_limits_and_leaves_buffer_unchanged() {
        let big_key = Bytes::from(vec![0u8; MAX_KEY_BYTES + 1]);
        let big_value = Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]);
        let mut out = vec![9u8];
        assert_eq!(
            Command::new(1, 1, Op::get(big_key.clone())).encode_into(&mut out),
            Err(CommandError::KeyTooLarge {
                len: MAX_KEY_BYTES as u64 + 1,
                max: MAX_KEY_BYTES
            })
        );
        assert!(matches!(
            Command::new(1, 1, Op::put("k", big_value.clone())).encode_into(&mut out),
            Err(CommandError::ValueTooLarge { .. })
        ));
        assert!(matches!(
            Command::new(1, 1, Op::cas("k", None, Some(big_value))).encode(),
            Err(CommandError::ValueTooLarge { .. })
        ));
        assert_eq!(out, vec![9u8]);
        // Exactly at the limits is fine.
        let max = Command::new(
            u64::MAX,
            u64::MAX,
            Op::cas(
                vec![1u8; MAX_KEY_BYTES],
                Some(Bytes::from(vec![2u8; MAX_VALUE_BYTES])),
                Some(Bytes::from(vec![3u8; MAX_VALUE_BYTES])),
            ),
        );
        let bytes = max.encode().unwrap();
        assert!(bytes.len() <= MAX_COMMAND_BYTES);
        assert_eq!(Command::decode(&bytes), Ok(max));
    }

    #[test]
    fn decode_rejects_oversized_lengths_before_reading_them() {
        // A key length just over the limit, with no key bytes behind it.
        let mut bytes = vec![COMMAND_FORMAT_VERSION, 1, 1, TAG_GET];
        bytes.put_varint(MAX_KEY_BYTES as u64 + 1);
        assert_eq!(
            Command::decode(&bytes),
            Err(CommandError::KeyTooLarge {
                len: MAX_KEY_BYTES as u64 + 1,
                max: MAX_KEY_BYTES
            })
        );
        // A value length of u64::MAX.
        let mut bytes = vec![COMMAND_FORMAT_VERSION, 1, 1, TAG_PUT, 1, b'k'];
        bytes.put_varint(u64::MAX);
        assert!(matches!(
            Command::decode(&bytes),
            Err(CommandError::ValueTooLarge { .. })
        ));
        // A length within limits but beyond the input.
        let bytes = [COMMAND_FORMAT_VERSION, 1, 1, TAG_GET, 5, b'a'];
        assert!(matches!(
            Command::decode(&bytes),
            Err(CommandError::Wire(WireError::Truncated { .. }))
        ));
        // Input longer than any command.
        let huge = vec![0u8; MAX_COMMAND_BYTES + 1];
        assert!(matches!(
            Command::decode(&huge),
            Err(CommandError::TooLarge { .. })
        ));
    }

    #[test]
    fn decode_rejects_malformed_headers() {
        assert!(matches!(
            Command::decode(&[]),
            Err(CommandError::Wire(WireError::Truncated { .. }))
        ));
        assert_eq!(
            Command::decode(&[2, 1, 1, TAG_GET, 0]),
            Err(CommandError::UnsupportedVersion(2))
        );
        assert_eq!(
            Command::decode(&[COMMAND_FORMAT_VERSION, 1, 1, 9, 0]),
            Err(CommandError::UnknownTag(9))
        );
        assert_eq!(
            Command::decode(&[COMMAND_FORMAT_VERSION, 1, 1, TAG_CAS, 0, 2]),
            Err(CommandError::Wire(WireError::InvalidFlag(2)))
        );
        assert_eq!(
            Command::decode(&[COMMAND_FORMAT_VERSION, 1, 1, TAG_GET, 0, 0]),
            Err(CommandError::Wire(WireError::TrailingBytes(1)))
        );
    }

    #[test]
    fn op_helpers() {
        assert_eq!(Op::put("a", "b").key(), &b("a"));
        assert_eq!(Op::cas("c", None, None).key(), &b("c"));
        assert!(Op::get("a").is_read_only());
        assert!(!Op::delete("a").is_read_only());
        assert!(!Op::cas("a", None, None).is_read_only());
    }
}
