//! The `X-Keel-Signature` header (docs/api/events-and-webhooks.md):
//! `t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The timestamp is inside the signed message, so a captured delivery cannot be replayed
//! later with a fresh `t`; a receiver refuses timestamps further than its tolerance from
//! its own clock ([`verify`]). [`verify`] accepts several `v1=` entries (a receiver may be
//! sent one per secret while a secret is being rotated) and ignores unknown keys such as a
//! future `v2=`.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256's block size: HMAC keys are padded (or first hashed) to it.
const BLOCK: usize = 64;
/// Length of a `v1` signature in hex characters (32 bytes).
const V1_HEX_LEN: usize = 64;

/// Why a signature header was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not a comma-separated list of `key=value` pairs, or a value is
    /// not what its key requires.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// No `t=` entry.
    #[error("signature header has no timestamp (t=)")]
    MissingTimestamp,
    /// No `v1=` entry.
    #[error("signature header has no v1 signature")]
    MissingSignature,
    /// The timestamp is further from `now` than the tolerance (in the past or the future).
    #[error("signature timestamp is {age_secs} s away from now, beyond the {tolerance_secs} s tolerance")]
    Stale {
        /// Absolute distance between the header's timestamp and `now`, in seconds.
        age_secs: u64,
        /// The tolerance that was exceeded, in seconds.
        tolerance_secs: i64,
    },
    /// No `v1` signature matches the body and secret.
    #[error("signature does not match")]
    Mismatch,
}

