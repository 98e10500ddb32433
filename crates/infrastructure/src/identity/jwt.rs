//! JWT access and refresh tokens: HS256 only (pinned), issuer, audience, `exp` and `nbf`
//! checked, and `typ` tells access from refresh so neither passes for the other.
//!
//! Key rotation: tokens are always signed with the current secret; verification accepts the
//! current secret or any previous one (`KEEL_JWT_SECRET_PREVIOUS`), tried in order, so tokens
//! issued before a rotation stay valid until they expire or the previous secret is dropped.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation, decode, encode};
use keel_domain::identity::Role;
use keel_domain::identity::ports::{AccessClaims, RefreshClaims, TokenError, TokenService, VerifiedAccess};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ISSUER: &str = "keel";
pub const AUDIENCE: &str = "keel-api";
/// Clock skew tolerated between instances, in seconds.
const LEEWAY_SECS: u64 = 5;
/// How many verified access tokens are remembered, and for how long at most.
const VERIFIED_CAPACITY: u64 = 16_384;
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    typ: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: Uuid,
}

pub struct JwtTokenService {
    /// Access tokens verified recently, by their exact text: a request presenting the same
    /// token again skips the signature and the claims' parsing (a tenth of a cached read's
    /// CPU). Only a byte-identical token hits, so nothing is accepted that was not verified
    /// in full; expiry is still checked on every use.
    verified: moka::sync::Cache<Box<str>, VerifiedAccess>,
    encoding: EncodingKey,
    /// The current secret first, then the previous ones.
    decoding: Vec<DecodingKey>,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtTokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenService")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("previous_secrets", &self.decoding.len().saturating_sub(1))
            .finish_non_exhaustive()
    }
}

impl JwtTokenService {
    pub fn new(secret: &[u8], access_ttl: std::time::Duration, refresh_ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_FOR)
                .build(),
            encoding: EncodingKey::from_secret(secret),
            decoding: vec![DecodingKey::from_secret(secret)],
            validation,
            access_ttl: Duration::from_std(access_ttl).unwrap_or(Duration::minutes(15)),
            refresh_ttl: Duration::from_std(refresh_ttl).unwrap_or(Duration::days(7)),
        }
    }

    /// Also accepts tokens signed with any of `previous` (a key rotation); new tokens are
    /// still signed with the current secret only.
    #[must_use]
    pub fn with_previous_secrets<'a>(mut self, previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        self.decoding
            .extend(previous.into_iter().map(DecodingKey::from_secret));
        self
    }

    fn sign(&self, claims: &Claims) -> String {
        // HS256 over serializable claims cannot fail; an empty token would be refused later.
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Decodes with the current secret, then each previous one. The signature is checked
    /// before any claim, so only a signature made with another secret moves on to the next
    /// key; an expired token signed by a known secret is `Expired`, anything else `Invalid`.
    fn decode_with_known_secret(&self, token: &str) -> Result<TokenData<Claims>, TokenError> {
        for key in &self.decoding {
            match decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => {}
                    ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                    _ => return Err(TokenError::Invalid),
                },
            }
        }
        Err(TokenError::Invalid)
    }

    /// Checks an access token's signature and claims.
    fn verify_access_in_full(&self, token: &str) -> Result<VerifiedAccess, TokenError> {
        let c = self.verify(token, "access")?;
        let role = c
            .role
            .as_deref()
            .and_then(|r| Role::parse(r, "role").ok())
            .ok_or(TokenError::Invalid)?;
        let expires_at = DateTime::from_timestamp(c.exp, 0).ok_or(TokenError::Invalid)?;
        Ok(VerifiedAccess {
            claims: AccessClaims {
                user_id: c.sub,
                session_id: c.sid,
                role,
            },
            expires_at,
        })
    }

    fn verify(&self, token: &str, typ: &str) -> Result<Claims, TokenError> {
        let data = self.decode_with_known_secret(token)?;
        if data.claims.typ == typ {
            Ok(data.claims)
        } else {
            Err(TokenError::Invalid)
        }
    }
}

