//! The result of applying a command, and its wire format.
//!
//! # Layout
//!
//! ```text
//! version  u8  = RESPONSE_FORMAT_VERSION
//! tag      u8  1 Put, 2 Get, 3 Delete, 4 Cas, 5 SessionExpired, 6 Invalid
//! Put:     previous  option (flag 0 | flag 1, bytes)
//! Get:     value     option
//! Delete:  previous  option
//! Cas:     succeeded flag, current option
//! Invalid: reason    bytes (UTF-8, at most MAX_REASON_BYTES)
//! ```
//!
//! The same body, without the version byte, is stored in snapshots for cached session responses.

use bytes::Bytes;

use crate::command::{check_value, read_opt_value, CommandError, MAX_VALUE_BYTES};
use crate::wire::{bytes_len, Reader, Sink};

/// The version byte that starts every encoded response.
pub const RESPONSE_FORMAT_VERSION: u8 = 1;
/// The longest reason of a [`Response::Invalid`], in bytes.
pub const MAX_REASON_BYTES: usize = 256;
/// An upper bound on the size of any valid encoded response.
pub const MAX_RESPONSE_BYTES: usize = 1 + 1 + 1 + 1 + 10 + MAX_VALUE_BYTES;

const TAG_PUT: u8 = 1;
const TAG_GET: u8 = 2;
const TAG_DELETE: u8 = 3;
const TAG_CAS: u8 = 4;
const TAG_SESSION_EXPIRED: u8 = 5;
const TAG_INVALID: u8 = 6;

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// A put was applied.
    Put {
        /// The key's value before the put.
        previous: Option<Bytes>,
    },
    /// A get was applied.
    Get {
        /// The key's value.
        value: Option<Bytes>,
    },
    /// A delete was applied.
    Delete {
        /// The key's value before the delete.
        previous: Option<Bytes>,
    },
    /// A compare-and-swap was applied.
    Cas {
        /// Whether the key held the expected value, so that the new value was written.
        succeeded: bool,
        /// The key's value before the compare-and-swap.
        current: Option<Bytes>,
    },
    /// The request was not applied: its sequence number is older than the last one applied for
    /// its client, whose response is the only one kept.
    SessionExpired,
    /// The log entry could not be decoded as a command; nothing was applied.
    Invalid {
        /// Why decoding failed.
        reason: String,
    },
}

impl Response {
    /// The exact number of bytes [`Response::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        1 + self.body_len()
    }

    /// Encodes the response into a new buffer. Fails, without encoding, if a value or the
    /// reason is over its size limit.
    pub fn encode(&self) -> Result<Bytes, CommandError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Appends the encoded response to `out`. Fails, leaving `out` unchanged, if a value or the
    /// reason is over its size limit.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        self.validate()?;
        out.reserve(self.encoded_len());
        out.put_u8(RESPONSE_FORMAT_VERSION);
        self.write_body(out);
        Ok(())
    }

    /// Decodes a response, copying the input once.
    pub fn decode(data: &[u8]) -> Result<Response, CommandError> {
        check_input_len(data.len())?;
        Response::decode_bytes(&Bytes::copy_from_slice(data))
    }

    /// Decodes a response without copying: values are slices of `data`.
    pub fn decode_bytes(data: &Bytes) -> Result<Response, CommandError> {
        check_input_len(data.len())?;
        let mut r = Reader::new(data);
        let version = r.u8()?;
        if version != RESPONSE_FORMAT_VERSION {
            return Err(CommandError::UnsupportedVersion(version));
        }
        let response = Response::read_body(&mut r)?;
        r.finish()?;
        Ok(response)
    }

    /// Checks value and reason sizes.
    pub(crate) fn validate(&self) -> Result<(), CommandError> {
        match self {
            Response::Put { previous: v }
            | Response::Get { value: v }
            | Response::Delete { previous: v }
            | Response::Cas { current: v, .. } => match v {
                Some(v) => check_value(v.len() as u64),
                None => Ok(()),
            },
            Response::SessionExpired => Ok(()),
            Response::Invalid { reason } => check_reason(reason.len() as u64),
        }
    }

    fn body_len(&self) -> usize {
        let opt = |v: &Option<Bytes>| 1 + v.as_ref().map_or(0, |v| bytes_len(v.len()));
        1 + match self {
            Response::Put { previous: v }
            | Response::Get { value: v }
            | Response::Delete { previous: v } => opt(v),
            Response::Cas { current, .. } => 1 + opt(current),
            Response::SessionExpired => 0,
            Response::Invalid { reason } => bytes_len(reason.len()),
        }
    }

    /// Writes the tag and fields, without the version byte. Does not check limits.
    pub(crate) fn write_body(&self, out: &mut impl Sink) {
        match self {
            Response::Put { previous } => {
                out.put_u8(TAG_PUT);
                out.put_opt_bytes(previous.as_deref());
            }
            Response::Get { value } => {
                out.put_u8(TAG_GET);
                out.put_opt_bytes(value.as_deref());
            }
            Response::Delete { previous } => {
                out.put_u8(TAG_DELETE);
                out.put_opt_bytes(previous.as_deref());
            }
            Response::Cas { succeeded, current } => {
                out.put_u8(TAG_CAS);
                out.put_bool(*succeeded);
                out.put_opt_bytes(current.as_deref());
            }
            Response::SessionExpired => out.put_u8(TAG_SESSION_EXPIRED),
            Response::Invalid { reason } => {
                out.put_u8(TAG_INVALID);
                out.put_bytes(reason.as_bytes());
            }
        }
    }

    /// Reads what [`Response::write_body`] wrote, checking every limit.
    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Response, CommandError> {
        Ok(match r.u8()? {
            TAG_PUT => Response::Put {
                previous: read_opt_value(r)?,
            },
            TAG_GET => Response::Get {
                value: read_opt_value(r)?,
            },
            TAG_DELETE => Response::Delete {
                previous: read_opt_value(r)?,
            },
            TAG_CAS => {
                let succeeded = r.bool()?;
                let current = read_opt_value(r)?;
                Response::Cas { succeeded, current }
            }
            TAG_SESSION_EXPIRED => Response::SessionExpired,
            TAG_INVALID => {
                let len = r.varint()?;
                check_reason(len)?;
                let raw = r.take(len)?;
                let reason = std::str::from_utf8(&raw).map_err(|_| CommandError::ReasonNotUtf8)?;
                Response::Invalid {
                    reason: reason.to_owned(),
                }
            }
            other => return Err(CommandError::UnknownTag(other)),
        })
    }

    /// The reason of an [`Response::Invalid`] for `err`, cut to [`MAX_REASON_BYTES`] at a
    /// character boundary.
    pub(crate) fn invalid(err: &CommandError) -> Response {
        Response::Invalid {
            reason: cut_reason(err.to_string()),
        }
    }
}

