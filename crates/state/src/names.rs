//! Validation of names that end up in URLs and route prefixes.

/// JupyterHub normalizes usernames to lower case; so do we.
pub fn normalize_username(raw: &str) -> String {
    raw.trim().to_lowercase()
}

const MAX_NAME: usize = 255;

/// A username as JupyterHub allows it (`Authenticator.validate_username`,
/// without a `username_pattern`): 1–255 characters, any Unicode, but no
/// `/`, no leading or trailing whitespace, not only dots (also once
/// percent-decoded: `.`, `..`, `%2e%2e`), and, stricter than JupyterHub,
/// no control characters (they would reach logs and environments). Every
/// place a name goes escapes it ([`crate::ids`], [`crate::Route::prefix_for`]),
/// so no name can change a path, a URL, a file or a container name.
///
/// This is the rule from log format 7 on; the replicated state applies
/// [`validate_legacy_name`] before (see [`validate_username_at`]).
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("username must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("username is longer than {MAX_NAME} characters"));
    }
    if name.contains('/') {
        return Err("username must not contain '/'".into());
    }
    if name.trim() != name {
        return Err("username must not start or end with whitespace".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("username contains the control character {c:?}"));
    }
    let only_dots = |s: &str| s.chars().all(|c| c == '.');
    if only_dots(name) || only_dots(&crate::ids::percent_decode_lossy(name)) {
        return Err("username must not be only dots".into());
    }
    Ok(())
}

/// The username rule the replicated state applies at `cluster_version`:
/// [`validate_legacy_name`] before log format 7, [`validate_username`]
/// from it on (a replica of an older release refuses what it refuses, so
/// the rule may only widen once every replica knows the new one).
pub fn validate_username_at(cluster_version: u32, name: &str) -> Result<(), String> {
    if cluster_version >= 7 {
        validate_username(name)
    } else {
        validate_legacy_name(name, "username")
    }
}

/// Group names, and usernames before log format 7: 1–255 characters of
/// ASCII letters, digits and `-_.@`, not starting with a dot or a dash.
///
/// The message says "username", as it always has: a refusal's text is part
/// of the replicated state (the recorded answers), so replicas of two
/// releases must word it alike.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    validate_legacy_name(name, "username")
}

/// JupyterHub's `is_valid_display_name`: 1–255 characters, printable (no
/// control characters, no whitespace but the space), no space at either
/// end and never two in a row.
pub fn validate_display_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(format!("display_name must be 1 to {MAX_NAME} characters"));
    }
    if name.contains("  ") || name.starts_with(' ') || name.ends_with(' ') {
        return Err("display_name must not start or end with a space or hold two in a row".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || (c.is_whitespace() && c != ' '))
    {
        return Err(format!("display_name contains {c:?}"));
    }
    Ok(())
}

/// Named servers follow the same rule; the default server is the empty name.
pub fn validate_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    validate_legacy_name(name, "server name")
}

/// 1–255 characters of ASCII letters, digits and `-_.@`, not starting with
/// a dot or a dash (the characters JupyterHub leaves unescaped in URLs).
fn validate_legacy_name(name: &str, what: &str) -> Result<(), String> {
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
            assert_eq!(validate_username_at(6, name).is_ok(), *ok, "{name:?}");
            assert_eq!(validate_group_name(name).is_ok(), *ok, "{name:?}");
        }
        // From log format 7: JupyterHub's rule.
        let cases: &[(&str, bool)] = &[
            ("alice", true),
            ("ünïcode", true),
            ("名前", true),
            ("has space", true),
            ("plus+sign", true),
            ("percent%2f", true),
            ("-dash", true),
            (".hidden", true),
            ("", false),
            (".", false),
            ("..", false),
            ("%2e%2E", false),
            ("slash/inside", false),
            (" lead", false),
            ("trail\t", false),
            ("bell\u{7}", false),
            ("new\nline", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_username(name).is_ok(), *ok, "{name:?}");
            assert_eq!(validate_username_at(7, name).is_ok(), *ok, "{name:?}");
        }
        assert!(validate_username(&"é".repeat(256)).is_err());
        assert!(validate_username(&"é".repeat(255)).is_ok());
        assert!(validate_username_at(6, &"x".repeat(256)).is_err());
        assert!(validate_username_at(6, &"x".repeat(255)).is_ok());
        for (name, ok) in [
            ("My GPU box", true),
            ("ünï 名前", true),
            ("", false),
            (" lead", false),
            ("two  spaces", false),
            ("tab\there", false),
        ] {
            assert_eq!(validate_display_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(validate_server_name("").is_ok());
        assert!(validate_server_name("a/b").is_err());
        assert_eq!(normalize_username("  Alice "), "alice");
        assert_eq!(normalize_username("ÜNÏ"), "ünï");
    }
}
