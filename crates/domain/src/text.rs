//! The text policy: which characters free text written by a client may hold. Every value
//! type that holds such text (names, titles, descriptions, comments, search terms, webhook
//! URLs) checks it with one of three rules, so a character is accepted or refused the same
//! way everywhere. The rules and their reasons are in `docs/security.md` ("Text").
//!
//! - [`TextRule::Name`]: what identifies a person or a thing to others (user, project and
//!   label names). No control character and no invisible character at all (Unicode's
//!   `Default_Ignorable_Code_Point`: zero-width characters, bidirectional controls and
//!   marks, variation selectors, fillers, tags), so two names that look the same are the
//!   same name.
//! - [`TextRule::Line`]: other one-line text (task titles, search terms, URLs). No control
//!   character and no bidirectional formatting control (embeddings, overrides, isolates),
//!   which reorder what is shown ("Trojan Source"); joiners and variation selectors stay,
//!   since scripts and emoji need them.
//! - [`TextRule::Prose`]: multi-line text (descriptions, comments). As `Line`, but line
//!   breaks (`\n`, `\r`) and tabs are kept.
//!
//! The `*_CLASS` constants are the same sets as bodies of regex character classes, for the
//! patterns the OpenAPI document publishes; property tests keep both in agreement.

use std::fmt;

use crate::FieldError;

/// Which characters a piece of text may hold; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRule {
    Name,
    Line,
    Prose,
}