/// Cuts `reason` to at most [`MAX_REASON_BYTES`], at a character boundary.
fn cut_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

fn check_input_len(len: usize) -> Result<(), CommandError> {
    if len > MAX_RESPONSE_BYTES {
        return Err(CommandError::TooLarge {
            len,
            max: MAX_RESPONSE_BYTES,
        });
    }
    Ok(())
}

fn check_reason(len: u64) -> Result<(), CommandError> {
    if len > MAX_REASON_BYTES as u64 {
        return Err(CommandError::ReasonTooLarge {
            len,
            max: MAX_REASON_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    fn some(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn samples() -> Vec<Response> {
        vec![
            Response::Put { previous: None },
            Response::Put {
                previous: some("old"),
            },
            Response::Get { value: some("") },
            Response::Get { value: None },
            Response::Delete {
                previous: some("x"),
            },
            Response::Cas {
                succeeded: true,
                current: None,
            },
            Response::Cas {
                succeeded: false,
                current: some("v"),
            },
            Response::SessionExpired,
            Response::Invalid {
                reason: "bad ✓".into(),
            },
        ]
    }

    #[test]
    fn round_trips_every_variant_and_predicts_its_length() {
        for resp in samples() {
            let bytes = resp.encode().unwrap();
            assert_eq!(bytes.len(), resp.encoded_len(), "{resp:?}");
            assert_eq!(Response::decode(&bytes), Ok(resp.clone()));
            assert_eq!(Response::decode_bytes(&bytes), Ok(resp));
        }
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let big = Response::Get {
            value: Some(Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1])),
        };
        assert!(matches!(
            big.encode(),
            Err(CommandError::ValueTooLarge { .. })
        ));
        let long = Response::Invalid {
            reason: "x".repeat(MAX_REASON_BYTES + 1),
        };
        let mut out = Vec::new();
        assert!(matches!(
            long.encode_into(&mut out),
            Err(CommandError::ReasonTooLarge { .. })
        ));
        assert!(out.is_empty());

        let mut forged = vec![RESPONSE_FORMAT_VERSION, TAG_INVALID];
        forged.put_varint(MAX_REASON_BYTES as u64 + 1);
        assert!(matches!(
            Response::decode(&forged),
            Err(CommandError::ReasonTooLarge { .. })
        ));
        let mut forged = vec![RESPONSE_FORMAT_VERSION, TAG_GET, 1];
        forged.put_varint(MAX_VALUE_BYTES as u64 + 1);
        assert!(matches!(
            Response::decode(&forged),
            Err(CommandError::ValueTooLarge { .. })
        ));
        let max = Response::Cas {
            succeeded: true,
            current: Some(Bytes::from(vec![0u8; MAX_VALUE_BYTES])),
        };
        assert!(max.encoded_len() <= MAX_RESPONSE_BYTES);
    }

    #[test]
    fn decode_rejects_malformed_input() {
        assert_eq!(
            Response::decode(&[2, TAG_SESSION_EXPIRED]),
            Err(CommandError::UnsupportedVersion(2))
        );
        assert_eq!(
            Response::decode(&[RESPONSE_FORMAT_VERSION, 0]),
            Err(CommandError::UnknownTag(0))
        );
        assert_eq!(
            Response::decode(&[RESPONSE_FORMAT_VERSION, TAG_INVALID, 1, 0xff]),
            Err(CommandError::ReasonNotUtf8)
        );
        assert_eq!(
            Response::decode(&[RESPONSE_FORMAT_VERSION, TAG_CAS, 3, 0]),
            Err(CommandError::Wire(WireError::InvalidFlag(3)))
        );
        assert_eq!(
            Response::decode(&[RESPONSE_FORMAT_VERSION, TAG_SESSION_EXPIRED, 0]),
            Err(CommandError::Wire(WireError::TrailingBytes(1)))
        );
    }

    #[test]
    fn invalid_reason_is_cut_at_a_char_boundary() {
        let err = CommandError::Wire(WireError::TrailingBytes(1));
        let Response::Invalid { reason } = Response::invalid(&err) else {
            panic!("not invalid")
        };
        assert_eq!(reason, "1 unexpected trailing bytes");
        // "é" is two bytes; put one ASCII byte first so the limit falls inside a character.
        let long = format!("a{}", "é".repeat(MAX_REASON_BYTES));
        let cut = cut_reason(long);
        assert_eq!(cut.len(), MAX_REASON_BYTES - 1);
        assert!(cut.starts_with('a') && cut.ends_with('é'));
        assert_eq!(cut_reason("short".into()), "short");
    }
}
