//! Personal access tokens (docs/api/identity.md, "Personal access tokens"): long-lived,
//! scoped credentials for scripts and CI jobs, shown once and stored only as a hash of
//! their secret.
//!
//! A token reads `keel_pat_<id part>_<secret>`: the id part names the user and the token
//! (so one indexed read finds it, and the cache files it under its user like a session),
//! the secret is at least 32 random bytes; the store keeps the SHA-256 of the secret only.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Role, UserStatus};
use crate::FieldError;
use crate::text::{self, TextRule};

/// What every personal access token starts with.
pub const TOKEN_PREFIX: &str = "keel_pat_";

/// The most projects one token may be limited to.
pub const MAX_TOKEN_PROJECTS: usize = 100;

/// Token name: after trimming, 1–100 characters, no control character and no bidirectional
/// formatting character (the text policy's line rule).
pub const TOKEN_NAME_PATTERN: &str = concat!(
    "^[",
    ws_class!(),
    "]*(?:[^",
    control_class!(),
    ws_class!(),
    bidi_class!(),
    "]|[^",
    control_class!(),
    ws_class!(),
    bidi_class!(),
    "][^",
    control_class!(),
    bidi_class!(),
    "]{0,98}[^",
    control_class!(),
    ws_class!(),
    bidi_class!(),
    "])[",
    ws_class!(),
    "]*$"
);

/// A token's name, as its owner recognises it in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if !(1..=100).contains(&name.chars().count()) {
            return Err(FieldError::new("name", "must be 1–100 characters"));
        }
        text::check(name, "name", TextRule::Line)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One scope of a personal access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Safe methods (`GET`, `HEAD`, `OPTIONS`) outside `/admin/*`.
    Read,
    /// Every method outside `/admin/*` (read included).
    Write,
    /// The `/admin/*` routes, whatever the method. Only an admin may hold it.
    Admin,
}

impl Scope {
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| FieldError::new("scopes", "each scope must be one of read, write, admin"))
    }

    fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Admin => 4,
        }
    }
}

/// A non-empty set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(u8);

impl Scopes {
    /// The set of `scopes`; at least one, each named once at most (duplicates collapse).
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, FieldError> {
        let mut bits = 0;
        for scope in scopes {
            bits |= Scope::parse(scope.as_ref())?.bit();
        }
        if bits == 0 {
            return Err(FieldError::new("scopes", "must name at least one scope"));
        }
        Ok(Self(bits))
    }

    /// The set stored as bits (`Scopes::bits`); `None` when they name no scope or an
    /// unknown one.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits != 0 && bits & !7 == 0).then_some(Self(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Its scopes, in the order `read`, `write`, `admin`.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Whether these scopes cover a request: `/admin/*` routes need `admin` whatever the
    /// method; elsewhere a safe method needs `read` or `write`, any other `write`.
    pub fn cover(self, safe_method: bool, admin_route: bool) -> bool {
        if admin_route {
            self.contains(Scope::Admin)
        } else if safe_method {
            self.contains(Scope::Read) || self.contains(Scope::Write)
        } else {
            self.contains(Scope::Write)
        }
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(Scope::as_str)).finish()
    }
}

/// A personal access token as stored: never its secret, only the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: TokenName,
    pub scopes: Scopes,
    /// The projects it is limited to; `None`: every project of its user.
    pub project_ids: Option<Vec<Uuid>>,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_hash: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Kept to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What authentication needs of a token and of its user, read together (one statement) and
/// cached under the user, like a session's [`SessionAuth`](super::SessionAuth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAuth {
    pub user_id: Uuid,
    pub secret_hash: String,
    pub scopes: Scopes,
    pub project_ids: Option<Vec<Uuid>>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub role: Role,
    pub status: UserStatus,
}

/// What a personal access token lets its bearer do: carried by the request's principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token_id: Uuid,
    pub scopes: Scopes,
    /// The projects the token is limited to; `None`: every project of its user.
    pub project_ids: Option<Vec<Uuid>>,
}

impl Grant {
    pub fn allows_project(&self, project_id: Uuid) -> bool {
        self.project_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&project_id))
    }
}

/// The parts of a presented token: the id part names the user and the token.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    pub user_id: Uuid,
    pub token_id: Uuid,
    pub secret: &'a str,
}

