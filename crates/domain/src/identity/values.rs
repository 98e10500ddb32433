//! Identity value objects. Once you hold one, it is valid (parse, don't validate).

use std::fmt;

use crate::FieldError;

/// An e-mail address: trimmed, lower-cased, `local@domain` with a dotted domain, ≤ 254 bytes.
///
/// A new address ([`Email::parse`]) is ASCII only: no two addresses can then look alike
/// across scripts (a Cyrillic `а` for a Latin `a`), and an internationalised domain is
/// written in its ASCII (punycode, `xn--…`) form, which shows what it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// A new address (registration, an account created by an admin): ASCII only.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = Self::parse_existing(raw)?;
        if email.0.is_ascii() {
            Ok(email)
        } else {
            Err(FieldError::new(
                "email",
                "must be written in ASCII (an internationalised domain in its xn-- form)",
            ))
        }
    }

    /// An address that may belong to an existing account (a sign-in, a look-up, a stored
    /// row): the rule addresses were created under before they had to be ASCII, so an
    /// account registered then can still be found.
    pub fn parse_existing(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldError::new("email", "must be a valid e-mail address");
        if email.is_empty() || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    /// The address of an erased account: `deleted-<id>@invalid` — unique per account, in
    /// the reserved `.invalid` domain that no mail reaches, and accepted by no sign-in or
    /// registration ([`Email::parse`] and [`Email::parse_existing`] refuse it).
    pub fn erased(user_id: uuid::Uuid) -> Self {
        Self(format!("deleted-{user_id}@invalid"))
    }

    /// An address as stored: [`Email::parse_existing`], or an erased account's.
    pub fn from_stored(raw: &str) -> Result<Self, FieldError> {
        Self::parse_existing(raw).or_else(|e| {
            raw.strip_prefix("deleted-")
                .and_then(|rest| rest.strip_suffix("@invalid"))
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
                .map(Self::erased)
                .filter(|erased| erased.0 == raw)
                .ok_or(e)
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: `j***@example.com` — never the full address (docs/operations.md).
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or(("", ""));
        let first = local.chars().next().unwrap_or('*');
        format!("{first}***@{domain}")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// The password policy as an ECMA-262/Python regex, for the OpenAPI document.
pub const PASSWORD_PATTERN: &str = r"^(?=[\s\S]*[a-z])(?=[\s\S]*[A-Z])(?=[\s\S]*[0-9])[\s\S]{8,128}$";

/// The name rule as a regex: optional white space, 2–50 characters that start and end with
/// a visible one, none a control or an invisible character (the text policy's
/// [`TextRule::Name`](crate::text::TextRule::Name)), optional white space. The white space is
/// Rust's `char::is_whitespace` set, so the document and `str::trim` agree exactly.
pub const NAME_PATTERN: &str = concat!(
    "^[",
    ws_class!(),
    "]*[^",
    control_class!(),
    ws_class!(),
    ignorable_class!(),
    "][^",
    control_class!(),
    ignorable_class!(),
    "]{0,48}[^",
    control_class!(),
    ws_class!(),
    ignorable_class!(),
    "][",
    ws_class!(),
    "]*$"
);

/// A display name: trimmed, 2–50 characters, checked by the text policy's name rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let count = name.chars().count();
        if !(2..=50).contains(&count) {
            return Err(FieldError::new("name", "must be 2–50 characters"));
        }
        crate::text::check(name, "name", crate::text::TextRule::Name)?;
        Ok(Self(name.to_owned()))
    }

    /// A name read back from the store, where only parsed names are written: not checked
    /// again, so a rule tightened since it was written does not make its account
    /// unreadable. Never for input.
    pub fn from_stored(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password that meets the policy: 8–128 characters (of any script) including an
/// ASCII lower-case letter, an ASCII upper-case letter and an ASCII digit — classes a
/// JSON Schema pattern can state exactly ([`PASSWORD_PATTERN`]). Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// `field` names the input in errors (`password`, `newPassword`).
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let count = raw.chars().count();
        let rule = "must be 8–128 characters with a lower-case letter, an upper-case letter and a digit";
        if !(8..=128).contains(&count)
            || !raw.chars().any(|c| c.is_ascii_lowercase())
            || !raw.chars().any(|c| c.is_ascii_uppercase())
            || !raw.chars().any(|c| c.is_ascii_digit())
        {
            return Err(FieldError::new(field, rule));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so the
/// parameters travel with it and can be upgraded on the next login.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        match raw {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(FieldError::new(field, "must be user or admin")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        match raw {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            _ => Err(FieldError::new(field, "must be active or disabled")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let e = Email::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "jane.doe@example.com");
        assert_eq!(e.masked(), "j***@example.com");
        assert!(!format!("{e:?}").contains("jane.doe"));
    }

    #[test]
    fn an_erased_accounts_address_is_read_back_but_never_accepted_as_input() {
        let id = uuid::Uuid::from_u128(0x1234);
        let erased = Email::erased(id);
        assert_eq!(erased.as_str(), format!("deleted-{id}@invalid"));
        assert_eq!(Email::from_stored(erased.as_str()), Ok(erased.clone()));
        assert!(Email::parse(erased.as_str()).is_err());
        assert!(Email::parse_existing(erased.as_str()).is_err());
        // Only the exact form: not another id's spelling, not a look-alike.
        let upper = erased.as_str().to_uppercase();
        for bad in [upper.as_str(), "deleted-x@invalid", "deleted-@invalid"] {
            assert!(Email::from_stored(bad).is_err(), "{bad}");
        }
        assert!(Email::from_stored("Jane@Example.com").is_ok());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@.b.c",
            "a@b..c",
            "a b@c.d",
            "a@b.c.",
            &format!("{}@b.c", "x".repeat(65)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_2_to_50_characters_after_trimming() {
        assert_eq!(UserName::parse("  Al ").unwrap().as_str(), "Al");
        assert!(UserName::parse(" A ").is_err());
        assert!(UserName::parse(&"é".repeat(50)).is_ok(), "characters, not bytes");
        assert!(UserName::parse(&"x".repeat(51)).is_err());
        assert!(UserName::parse("Al\u{7}").is_err());
        assert!(UserName::parse("A\u{200B}l").is_err(), "invisible");
        assert!(UserName::parse("Al\u{202E}x").is_err(), "bidirectional");
        assert!(UserName::parse("Zoë Ж").is_ok());
    }

    #[test]
    fn new_addresses_are_ascii_but_existing_ones_are_still_found() {
        for look_alike in [
            "\u{430}dmin@example.com",
            "admin@ex\u{430}mple.com",
            "\u{ff41}@example.com",
        ] {
            let e = Email::parse(look_alike).unwrap_err();
            assert_eq!(e.field, "email");
            assert!(Email::parse_existing(look_alike).is_ok(), "{look_alike}");
        }
        assert!(Email::parse("ann@xn--bcher-kva.example").is_ok());
        assert!(Email::parse_existing("not an address").is_err());
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("Abcdefg1", "password").is_ok());
        assert!(
            Password::parse("Пароль-Ab1", "password").is_ok(),
            "any script, given the ASCII classes"
        );
        assert!(
            Password::parse("αβγδΑΒΓΔ12", "password").is_err(),
            "the classes are ASCII"
        );
        for bad in [
            "Abcdef1",
            "abcdefg1",
            "ABCDEFG1",
            "Abcdefgh",
            &format!("A1{}", "a".repeat(127)),
        ] {
            let e = Password::parse(bad, "newPassword").unwrap_err();
            assert_eq!(e.field, "newPassword", "{bad}");
        }
        assert_eq!(
            format!("{:?}", Password::parse("Abcdefg1", "p").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn roles_and_statuses_round_trip() {
        for r in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(r.as_str(), "role").unwrap(), r);
        }
        for s in [UserStatus::Active, UserStatus::Disabled] {
            assert_eq!(UserStatus::parse(s.as_str(), "status").unwrap(), s);
        }
        assert!(Role::parse("owner", "role").is_err());
    }

    /// The OpenAPI document publishes these patterns; clients and schemathesis trust them,
    /// so they must accept exactly what the parsers accept.
    mod patterns_agree_with_parsers {
        use proptest::prelude::*;

        use super::super::*;

        /// Mostly ordinary characters, with every kind of white space and control character
        /// mixed in: the characters where the rules could disagree.
        fn tricky() -> impl Strategy<Value = String> {
            let ordinary = prop::sample::select(vec!['a', 'z', 'A', 'Z', '0', '9', 'é', 'Ж', 'ß', '漢', '-']);
            let special = prop::sample::select(vec![
                ' ',
                '\t',
                '\n',
                '\r',
                '\u{b}',
                '\u{c}',
                '\u{1}',
                '\u{1c}',
                '\u{7f}',
                '\u{85}',
                '\u{9f}',
                '\u{a0}',
                '\u{2003}',
                '\u{2028}',
                '\u{3000}',
                '\u{200b}',
                '\u{feff}',
                '\u{ad}',
                '\u{202e}',
                '\u{2066}',
                '\u{200d}',
                '\u{fe0f}',
                '\u{3164}',
                '\u{e0041}',
                '\u{1d173}',
                '\u{180e}',
            ]);
            let one = prop_oneof![6 => ordinary, 1 => special];
            prop::collection::vec(one, 0..60).prop_map(|v| v.into_iter().collect())
        }

        fn agree(pattern: &str, parses: impl Fn(&str) -> bool) {
            let re = fancy_regex::Regex::new(pattern).unwrap();
            let (valid, invalid) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
            proptest!(ProptestConfig::with_cases(600), |(s in tricky())| {
                let ok = parses(&s);
                let counter = if ok { &valid } else { &invalid };
                counter.set(counter.get() + 1);
                prop_assert_eq!(ok, re.is_match(&s).unwrap(), "{:?}", s);
            });
            let (valid, invalid) = (valid.get(), invalid.get());
            assert!(
                valid > 50 && invalid > 50,
                "both outcomes exercised: {valid} valid, {invalid} invalid"
            );
        }

        #[test]
        fn name() {
            agree(NAME_PATTERN, |s| UserName::parse(s).is_ok());
        }

        #[test]
        fn password() {
            agree(PASSWORD_PATTERN, |s| Password::parse(s, "password").is_ok());
        }
    }
}
