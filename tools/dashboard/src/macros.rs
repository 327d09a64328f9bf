//! Grafana's PostgreSQL macros, expanded as its data source does, for the
//! macros and the variable the dashboard's panels use.

use chrono::{DateTime, Utc};

/// Why a panel's SQL could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    #[error("$__timeFilter( at byte {0} is not closed")]
    UnclosedTimeFilter(usize),
    #[error("$__timeFilter() at byte {0} has no expression")]
    EmptyTimeFilter(usize),
    #[error("a macro the dashboard does not know: {0}")]
    UnknownMacro(String),
    /// Quote doubling only protects text inside a string literal.
    #[error("$search at byte {0} is outside a quoted string literal")]
    UnquotedSearch(usize),
    /// In an `E'…'` string a backslash escapes the quote after it.
    #[error("$search at byte {0} is inside an E'' escape string")]
    SearchInEscapeString(usize),
    /// PostgreSQL text cannot hold NUL; refusing it here names the cause.
    #[error("the search text contains a NUL character")]
    NulInSearch,
}

/// Expands, in one pass over `sql` (text it inserts is never scanned again,
/// so a search text that looks like a macro stays text):
///
/// - `$__timeFilter(expr)` → `expr BETWEEN 'from' AND 'to'`
/// - `$__timeFrom()` / `$__timeTo()` → the bounds as quoted RFC 3339 literals
///   (UTC, milliseconds), as Grafana's PostgreSQL data source writes them
/// - `$search` → `search` with every `'` doubled, as Grafana escapes a text
///   variable. That is safe only inside a `'…'` literal with
///   `standard_conforming_strings` on (PostgreSQL's default; the dashboard
///   sets it for its session), so a `$search` outside one (or in an `E'…'`
///   escape string, or a comment) is refused.
pub fn expand(
    sql: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    search: &str,
) -> Result<String, MacroError> {
    if search.contains('\0') {
        return Err(MacroError::NulInSearch);
    }
    let (from, to) = (literal(from), literal(to));
    let mut out = String::with_capacity(sql.len() + 64);
    // `Some(escape)` inside a '…' literal (E'…' when `escape`).
    let mut literal: Option<bool> = None;
    let mut i = 0;
    while let Some(c) = sql[i..].chars().next() {
        let rest = &sql[i..];
        if literal.is_none() && (rest.starts_with("--") || rest.starts_with("/*")) {
            // Comments are copied as they are: a quote in one opens nothing.
            let end = if rest.starts_with("--") {
                rest.find('\n').map_or(rest.len(), |n| n + 1)
            } else {
                rest.find("*/").map_or(rest.len(), |n| n + 2)
            };
            out.push_str(&rest[..end]);
            i += end;
            continue;
        }
        if c == '\'' {
            // A doubled quote inside a literal closes and reopens it.
            literal = match literal {
                Some(_) => None,
                None => Some(is_escape_prefix(&sql[..i])),
            };
        } else if c == '$' {
            if let Some(after) = rest.strip_prefix("$__timeFilter(") {
                let open = i + "$__timeFilter(".len();
                let close = open + closing_paren(after).ok_or(MacroError::UnclosedTimeFilter(i))?;
                let expr = sql[open..close].trim();
                if expr.is_empty() {
                    return Err(MacroError::EmptyTimeFilter(i));
                }
                if expr.contains("$__") {
                    return Err(MacroError::UnknownMacro(format!("$__timeFilter({expr})")));
                }
                out.push_str(&format!("{expr} BETWEEN {from} AND {to}"));
                i = close + 1;
                continue;
            }
            if rest.starts_with("$__timeFrom()") {
                out.push_str(&from);
                i += "$__timeFrom()".len();
                continue;
            }
            if rest.starts_with("$__timeTo()") {
                out.push_str(&to);
                i += "$__timeTo()".len();
                continue;
            }
            if rest.starts_with("$__") {
                let name: String = rest
                    .chars()
                    .take_while(|c| *c == '$' || *c == '_' || c.is_ascii_alphanumeric())
                    .collect();
                return Err(MacroError::UnknownMacro(name));
            }
            if let Some(after) = rest.strip_prefix("$search")
                && !after.starts_with(|c: char| c == '_' || c.is_ascii_alphanumeric())
            {
                match literal {
                    None => return Err(MacroError::UnquotedSearch(i)),
                    Some(true) => return Err(MacroError::SearchInEscapeString(i)),
                    Some(false) => {}
                }
                out.push_str(&search.replace('\'', "''"));
                i += "$search".len();
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    Ok(out)
}

/// A panel title with `$search` replaced, for display (no quoting: it is
/// never SQL).
pub fn expand_title(title: &str, search: &str) -> String {
    title.replace("$search", search)
}

/// Whether a literal opening after `before` is an `E'…'` escape string: an
/// `E` that is not the end of a longer name.
fn is_escape_prefix(before: &str) -> bool {
    let mut back = before.chars().rev();
    matches!(back.next(), Some('E' | 'e'))
        && !back
            .next()
            .is_some_and(|c| c == '_' || c == '$' || c.is_alphanumeric())
}

fn literal(t: DateTime<Utc>) -> String {
    format!(
        "'{}'",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The offset in `s` of the `)` that closes a `(` just before `s`.
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(at),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> (DateTime<Utc>, DateTime<Utc>) {
        let t = |s| {
            DateTime::parse_from_rfc3339(s)
                .expect("a valid timestamp")
                .to_utc()
        };
        (t("2026-01-01T10:00:00Z"), t("2026-01-01T11:00:00Z"))
    }

    #[test]
    fn expands_what_grafana_would() {
        let (from, to) = range();
        assert_eq!(
            expand(
                "a AND $__timeFilter( event_time ) AND f($__timeFrom()) = '$search'",
                from,
                to,
                "it's"
            ),
            Ok("a AND event_time BETWEEN '2026-01-01T10:00:00.000Z' AND '2026-01-01T11:00:00.000Z' \
                AND f('2026-01-01T10:00:00.000Z') = 'it''s'"
                .to_string())
        );
    }

    #[test]
    fn time_filter_takes_an_expression_with_parentheses() {
        let (from, to) = range();
        assert_eq!(
            expand(
                "WHERE $__timeFilter(date_trunc('minute', t)) AND $__timeTo() > now()",
                from,
                to,
                ""
            )
            .as_deref(),
            Ok(
                "WHERE date_trunc('minute', t) BETWEEN '2026-01-01T10:00:00.000Z' AND \
                '2026-01-01T11:00:00.000Z' AND '2026-01-01T11:00:00.000Z' > now()"
            )
        );
    }

    #[test]
    fn search_text_stays_inside_its_literal() {
        let (from, to) = range();
        let hostile = "x'); DROP TABLE logs; -- $__timeFrom() $search \\'";
        let sql = expand("SELECT '$search' AS s", from, to, hostile).expect("expands");
        assert_eq!(
            sql,
            "SELECT 'x''); DROP TABLE logs; -- $__timeFrom() $search \\''' AS s"
        );
        // Every quote of the text is doubled: the literal opened before it
        // closes only after it, so the statement has exactly one literal.
        let body = &sql["SELECT '".len()..sql.len() - "' AS s".len()];
        assert!(!body.replace("''", "").contains('\''), "{body}");
    }

    #[test]
    fn a_variable_that_only_starts_with_search_is_left_alone() {
        let (from, to) = range();
        assert_eq!(
            expand("SELECT $searchable, '$search'", from, to, "w").as_deref(),
            Ok("SELECT $searchable, 'w'")
        );
    }

    #[test]
    fn refuses_what_it_cannot_expand_safely() {
        let (from, to) = range();
        assert_eq!(
            expand("WHERE x = $search", from, to, "w"),
            Err(MacroError::UnquotedSearch(10))
        );
        assert_eq!(
            expand("WHERE $__timeFilter(t", from, to, ""),
            Err(MacroError::UnclosedTimeFilter(6))
        );
        assert_eq!(
            expand("WHERE $__timeFilter( )", from, to, ""),
            Err(MacroError::EmptyTimeFilter(6))
        );
        assert_eq!(
            expand("GROUP BY $__timeGroup(t, '1m')", from, to, ""),
            Err(MacroError::UnknownMacro("$__timeGroup".into()))
        );
        assert_eq!(
            expand("SELECT '$search'", from, to, "a\0b"),
            Err(MacroError::NulInSearch)
        );
    }

    #[test]
    fn search_only_in_a_plain_literal() {
        let (from, to) = range();
        // A backslash escapes the quote after it in an E'' string.
        assert_eq!(
            expand("SELECT E'$search'", from, to, "w"),
            Err(MacroError::SearchInEscapeString(9))
        );
        // …but a name ending in e before one is not that (a typed literal).
        assert_eq!(
            expand("WHERE d = date'$search'", from, to, "2026-01-01").as_deref(),
            Ok("WHERE d = date'2026-01-01'")
        );
        assert_eq!(
            expand("SELECT 'a' || '$search' AS e", from, to, "w").as_deref(),
            Ok("SELECT 'a' || 'w' AS e")
        );
        // A quote in a comment opens no literal.
        assert_eq!(
            expand("SELECT 1 -- it's\nWHERE x = $search", from, to, "w"),
            Err(MacroError::UnquotedSearch(27))
        );
        assert_eq!(
            expand("SELECT /* it's */ '$search'", from, to, "w").as_deref(),
            Ok("SELECT /* it's */ 'w'")
        );
    }

    #[test]
    fn leaves_positional_parameters_and_dollar_quotes() {
        let (from, to) = range();
        assert_eq!(
            expand("SELECT $1, $$x$$, 'ünïcode'", from, to, "").as_deref(),
            Ok("SELECT $1, $$x$$, 'ünïcode'")
        );
    }

    #[test]
    fn titles_show_the_search_text() {
        assert_eq!(
            expand_title("Search: messages matching $search", "timeout"),
            "Search: messages matching timeout"
        );
    }
}
