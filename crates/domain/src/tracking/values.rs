//! Tracking value objects (docs/api/tracking.md). Once you hold one, it is valid (parse, don't validate).
//! Every `*_PATTERN` is the rule as a regex for the OpenAPI document; a property test keeps
//! each pattern and its parser in agreement.

use std::fmt;

use chrono::NaiveDate;

use crate::FieldError;
use crate::text::{self, TextRule};

/// Project key: 2–10 upper-case ASCII letters and digits, starting with a letter.
pub const PROJECT_KEY_PATTERN: &str = "^[A-Z][A-Z0-9]{1,9}$";

/// Project name: after trimming, 3–100 letters (any script), digits, spaces, `-`, `_`, `.`,
/// none of them invisible (the text policy's name rule: a Hangul filler is a "letter").
pub const PROJECT_NAME_PATTERN: &str = concat!(
    "^[",
    ws_class!(),
    "]*(?![",
    ignorable_class!(),
    r"])[\w.-](?:(?![",
    ignorable_class!(),
    r"])[\w .-]){1,98}(?![",
    ignorable_class!(),
    r"])[\w.-][",
    ws_class!(),
    "]*$"
);

/// Label name: after trimming, 1–30 characters, no control or invisible character (the
/// text policy's name rule).
pub const LABEL_NAME_PATTERN: &str = concat!(
    "^[",
    ws_class!(),
    "]*(?:[^",
    control_class!(),
    ws_class!(),
    ignorable_class!(),
    "]|[^",
    control_class!(),
    ws_class!(),
    ignorable_class!(),
    "][^",
    control_class!(),
    ignorable_class!(),
    "]{0,28}[^",
    control_class!(),
    ws_class!(),
    ignorable_class!(),
    "])[",
    ws_class!(),
    "]*$"
);

/// Task title: after trimming, 1–200 characters, no control character and no bidirectional
/// formatting character (the text policy's line rule).
pub const TASK_TITLE_PATTERN: &str = concat!(
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
    "]{0,198}[^",
    control_class!(),
    ws_class!(),
    bidi_class!(),
    "])[",
    ws_class!(),
    "]*$"
);

/// A comment body holds at least one character that is not white space, and only what the
/// text policy's prose rule accepts (line breaks and tabs, no other control character, no
/// bidirectional formatting character).
pub const COMMENT_BODY_PATTERN: &str = concat!(
    "^(?=[\\s\\S]*[^",
    ws_class!(),
    "])[^",
    prose_control_class!(),
    bidi_class!(),
    "]*$"
);

/// A description (project or task): the text policy's prose rule; the length is the
/// schema's `maxLength`.
pub const DESCRIPTION_PATTERN: &str = crate::text::PROSE_PATTERN;

pub const COLOR_PATTERN: &str = "^#[0-9A-Fa-f]{6}$";

/// A link's title: the rule of a task title (1–200 characters after trimming, the text
/// policy's line rule).
pub const LINK_TITLE_PATTERN: &str = TASK_TITLE_PATTERN;

/// A workflow state's key: what a task's `status` holds. Never changes once made.
pub const STATE_KEY_PATTERN: &str = "^[a-z][a-z0-9_]{0,29}$";

/// A workflow state's name: the rule of a label name (1–30 characters after trimming).
pub const STATE_NAME_PATTERN: &str = LABEL_NAME_PATTERN;

/// The longest link URL, in bytes, as given and once normalised (normalised URLs are ASCII).
pub const MAX_LINK_URL_LEN: usize = 2048;

fn chars_between(raw: &str, field: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let count = raw.chars().count();
    if (min..=max).contains(&count) {
        Ok(())
    } else if min == 0 {
        Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ))
    } else {
        Err(FieldError::new(field, format!("must be {min}–{max} characters")))
    }
}

