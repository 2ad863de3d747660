//! Validation of names that end up in URLs and route prefixes.

/// JupyterHub normalizes usernames to lower case; so do we.
pub fn normalize_username(raw: &str) -> String {
    raw.trim().to_lowercase()
}

const MAX_NAME: usize = 255;

/// A username must be safe in a URL path segment and in a route prefix:
/// 1–255 characters of ASCII letters, digits and `-_.@`, not starting with
/// a dot or a dash (the characters JupyterHub leaves unescaped in URLs).
pub fn validate_username(name: &str) -> Result<(), String> {
    validate(name, "username")
}

/// Named servers follow the same rule; the default server is the empty name.
pub fn validate_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    validate(name, "server name")
}

fn validate(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(format!("{what} is longer than {MAX_NAME} characters"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("{what} must not start with '.' or '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.@".contains(*c)))
    {
        return Err(format!(
            "{what} contains {c:?}; allowed are a-z, 0-9 and -_.@"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_as_data() {
        let cases: &[(&str, bool)] = &[
            ("alice", true),
            ("a", true),
            ("user.name-1_x@example.org", true),
            ("", false),
            (".hidden", false),
            ("-dash", false),
            ("has space", false),
            ("slash/inside", false),
            ("percent%2f", false),
            ("ünïcode", false),
            ("..", false),
            ("plus+sign", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_username(name).is_ok(), *ok, "{name:?}");
        }
        assert!(validate_username(&"x".repeat(256)).is_err());
        assert!(validate_username(&"x".repeat(255)).is_ok());
        assert!(validate_server_name("").is_ok());
        assert!(validate_server_name("a/b").is_err());
        assert_eq!(normalize_username("  Alice "), "alice");
    }
}
