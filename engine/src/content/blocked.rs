//! Blocked content: a tenant's list of regular expressions that a body must
//! not match (suppressed as `content_blocked`, docs/contracts.md#outcomes). Typical uses:
//! SHAFT content carriers filter, threats a collector may not make (FDCPA 15
//! USC 1692d/e), URL shorteners carriers distrust.

use regex::{Regex, RegexSet, RegexSetBuilder};

/// Compiled blocked-content patterns of one tenant, built once when the policy
/// loads. Matching is one pass over the body for all patterns (`RegexSet`),
/// in time linear in the body whatever the patterns (no backtracking: a
/// tenant's pattern cannot stall the dispatch path). Case-insensitivity is the
/// pattern author's choice, with `(?i)`.
#[derive(Debug, Clone, Default)]
pub struct BlockedContent {
    /// `None` for an empty list: checking then costs one branch.
    set: Option<RegexSet>,
}

/// Upper bound on the compiled size of a tenant's pattern set, so that one
/// tenant's config cannot take the memory of the whole process.
const SIZE_LIMIT: usize = 16 << 20;

impl BlockedContent {
    /// Compiles `patterns`. The error names the offending pattern and why: it
    /// is not a valid regex, or it matches the empty string (and so every
    /// body, e.g. `a*`: almost certainly a mistake that would block a
    /// tenant's entire traffic).
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Ok(BlockedContent { set: None });
        }
        for pattern in patterns {
            let re = Regex::new(pattern)
                .map_err(|e| format!("blocked-content pattern {pattern:?} is invalid: {e}"))?;
            if re.is_match("") {
                return Err(format!(
                    "blocked-content pattern {pattern:?} matches the empty string, so it would block every message"
                ));
            }
        }
        let set = RegexSetBuilder::new(patterns)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| format!("blocked-content patterns do not compile together: {e}"))?;
        Ok(BlockedContent { set: Some(set) })
    }

    /// The first pattern (in configuration order) that `body` matches, for
    /// the suppression reason; `None` when the body is clean.
    pub fn check(&self, body: &str) -> Option<&str> {
        let set = self.set.as_ref()?;
        // `is_match` can stop at the first match; the full set of matches is
        // computed only for the rare blocked body.
        if !set.is_match(body) {
            return None;
        }
        let first = set.matches(body).into_iter().next()?;
        set.patterns().get(first).map(String::as_str)
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.set.as_ref().map_or(0, RegexSet::len)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_list_never_matches() {
        let blocked = BlockedContent::new(&[]).unwrap();
        assert!(blocked.is_empty());
        assert_eq!(blocked.check("anything at all"), None);
        assert_eq!(BlockedContent::default().check(""), None);
    }

    /// (body, first matching pattern, why).
    #[test]
    fn check_rows() {
        let blocked = BlockedContent::new(&patterns(&[
            r"(?i)\barrest(ed)?\b",
            r"(?i)\bjail\b",
            r"bit\.ly/",
            r"(?i)\b(weed|cannabis)\b",
        ]))
        .unwrap();
        assert_eq!(blocked.len(), 4);
        let rows: &[(&str, Option<&str>, &str)] = &[
            ("Your payment is due 5/1.", None, "clean body"),
            (
                "You will be ARRESTED",
                Some(r"(?i)\barrest(ed)?\b"),
                "(?i) makes it case-insensitive (FDCPA 1692e(4) threat)",
            ),
            ("Pay or go to jail", Some(r"(?i)\bjail\b"), "second pattern"),
            (
                "jail or arrest",
                Some(r"(?i)\barrest(ed)?\b"),
                "two match: the first in config order wins",
            ),
            ("see bit.ly/x", Some(r"bit\.ly/"), "shortener"),
            ("see BIT.LY/x", None, "no (?i): case-sensitive as written"),
            ("Jailbreak your phone", None, "word boundary respected"),
            (
                "CBD and Cannabis",
                Some(r"(?i)\b(weed|cannabis)\b"),
                "SHAFT",
            ),
        ];
        for &(body, want, why) in rows {
            assert_eq!(blocked.check(body), want, "{why}");
        }
    }

    #[test]
    fn errors_name_the_pattern() {
        let err = BlockedContent::new(&patterns(&["ok", "(unclosed"])).unwrap_err();
        assert!(err.contains("\"(unclosed\""), "{err}");
        let err = BlockedContent::new(&patterns(&["fine", "a*"])).unwrap_err();
        assert!(
            err.contains("\"a*\"") && err.contains("empty string"),
            "{err}"
        );
    }
}