/// The HMAC-SHA256 state keyed with `secret`.
///
/// HMAC pads a key of at most one block with zeros to the block size and hashes a longer
/// one first (RFC 2104 §2); doing that here lets us use the infallible block-sized
/// constructor instead of `new_from_slice`, whose error cannot happen for HMAC but would
/// still need handling.
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut block = [0u8; BLOCK];
    if secret.len() > BLOCK {
        let digest = Sha256::digest(secret);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

/// The MAC over `"<timestamp>.<body>"`, ready to finalize or verify.
fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Keel-Signature` value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a signature header as a receiver would: the header parses, its timestamp is
/// within `tolerance_secs` of `now` (both Unix seconds), and one of its `v1` signatures is
/// the HMAC of `"<t>.<body>"` under `secret`, compared in constant time.
pub fn verify(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one timestamp"));
                }
                let all_digits = !value.is_empty()
                    && value
                        .strip_prefix('-')
                        .unwrap_or(value)
                        .bytes()
                        .all(|b| b.is_ascii_digit());
                if !all_digits {
                    return Err(SignatureError::Malformed("timestamp is not an integer"));
                }
                timestamp = Some(
                    value
                        .parse()
                        .map_err(|_| SignatureError::Malformed("timestamp is out of range"))?,
                );
            }
            "v1" => {
                if value.len() != V1_HEX_LEN {
                    return Err(SignatureError::Malformed("v1 is not 64 hex characters"));
                }
                let bytes = hex::decode(value)
                    .map_err(|_| SignatureError::Malformed("v1 is not 64 hex characters"))?;
                signatures.push(bytes);
            }
            "" => return Err(SignatureError::Malformed("empty key")),
            _ => {} // unknown schemes (a future v2) are ignored
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let age_secs = now.abs_diff(timestamp);
    if age_secs > tolerance_secs.max(0).unsigned_abs() {
        return Err(SignatureError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"task.created"}"#;
    const T: i64 = 1_700_000_000;

    #[test]
    fn matches_an_independently_computed_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",
        //   b"1700000000."+b"{\"id\":\"evt_1\",\"type\":\"task.created\"}",
        //   hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header(SECRET, T, BODY),
            "t=1700000000,v1=4badb79155d60aa98f9150e842d811ce1c1e1af9ade570ba375195e45189a61a"
        );
    }

    #[test]
    fn keys_longer_than_a_block_and_exactly_a_block_and_empty_match_python() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k"*100,b"42.hello",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header(&[b'k'; 100], 42, b"hello"),
            "t=42,v1=600659150d4b57b9b16f490d05e004959e7a547f26e9a42b8f57dc34cbb16a30"
        );
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"x"*64,b"-5.",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header(&[b'x'; 64], -5, b""),
            "t=-5,v1=d50698e119077be696736aed89500b2311f2f0020f2fa60078310b784a3aaf71"
        );
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"",b"0.",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header(b"", 0, b""),
            "t=0,v1=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3"
        );
    }

    #[test]
    fn round_trip_verifies_within_tolerance_both_ways() {
        let header = signature_header(SECRET, T, BODY);
        assert_eq!(verify(&header, SECRET, BODY, T, 300), Ok(()));
        assert_eq!(verify(&header, SECRET, BODY, T + 300, 300), Ok(()));
        assert_eq!(verify(&header, SECRET, BODY, T - 300, 300), Ok(()));
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let header = signature_header(SECRET, T, BODY);
        let tampered = br#"{"id":"evt_2","type":"task.created"}"#;
        assert_eq!(
            verify(&header, SECRET, tampered, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let header = signature_header(SECRET, T, BODY);
        assert_eq!(
            verify(&header, b"whsec_other", BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_replayed_signature_with_a_new_timestamp_is_a_mismatch() {
        let header = signature_header(SECRET, T, BODY);
        let replayed = header.replace("t=1700000000", "t=1700000100");
        assert_eq!(
            verify(&replayed, SECRET, BODY, T + 100, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = signature_header(SECRET, T, BODY);
        assert_eq!(
            verify(&header, SECRET, BODY, T + 301, 300),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&header, SECRET, BODY, T - 301, 300),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        // Extreme clocks do not overflow.
        let old = signature_header(SECRET, i64::MIN, BODY);
        assert!(matches!(
            verify(&old, SECRET, BODY, i64::MAX, 300),
            Err(SignatureError::Stale {
                age_secs: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn any_of_several_v1_signatures_may_match_and_unknown_keys_are_ignored() {
        let good = signature_header(SECRET, T, BODY);
        let other = signature_header(b"old secret", T, BODY);
        let other_v1 = other.split_once(",v1=").map(|(_, v)| v).unwrap_or("");
        let header = format!("{other},v2=whatever, {}", good.replace("t=1700000000,", ""));
        assert_eq!(verify(&header, SECRET, BODY, T, 300), Ok(()));
        let only_other = format!("t={T},v1={other_v1}");
        assert_eq!(
            verify(&only_other, SECRET, BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let header = signature_header(SECRET, T, BODY);
        let (t, v1) = header.split_once(",v1=").unwrap_or(("", ""));
        let upper = format!("{t},v1={}", v1.to_ascii_uppercase());
        assert_eq!(verify(&upper, SECRET, BODY, T, 300), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused_with_the_right_error() {
        let v1 = "0".repeat(64);
        let cases: Vec<(String, SignatureError)> = vec![
            (
                String::new(),
                SignatureError::Malformed("expected key=value pairs"),
            ),
            (
                "garbage".into(),
                SignatureError::Malformed("expected key=value pairs"),
            ),
            (format!("v1={v1}"), SignatureError::MissingTimestamp),
            (format!("t={T}"), SignatureError::MissingSignature),
            (format!("t={T},v2={v1}"), SignatureError::MissingSignature),
            (
                format!("t=abc,v1={v1}"),
                SignatureError::Malformed("timestamp is not an integer"),
            ),
            (
                format!("t=,v1={v1}"),
                SignatureError::Malformed("timestamp is not an integer"),
            ),
            (
                format!("t=+5,v1={v1}"),
                SignatureError::Malformed("timestamp is not an integer"),
            ),
            (
                format!("t=99999999999999999999,v1={v1}"),
                SignatureError::Malformed("timestamp is out of range"),
            ),
            (
                format!("t=1,t=2,v1={v1}"),
                SignatureError::Malformed("more than one timestamp"),
            ),
            (
                format!("t={T},v1=abc"),
                SignatureError::Malformed("v1 is not 64 hex characters"),
            ),
            (
                format!("t={T},v1={}", "z".repeat(64)),
                SignatureError::Malformed("v1 is not 64 hex characters"),
            ),
            (
                format!("t={T},v1={}", "é".repeat(32)),
                SignatureError::Malformed("v1 is not 64 hex characters"),
            ),
            (format!("t={T},={v1}"), SignatureError::Malformed("empty key")),
            (
                format!("t={T},v1={v1},"),
                SignatureError::Malformed("expected key=value pairs"),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(&header, SECRET, BODY, T, 300),
                Err(expected),
                "header {header:?}"
            );
        }
    }
}
