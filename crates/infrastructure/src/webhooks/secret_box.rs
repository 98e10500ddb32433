//! AES-256-GCM encryption of webhook signing secrets at rest (docs/api/events-and-webhooks.md).
//!
//! The signing secret must be readable by the server (it signs every delivery), so it is
//! encrypted rather than hashed. A sealed value is
//! `v1.<key id>.<base64url without padding of nonce ‖ ciphertext ‖ tag>`:
//!
//! - `v1` names this format;
//! - the key id is the first 8 hex characters of SHA-256(key): not secret, it lets [`SecretBox::open`]
//!   pick the key among the current and previous ones, so the key can be rotated (new seals
//!   use the current key, old rows still open; re-seal them at leisure, then drop the old key);
//! - the nonce is 96 random bits, fresh for every seal (random nonces are safe for far more
//!   than 2^32 seals under one key, which no webhook table reaches);
//! - `v1.<key id>` is the associated data, so a sealed value cannot be relabelled.
//!
//! No input makes [`SecretBox::open`] or [`parse_key`] panic.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 8;

/// Why a sealed value could not be opened, or a plaintext sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretBoxError {
    /// Not `v1.<8 hex>.<base64url>`, or too short to hold a nonce and a tag.
    #[error("sealed secret is malformed")]
    Malformed,
    /// Sealed under a key that is neither the current one nor a previous one.
    #[error("sealed secret uses unknown key {0}")]
    UnknownKey(String),
    /// The ciphertext or its label was altered, or the key with that id is a different key.
    #[error("sealed secret failed authentication")]
    Authentication,
    /// The plaintext is beyond AES-GCM's limit (64 GiB).
    #[error("secret is too long to seal")]
    TooLong,
}

/// Why a configured key was refused by [`parse_key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither 64 hex characters nor base64.
    #[error("must be 64 hex characters or base64 of 32 bytes")]
    Encoding,
    /// Decoded, but not 32 bytes long.
    #[error("must be 32 bytes, got {0}")]
    Length(usize),
}

/// Parses a 256-bit key given as 64 hex characters or as base64 (standard or URL-safe, with
/// or without padding) of exactly 32 bytes. Surrounding whitespace is ignored.
pub fn parse_key(raw: &str) -> Result<[u8; 32], KeyError> {
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).map_err(|_| KeyError::Encoding)?
    } else {
        [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(raw).ok())
            .ok_or(KeyError::Encoding)?
    };
    let len = bytes.len();
    <[u8; 32]>::try_from(bytes).map_err(|_| KeyError::Length(len))
}

/// The public id of a key: the first 8 hex characters of its SHA-256.
pub fn key_id(key: &[u8; 32]) -> String {
    let mut id = hex::encode(Sha256::digest(key));
    id.truncate(KEY_ID_LEN);
    id
}

/// One key, ready to use.
#[derive(Clone)]
struct Entry {
    id: String,
    cipher: Aes256Gcm,
}

impl Entry {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            id: key_id(key),
            cipher: Aes256Gcm::new(key.into()),
        }
    }
}

/// Seals and opens webhook signing secrets with AES-256-GCM under a current key, opening
/// also with previous keys (rotation). Its `Debug` shows key ids only.
#[derive(Clone)]
pub struct SecretBox {
    /// `keys[0]` is the current key; the rest are previous keys, newest first.
    keys: Vec<Entry>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|entry| entry.id.as_str()).collect();
        f.debug_struct("SecretBox")
            .field("current", &ids.first())
            .field("previous", &ids.get(1..).unwrap_or_default())
            .finish()
    }
}

impl SecretBox {
    /// A box sealing under `current` and opening under `current` or any of `previous`.
    pub fn new(current: [u8; 32], previous: Vec<[u8; 32]>) -> Self {
        let keys = std::iter::once(&current)
            .chain(previous.iter())
            .map(Entry::new)
            .collect();
        Self { keys }
    }

    /// The id of the key new seals use.
    pub fn current_key_id(&self) -> &str {
        self.keys.first().map_or("", |entry| entry.id.as_str())
    }

