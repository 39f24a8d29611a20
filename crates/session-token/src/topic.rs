//! MQTT topic names and topic filters.
//!
//! Parsing follows the MQTT 5 rules (§4.7): a topic is 1 to 65 535 bytes of UTF-8 without
//! NUL; levels are separated by `/` and may be empty; in a filter `+` and `#` must fill a
//! whole level and `#` may only be the last level; a topic name contains no wildcard.
//!
//! The *coverage* relation used by access decisions differs from broker delivery in one
//! deliberate way: here `#` stands for **one or more** levels, so the grant `/S/#` covers
//! everything strictly below `/S` but not `/S` itself. MQTT also delivers messages published
//! to `/S` to a `/S/#` subscriber, but no token ever grants publishing to `/S`, so nothing
//! can arrive there from a device. Wildcards in the first level never cover topics that
//! start with `$` (broker-internal topics such as `$SYS/...`).

use std::fmt;

/// The longest topic or filter MQTT can carry (a two-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than {MAX_TOPIC_BYTES} bytes")]
    TooLong,
    #[error("topic contains a NUL character")]
    ContainsNul,
    #[error("a topic name may not contain the wildcards '+' or '#'")]
    WildcardInName,
    #[error("'+' must fill a whole topic level")]
    PartialSingleWildcard,
    #[error("'#' must fill a whole level and be the last level")]
    MisplacedMultiWildcard,
}

/// One level of a topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterLevel<'a> {
    /// A literal level (possibly empty).
    Exact(&'a str),
    /// `+`: exactly one level, whatever it is.
    AnyOne,
    /// `#`: the rest of the topic (one or more levels for coverage, see the module docs).
    AnyRest,
}

/// A validated MQTT topic name: what a PUBLISH carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicName(String);

/// A validated MQTT topic filter: what a SUBSCRIBE or a token grant carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    text: String,
    /// For a filter of literal levels ending in `#` (a session's `/S/#`), the length of
    /// the part before the `#`: such a grant covers exactly the topics starting with that
    /// part, which a per-message check can test without splitting the topic into levels.
    literal_prefix: Option<usize>,
}

/// Does `bytes` hold a character a topic name may not contain (NUL, `+`, `#`)? These are
/// ASCII, and UTF-8 never uses ASCII bytes inside a multi-byte character, so a byte scan
/// finds exactly those characters.
fn has_forbidden_name_byte(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| matches!(b, 0 | b'+' | b'#'))
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::ContainsNul);
    }
    Ok(())
}