/// A trimmed one-line text, `min`–`max` characters long, checked by the text policy's `rule`.
fn trimmed_line(
    raw: &str,
    field: &str,
    min: usize,
    max: usize,
    rule: TextRule,
) -> Result<String, FieldError> {
    let text = raw.trim();
    chars_between(text, field, min, max)?;
    text::check(text, field, rule)?;
    Ok(text.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Serializable for caches: what is read back was checked when it was first parsed.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }

            /// A value read back from the store, where only parsed values are written: not
            /// checked again, so a rule tightened since it was written does not make its row
            /// unreadable. Never for input.
            pub fn from_stored(raw: String) -> Self {
                Self(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// The project's short key, `KEEL`: the prefix of its task identifiers (`KEEL-12`).
    ProjectKey
);
text_value!(ProjectName);
text_value!(LabelName);
text_value!(TaskTitle);
text_value!(CommentBody);
text_value!(
    /// The title of a task's link.
    LinkTitle
);
text_value!(
    /// An absolute `http` or `https` URL with a host and no user name or password, in its
    /// normalised form (ASCII, at most [`MAX_LINK_URL_LEN`] bytes).
    LinkUrl
);
text_value!(
    /// `#RRGGBB`, stored upper-case.
    Color
);
text_value!(
    /// A workflow state's key ([`STATE_KEY_PATTERN`]), unique in its project: a task's
    /// `status`.
    StateKey
);
text_value!(
    /// A workflow state's display name.
    StateName
);

impl ProjectKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let mut chars = raw.chars();
        let ok = (2..=10).contains(&raw.len())
            && chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "key",
                "must be 2–10 upper-case letters and digits, starting with a letter",
            ))
        }
    }
}

impl ProjectName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        chars_between(name, "name", 3, 100)?;
        text::check(name, "name", TextRule::Name)?;
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        {
            return Err(FieldError::new(
                "name",
                "may hold only letters, digits, spaces, '-', '_' and '.'",
            ));
        }
        Ok(Self(name.to_owned()))
    }
}

impl LabelName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        trimmed_line(raw, "name", 1, 30, TextRule::Name).map(Self)
    }
}

impl StateKey {
    /// `field` names the input in the error (`key`, `status`, `moveTo`, `defaultState`).
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let mut chars = raw.chars();
        let ok = (1..=30).contains(&raw.len())
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "must be 1–30 lower-case letters, digits and '_', starting with a letter",
            ))
        }
    }
}

impl StateName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        trimmed_line(raw, "name", 1, 30, TextRule::Name).map(Self)
    }
}

impl TaskTitle {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        trimmed_line(raw, "title", 1, 200, TextRule::Line).map(Self)
    }
}

impl LinkTitle {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        trimmed_line(raw, "title", 1, 200, TextRule::Line).map(Self)
    }
}

impl LinkUrl {
    /// Parses and normalises a link's URL (`HTTPS://Example.com` becomes
    /// `https://example.com/`): two spellings of one URL are one link.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let too_long = || FieldError::new("url", format!("must be at most {MAX_LINK_URL_LEN} characters"));
        if raw.len() > MAX_LINK_URL_LEN {
            return Err(too_long());
        }
        // Before parsing: the URL parser silently drops tabs and line breaks.
        text::check(raw, "url", TextRule::Line)?;
        let url = url::Url::parse(raw.trim())
            .map_err(|e| FieldError::new("url", format!("must be an absolute URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new("url", "must be an http or https URL"));
        }
        if url.host().is_none() {
            return Err(FieldError::new("url", "must have a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new("url", "must not contain a user name or password"));
        }
        let normalised = String::from(url);
        if normalised.len() > MAX_LINK_URL_LEN {
            return Err(too_long());
        }
        Ok(Self(normalised))
    }
}

impl CommentBody {
    /// 1–5000 characters, kept as written (line breaks matter), not only white space,
    /// checked by the text policy's prose rule.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        chars_between(raw, "body", 1, 5000)?;
        if raw.trim().is_empty() {
            return Err(FieldError::new("body", "must not be only white space"));
        }
        text::check(raw, "body", TextRule::Prose)?;
        Ok(Self(raw.to_owned()))
    }
}

impl Color {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = raw.len() == 7 && raw.starts_with('#') && raw[1..].chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(FieldError::new("color", "must be #RRGGBB (hexadecimal)"))
        }
    }
}

/// An optional long text (project or task description): at most `max` characters, kept as
/// written, checked by the text policy's prose rule; an empty string clears it.
pub fn parse_description(raw: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    match raw {
        None | Some("") => Ok(None),
        Some(text) => {
            chars_between(text, "description", 0, max)?;
            text::check(text, "description", TextRule::Prose)?;
            Ok(Some(text.to_owned()))
        }
    }
}

pub const PROJECT_DESCRIPTION_MAX: usize = 1000;
pub const TASK_DESCRIPTION_MAX: usize = 10_000;

