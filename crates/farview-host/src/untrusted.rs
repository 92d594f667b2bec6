//! Client-supplied strings in logs. A device controls its client name, model paths, upload names
//! and session ids, and it may send them before it has authenticated: written raw, a newline
//! forges a log line, an ANSI escape repaints an operator's terminal, and a 1 MiB name writes a
//! 1 MiB line. Every such string is logged through [`Untrusted`], which escapes and caps it.

use std::fmt;

/// Longest part of a client string that reaches a log line, in characters.
pub(crate) const MAX_LOGGED_CHARS: usize = 128;

/// Displays a client-supplied string safely for a log line: control characters (newlines, ANSI
/// escapes, NUL, DEL, bidi overrides) are escaped as `\u{..}`, and the text is cut at
/// [`MAX_LOGGED_CHARS`] characters with the original length noted.
pub(crate) struct Untrusted<'a>(pub(crate) &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_LOGGED_CHARS {
                return write!(f, "…({} bytes)", self.0.len());
            }
            if needs_escape(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else if c == '\\' {
                f.write_str("\\\\")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_cannot_forge_a_log_line() {
        let name = "cli\n2026-11-28T00:00:00Z  INFO forged: admin logged in\x1b[2J\x1b[31m";
        let shown = Untrusted(name).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(shown.contains("\\u{a}2026-11-28"), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    }

    #[test]
    fn long_strings_are_capped_with_their_length() {
        let name = "x".repeat(1 << 20);
        let shown = Untrusted(&name).to_string();
        assert!(shown.len() < 200, "{} bytes logged", shown.len());
        assert!(shown.ends_with("…(1048576 bytes)"), "{shown}");
        assert_eq!(Untrusted("short").to_string(), "short");
    }

    #[test]
    fn bidi_overrides_and_backslashes_are_visible() {
        assert_eq!(Untrusted("a\u{202e}b").to_string(), "a\\u{202e}b");
        // A literal backslash cannot be confused with an escape we wrote.
        assert_eq!(Untrusted("\\u{a}").to_string(), "\\\\u{a}");
    }
}
