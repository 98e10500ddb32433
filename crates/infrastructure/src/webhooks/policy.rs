//! The webhook ports of the use cases on the building blocks: [`UrlPolicy`] on
//! [`address`](super::address), [`WebhookSecrets`] on [`SecretBox`].

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_domain::StoreError;
use keel_domain::webhooks::{IssuedSecret, UrlPolicy, WebhookSecrets};
use rand::RngCore;

use url::Host;

use super::address::{UrlError, check_url, resolve_checked};
use super::secret_box::SecretBox;

/// URLs must be http(s) and resolve only to addresses a webhook may reach.
#[derive(Debug, Clone, Copy)]
pub struct AddressPolicy {
    pub allow_private: bool,
}

/// The one answer for a host name that does not resolve and for one that resolves to an
/// address a webhook may not reach: telling them apart would let anyone who can create a
/// project (everyone) map the names of the network Keel runs in.
pub const HOST_REFUSED: &str = "must name a host that resolves to public addresses only";

#[async_trait]
impl UrlPolicy for AddressPolicy {
    async fn check(&self, raw: &str) -> Result<String, String> {
        let url = check_url(raw).map_err(|e| e.to_string())?;
        // An IP literal says itself what it is: its class can be named.
        let by_name = matches!(url.host(), Some(Host::Domain(_)));
        resolve_checked(&url, self.allow_private)
            .await
            .map_err(|e| match e {
                UrlError::Refused(_) | UrlError::Unresolvable(_) if by_name => HOST_REFUSED.to_owned(),
                other => other.to_string(),
            })?;
        Ok(url.to_string())
    }
}

/// Secrets are 32 random bytes, shown as `whsec_<base64url>`, stored sealed.
#[derive(Debug)]
pub struct SealedSecrets {
    pub secret_box: SecretBox,
}

/// What prefixes every signing secret (so it is recognisable in a secret scanner).
pub const SECRET_PREFIX: &str = "whsec_";

impl WebhookSecrets for SealedSecrets {
    fn issue(&self) -> Result<IssuedSecret, StoreError> {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let plain = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let sealed = self
            .secret_box
            .seal(plain.as_bytes())
            .map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        Ok(IssuedSecret { plain, sealed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_secrets_are_fresh_and_open_to_themselves() {
        let secrets = SealedSecrets {
            secret_box: SecretBox::new([7; 32], vec![]),
        };
        let a = secrets.issue().unwrap();
        let b = secrets.issue().unwrap();
        assert_ne!(a.plain, b.plain);
        assert!(a.plain.starts_with(SECRET_PREFIX) && a.plain.len() > 40);
        assert!(!a.sealed.contains(&a.plain));
        assert_eq!(secrets.secret_box.open(&a.sealed).unwrap(), a.plain.as_bytes());
    }

    #[tokio::test]
    async fn urls_are_normalised_and_private_ones_refused_unless_allowed() {
        let strict = AddressPolicy { allow_private: false };
        let e = strict.check("http://127.0.0.1:9/hook").await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(strict.check("ftp://example.com/").await.is_err());
        // A name that resolves to loopback and one that does not resolve: one answer.
        assert_eq!(strict.check("http://localhost/").await.unwrap_err(), HOST_REFUSED);
        assert_eq!(
            strict.check("http://no-such-host.invalid/").await.unwrap_err(),
            HOST_REFUSED
        );
        let open = AddressPolicy { allow_private: true };
        assert_eq!(
            open.check("HTTP://127.0.0.1:9/hook").await.unwrap(),
            "http://127.0.0.1:9/hook"
        );
    }
}
