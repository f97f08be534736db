//! Field rules shared by the routes: usernames, emails, passwords, display names, and the one
//! string rule every text a peer sends obeys (no NUL or other control characters; line breaks
//! and tabs only in multi-line fields).

use serde_json::Value;

use crate::error::ApiError;

/// Fields whose text may hold line breaks and tabs: message bodies, descriptions, bios,
/// topics, reasons, passwords, and opaque client data. A string anywhere under one of these
/// keys (e.g. inside a to-device message's `messages`) may hold `\n`, `\r` and `\t`; every
/// other string is single-line. No string may hold any other control character (U+0000–U+001F,
/// U+007F–U+009F).
pub const MULTI_LINE_FIELDS: &[&str] = &[
    "content",
    "description",
    "server_description",
    "bio",
    "topic",
    "reason",
    "message",
    "messages",
    "password",
    "current_password",
    "new_password",
    "auth_data",
    "data",
];

/// The character `text` may not hold, if any (`multi_line`: line breaks and tabs allowed).
fn forbidden_char(text: &str, multi_line: bool) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() && !(multi_line && matches!(c, '\n' | '\r' | '\t')))
}

fn control_error(field: &str, c: char, multi_line: bool) -> ApiError {
    let what = if multi_line {
        "control characters other than line breaks and tabs"
    } else {
        "control characters (line breaks and tabs included)"
    };
    ApiError::validation(format!(
        "{field} may not contain {what} (found U+{:04X})",
        u32::from(c)
    ))
}

/// A single-line text (a path or query parameter, a name): no control character at all.
pub fn single_line(field: &str, text: &str) -> Result<(), ApiError> {
    match forbidden_char(text, false) {
        Some(c) => Err(control_error(field, c, false)),
        None => Ok(()),
    }
}