/// `YYYY-MM-DD`.
pub fn parse_due_date(raw: &str) -> Result<NaiveDate, FieldError> {
    let bad = || FieldError::new("dueDate", "must be a date as YYYY-MM-DD");
    if raw.len() != 10 {
        return Err(bad());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad())
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// `field` names the input in the error (`status`, or `status` in a filter).
            pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
                match raw {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(FieldError::new(
                        field,
                        concat!("must be one of: ", string_enum!(@join $($text),+)),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@join $first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

string_enum!(
    ProjectStatus, "status" {
        Active = "active",
        Completed = "completed",
        Archived = "archived",
    }
);

string_enum!(
    /// A member's role in one project, strongest first (the derived order ranks them).
    ProjectRole, "role" {
        Owner = "owner",
        Admin = "admin",
        Member = "member",
        Viewer = "viewer",
    }
);

string_enum!(
    /// The category of a workflow state: what the state means, whatever its key and name.
    StateCategory, "category" {
        Backlog = "backlog",
        Unstarted = "unstarted",
        Started = "started",
        Completed = "completed",
        Canceled = "canceled",
    }
);

impl StateCategory {
    /// Whether a task in a state of this category is finished with (`completed` or
    /// `canceled`): it blocks no other task any more.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }
}

/// What a project role may do. Instance admins act as owners everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See the project and everything in it.
    Read,
    /// Create, change and delete tasks; write comments.
    WriteTasks,
    /// Manage members, labels, webhooks and the project's settings; delete anyone's comment.
    Administer,
    /// Delete the project, hand ownership over.
    Own,
}

impl ProjectRole {
    pub fn allows(self, permission: Permission) -> bool {
        let needed = match permission {
            Permission::Read => Self::Viewer,
            Permission::WriteTasks => Self::Member,
            Permission::Administer => Self::Admin,
            Permission::Own => Self::Owner,
        };
        // Derived order: Owner < Admin < Member < Viewer, strongest first.
        self <= needed
    }
}

/// Task priority 0–4: 0 none, 1 urgent, 2 high, 3 medium, 4 low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    pub const NONE: Self = Self(0);

    pub fn new(value: i64, field: &str) -> Result<Self, FieldError> {
        u8::try_from(value)
            .ok()
            .filter(|v| *v <= 4)
            .map(Self)
            .ok_or_else(|| FieldError::new(field, "must be an integer from 0 to 4"))
    }

    pub fn value(self) -> u8 {
        self.0
    }

    /// The sort rank: urgent (1) first … low (4), then none (0) last.
    pub fn rank(self) -> i16 {
        if self.0 == 0 { 5 } else { i16::from(self.0) }
    }

    /// The priority of a sort rank; `None` for a rank no priority has.
    pub fn from_rank(rank: i16) -> Option<Self> {
        match rank {
            5 => Some(Self(0)),
            1..=4 => u8::try_from(rank).ok().map(Self),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use fancy_regex::Regex;
    use proptest::prelude::*;

    use super::*;

    /// Compiles each pattern once: the Unicode classes make compiling slow.
    fn matches(pattern: &'static str, s: &str) -> bool {
        use std::collections::HashMap;
        use std::sync::{LazyLock, Mutex};
        static COMPILED: LazyLock<Mutex<HashMap<&'static str, Regex>>> = LazyLock::new(Default::default);
        let mut compiled = COMPILED.lock().unwrap();
        let re = compiled
            .entry(pattern)
            .or_insert_with(|| Regex::new(pattern).unwrap());
        re.is_match(s).unwrap()
    }

    #[test]
    fn link_urls_are_http_or_https_normalised_and_bounded() {
        assert_eq!(
            LinkUrl::parse("HTTPS://Example.COM").unwrap().as_str(),
            "https://example.com/"
        );
        assert_eq!(
            LinkUrl::parse("http://example.com/a?b=c#d").unwrap().as_str(),
            "http://example.com/a?b=c#d"
        );
        let longest = format!("https://example.com/{}", "a".repeat(MAX_LINK_URL_LEN - 20));
        assert_eq!(LinkUrl::parse(&longest).unwrap().as_str(), longest);
        // Within 2048 characters as given, over 2048 bytes once non-ASCII is encoded.
        let grows = format!("https://example.com/{}", "é".repeat(1000));
        for bad in [
            "ftp://example.com/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "mailto:a@example.com",
            "example.com",
            "/path",
            "https://user@example.com/",
            "https://user:pw@example.com/",
            "https://exa\tmple.com/",
            "https://example.com/\u{202E}",
            "https://",
            &format!("{longest}a"),
            &grows,
        ] {
            assert_eq!(LinkUrl::parse(bad).unwrap_err().field, "url", "{bad:?}");
        }
    }

    #[test]
    fn state_keys_agree_with_their_pattern_and_name_the_field() {
        for ok in [
            "todo",
            "in_review",
            "a",
            "q2_done",
            &format!("a{}", "b".repeat(29)),
        ] {
            assert!(StateKey::parse(ok, "key").is_ok(), "{ok}");
            assert!(matches(STATE_KEY_PATTERN, ok), "{ok}");
        }
        for bad in [
            "",
            "Todo",
            "1st",
            "_x",
            "in-review",
            "in review",
            "é",
            &"a".repeat(31),
        ] {
            assert_eq!(
                StateKey::parse(bad, "moveTo").unwrap_err().field,
                "moveTo",
                "{bad}"
            );
            assert!(!matches(STATE_KEY_PATTERN, bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn state_key_parser_and_pattern_agree(s in "[a-z_0-9A-Z-]{0,32}") {
            prop_assert_eq!(StateKey::parse(&s, "key").is_ok(), matches(STATE_KEY_PATTERN, &s));
        }
    }

    #[test]
    fn categories_closed_are_completed_and_canceled() {
        let closed: Vec<_> = StateCategory::ALL.iter().filter(|c| c.is_closed()).collect();
        assert_eq!(closed, [&StateCategory::Completed, &StateCategory::Canceled]);
        assert_eq!(
            StateCategory::parse("done", "category").unwrap_err().field,
            "category"
        );
    }

    #[test]
    fn project_keys() {
        for ok in ["AB", "KEEL", "A1", "ABCDEFGHIJ"] {
            assert!(ProjectKey::parse(ok).is_ok(), "{ok}");
            assert!(matches(PROJECT_KEY_PATTERN, ok));
        }
        for bad in ["A", "1A", "keel", "KE-L", "ABCDEFGHIJK", "ÄB", ""] {
            assert!(ProjectKey::parse(bad).is_err(), "{bad}");
            assert!(!matches(PROJECT_KEY_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn project_names_allow_any_script_and_few_symbols() {
        assert_eq!(ProjectName::parse("  Web app  ").unwrap().as_str(), "Web app");
        for ok in ["Крылья 2.0", "设计系统", "a_b-c.d", "abc"] {
            assert!(ProjectName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            " ab ",
            "a/b c",
            "hello!",
            "tab\there",
            &"x".repeat(101),
            "\u{3164}\u{3164}\u{3164}",
            "Web\u{3164}app",
        ] {
            assert!(ProjectName::parse(bad).is_err(), "{bad}");
            assert!(!matches(PROJECT_NAME_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn texts_are_trimmed_and_bounded_in_characters() {
        assert_eq!(TaskTitle::parse("  Fix it ").unwrap().as_str(), "Fix it");
        assert!(TaskTitle::parse("   ").is_err());
        assert!(TaskTitle::parse(&"é".repeat(200)).is_ok());
        assert!(TaskTitle::parse(&"é".repeat(201)).is_err());
        assert!(LabelName::parse("bug\u{0}").is_err());
        assert!(LabelName::parse(&"x".repeat(31)).is_err());
        assert_eq!(
            CommentBody::parse(" line\nnext ").unwrap().as_str(),
            " line\nnext "
        );
        assert!(CommentBody::parse(" \n ").is_err());
        assert!(CommentBody::parse(&"x".repeat(5001)).is_err());
        assert!(CommentBody::parse("a\0b").is_err());
        assert!(CommentBody::parse("see \u{2067}here\u{2069}").is_err());
        assert!(TaskTitle::parse("x\u{202E}y").is_err());
        assert!(TaskTitle::parse("ship 👩\u{200D}💻").is_ok());
        assert!(LabelName::parse("bug\u{200B}").is_err());
    }

    #[test]
    fn descriptions_and_dates() {
        assert_eq!(parse_description(Some(""), 10).unwrap(), None);
        assert_eq!(
            parse_description(Some("é".repeat(10).as_str()), 10)
                .unwrap()
                .unwrap()
                .chars()
                .count(),
            10
        );
        assert!(parse_description(Some("x".repeat(11).as_str()), 10).is_err());
        assert!(parse_description(Some("a\0"), 10).is_err());
        assert_eq!(
            parse_description(Some("a\n\tb"), 10).unwrap().as_deref(),
            Some("a\n\tb")
        );
        assert_eq!(
            parse_due_date("2026-02-28").unwrap(),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
        for bad in ["2026-02-30", "2026-2-1", "26-02-01", "2026-02-01T00:00:00Z", ""] {
            assert!(parse_due_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn colors_are_normalised_to_upper_case() {
        assert_eq!(Color::parse("#a1b2c3").unwrap().as_str(), "#A1B2C3");
        for bad in ["a1b2c3", "#a1b2c", "#a1b2c3d", "#g1b2c3", "#é1b2c"] {
            assert!(Color::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_rank_from_owner_to_viewer() {
        use Permission::*;
        assert!(ProjectRole::Owner.allows(Own));
        assert!(!ProjectRole::Admin.allows(Own));
        assert!(ProjectRole::Admin.allows(Administer));
        assert!(!ProjectRole::Member.allows(Administer));
        assert!(ProjectRole::Member.allows(WriteTasks));
        assert!(!ProjectRole::Viewer.allows(WriteTasks));
        assert!(ProjectRole::Viewer.allows(Read));
        for role in ProjectRole::ALL {
            assert_eq!(ProjectRole::parse(role.as_str(), "role").unwrap(), *role);
        }
        let e = ProjectRole::parse("boss", "role").unwrap_err();
        assert_eq!(e.message, "must be one of: owner, admin, member, viewer");
    }

    #[test]
    fn priority_ranks_urgent_first_and_none_last() {
        let mut all: Vec<Priority> = (0..=4).map(|v| Priority::new(v, "priority").unwrap()).collect();
        all.sort_by_key(|p| p.rank());
        assert_eq!(
            all.iter().map(|p| p.value()).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 0]
        );
        for p in all {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
        assert!(Priority::new(5, "priority").is_err());
        assert!(Priority::new(-1, "priority").is_err());
        assert_eq!(Priority::from_rank(0), None);
    }

    proptest! {
        #[test]
        fn project_name_pattern_agrees_with_the_parser(s in r"[ \ta-zA-Zé0-9._!/\u{3164}\u{200b}\u{17b4}-]{0,12}") {
            prop_assert_eq!(ProjectName::parse(&s).is_ok(), matches(PROJECT_NAME_PATTERN, &s), "{:?}", s);
        }

        #[test]
        fn title_pattern_agrees_with_the_parser(
            s in r"[ \t\n\u{0}\u{7f}\u{85}\u{202a}\u{202e}\u{2066}\u{2069}\u{200d}\u{fe0f}\u{3000}a-zé👩]{0,8}"
        ) {
            prop_assert_eq!(TaskTitle::parse(&s).is_ok(), matches(TASK_TITLE_PATTERN, &s), "{:?}", s);
        }

        #[test]
        fn label_pattern_agrees_with_the_parser(
            s in r"[ \t\u{1}\u{ad}\u{200b}\u{200e}\u{202e}\u{fe0f}\u{feff}\u{e0041}a-z]{0,33}"
        ) {
            prop_assert_eq!(LabelName::parse(&s).is_ok(), matches(LABEL_NAME_PATTERN, &s), "{:?}", s);
        }

        #[test]
        fn comment_pattern_agrees_with_the_parser(
            s in r"[ \t\n\r\u{0}\u{b}\u{7f}\u{85}\u{202e}\u{2067}\u{200d}\u{3000}a-zé]{0,8}"
        ) {
            prop_assert_eq!(CommentBody::parse(&s).is_ok(), matches(COMMENT_BODY_PATTERN, &s), "{:?}", s);
        }

        #[test]
        fn description_pattern_agrees_with_the_parser(
            s in r"[ \t\n\r\u{0}\u{b}\u{7f}\u{85}\u{202e}\u{2067}\u{200d}a-zé]{1,8}"
        ) {
            prop_assert_eq!(
                parse_description(Some(&s), 100).is_ok(),
                matches(DESCRIPTION_PATTERN, &s),
                "{:?}",
                s
            );
        }

        #[test]
        fn key_pattern_agrees_with_the_parser(s in r"[A-Za-z0-9-]{0,12}") {
            prop_assert_eq!(ProjectKey::parse(&s).is_ok(), matches(PROJECT_KEY_PATTERN, &s), "{:?}", s);
        }
    }
}