impl TopicName {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Checks `s` by the topic-name rules without copying it (the broker's per-message
    /// path uses this: no allocation per message).
    pub fn validate(s: &str) -> Result<(), TopicError> {
        // One pass over the bytes for the common case; a name breaking a rule takes the
        // ordered checks below, which say which rule it breaks.
        if !s.is_empty() && s.len() <= MAX_TOPIC_BYTES && !has_forbidden_name_byte(s.as_bytes()) {
            return Ok(());
        }
        check_common(s)?;
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the name, in order (`"/a"` has the levels `""` and `"a"`).
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl TopicFilter {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            match level {
                "#" if levels.peek().is_some() => return Err(TopicError::MisplacedMultiWildcard),
                "#" | "+" => {}
                _ if level.contains('#') => return Err(TopicError::MisplacedMultiWildcard),
                _ if level.contains('+') => return Err(TopicError::PartialSingleWildcard),
                _ => {}
            }
        }
        Ok(Self {
            text: s.to_owned(),
            literal_prefix: literal_prefix(s),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The levels of the filter, in order.
    pub fn levels(&self) -> impl Iterator<Item = FilterLevel<'_>> {
        self.text.split('/').map(|level| match level {
            "+" => FilterLevel::AnyOne,
            "#" => FilterLevel::AnyRest,
            exact => FilterLevel::Exact(exact),
        })
    }

    /// Whether this filter, used as a grant, covers the topic `topic`.
    pub fn covers_topic(&self, topic: &TopicName) -> bool {
        self.covers_valid_topic(topic.as_str())
    }

    /// `covers_topic` for a string already checked with [`TopicName::validate`].
    pub(crate) fn covers_valid_topic(&self, topic: &str) -> bool {
        match self.literal_prefix {
            // `#` covers one or more levels, and every topic with this prefix has at least
            // one (possibly empty) level after it; no wildcard touches the first level.
            Some(length) => topic
                .as_bytes()
                .starts_with(&self.text.as_bytes()[..length]),
            None => covers(self.levels(), topic.split('/').map(FilterLevel::Exact)),
        }
    }

    /// For a grant of literal levels ending in `#` and a topic that starts with those
    /// levels: whether the topic is a valid name (and so covered). `None` when the
    /// shortcut does not apply and the full rules must decide.
    ///
    /// The prefix comes from a valid filter without wildcards, so it holds none of the
    /// characters a name may not contain; only the rest of the topic needs the check.
    pub(crate) fn covers_by_prefix(&self, topic: &str) -> Option<bool> {
        let prefix = &self.text.as_bytes()[..self.literal_prefix?];
        let rest = topic.as_bytes().strip_prefix(prefix)?;
        Some(topic.len() <= MAX_TOPIC_BYTES && !has_forbidden_name_byte(rest))
    }

    /// [`covers_valid_topic`](Self::covers_valid_topic) by levels, whatever the filter.
    #[cfg(test)]
    fn covers_valid_topic_by_levels(&self, topic: &str) -> bool {
        covers(self.levels(), topic.split('/').map(FilterLevel::Exact))
    }

    /// Whether every topic `other` can match is covered by this filter: the subset rule
    /// that decides whether a subscription stays inside a grant.
    pub fn covers_filter(&self, other: &TopicFilter) -> bool {
        covers(self.levels(), other.levels())
    }
}

/// For a valid filter `{literal levels}/#` with at least one literal level, the length of
/// `{literal levels}/`.
fn literal_prefix(filter: &str) -> Option<usize> {
    let prefix = filter.strip_suffix('#')?;
    (prefix.ends_with('/') && !prefix.contains(['+', '#'])).then_some(prefix.len())
}

/// Does the grant (given as levels) cover everything the request (given as levels) can match?
fn covers<'g, 'r>(
    grant: impl Iterator<Item = FilterLevel<'g>>,
    request: impl Iterator<Item = FilterLevel<'r>>,
) -> bool {
    let mut request = request.peekable();
    for (index, granted) in grant.enumerate() {
        let Some(requested) = request.next() else {
            // The request's topics end here but the grant needs more levels.
            return false;
        };
        // Wildcards in the first level never reach `$` topics, so a literal `$...` first
        // level is outside any first-level wildcard grant.
        let dollar_level =
            index == 0 && matches!(requested, FilterLevel::Exact(l) if l.starts_with('$'));
        match granted {
            FilterLevel::AnyRest => return !dollar_level,
            FilterLevel::AnyOne => match requested {
                FilterLevel::Exact(_) if dollar_level => return false,
                FilterLevel::Exact(_) | FilterLevel::AnyOne => {}
                FilterLevel::AnyRest => return false,
            },
            FilterLevel::Exact(g) => match requested {
                FilterLevel::Exact(r) if r == g => {}
                _ => return false,
            },
        }
    }
    request.peek().is_none()
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::parse(s).expect("valid filter in test")
    }

    fn name(s: &str) -> TopicName {
        TopicName::parse(s).expect("valid topic in test")
    }

    #[test]
    fn filters_follow_the_mqtt_rules() {
        for ok in [
            "#",
            "+",
            "/",
            "a/#",
            "/S/+/x",
            "+/+",
            "a//b",
            "$SYS/#",
            "sport/+/player1",
        ] {
            assert!(TopicFilter::parse(ok).is_ok(), "{ok} should parse");
        }
        assert_eq!(TopicFilter::parse(""), Err(TopicError::Empty));
        assert_eq!(
            TopicFilter::parse("a/#/b"),
            Err(TopicError::MisplacedMultiWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a#"),
            Err(TopicError::MisplacedMultiWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a/b+"),
            Err(TopicError::PartialSingleWildcard)
        );
        assert_eq!(TopicFilter::parse("a\0b"), Err(TopicError::ContainsNul));
        assert_eq!(
            TopicFilter::parse(&"a".repeat(MAX_TOPIC_BYTES + 1)),
            Err(TopicError::TooLong)
        );
        assert!(TopicFilter::parse(&"a".repeat(MAX_TOPIC_BYTES)).is_ok());
    }

    #[test]
    fn names_are_judged_by_the_first_rule_they_break() {
        // The one-pass check must give the same answer, and the same error, as the rules
        // taken in order.
        let too_long = "a".repeat(MAX_TOPIC_BYTES + 1);
        for (topic, expected) in [
            ("/S/x", Ok(())),
            ("/S/\u{e9}t\u{e9}/\u{1f600}", Ok(())),
            ("", Err(TopicError::Empty)),
            (too_long.as_str(), Err(TopicError::TooLong)),
            ("a/+\0", Err(TopicError::ContainsNul)),
            ("a\0/#", Err(TopicError::ContainsNul)),
            ("a/\u{e9}+", Err(TopicError::WildcardInName)),
            ("#", Err(TopicError::WildcardInName)),
        ] {
            assert_eq!(TopicName::validate(topic), expected, "{topic:?}");
        }
        assert!(TopicName::validate(&"a".repeat(MAX_TOPIC_BYTES)).is_ok());
    }

    #[test]
    fn names_refuse_wildcards() {
        assert_eq!(TopicName::parse("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse("a/#"), Err(TopicError::WildcardInName));
        assert!(TopicName::parse("/S/x").is_ok());
    }

    #[test]
    fn session_grant_covers_only_its_own_tree() {
        let grant = filter("/123456/#");
        for inside in [
            "/123456/#",
            "/123456/+",
            "/123456/+/x",
            "/123456/a/b",
            "/123456/+/#",
        ] {
            assert!(grant.covers_filter(&filter(inside)), "{inside} is inside");
        }
        for outside in [
            "#",
            "+/#",
            "/+/#",
            "/654321/#",
            "$SYS/#",
            "/123456",
            "+/123456/#",
            "/+/x",
            "/123456x/#",
        ] {
            assert!(
                !grant.covers_filter(&filter(outside)),
                "{outside} is outside"
            );
        }
        assert!(grant.covers_topic(&name("/123456/a")));
        assert!(!grant.covers_topic(&name("/123456")));
        assert!(!grant.covers_topic(&name("/654321/a")));
    }

    #[test]
    fn first_level_wildcards_never_reach_dollar_topics() {
        assert!(!filter("#").covers_topic(&name("$SYS/broker")));
        assert!(!filter("+/broker").covers_topic(&name("$SYS/broker")));
        assert!(!filter("#").covers_filter(&filter("$SYS/#")));
        assert!(filter("#").covers_filter(&filter("+/#")));
        assert!(filter("$SYS/#").covers_topic(&name("$SYS/broker")));
        assert!(filter("a/+").covers_topic(&name("a/$x")));
    }

    #[test]
    fn the_prefix_shortcut_agrees_with_matching_by_levels() {
        let topics = [
            "/1/x", "/1/", "/1", "/1/x/y", "/12/x", "/2/x", "1/x", "/", "a", "$SYS/x", "/1//",
            "a/b/c", "a/b", "a/", "a/bc",
        ];
        for grant in [
            "/1/#", "a/b/#", "a/#", "/#", "#", "+/#", "/+/#", "a/b", "/1/+",
        ] {
            let grant = filter(grant);
            for topic in topics {
                assert_eq!(
                    grant.covers_valid_topic(topic),
                    grant.covers_valid_topic_by_levels(topic),
                    "{grant} over {topic}"
                );
            }
        }
        assert_eq!(filter("/1/#").literal_prefix, Some(3));
        assert_eq!(filter("#").literal_prefix, None);
        assert_eq!(filter("+/#").literal_prefix, None);
    }

    #[test]
    fn plus_covers_exactly_one_level() {
        let grant = filter("a/+");
        assert!(grant.covers_topic(&name("a/b")));
        assert!(grant.covers_topic(&name("a/")));
        assert!(!grant.covers_topic(&name("a/b/c")));
        assert!(!grant.covers_topic(&name("a")));
        assert!(!grant.covers_filter(&filter("a/#")));
    }
}