impl fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedToken")
            .field("user_id", &self.user_id)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl<'a> PresentedToken<'a> {
    /// Whether a bearer credential is a personal access token at all (else an access token).
    pub fn is_personal(raw: &str) -> bool {
        raw.starts_with(TOKEN_PREFIX)
    }

    /// `keel_pat_<user id: 32 hex><token id: 32 hex>_<secret>`; `None` when malformed.
    pub fn parse(raw: &'a str) -> Option<Self> {
        let rest = raw.strip_prefix(TOKEN_PREFIX)?;
        let ids = rest.get(..64)?;
        let secret = rest.get(64..)?.strip_prefix('_')?;
        if secret.is_empty() || !ids.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            user_id: Uuid::try_parse(&ids[..32]).ok()?,
            token_id: Uuid::try_parse(&ids[32..]).ok()?,
            secret,
        })
    }

    /// The token a user is given once: its id part and `secret`.
    pub fn format(user_id: Uuid, token_id: Uuid, secret: &str) -> String {
        format!("{TOKEN_PREFIX}{}{}_{secret}", user_id.simple(), token_id.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_format() {
        let (u, t) = (Uuid::now_v7(), Uuid::now_v7());
        let raw = PresentedToken::format(u, t, "s3cr_et-x");
        let parsed = PresentedToken::parse(&raw).unwrap();
        assert_eq!(
            (parsed.user_id, parsed.token_id, parsed.secret),
            (u, t, "s3cr_et-x")
        );
        assert!(PresentedToken::is_personal(&raw));
        assert!(!format!("{parsed:?}").contains("s3cr"), "Debug hides the secret");
    }

    #[test]
    fn malformed_tokens_parse_to_nothing() {
        let ok = PresentedToken::format(Uuid::nil(), Uuid::nil(), "x");
        for bad in [
            "keel_pat_",
            "keel_pat_abc_x",
            &ok[..ok.len() - 2],
            &ok.replace("keel_pat_0", "keel_pat_g"),
            "keel_pat_é0000000000000000000000000000000000000000000000000000000000000_x",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
        ] {
            assert!(PresentedToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_cover_their_routes_and_nothing_else() {
        let s = |names: &[&str]| Scopes::parse(names).unwrap();
        // (safe method, admin route)
        assert!(s(&["read"]).cover(true, false));
        assert!(!s(&["read"]).cover(false, false));
        assert!(!s(&["read"]).cover(true, true));
        assert!(s(&["write"]).cover(true, false));
        assert!(s(&["write"]).cover(false, false));
        assert!(!s(&["write"]).cover(true, true));
        assert!(s(&["admin"]).cover(true, true));
        assert!(s(&["admin"]).cover(false, true));
        assert!(!s(&["admin"]).cover(true, false));
        assert!(s(&["read", "admin"]).cover(true, false));
    }

    #[test]
    fn scopes_refuse_unknown_and_empty_sets() {
        assert!(Scopes::parse::<&str>(&[]).is_err());
        assert!(Scopes::parse(&["root"]).is_err());
        assert!(Scopes::parse(&["Read"]).is_err());
        let s = Scopes::parse(&["write", "read", "write"]).unwrap();
        assert_eq!(s.iter().map(Scope::as_str).collect::<Vec<_>>(), ["read", "write"]);
        assert_eq!(Scopes::from_bits(s.bits()), Some(s));
        assert_eq!(Scopes::from_bits(0), None);
        assert_eq!(Scopes::from_bits(8), None);
    }

    #[test]
    fn a_grant_without_a_limit_allows_every_project() {
        let mut g = Grant {
            token_id: Uuid::nil(),
            scopes: Scopes::parse(&["read"]).unwrap(),
            project_ids: None,
        };
        assert!(g.allows_project(Uuid::now_v7()));
        let p = Uuid::now_v7();
        g.project_ids = Some(vec![p]);
        assert!(g.allows_project(p));
        assert!(!g.allows_project(Uuid::now_v7()));
    }

    #[test]
    fn token_names_are_trimmed_lines_of_1_to_100_characters() {
        assert_eq!(TokenName::parse("  ci deploy ").unwrap().as_str(), "ci deploy");
        assert!(TokenName::parse("   ").is_err());
        assert!(TokenName::parse(&"x".repeat(101)).is_err());
        assert!(TokenName::parse(&"é".repeat(100)).is_ok());
        assert!(TokenName::parse("a\u{202e}b").is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_name_pattern_agrees_with_the_parser(
            s in r"[ \t\u{1}\u{ad}\u{200b}\u{202e}\u{feff}a-z]{0,103}"
        ) {
            let re = fancy_regex::Regex::new(TOKEN_NAME_PATTERN).unwrap();
            proptest::prop_assert_eq!(TokenName::parse(&s).is_ok(), re.is_match(&s).unwrap(), "{:?}", s);
        }
    }
}
