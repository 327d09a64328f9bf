//! `{placeholder}` templates, shared by every generator.

/// Copies `text`, handing each `{name}` to `fill` (which appends its value
/// to the output). Text after an unclosed `{` is copied as is.
pub(crate) fn fill_placeholders(text: &str, mut fill: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        fill(&rest[open + 1..open + close], &mut out);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill_placeholders;

    #[test]
    fn fills_each_placeholder_and_keeps_the_rest() {
        let out = fill_placeholders("a {x} b {y}{x} c", |name, out| {
            out.push_str(&name.to_uppercase())
        });
        assert_eq!(out, "a X b YX c");
        assert_eq!(
            fill_placeholders("open { brace", |_, o| o.push('!')),
            "open { brace"
        );
        assert_eq!(fill_placeholders("", |_, o| o.push('!')), "");
    }
}
