//! How input is quoted back in error messages and the log: never more
//! than a bounded number of characters of it.

use std::borrow::Cow;

/// The most characters of any one piece of input (a topic, a field or node
/// name, a value) that an error message or the log quotes.
pub(crate) const MAX_ECHO: usize = 200;

/// `s` as a message may quote it: whole, or cut to `max_chars` characters,
/// the last of them "…"; at most `max_chars` characters either way.
pub(crate) fn clip(s: &str, max_chars: usize) -> Cow<'_, str> {
    if s.char_indices().nth(max_chars).is_none() {
        return Cow::Borrowed(s);
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return Cow::Borrowed("");
    };
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let mut cut = String::with_capacity(end + '…'.len_utf8());
    cut.push_str(&s[..end]);
    cut.push('…');
    Cow::Owned(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_at_a_character() {
        assert!(matches!(
            clip("edge/t/led", 200),
            Cow::Borrowed("edge/t/led")
        ));
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("abcd", 1), "…");
        assert_eq!(clip("abcd", 0), "");
        // A 65 KB topic: 199 characters of it and the ellipsis.
        let topic = format!("edge/t/{}/set", "x".repeat(65_000));
        let cut = clip(&topic, MAX_ECHO);
        assert_eq!(cut.chars().count(), MAX_ECHO);
        assert!(cut.starts_with("edge/t/xxx"));
        assert!(cut.ends_with("x…"));
        // Multibyte characters are counted as characters and never split.
        let wide = "ä🦀€".repeat(30_000);
        let cut = clip(&wide, MAX_ECHO);
        assert_eq!(cut.chars().count(), MAX_ECHO);
        assert!(cut.starts_with("ä🦀€ä🦀€"));
        assert_eq!(cut.chars().nth(198), Some('ä'));
        assert!(cut.ends_with("ä…"));
        assert_eq!(clip("ä🦀€", 3), "ä🦀€");
        assert_eq!(clip("ä🦀€x", 3), "ä🦀…");
    }
}
