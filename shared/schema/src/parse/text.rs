//! Small char-boundary-safe helpers shared by the text-line parsers.
//!
//! Every split here happens at an ASCII delimiter found with `find` /
//! `split_once`, so the resulting slices always lie on char boundaries.

/// At most `max` bytes of `s`, cut back to a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Splits off the first token up to a single space. The token must be
/// non-empty; the rest is what follows the space ("" when the token ends the
/// text).
pub(crate) fn token(s: &str) -> Option<(&str, &str)> {
    let (tok, rest) = s.split_once(' ').unwrap_or((s, ""));
    if tok.is_empty() {
        None
    } else {
        Some((tok, rest))
    }
}

/// Splits off the first token up to any whitespace; leading whitespace is
/// skipped. Returns `None` at the end of the text.
pub(crate) fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(s.split_once(char::is_whitespace).unwrap_or((s, "")))
}

/// Reads a double-quoted string at the start of `s`. A backslash followed by
/// one of `escapable` yields that character; any other backslash is kept
/// literally. Returns the unescaped content and the text after the closing
/// quote, or `None` when `s` does not start with a quote or the quote is never
/// closed.
pub(crate) fn quoted<'a>(s: &'a str, escapable: &[char]) -> Option<(String, &'a str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, body.get(i + 1..)?)),
            '\\' => match chars.next() {
                Some((_, next)) if escapable.contains(&next) => out.push(next),
                Some((_, next)) => {
                    out.push('\\');
                    out.push(next);
                }
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn token_and_word() {
        assert_eq!(token("a b c"), Some(("a", "b c")));
        assert_eq!(token("abc"), Some(("abc", "")));
        assert_eq!(token(" abc"), None);
        assert_eq!(word("  a\tb"), Some(("a", "b")));
        assert_eq!(word("   "), None);
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            quoted(r#""a \"b\" c\\d \x" rest"#, &['"', '\\']),
            Some((r#"a "b" c\d \x"#.to_owned(), " rest"))
        );
        assert_eq!(quoted(r#""é""#, &['"']), Some(("é".to_owned(), "")));
        assert_eq!(quoted(r#""unterminated"#, &['"']), None);
        assert_eq!(quoted(r#""ends in backslash\"#, &['"']), None);
        assert_eq!(quoted("no quote", &['"']), None);
    }
}
