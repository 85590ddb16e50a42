//! Size limits and the validation of client input against them.
//!
//! The limits are part of the protocol so that clients (the load tester, the
//! dashboard) can check input before they send it.

use crate::api::SetRequest;

/// Largest accepted request body, in bytes. Larger bodies get 413.
pub const MAX_BODY_BYTES: u32 = 128 * 1024;
/// Longest accepted key, in bytes of UTF-8. Longer keys get 400.
pub const MAX_KEY_BYTES: u32 = 256;
/// Longest accepted value, in bytes of UTF-8. Longer values get 413.
pub const MAX_VALUE_BYTES: u32 = 64 * 1024;
/// Largest accepted node-to-node body, in bytes (a batch of entries, a
/// snapshot chunk, a page of anti-entropy keys). Senders keep below it.
pub const MAX_INTERNAL_BODY_BYTES: u32 = 8 * 1024 * 1024;
/// Soft limit on the payload of one node-to-node batch (replicated writes,
/// hints, anti-entropy records), in bytes; a single larger record still
/// travels alone. Half of [`MAX_INTERNAL_BODY_BYTES`], for the JSON around it.
pub const MAX_BATCH_BYTES: u32 = 4 * 1024 * 1024;

/// Approximate bytes of a record of `key` and `value` in a message.
pub fn record_bytes(key: &str, value: &str) -> usize {
    key.len() + value.len() + 64
}
/// Most asks in one `POST /internal/reads`; a larger batch gets 400. A read
/// coordinator sends at most this many to a peer at once, so that the
/// answer to a full batch of values at [`MAX_VALUE_BYTES`] stays near
/// [`MAX_BATCH_BYTES`].
pub const MAX_READ_BATCH_KEYS: u32 = 64;
/// Longest artificial delay of the delay profile, in ms (each of the three).
pub const MAX_DELAY_MS: u32 = 10_000;
/// Highest term or configuration epoch a node accepts: far above anything a
/// real cluster reaches, low enough that no arithmetic on it overflows.
pub const MAX_TERM: u64 = 1 << 48;

/// Most term runs (first index, term) a leader-follower log remembers of its
/// compacted part and a snapshot carries; older ones are forgotten (an index
/// whose term is forgotten is served by a snapshot, never guessed).
pub const MAX_TERM_RUNS: usize = 4096;
/// Highest counter version (standalone and leader-follower modes): a write
/// whose next version would pass it is refused (409) instead of wrapping.
pub const MAX_VERSION: u64 = 1 << 62;

/// Why a key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The key is empty.
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`]; carries its length.
    KeyTooLong(u32),
    /// The value is longer than [`MAX_VALUE_BYTES`]; carries its length.
    ValueTooLong(u32),
    /// The key holds a control character (NUL, newline…); carries its code.
    ControlCharacter(u32),
}

impl InputError {
    /// The HTTP status that reports this error.
    pub fn status(&self) -> u16 {
        match self {
            InputError::EmptyKey | InputError::KeyTooLong(_) | InputError::ControlCharacter(_) => {
                400
            }
            InputError::ValueTooLong(_) => 413,
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::EmptyKey => write!(f, "key must be a non-empty string"),
            InputError::KeyTooLong(n) => {
                write!(f, "key is {n} bytes; the limit is {MAX_KEY_BYTES} bytes")
            }
            InputError::ValueTooLong(n) => {
                write!(
                    f,
                    "value is {n} bytes; the limit is {MAX_VALUE_BYTES} bytes"
                )
            }
            InputError::ControlCharacter(c) => {
                write!(
                    f,
                    "key must not contain control characters (found U+{c:04X})"
                )
            }
        }
    }
}

fn byte_len(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// Checks a key against the limits.
///
/// # Errors
/// [`InputError::EmptyKey`] or [`InputError::KeyTooLong`].
pub fn validate_key(key: &str) -> Result<(), InputError> {
    match byte_len(key) {
        0 => Err(InputError::EmptyKey),
        n if n > MAX_KEY_BYTES => Err(InputError::KeyTooLong(n)),
        _ => match key.chars().find(|c| c.is_control()) {
            Some(c) => Err(InputError::ControlCharacter(u32::from(c))),
            None => Ok(()),
        },
    }
}

/// Checks a whole write request: its key, then its value.
///
/// # Errors
/// The first [`InputError`] found.
pub fn validate_set(req: &SetRequest) -> Result<(), InputError> {
    validate_key(&req.key)?;
    match byte_len(&req.value) {
        n if n > MAX_VALUE_BYTES => Err(InputError::ValueTooLong(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, value: &str) -> SetRequest {
        SetRequest {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn empty_value_is_valid_but_empty_key_is_not() {
        assert_eq!(validate_set(&req("k", "")), Ok(()));
        assert_eq!(validate_set(&req("", "v")), Err(InputError::EmptyKey));
    }

    #[test]
    fn limits_are_inclusive() {
        let key = "k".repeat(MAX_KEY_BYTES as usize);
        assert_eq!(validate_key(&key), Ok(()));
        assert_eq!(
            validate_key(&format!("{key}k")),
            Err(InputError::KeyTooLong(MAX_KEY_BYTES + 1))
        );
        let value = "v".repeat(MAX_VALUE_BYTES as usize + 1);
        assert_eq!(validate_set(&req("k", &value)).unwrap_err().status(), 413);
    }

    #[test]
    fn keys_with_control_characters_are_refused() {
        assert_eq!(validate_key("a\0b"), Err(InputError::ControlCharacter(0)));
        assert_eq!(validate_key("a\nb").unwrap_err().status(), 400);
        assert!(validate_key("a\nb")
            .unwrap_err()
            .to_string()
            .contains("U+000A"));
        assert_eq!(validate_key("été/ä b"), Ok(()));
    }
}
