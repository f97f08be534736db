//! Field rules shared by the routes: usernames, emails, passwords, display names.

use crate::error::ApiError;

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
}
