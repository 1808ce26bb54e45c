//! Redis' glob patterns, as `KEYS` and `SCAN … MATCH` read them.
//!
//! `*` matches any run of bytes (none included), `?` one byte, `[abc]` one of a set, `[^abc]` one
//! byte outside it, `[a-z]` a range (written either way round), and `\x` the byte `x` itself,
//! inside a set too. Matching is on bytes, case-sensitive, like the
//! server's. Ferry filters with these so that a pattern means the same in a filter as it does in
//! `SCAN MATCH` on the source: what a user tries there is what the migration moves.
//!
//! Redis reads an unterminated `[` as if closed at the end of the pattern and a trailing `\` as
//! a literal `\`; those are accidents of its implementation more than meanings, so [`check`]
//! refuses them and asks for the pattern to be written out.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of bytes.
    Star,
    /// `?`: one byte.
    Any,
    /// One byte in (or, negated, not in) the set.
    Set { negated: bool, items: Vec<SetItem> },
    /// One byte, as written (`\` escapes included).
    Byte(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetItem {
    One(u8),
    Range(u8, u8),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The pattern is a literal prefix followed by one `*` (`session:*`), the common case: a
    /// prefix comparison, no backtracking.
    prefix: Option<Vec<u8>>,
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("`[` at byte {0} has no closing `]` (write `\\[` for a literal bracket)")]
    UnclosedSet(usize),
    #[error("the pattern ends with a lone `\\` (write `\\\\` for a literal backslash)")]
    TrailingEscape,
}

/// Checks a pattern without keeping it.
pub fn check(pattern: &str) -> Result<(), GlobError> {
    Glob::new(pattern.as_bytes()).map(|_| ())
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Result<Glob, GlobError> {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' => {
                    // Runs of stars match what one does.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                b'\\' => {
                    let &b = pattern.get(i + 1).ok_or(GlobError::TrailingEscape)?;
                    tokens.push(Token::Byte(b));
                    i += 2;
                }
                b'[' => {
                    let (token, next) = parse_set(pattern, i)?;
                    tokens.push(token);
                    i = next;
                }
                b => {
                    tokens.push(Token::Byte(b));
                    i += 1;
                }
            }
        }
        let prefix = match tokens.split_last() {
            Some((Token::Star, head)) => head
                .iter()
                .map(|t| match t {
                    Token::Byte(b) => Some(*b),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        Ok(Glob { tokens, prefix })
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &[u8]) -> bool {
        if let Some(prefix) = &self.prefix {
            return key.starts_with(prefix);
        }
        // Iterative matching with one backtrack point: every token but `*` takes exactly one
        // byte, so on a mismatch the last `*` takes one byte more and the rest tries again.
        let (mut t, mut k) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while k < key.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, k));
                    t += 1;
                    continue;
                }
                Some(token) if one(token, key[k]) => {
                    t += 1;
                    k += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sk)) => {
                    star = Some((st, sk + 1));
                    t = st + 1;
                    k = sk + 1;
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|t| *t == Token::Star)
    }
}

fn one(token: &Token, b: u8) -> bool {
    match token {
        Token::Star => false,
        Token::Any => true,
        Token::Byte(x) => *x == b,
        Token::Set { negated, items } => {
            let hit = items.iter().any(|item| match *item {
                SetItem::One(x) => x == b,
                SetItem::Range(lo, hi) => (lo.min(hi)..=lo.max(hi)).contains(&b),
            });
            hit != *negated
        }
    }
}

/// `[…]` starting at `at`: the token and the index after its `]`.
fn parse_set(pattern: &[u8], at: usize) -> Result<(Token, usize), GlobError> {
    let mut i = at + 1;
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let Some(&b) = pattern.get(i) else {
            return Err(GlobError::UnclosedSet(at));
        };
        match b {
            b'\\' => {
                let &e = pattern.get(i + 1).ok_or(GlobError::UnclosedSet(at))?;
                items.push(SetItem::One(e));
                i += 2;
            }
            b']' => return Ok((Token::Set { negated, items }, i + 1)),
            // `a-z` (Redis reads the bytes around `-` raw, escapes and all).
            _ if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                items.push(SetItem::Range(b, pattern[i + 2]));
                i += 3;
            }
            _ => {
                items.push(SetItem::One(b));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        Glob::new(pattern.as_bytes())
            .unwrap()
            .matches(key.as_bytes())
    }

    #[test]
    fn stars_and_questions_match_as_keys_does() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:"));
        assert!(m("user:*", "user:42"));
        assert!(!m("user:*", "users:42"));
        assert!(m("*:42", "user:42"));
        assert!(!m("*:42", "user:421"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("**x", "x"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abc", "ab"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn sets_ranges_negation_and_escapes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(
            m("h[b-a]llo", "hallo"),
            "ranges written backwards, as Redis allows"
        );
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "aXb"));
        assert!(m(r"[\]]", "]"));
        assert!(m(r"\[x\]", "[x]"));
        assert!(m("[*]", "*"));
        assert!(!m("[*]", "a"));
        assert!(m("x[ab]*", "xbyz"));
    }

    #[test]
    fn matching_is_on_bytes_and_case_sensitive() {
        let g = Glob::new(b"k?").unwrap();
        assert!(g.matches(&[b'k', 0xff]));
        assert!(!m("User:*", "user:1"));
    }

    #[test]
    fn unclosed_sets_and_trailing_escapes_are_refused() {
        assert_eq!(Glob::new(b"a[bc"), Err(GlobError::UnclosedSet(1)));
        assert_eq!(Glob::new(b"a\\"), Err(GlobError::TrailingEscape));
        assert!(check("a[b]\\\\").is_ok());
    }
}
