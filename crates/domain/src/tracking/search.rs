//! Full-text search over tasks (title, description) and comments (docs/api/search.md).
//!
//! What the search is made of, free of any database: the words of a query and the identifier
//! it may name ([`SearchTerms`]), the rank of each kind of match (`*_SCORE`), the fold every
//! comparison uses ([`fold`]), the highlighted fragment of a hit ([`highlight`]), and the
//! port the stores implement ([`SearchIndex`]). How each database indexes and ranks:
//! adr/0020-search-index.md.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use super::{Comment, ProjectKey, Scope, Task, parse_identifier};
use crate::{FieldError, StoreError};

/// The task whose identifier (`KEEL-12`) or number (`12`) the query is.
pub const IDENTIFIER_SCORE: i32 = 100;
/// A task with every word in its title.
pub const TITLE_SCORE: i32 = 3;
/// A task with every word in its title and description together, not all in the title.
pub const DESCRIPTION_SCORE: i32 = 2;
/// A comment with every word in its body.
pub const COMMENT_SCORE: i32 = 1;

/// Case- and accent-folded text: compatibility decomposition (NFKD), combining marks
/// dropped, lower-cased. `Résumé` and `RESUME` both fold to `resume`.
pub fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The characters of a word: letters and digits of any script. Everything else (spaces,
/// punctuation, query syntax such as `"`, `*`, `:`, `(`, `-`) separates words.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// The words of a search, and the task it may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchTerms {
    /// Each word once (compared folded), as written, in the order given. A match is a
    /// prefix match of every word.
    pub words: Vec<String>,
    /// `KEEL-12` (any case): the task with that identifier ranks first.
    pub identifier: Option<(ProjectKey, i64)>,
    /// A bare number (`12`): the tasks with that number rank first.
    pub number: Option<i64>,
}

impl SearchTerms {
    /// The terms of a validated search term (`q`, at most 200 characters: at most 100
    /// words, each one index lookup).
    pub fn parse(q: &str) -> Self {
        let q = q.trim();
        let mut words: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for word in q.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
            let folded = fold(word);
            if !seen.contains(&folded) {
                seen.push(folded);
                words.push(word.to_owned());
            }
        }
        let number = (!q.is_empty() && q.len() <= 18 && q.bytes().all(|b| b.is_ascii_digit()))
            .then(|| q.parse::<i64>().ok())
            .flatten()
            .filter(|n| *n >= 1);
        Self {
            words,
            identifier: parse_identifier(q),
            number,
        }
    }

    /// Nothing to look for: no word and no task named.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.identifier.is_none() && self.number.is_none()
    }

    /// The words, folded.
    pub fn folded_words(&self) -> Vec<String> {
        self.words.iter().map(|w| fold(w)).collect()
    }
}

/// `text` escaped for HTML (element content and attribute values).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The opening and closing marks around a matched word in a [`highlight`].
pub const MARK_OPEN: &str = "<mark>";
pub const MARK_CLOSE: &str = "</mark>";

/// `text` as an HTML fragment with each word that starts with one of `folded_words` (as
/// [`fold`] sees them) between `<mark>` and `</mark>`, everything else HTML-escaped; at most
/// `max` characters of `text` around the first match, `…` marking a cut. `None` when no word
/// of `text` matches.
pub fn highlight(text: &str, folded_words: &[String], max: usize) -> Option<String> {
    // (start, end) byte ranges of the matching words.
    let mut matches: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut check = |from: usize, to: usize| {
        let word = fold(&text[from..to]);
        if folded_words
            .iter()
            .any(|w| !w.is_empty() && word.starts_with(w.as_str()))
        {
            matches.push((from, to));
        }
    };
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                check(from, i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        check(from, text.len());
    }
    let &(first, _) = matches.first()?;
    // The window: `max` characters, starting a quarter of it before the first match.
    let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let first_char = chars.partition_point(|&i| i < first);
    let from_char = if chars.len() <= max {
        0
    } else {
        first_char.saturating_sub(max / 4).min(chars.len() - max)
    };
    let to_char = (from_char + max).min(chars.len());
    let from = chars.get(from_char).copied().unwrap_or(text.len());
    let to = chars.get(to_char).copied().unwrap_or(text.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for (m_from, m_to) in matches {
        if m_to <= from || m_from >= to {
            continue;
        }
        let (m_from, m_to) = (m_from.max(from), m_to.min(to));
        escape_into(&mut out, &text[at..m_from]);
        out.push_str(MARK_OPEN);
        escape_into(&mut out, &text[m_from..m_to]);
        out.push_str(MARK_CLOSE);
        at = m_to;
    }
    escape_into(&mut out, &text[at..to]);
    if to < text.len() {
        out.push('…');
    }
    Some(out)
}

/// Which kinds of results a search returns (`types=task,comment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchKinds {
    pub tasks: bool,
    pub comments: bool,
}

impl Default for SearchKinds {
    fn default() -> Self {
        Self {
            tasks: true,
            comments: true,
        }
    }
}