    /// Encrypts `plaintext` under the current key with a fresh random nonce:
    /// `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SecretBoxError> {
        let entry = self
            .keys
            .first()
            .ok_or(SecretBoxError::UnknownKey(String::new()))?;
        let label = format!("{VERSION}.{}", entry.id);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = entry
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: label.as_bytes(),
                },
            )
            .map_err(|_| SecretBoxError::TooLong)?;
        let mut payload = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&ciphertext);
        Ok(format!("{label}.{}", URL_SAFE_NO_PAD.encode(payload)))
    }

    /// Decrypts a value made by [`seal`](Self::seal) under the current or a previous key.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretBoxError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(version), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretBoxError::Malformed);
        };
        let id_ok = id.len() == KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if version != VERSION || !id_ok {
            return Err(SecretBoxError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretBoxError::Malformed)?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretBoxError::Malformed);
        }
        let (nonce, ciphertext) = payload.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| SecretBoxError::Malformed)?;
        let label = format!("{VERSION}.{id}");
        let mut candidates = self.keys.iter().filter(|entry| entry.id == id).peekable();
        if candidates.peek().is_none() {
            return Err(SecretBoxError::UnknownKey(id.to_owned()));
        }
        // Two keys sharing an id (one chance in 2^32) are both tried.
        candidates
            .find_map(|entry| {
                entry
                    .cipher
                    .decrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: ciphertext,
                            aad: label.as_bytes(),
                        },
                    )
                    .ok()
            })
            .ok_or(SecretBoxError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OLD: [u8; 32] = [0x42; 32];
    const NEW: [u8; 32] = [0x17; 32];

    fn counting_key() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn key_ids_are_the_sha256_prefix() {
        // python3 -c 'import hashlib;print(hashlib.sha256(bytes([0x42]*32)).hexdigest()[:8])'
        assert_eq!(key_id(&OLD), "425ed4e4");
        // python3 -c 'import hashlib;print(hashlib.sha256(bytes(range(32))).hexdigest()[:8])'
        assert_eq!(key_id(&counting_key()), "630dcd29");
    }

    #[test]
    fn round_trip_and_format() {
        let secret_box = SecretBox::new(OLD, vec![]);
        let sealed = secret_box.seal(b"whsec_abc").unwrap();
        assert!(sealed.starts_with("v1.425ed4e4."), "{sealed}");
        let payload = URL_SAFE_NO_PAD.decode(&sealed["v1.425ed4e4.".len()..]).unwrap();
        assert_eq!(payload.len(), NONCE_LEN + b"whsec_abc".len() + TAG_LEN);
        assert_eq!(secret_box.open(&sealed).unwrap(), b"whsec_abc");
        assert_eq!(secret_box.open(&secret_box.seal(b"").unwrap()).unwrap(), b"");
    }

    #[test]
    fn opens_a_value_sealed_by_an_independent_implementation() {
        // Python's `cryptography` AESGCM with key bytes(range(32)), nonce bytes(range(100,112)),
        // plaintext b"whsec_interop", associated data b"v1.630dcd29", then
        // "v1.630dcd29." + urlsafe_b64encode(nonce + ct).rstrip("=").
        let sealed = "v1.630dcd29.ZGVmZ2hpamtsbW5vP3OtAxq2P_BKBy2HqmYfrzhUVhUFCyfx2Z9BZa8";
        let secret_box = SecretBox::new(counting_key(), vec![]);
        assert_eq!(secret_box.open(sealed).unwrap(), b"whsec_interop");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let secret_box = SecretBox::new(OLD, vec![]);
        let sealed: std::collections::HashSet<String> =
            (0..50).map(|_| secret_box.seal(b"same").unwrap()).collect();
        assert_eq!(sealed.len(), 50);
        let nonces: std::collections::HashSet<Vec<u8>> = sealed
            .iter()
            .map(|s| URL_SAFE_NO_PAD.decode(&s[12..]).unwrap()[..NONCE_LEN].to_vec())
            .collect();
        assert_eq!(nonces.len(), 50);
    }

    #[test]
    fn any_altered_byte_fails_authentication() {
        let secret_box = SecretBox::new(OLD, vec![]);
        let sealed = secret_box.seal(b"whsec_abc").unwrap();
        let prefix = "v1.425ed4e4.";
        let payload = URL_SAFE_NO_PAD.decode(&sealed[prefix.len()..]).unwrap();
        for i in 0..payload.len() {
            let mut altered = payload.clone();
            altered[i] ^= 0x01;
            let forged = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&altered));
            assert_eq!(
                secret_box.open(&forged),
                Err(SecretBoxError::Authentication),
                "byte {i}"
            );
        }
        let truncated = format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(&payload[..payload.len() - 1])
        );
        assert_eq!(secret_box.open(&truncated), Err(SecretBoxError::Authentication));
    }

    #[test]
    fn the_label_is_authenticated() {
        // The same key, nonce and plaintext, sealed without the `v1.<id>` associated data:
        // framed as a v1 value it must not open.
        let nonce = [7u8; NONCE_LEN];
        let unlabelled = Aes256Gcm::new((&OLD).into())
            .encrypt(&Nonce::from(nonce), &b"whsec_abc"[..])
            .unwrap();
        let forged = format!(
            "v1.425ed4e4.{}",
            URL_SAFE_NO_PAD.encode([nonce.as_slice(), unlabelled.as_slice()].concat())
        );
        let secret_box = SecretBox::new(OLD, vec![]);
        assert_eq!(secret_box.open(&forged), Err(SecretBoxError::Authentication));
        // With the label it opens: the test above fails for the label alone.
        let labelled = Aes256Gcm::new((&OLD).into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: b"whsec_abc",
                    aad: b"v1.425ed4e4",
                },
            )
            .unwrap();
        let genuine = format!(
            "v1.425ed4e4.{}",
            URL_SAFE_NO_PAD.encode([nonce.as_slice(), labelled.as_slice()].concat())
        );
        assert_eq!(secret_box.open(&genuine).unwrap(), b"whsec_abc");
    }

    #[test]
    fn a_different_key_is_unknown_and_a_same_id_different_key_fails() {
        let sealed = SecretBox::new(OLD, vec![]).seal(b"whsec_abc").unwrap();
        let other = SecretBox::new(NEW, vec![]);
        assert_eq!(
            other.open(&sealed),
            Err(SecretBoxError::UnknownKey("425ed4e4".into()))
        );
        // A value claiming the other box's key id but sealed under OLD.
        let claimed = sealed.replacen("425ed4e4", &key_id(&NEW), 1);
        assert_eq!(other.open(&claimed), Err(SecretBoxError::Authentication));
    }

    #[test]
    fn rotation_opens_old_values_and_seals_under_the_new_key() {
        let before = SecretBox::new(OLD, vec![]);
        let old_sealed = before.seal(b"whsec_old").unwrap();
        let after = SecretBox::new(NEW, vec![OLD]);
        assert_eq!(after.open(&old_sealed).unwrap(), b"whsec_old");
        let new_sealed = after.seal(b"whsec_new").unwrap();
        assert!(new_sealed.starts_with(&format!("v1.{}.", key_id(&NEW))));
        assert_eq!(after.current_key_id(), key_id(&NEW));
        // The old box cannot open what the new key sealed; once OLD is dropped, neither can
        // the new box open the old value.
        assert!(matches!(
            before.open(&new_sealed),
            Err(SecretBoxError::UnknownKey(_))
        ));
        let dropped = SecretBox::new(NEW, vec![]);
        assert!(matches!(
            dropped.open(&old_sealed),
            Err(SecretBoxError::UnknownKey(_))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let secret_box = SecretBox::new(OLD, vec![]);
        let short = format!("v1.425ed4e4.{}", URL_SAFE_NO_PAD.encode([0u8; 27]));
        for garbage in [
            "",
            "v1",
            "v1.",
            "v1.425ed4e4",
            "v1.425ed4e4.",
            "v1.425ED4E4.AAAA",
            "v1.425ed4e.AAAA",
            "v1.zzzzzzzz.AAAA",
            "v1.425ed4e4.!!!!",
            "v1.425ed4e4.AAAA=",
            "v2.425ed4e4.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            short.as_str(),
            "v1.425ed4e4.é",
        ] {
            assert_eq!(
                secret_box.open(garbage),
                Err(SecretBoxError::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let secret_box = SecretBox::new(OLD, vec![NEW]);
        let debug = format!("{secret_box:?}");
        assert!(debug.contains("425ed4e4"), "{debug}");
        assert!(debug.contains(&key_id(&NEW)), "{debug}");
        assert!(!debug.contains("66, 66"), "{debug}");
        assert!(!debug.to_lowercase().contains("4242"), "{debug}");
    }

    #[test]
    fn keys_parse_from_hex_and_every_base64_alphabet() {
        let hex_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        assert_eq!(parse_key(hex_key), Ok(counting_key()));
        assert_eq!(parse_key(&hex_key.to_uppercase()), Ok(counting_key()));
        assert_eq!(parse_key(&format!("  {hex_key}\n")), Ok(counting_key()));
        // python3: base64.b64encode(bytes(range(32)))
        assert_eq!(
            parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            Ok(counting_key())
        );
        assert_eq!(
            parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
            Ok(counting_key())
        );
        // python3: base64.b64encode(bytes([0xfb]*32)) and base64.urlsafe_b64encode(…)
        assert_eq!(
            parse_key("+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s="),
            Ok([0xfb; 32])
        );
        assert_eq!(
            parse_key("-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s="),
            Ok([0xfb; 32])
        );
        assert_eq!(
            parse_key("-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s"),
            Ok([0xfb; 32])
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(parse_key(""), Err(KeyError::Length(0)));
        assert_eq!(parse_key("not a key!"), Err(KeyError::Encoding));
        // Not hex, so read as base64: 64 characters are 48 bytes.
        assert_eq!(parse_key(&"g".repeat(64)), Err(KeyError::Length(48)));
        assert_eq!(parse_key(&"ab".repeat(33)), Err(KeyError::Encoding));
        assert_eq!(parse_key(&STANDARD.encode([1u8; 16])), Err(KeyError::Length(16)));
        assert_eq!(parse_key(&STANDARD.encode([1u8; 33])), Err(KeyError::Length(33)));
        assert_eq!(parse_key("+/v7-_v7"), Err(KeyError::Encoding));
    }

    proptest! {
        #[test]
        fn open_never_panics_on_arbitrary_text(text in "\\PC{0,120}") {
            let secret_box = SecretBox::new(OLD, vec![NEW]);
            prop_assert!(secret_box.open(&text).is_err());
        }

        #[test]
        fn open_never_panics_on_well_framed_random_payloads(
            payload in proptest::collection::vec(any::<u8>(), 0..80)
        ) {
            let secret_box = SecretBox::new(OLD, vec![]);
            let sealed = format!("v1.425ed4e4.{}", URL_SAFE_NO_PAD.encode(&payload));
            let expected = if payload.len() < NONCE_LEN + TAG_LEN {
                SecretBoxError::Malformed
            } else {
                SecretBoxError::Authentication
            };
            prop_assert_eq!(secret_box.open(&sealed), Err(expected));
        }

        #[test]
        fn round_trip_for_any_plaintext(plaintext in proptest::collection::vec(any::<u8>(), 0..200)) {
            let secret_box = SecretBox::new(NEW, vec![OLD]);
            let sealed = secret_box.seal(&plaintext).unwrap();
            prop_assert_eq!(secret_box.open(&sealed).unwrap(), plaintext);
        }

        #[test]
        fn parse_key_accepts_only_the_lengths_of_32_bytes(text in "\\PC{0,100}") {
            if parse_key(&text).is_ok() {
                prop_assert!(matches!(text.trim().len(), 43 | 44 | 64), "{:?}", text);
            }
        }

        #[test]
        fn any_key_parses_back_from_each_encoding(key in any::<[u8; 32]>()) {
            prop_assert_eq!(parse_key(&hex::encode(key)), Ok(key));
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                prop_assert_eq!(parse_key(&engine.encode(key)), Ok(key));
            }
        }
    }
}