impl TokenService for JwtTokenService {
    fn issue_access(&self, claims: &AccessClaims, now: DateTime<Utc>) -> (String, u64) {
        let exp = now + self.access_ttl;
        let token = self.sign(&Claims {
            sub: claims.user_id,
            sid: claims.session_id,
            role: Some(claims.role.as_str().to_owned()),
            typ: "access".into(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: exp.timestamp(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::now_v7(),
        });
        (token, u64::try_from(self.access_ttl.num_seconds()).unwrap_or(0))
    }

    fn issue_refresh(&self, claims: &RefreshClaims, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> String {
        self.sign(&Claims {
            sub: claims.user_id,
            sid: claims.session_id,
            role: None,
            typ: "refresh".into(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: claims.token_id,
        })
    }

    fn verify_access(&self, token: &str) -> Result<VerifiedAccess, TokenError> {
        if let Some(verified) = self.verified.get(token) {
            let leeway = Duration::seconds(i64::try_from(LEEWAY_SECS).unwrap_or(0));
            return if Utc::now() > verified.expires_at + leeway {
                self.verified.invalidate(token);
                Err(TokenError::Expired)
            } else {
                Ok(verified)
            };
        }
        let verified = self.verify_access_in_full(token)?;
        self.verified.insert(token.into(), verified);
        Ok(verified)
    }

    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let c = self.verify(token, "refresh")?;
        Ok(RefreshClaims {
            user_id: c.sub,
            session_id: c.sid,
            token_id: c.jti,
        })
    }

    fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn service() -> JwtTokenService {
        JwtTokenService::new(
            SECRET,
            std::time::Duration::from_secs(900),
            std::time::Duration::from_secs(604_800),
        )
    }

    fn access() -> AccessClaims {
        AccessClaims {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            role: Role::Admin,
        }
    }

    #[test]
    fn access_tokens_round_trip_with_every_claim() {
        let s = service();
        let claims = access();
        let (token, ttl) = s.issue_access(&claims, Utc::now());
        assert_eq!(ttl, 900);
        assert_eq!(s.verify_access(&token).unwrap().claims, claims);
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        for claim in [
            "sub", "role", "sid", "typ", "iat", "nbf", "exp", "iss", "aud", "jti",
        ] {
            assert!(payload.get(claim).is_some(), "missing {claim}: {payload}");
        }
        assert_eq!(payload["typ"], "access");
    }

    #[test]
    fn refresh_and_access_tokens_do_not_pass_for_each_other() {
        let s = service();
        let (access_token, _) = s.issue_access(&access(), Utc::now());
        let refresh = s.issue_refresh(
            &RefreshClaims {
                user_id: Uuid::now_v7(),
                session_id: Uuid::now_v7(),
                token_id: Uuid::now_v7(),
            },
            Utc::now(),
            Utc::now() + Duration::days(7),
        );
        assert_eq!(s.verify_access(&refresh), Err(TokenError::Invalid));
        assert_eq!(s.verify_refresh(&access_token), Err(TokenError::Invalid));
        assert!(s.verify_refresh(&refresh).is_ok());
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let s = service();
        let (old, _) = s.issue_access(&access(), Utc::now() - Duration::hours(1));
        assert_eq!(s.verify_access(&old), Err(TokenError::Expired));

        let (token, _) = s.issue_access(&access(), Utc::now());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(s.verify_access(&tampered), Err(TokenError::Invalid));

        let other = JwtTokenService::new(
            b"another-secret-another-secret-xx",
            std::time::Duration::from_secs(900),
            std::time::Duration::from_secs(1000),
        );
        let (foreign, _) = other.issue_access(&access(), Utc::now());
        assert_eq!(s.verify_access(&foreign), Err(TokenError::Invalid));

        // alg: none, with a valid-looking payload and no signature.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = token.split('.').nth(1).unwrap();
        assert_eq!(
            s.verify_access(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_for_another_audience_or_issuer_is_refused() {
        let s = service();
        let now = Utc::now().timestamp();
        for (iss, aud) in [(ISSUER, "someone-else"), ("evil", AUDIENCE)] {
            let claims = Claims {
                sub: Uuid::now_v7(),
                sid: Uuid::now_v7(),
                role: Some("user".into()),
                typ: "access".into(),
                iat: now,
                nbf: now,
                exp: now + 600,
                iss: iss.into(),
                aud: aud.into(),
                jti: Uuid::now_v7(),
            };
            let token = encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert_eq!(s.verify_access(&token), Err(TokenError::Invalid), "{iss}/{aud}");
        }
    }

    const OLD: &[u8] = b"old-secret-old-secret-old-secret";
    const UNKNOWN: &[u8] = b"unknown-secret-unknown-secret-xx";

    fn with_secret(secret: &[u8]) -> JwtTokenService {
        JwtTokenService::new(
            secret,
            std::time::Duration::from_secs(900),
            std::time::Duration::from_secs(604_800),
        )
    }

    fn refresh_claims() -> RefreshClaims {
        RefreshClaims {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            token_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_token_signed_with_a_previous_secret_passes_only_while_that_secret_is_listed() {
        let old = with_secret(OLD);
        let claims = access();
        let (access_token, _) = old.issue_access(&claims, Utc::now());
        let refresh = refresh_claims();
        let refresh_token = old.issue_refresh(&refresh, Utc::now(), Utc::now() + Duration::days(7));

        let rotated = service().with_previous_secrets([OLD]);
        assert_eq!(rotated.verify_access(&access_token).map(|v| v.claims), Ok(claims));
        assert_eq!(rotated.verify_refresh(&refresh_token), Ok(refresh));

        let current_only = service();
        assert_eq!(
            current_only.verify_access(&access_token),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            current_only.verify_refresh(&refresh_token),
            Err(TokenError::Invalid)
        );

        // Listing other previous secrets does not help a secret that is not among them.
        let elsewhere = service().with_previous_secrets([UNKNOWN]);
        assert_eq!(elsewhere.verify_access(&access_token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_signed_with_an_unknown_secret_is_refused_during_a_rotation() {
        let rotated = service().with_previous_secrets([OLD, b"another-old-secret-another-old-x".as_slice()]);
        let (foreign, _) = with_secret(UNKNOWN).issue_access(&access(), Utc::now());
        assert_eq!(rotated.verify_access(&foreign), Err(TokenError::Invalid));
        let foreign_refresh =
            with_secret(UNKNOWN).issue_refresh(&refresh_claims(), Utc::now(), Utc::now() + Duration::days(7));
        assert_eq!(rotated.verify_refresh(&foreign_refresh), Err(TokenError::Invalid));
    }

    #[test]
    fn new_tokens_are_signed_with_the_current_secret_only() {
        let rotated = service().with_previous_secrets([OLD]);
        let claims = access();
        let (access_token, _) = rotated.issue_access(&claims, Utc::now());
        let refresh = refresh_claims();
        let refresh_token = rotated.issue_refresh(&refresh, Utc::now(), Utc::now() + Duration::days(7));

        assert_eq!(
            service().verify_access(&access_token).map(|v| v.claims),
            Ok(claims)
        );
        assert_eq!(service().verify_refresh(&refresh_token), Ok(refresh));
        assert_eq!(
            with_secret(OLD).verify_access(&access_token),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            with_secret(OLD).verify_refresh(&refresh_token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn an_expired_token_of_a_previous_secret_is_reported_expired() {
        let (stale, _) = with_secret(OLD).issue_access(&access(), Utc::now() - Duration::hours(1));
        let rotated = service().with_previous_secrets([OLD]);
        assert_eq!(rotated.verify_access(&stale), Err(TokenError::Expired));
        assert_eq!(service().verify_access(&stale), Err(TokenError::Invalid));
    }

    #[test]
    fn a_remembered_token_still_expires_and_only_the_exact_text_is_remembered() {
        let service = service();
        let (token, _) = service.issue_access(&access(), Utc::now());
        let first = service.verify_access(&token).unwrap();
        assert_eq!(
            service.verify_access(&token).unwrap(),
            first,
            "the second use hits the memo"
        );

        // One character changed in the signature: a different text, verified in full.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(service.verify_access(&forged), Err(TokenError::Invalid));

        // A remembered token past its expiry (and the leeway) is refused and forgotten.
        let stale = VerifiedAccess {
            expires_at: Utc::now() - Duration::seconds(6),
            ..first
        };
        service.verified.insert(token.as_str().into(), stale);
        assert_eq!(service.verify_access(&token), Err(TokenError::Expired));
        assert!(service.verified.get(token.as_str()).is_none());
    }
}