/// Bidirectional formatting controls: LRE, RLE, PDF, LRO, RLO (U+202A–U+202E) and LRI, RLI,
/// FSI, PDI (U+2066–U+2069). They change the order in which the text around them is shown.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt): characters
/// that are shown as nothing at all when a font has no glyph for them.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// C0 and C1 control characters and DEL (`char::is_control`), as a class body.
macro_rules! control_class {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// Control characters but tab, line feed and carriage return, as a class body.
macro_rules! prose_control_class {
    () => {
        r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    };
}

/// [`is_bidi_control`] as a class body.
macro_rules! bidi_class {
    () => {
        r"\u202a-\u202e\u2066-\u2069"
    };
}

/// [`is_default_ignorable`] as a class body. The characters beyond U+FFFF are written
/// as themselves: regex dialects disagree on how to escape them, not on what they are.
macro_rules! ignorable_class {
    () => {
        concat!(
            r"\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e",
            r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8",
            "\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}"
        )
    };
}

/// White space as Rust's `char::is_whitespace` (what `str::trim` removes), as a class body.
macro_rules! ws_class {
    () => {
        r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

pub const CONTROL_CLASS: &str = control_class!();
pub const PROSE_CONTROL_CLASS: &str = prose_control_class!();
pub const BIDI_CLASS: &str = bidi_class!();
pub const IGNORABLE_CLASS: &str = ignorable_class!();

/// Prose (a description): any number of characters the [`TextRule::Prose`] rule accepts.
pub const PROSE_PATTERN: &str = concat!("^[^", prose_control_class!(), bidi_class!(), "]*$");

/// A search term or another line checked by [`TextRule::Line`] only.
pub const LINE_PATTERN: &str = concat!("^[^", control_class!(), bidi_class!(), "]*$");

/// The first character `rule` refuses in `text`, if any, with the message that says why.
fn refused(text: &str, rule: TextRule) -> Option<&'static str> {
    for c in text.chars() {
        if c.is_control() && !(rule == TextRule::Prose && matches!(c, '\n' | '\r' | '\t')) {
            return Some(match rule {
                TextRule::Prose => "must not contain control characters other than line breaks and tabs",
                TextRule::Name | TextRule::Line => "must not contain control characters",
            });
        }
        match rule {
            TextRule::Name if is_default_ignorable(c) => {
                return Some(
                    "must not contain invisible characters (zero-width, bidirectional, variation selectors, fillers)",
                );
            }
            TextRule::Line | TextRule::Prose if is_bidi_control(c) => {
                return Some(
                    "must not contain bidirectional formatting characters (U+202A–U+202E, U+2066–U+2069)",
                );
            }
            _ => {}
        }
    }
    None
}

/// Checks `text` against `rule`; the error names `field`.
pub fn check(text: &str, field: &str, rule: TextRule) -> Result<(), FieldError> {
    match refused(text, rule) {
        Some(message) => Err(FieldError::new(field, message)),
        None => Ok(()),
    }
}

/// Whether `rule` accepts every character of `text`.
pub fn accepts(text: &str, rule: TextRule) -> bool {
    refused(text, rule).is_none()
}

/// A search term (`q`): at most `max` characters as sent, checked by [`TextRule::Line`],
/// trimmed; an empty term is no term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    pub fn parse(raw: &str, field: &str, max: usize) -> Result<Option<Self>, FieldError> {
        if raw.chars().count() > max {
            return Err(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
        check(raw, field, TextRule::Line)?;
        let term = raw.trim();
        Ok((!term.is_empty()).then(|| Self(term.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for SearchTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RULES: [TextRule; 3] = [TextRule::Name, TextRule::Line, TextRule::Prose];

    /// Any character, with the ones the rules are about drawn often.
    fn any_char() -> impl Strategy<Value = char> {
        let special = prop::sample::select(vec![
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{7}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{ad}',
            '\u{61c}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{e0041}',
            '\u{1d173}',
            ' ',
            'a',
            'é',
            'Ж',
            '漢',
            '👩',
            '-',
        ]);
        prop_oneof![3 => special, 2 => any::<char>()]
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop::collection::vec(any_char(), 0..40).prop_map(|v| v.into_iter().collect())
    }

    fn matches(pattern: &str, s: &str) -> bool {
        use std::collections::HashMap;
        use std::sync::{LazyLock, Mutex};
        static COMPILED: LazyLock<Mutex<HashMap<String, fancy_regex::Regex>>> =
            LazyLock::new(Default::default);
        let mut compiled = COMPILED.lock().unwrap();
        let re = compiled
            .entry(pattern.to_owned())
            .or_insert_with(|| fancy_regex::Regex::new(pattern).unwrap());
        re.is_match(s).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No rule ever accepts a control character, but prose keeps line breaks and tabs.
        #[test]
        fn control_characters_are_never_accepted(s in any_text()) {
            for rule in RULES {
                let has_control = s.chars().any(|c| {
                    c.is_control() && !(rule == TextRule::Prose && matches!(c, '\n' | '\r' | '\t'))
                });
                if has_control {
                    prop_assert!(!accepts(&s, rule), "{:?} accepted {:?}", rule, s);
                }
            }
        }

        /// Bidirectional controls are refused by every rule; names refuse everything invisible.
        #[test]
        fn direction_controls_and_invisible_names_are_never_accepted(s in any_text()) {
            if s.chars().any(is_bidi_control) {
                for rule in RULES {
                    prop_assert!(!accepts(&s, rule), "{:?} accepted {:?}", rule, s);
                }
            }
            if s.chars().any(is_default_ignorable) {
                prop_assert!(!accepts(&s, TextRule::Name), "{:?}", s);
            }
        }

        /// What a rule refuses is exactly what its reasons say: nothing else is refused.
        #[test]
        fn accepted_text_is_exactly_text_without_refused_characters(s in any_text()) {
            let clean = |keep: &dyn Fn(char) -> bool| s.chars().all(keep);
            prop_assert_eq!(
                accepts(&s, TextRule::Name),
                clean(&|c| !c.is_control() && !is_default_ignorable(c))
            );
            prop_assert_eq!(
                accepts(&s, TextRule::Line),
                clean(&|c| !c.is_control() && !is_bidi_control(c))
            );
            prop_assert_eq!(
                accepts(&s, TextRule::Prose),
                clean(&|c| (!c.is_control() || matches!(c, '\n' | '\r' | '\t')) && !is_bidi_control(c))
            );
        }

        /// The published patterns accept exactly what the rules accept.
        #[test]
        fn patterns_agree_with_the_rules(s in any_text()) {
            prop_assert_eq!(matches(PROSE_PATTERN, &s), accepts(&s, TextRule::Prose), "{:?}", s);
            prop_assert_eq!(matches(LINE_PATTERN, &s), accepts(&s, TextRule::Line), "{:?}", s);
            let ignorable = format!("^[^{IGNORABLE_CLASS}]*$");
            prop_assert_eq!(matches(&ignorable, &s), !s.chars().any(is_default_ignorable), "{:?}", s);
        }

        /// An accepted search term is the input trimmed, and parses to itself again.
        #[test]
        fn accepted_search_terms_round_trip(s in any_text()) {
            if let Ok(Some(term)) = SearchTerm::parse(&s, "q", 100) {
                prop_assert_eq!(term.as_str(), s.trim());
                prop_assert_eq!(SearchTerm::parse(term.as_str(), "q", 100).unwrap(), Some(term.clone()));
            }
        }
    }

    #[test]
    fn messages_name_the_field_and_the_reason() {
        let e = check("a\0b", "description", TextRule::Prose).unwrap_err();
        assert_eq!(e.field, "description");
        assert!(e.message.contains("control"), "{}", e.message);
        assert!(check("a\nb\tc\r\n", "body", TextRule::Prose).is_ok());
        assert!(check("a\nb", "title", TextRule::Line).is_err());
        let e = check("x\u{202E}y", "title", TextRule::Line).unwrap_err();
        assert!(e.message.contains("bidirectional"), "{}", e.message);
        assert!(check("👩\u{200D}💻 ⚠\u{FE0F}", "title", TextRule::Line).is_ok());
        let e = check("A\u{200B}nn", "name", TextRule::Name).unwrap_err();
        assert!(e.message.contains("invisible"), "{}", e.message);
        assert_eq!(
            SearchTerm::parse("  fix ", "q", 10).unwrap().unwrap().as_str(),
            "fix"
        );
        assert_eq!(SearchTerm::parse("   ", "q", 5).unwrap(), None);
        assert!(SearchTerm::parse("toolong", "q", 5).is_err());
        assert!(SearchTerm::parse("%\0", "q", 5).is_err());
    }
}