impl SearchKinds {
    /// A comma list of `task` and `comment`.
    ///
    /// # Errors
    /// On `field` for any other item, or an empty list.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let mut kinds = Self {
            tasks: false,
            comments: false,
        };
        for item in raw.split(',') {
            match item {
                "task" => kinds.tasks = true,
                "comment" => kinds.comments = true,
                _ => {
                    return Err(FieldError::new(
                        field,
                        "must be a comma-separated list of task and comment",
                    ));
                }
            }
        }
        Ok(kinds)
    }
}

/// Where a result stands in the ranked order: score (descending), then the creation time of
/// the task or comment (newest first), then its id. Made of stored values only, so a page's
/// cursor stays valid while other tasks and comments change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPosition {
    pub score: i32,
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// One search: what to look for, where, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The projects searched: one (already authorized), the caller's, or all (admins).
    pub scope: Scope,
    /// Only these projects (a personal access token's limit); `None`: no limit.
    pub projects: Option<Vec<Uuid>>,
    pub terms: SearchTerms,
    pub kinds: SearchKinds,
    /// Results strictly after this position.
    pub after: Option<SearchPosition>,
    pub limit: u64,
}

/// A result: a task, or a comment with its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub score: i32,
    pub task: Task,
    pub comment: Option<Comment>,
}

impl SearchHit {
    /// The hit's place in the ranked order.
    pub fn position(&self) -> SearchPosition {
        match &self.comment {
            Some(comment) => SearchPosition {
                score: self.score,
                at: comment.created_at,
                id: comment.id,
            },
            None => SearchPosition {
                score: self.score,
                at: self.task.created_at,
                id: self.task.id,
            },
        }
    }
}

/// The search index. Tasks in the trash, and their comments, are never found.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Up to `query.limit` hits in the ranked order, after `query.after`: tasks whose title
    /// and description hold every word (as a prefix, folded) or whose identifier or number
    /// the query is, and comments whose body holds every word, of the projects in scope.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(q: &str) -> Vec<String> {
        SearchTerms::parse(q).words
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("Résumé"), "resume");
        assert_eq!(fold("ÜBERPRÜFUNG"), "uberprufung");
        assert_eq!(fold("ΣΥΝΆΝΤΗΣΗ"), fold("συναντηση"));
        assert_eq!(fold("ﬁx"), "fix");
    }

    #[test]
    fn words_are_runs_of_letters_and_digits_and_syntax_separates_them() {
        assert_eq!(words("migr"), ["migr"]);
        assert_eq!(words("  Fix LOGIN-bug "), ["Fix", "LOGIN", "bug"]);
        assert_eq!(
            words(r#""a*" OR (b:c) -d NEAR e' \f"#),
            ["a", "OR", "b", "c", "d", "NEAR", "e", "f"]
        );
        assert_eq!(words("Résumé resume RESUME"), ["Résumé"]);
        assert!(words(r#""*:()-'\"#).is_empty());
    }

    #[test]
    fn an_identifier_or_a_bare_number_names_a_task() {
        let keel = SearchTerms::parse("keel-12");
        assert_eq!(
            keel.identifier.as_ref().map(|(k, n)| (k.as_str(), *n)),
            Some(("KEEL", 12))
        );
        assert_eq!(keel.number, None);
        assert_eq!(keel.words, ["keel", "12"]);
        let twelve = SearchTerms::parse("12");
        assert_eq!((twelve.identifier.is_none(), twelve.number), (true, Some(12)));
        for q in ["fix 12", "0", "12a", "KEEL-12 x", "99999999999999999999"] {
            let terms = SearchTerms::parse(q);
            assert_eq!((terms.identifier, terms.number), (None, None), "{q}");
        }
        assert!(SearchTerms::parse("*").is_empty());
    }

    #[test]
    fn highlights_mark_prefix_matches_and_escape_the_rest() {
        let w = |q: &str| SearchTerms::parse(q).folded_words();
        assert_eq!(
            highlight("Plan the <b>migration</b> & Résumé", &w("migr resume"), 200).unwrap(),
            "Plan the &lt;b&gt;<mark>migration</mark>&lt;/b&gt; &amp; <mark>Résumé</mark>"
        );
        assert_eq!(highlight("nothing here", &w("migr"), 200), None);
        assert_eq!(
            highlight("premigration", &w("migr"), 200),
            None,
            "a prefix, not a substring"
        );
        let long = format!("{} needle {}", "a ".repeat(100), "b ".repeat(100));
        let cut = highlight(&long, &w("needle"), 40).unwrap();
        assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
        assert!(cut.contains("<mark>needle</mark>"), "{cut}");
        let text = cut.replace("<mark>", "").replace("</mark>", "");
        assert_eq!(text.trim_matches('…').chars().count(), 40, "{cut}");
    }

    #[test]
    fn kinds_parse_exactly() {
        assert_eq!(
            SearchKinds::parse("task", "types").unwrap(),
            SearchKinds {
                tasks: true,
                comments: false
            }
        );
        assert_eq!(
            SearchKinds::parse("comment,task", "types").unwrap(),
            SearchKinds::default()
        );
        for bad in ["", "tasks", "task,", "Task"] {
            assert!(SearchKinds::parse(bad, "types").is_err(), "{bad}");
        }
    }
}