/// Applies the string rule to every string and object key of a JSON body (422 naming the
/// first offending field, as a dotted path like `encrypted.ciphertext`). A body that is not
/// JSON passes: its deserialization reports that.
pub fn json_text_fields(body: &[u8]) -> Result<(), ApiError> {
    if !may_hold_controls(body) {
        return Ok(());
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    let mut path = Vec::new();
    walk(&v, &mut path, false)
}

/// Whether the raw JSON may decode to a string with a control character: JSON forbids raw
/// C0 characters in strings, so they come as escapes (`\u…`, `\n`, `\t`, `\r`, `\b`, `\f`);
/// DEL and C1 characters may also come raw (0x7F; UTF-8 `C2 80`–`C2 9F`). Over-inclusive by
/// design (an escaped backslash followed by `n` also counts): only the fast path.
fn may_hold_controls(b: &[u8]) -> bool {
    b.windows(2).any(|w| {
        (w[0] == b'\\' && matches!(w[1], b'u' | b'n' | b'r' | b't' | b'b' | b'f'))
            || (w[0] == 0xC2 && (0x80..=0x9F).contains(&w[1]))
    }) || b.contains(&0x7F)
}

fn walk<'a>(v: &'a Value, path: &mut Vec<&'a str>, multi_line: bool) -> Result<(), ApiError> {
    match v {
        Value::String(s) => match forbidden_char(s, multi_line) {
            Some(c) => Err(control_error(&field_name(path), c, multi_line)),
            None => Ok(()),
        },
        Value::Array(items) => items.iter().try_for_each(|i| walk(i, path, multi_line)),
        Value::Object(map) => {
            for (k, item) in map {
                if let Some(c) = forbidden_char(k, false) {
                    let parent = format!("a key of {}", field_name(path));
                    return Err(control_error(&parent, c, false));
                }
                path.push(k);
                let r = walk(
                    item,
                    path,
                    multi_line || MULTI_LINE_FIELDS.contains(&k.as_str()),
                );
                path.pop();
                r?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn field_name(path: &[&str]) -> String {
    if path.is_empty() {
        "the body".to_owned()
    } else {
        path.join(".")
    }
}

/// Passwords: 8 to 128 characters (Unicode scalar values), any characters.
pub fn password(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    if !(8..=128).contains(&n) {
        return Err(ApiError::validation(
            "password must be 8 to 128 characters long",
        ));
    }
    Ok(())
}

/// Usernames: 2 to 32 characters of `a-z A-Z 0-9 _ . -`, not starting or ending with `.`.
pub fn username(u: &str) -> Result<(), ApiError> {
    let ok_len = (2..=32).contains(&u.len());
    let ok_chars = u
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok_len || !ok_chars || u.starts_with('.') || u.ends_with('.') {
        return Err(ApiError::validation(
            "username must be 2 to 32 characters of letters, digits, '_', '.' or '-'",
        ));
    }
    Ok(())
}

/// Emails: a pragmatic shape check (one `@`, a dotted domain, no spaces, ≤ 254 bytes).
/// Returns the domain, lower-cased.
pub fn email(e: &str) -> Result<String, ApiError> {
    let bad = || ApiError::validation("email is not a valid address");
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = e.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return Err(bad());
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
    });
    if !domain.contains('.') || !labels_ok {
        return Err(bad());
    }
    Ok(domain.to_lowercase())
}

/// Display names: 1 to 64 characters, no control characters.
pub fn display_name(d: &str) -> Result<(), ApiError> {
    let n = d.chars().count();
    if !(1..=64).contains(&n) || d.chars().any(char::is_control) || d.trim().is_empty() {
        return Err(ApiError::validation(
            "display_name must be 1 to 64 visible characters",
        ));
    }
    Ok(())
}

/// Short free text (bios, reasons): at most `max` characters.
pub fn text(field: &str, t: &str, max: usize) -> Result<(), ApiError> {
    if t.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"é".repeat(128)).is_ok());
        assert!(password(&"a".repeat(129)).is_err());
        assert!(username("ab").is_ok());
        assert!(username("a").is_err());
        assert!(username("bad name").is_err());
        assert!(username(".dot").is_err());
        assert_eq!(email("Alice@Example.ORG").unwrap(), "example.org");
        assert!(email("no-at").is_err());
        assert!(email("a@b").is_err());
        assert!(email("a b@c.d").is_err());
        assert!(display_name("  ").is_err());
        assert!(display_name("Alice").is_ok());
    }

    fn body_err(v: serde_json::Value) -> Option<String> {
        json_text_fields(v.to_string().as_bytes())
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn the_string_rule() {
        use serde_json::json;
        assert_eq!(
            body_err(json!({"name": "caf\u{e9}", "content": "a\nb\tc"})),
            None
        );
        assert_eq!(body_err(json!({"content": "escaped \\n is text"})), None);
        let e = body_err(json!({"login": "a\u{0}"})).unwrap();
        assert!(e.starts_with("login may not contain"), "{e}");
        let e = body_err(json!({"name": "two\nlines"})).unwrap();
        assert!(e.starts_with("name may not"), "{e}");
        let e = body_err(json!({"content": "nul \u{0} here"})).unwrap();
        assert!(e.starts_with("content may not"), "{e}");
        let e = body_err(json!({"encrypted": {"ciphertext": "x\u{7f}"}})).unwrap();
        assert!(e.starts_with("encrypted.ciphertext may not"), "{e}");
        let e = body_err(json!({"mentions": ["1", "\u{85}"]})).unwrap();
        assert!(e.starts_with("mentions may not"), "{e}");
        // Under a multi-line key, nested strings may hold line breaks, never NUL.
        assert_eq!(
            body_err(json!({"messages": {"u": {"d": {"body": "a\nb"}}}})),
            None
        );
        let e = body_err(json!({"messages": {"u": {"d": {"body": "\u{0}"}}}})).unwrap();
        assert!(e.starts_with("messages.u.d.body may not"), "{e}");
        let e = body_err(json!({"one_time_keys": {"k\u{0}": {}}})).unwrap();
        assert!(e.starts_with("a key of one_time_keys may not"), "{e}");
        assert!(single_line("filename", "a\u{0}b").is_err());
        assert!(single_line("filename", "a b").is_ok());
    }
}
