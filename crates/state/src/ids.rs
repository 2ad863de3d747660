//! Everything derived from a user's and a server's names that must tell
//! servers apart: OAuth client ids, file names and Docker container names.
//!
//! Each scheme is injective on all strings, not only on names that pass
//! [`crate::validate_username`]: two different (user, server) pairs never
//! get the same id, file or container. The proofs are short and rest on one
//! property of each escaping: the escape character itself is always
//! escaped, so the escaped text can be decoded back without ambiguity, and
//! the separator between the user's and the server's part is a character
//! the escaping never leaves in its output.
//!
//! **OAuth client ids.** With `Q` = Python's `urllib.parse.quote` (UTF-8
//! bytes outside `A-Za-z0-9_.-~/` become `%XX`; [`py_quote`]):
//!
//! - default server: `jupyterhub-user-{Q(user)}`, JupyterHub's own id, which
//!   `jupyterhub-singleuser` reads from `JUPYTERHUB_CLIENT_ID`;
//! - named server: `jupyterhub-user-{Q(user)}!{Q(server)}`.
//!
//! `Q` is injective (every `%` in its output starts an escape, since `%` is
//! escaped too) and never outputs `!` (escaped as `%21`). So a named id
//! holds exactly one `!` and a default id none (the two kinds never meet);
//! two default ids are equal only if the users are; and a named id splits
//! at its only `!` into `Q(user)` and `Q(server)`, each decodable. `!` is a
//! legal cookie-name character (RFC 6265 token; Python's `http.cookies`),
//! which matters because `jupyterhub-singleuser` names its cookie after the
//! client id.
//!
//! JupyterHub itself appends `-{Q(server)}`, and `-` is a name character:
//! alice's server `x` and the user `alice-x` both get
//! `jupyterhub-user-alice-x` ([`legacy_oauth_client_id`]). Servers spawned
//! before log format 6 keep that id (it is in their environment); the
//! replicated state refuses to start a server whose id is already held.
//!
//! **Files.** `F` ([`file_name`]) keeps `A-Za-z0-9_-@` and writes every
//! other byte as `%XX` (`%` included), so it is injective, never `.` or
//! `..`, and holds no `/`; `F("")` is `%`, which no other name gives (a
//! `%` from `F` is always followed by two hex digits). A server's log is
//! `F(user)/default.log` or `F(user)/server-{F(server)}.log`.
//!
//! **Docker containers.** Names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
//! `C` ([`container_part`]) keeps `A-Za-z0-9` and `-` and writes every other
//! byte as `_XX` (`_` and `.` included); fields are joined with `.`, which
//! `C` never outputs: `qh.{C(cluster)}.{C(user)}.{C(server)}.g{generation}.{C(attempt)}`.
//! Splitting at the dots gives back each field, and each `C` is
//! injective. Docker puts no limit on a name's length, so nothing is cut.

/// Prefix of every server's OAuth client id (JupyterHub's).
pub const CLIENT_ID_PREFIX: &str = "jupyterhub-user-";

/// Between the user's and a named server's part of a client id: never in
/// [`py_quote`]'s output.
pub const NAMED_SERVER_SEPARATOR: char = '!';

/// Python's `urllib.parse.quote(value, safe)`: UTF-8 bytes other than
/// `A-Za-z0-9_.-~` and `safe` become `%XX` (upper-case hex). `safe` must not
/// contain `%` (the result would no longer decode unambiguously).
pub fn py_quote(value: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b != b'%' && (b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b)) {
            out.push(char::from(b));
        } else {
            push_hex(&mut out, '%', b);
        }
    }
    out
}

fn push_hex(out: &mut String, escape: char, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(escape);
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// `quote(name)` with Python's default `safe='/'`, as JupyterHub's `user.py`.
fn quote(name: &str) -> String {
    py_quote(name, b"/")
}

/// The OAuth client id of `user`'s server `server_name` (`""`: the default
/// server), by the injective scheme of log format 6.
pub fn oauth_client_id(user: &str, server_name: &str) -> String {
    let mut id = format!("{CLIENT_ID_PREFIX}{}", quote(user));
    if !server_name.is_empty() {
        id.push(NAMED_SERVER_SEPARATOR);
        id.push_str(&quote(server_name));
    }
    id
}

/// JupyterHub's client id, `jupyterhub-user-{Q(user)}[-{Q(server)}]`: what
/// servers spawned before log format 6 were given. Equal to
/// [`oauth_client_id`] for a default server; ambiguous for a named one.
pub fn legacy_oauth_client_id(user: &str, server_name: &str) -> String {
    let mut id = format!("{CLIENT_ID_PREFIX}{}", quote(user));
    if !server_name.is_empty() {
        id.push('-');
        id.push_str(&quote(server_name));
    }
    id
}

/// The longest escaped name [`file_name`] keeps as it is: with
/// `server-`/`.log` around it, a file name still fits Linux's 255 bytes.
pub const FILE_NAME_MAX: usize = 244;
/// How much of a longer escaped name is kept before its hash.
const FILE_NAME_HEAD: usize = 170;

/// A file or directory name for a hub user or server name: bytes outside
/// `A-Za-z0-9_-@` become `%XX`, so no name is `.` or `..` or holds a `/`;
/// the empty name is `%`. An escaped name longer than [`FILE_NAME_MAX`]
/// (a long Unicode name triples in length) would not fit a file system:
/// it becomes its first escapes up to 170 bytes, `~` and the SHA-256 of the
/// whole name (hex). `~` is never in an escaped name, so the two forms
/// never meet; two long names meet only if their SHA-256 does.
pub fn file_name(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut head = 0;
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_-@".contains(&b) {
            out.push(char::from(b));
        } else {
            push_hex(&mut out, '%', b);
        }
        if out.len() <= FILE_NAME_HEAD {
            head = out.len();
        }
    }
    if out.len() <= FILE_NAME_MAX {
        return out;
    }
    use sha2::Digest;
    out.truncate(head);
    out.push('~');
    out.push_str(&hex::encode(sha2::Sha256::digest(name.as_bytes())));
    out
}

/// The log file of a server inside its user's directory ([`file_name`] of
/// the user): `default.log`, or `server-{F(server)}.log` for a named one.
pub fn server_log_file(server_name: &str) -> String {
    if server_name.is_empty() {
        "default.log".to_string()
    } else {
        format!("server-{}.log", file_name(server_name))
    }
}

/// One field of a container name: `A-Za-z0-9` and `-` kept, every other
/// byte `_XX`; never a `.`.
pub fn container_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            push_hex(&mut out, '_', b);
        }
    }
    out
}

/// The Docker container name of one attempt to spawn one server:
/// `qh.{cluster}.{user}.{server}.g{generation}.{attempt}`, each field
/// through [`container_part`]; `attempt` tells apart two leaders' attempts
/// at the same generation.
pub fn container_name(
    cluster: &str,
    user: &str,
    server_name: &str,
    generation: u64,
    attempt: &str,
) -> String {
    format!(
        "qh.{}.{}.{}.g{generation}.{}",
        container_part(cluster),
        container_part(user),
        container_part(server_name),
        container_part(attempt)
    )
}

/// JupyterHub's `url_escape_path`: `quote(value, safe='@~')`.
pub fn url_escape_path(value: &str) -> String {
    py_quote(value, b"@~")
}

/// `%XX` decoded (a path segment: `+` stays `+`); `None` if the bytes are
/// not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// [`percent_decode`], or `s` itself when the decoded bytes are not UTF-8.
pub fn percent_decode_lossy(s: &str) -> String {
    percent_decode(s).unwrap_or_else(|| s.to_string())
}

/// JupyterHub's `url_path_join`: join with single slashes, keeping a leading
/// `/` of the first piece and a trailing `/` of the last non-empty piece.
pub fn url_path_join(pieces: &[&str]) -> String {
    let mut pieces: Vec<&str> = pieces.to_vec();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return String::new();
    };
    let initial = first.starts_with('/');
    let fin = last.ends_with('/');
    let mut result = pieces
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if initial {
        result.insert(0, '/');
    }
    if fin {
        result.push('/');
    }
    if result == "//" {
        result = "/".to_owned();
    }
    result
}

/// The redirect URI registered for a server's OAuth client (a path).
pub fn oauth_callback_url(base_url: &str, user: &str, server_name: &str) -> String {
    let user_base = url_path_join(&[base_url, "user", &url_escape_path(user)]);
    url_path_join(&[&user_base, &url_escape_path(server_name), "oauth_callback"])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Names chosen to collide under a naive scheme: separators inside
    /// names, escapes spelled out literally, the escape characters
    /// themselves, unicode and the empty name.
    const NAMES: &[&str] = &[
        "",
        "a",
        "x",
        "alice",
        "alice-x",
        "alice-",
        "-x",
        "alice!x",
        "alice%21x",
        "alice%2Dx",
        "alice_2Dx",
        "alice.x",
        "alice_x",
        "alice@x",
        "alice%40x",
        "alice/x",
        "alice%2Fx",
        "%",
        "%%",
        "%25",
        "_",
        "__",
        "_5F",
        ".",
        "..",
        "!",
        "-",
        "ALICE-X",
        "ünï",
        "%C3%BCn%C3%AF",
        "a b",
        "a+b",
        "\0",
        "%00",
        "default",
        "server-x",
        "g1",
        "x.log",
    ];

    /// Every (user, server) pair over [`NAMES`], default servers included.
    fn pairs() -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        for u in NAMES {
            for s in NAMES {
                out.push((*u, *s));
            }
        }
        out
    }

    /// `f` maps no two pairs to the same value.
    fn assert_injective(what: &str, f: impl Fn(&str, &str) -> String) {
        let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
        for (u, s) in pairs() {
            let v = f(u, s);
            if let Some(prev) = seen.insert(v.clone(), (u, s)) {
                panic!("{what}: {prev:?} and {:?} both give {v:?}", (u, s));
            }
        }
    }

    #[test]
    fn client_ids_as_data() {
        let cases = [
            ("alice", "", "jupyterhub-user-alice"),
            ("alice", "x", "jupyterhub-user-alice!x"),
            ("alice-x", "", "jupyterhub-user-alice-x"),
            ("bob@example.org", "", "jupyterhub-user-bob%40example.org"),
            (
                "bob@example.org",
                "my lab",
                "jupyterhub-user-bob%40example.org!my%20lab",
            ),
            ("a!b", "c", "jupyterhub-user-a%21b!c"),
            ("a%b", "ü", "jupyterhub-user-a%25b!%C3%BC"),
        ];
        for (user, server, id) in cases {
            assert_eq!(oauth_client_id(user, server), id, "{user:?} {server:?}");
        }
        // The bug of issue 10: JupyterHub's ids meet; ours do not.
        assert_eq!(
            legacy_oauth_client_id("alice", "x"),
            legacy_oauth_client_id("alice-x", "")
        );
        assert_ne!(
            oauth_client_id("alice", "x"),
            oauth_client_id("alice-x", "")
        );
        // A default server keeps JupyterHub's id.
        for u in NAMES {
            assert_eq!(oauth_client_id(u, ""), legacy_oauth_client_id(u, ""));
        }
    }

    #[test]
    fn client_ids_are_injective() {
        assert_injective("client id", oauth_client_id);
        // And never contain what a cookie name may not (Python's
        // http.cookies legal characters).
        let legal = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:".contains(c);
        for (u, s) in pairs()
            .into_iter()
            .filter(|(u, s)| !u.contains('/') && !s.contains('/'))
        {
            let id = oauth_client_id(u, s);
            assert!(id.chars().all(legal), "{id:?}");
        }
    }

    #[test]
    fn quote_decodes_back() {
        fn unquote(s: &str) -> Vec<u8> {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            out
        }
        for n in NAMES {
            let q = quote(n);
            assert!(!q.contains(NAMED_SERVER_SEPARATOR), "{q}");
            assert_eq!(unquote(&q), n.as_bytes(), "{n:?}");
        }
        assert_eq!(py_quote("a b/c@d~é", b"@~"), "a%20b%2Fc@d~%C3%A9");
        assert_eq!(py_quote("a b/c@d", b"/"), "a%20b/c%40d");
        assert_eq!(py_quote("100%", b"%"), "100%25", "% is always escaped");
    }

    #[test]
    fn log_files_are_injective_and_safe() {
        let path = |u: &str, s: &str| format!("{}/{}", file_name(u), server_log_file(s));
        assert_injective("log path", path);
        assert_eq!(path("alice", ""), "alice/default.log");
        assert_eq!(path("alice", "x"), "alice/server-x.log");
        assert_eq!(path("alice-x", ""), "alice-x/default.log");
        assert_eq!(path("a.b@c", "my lab"), "a%2Eb@c/server-my%20lab.log");
        for n in NAMES {
            let f = file_name(n);
            assert!(
                !f.is_empty() && f != "." && f != ".." && !f.contains('/'),
                "{f:?}"
            );
        }
        assert_eq!(file_name(""), "%");
        assert_eq!(file_name("\0"), "%00");
        // Names whose escaped form would not fit a file system: every file
        // name stays within 255 bytes, and the long ones stay apart.
        let long = [
            "0".repeat(255),
            "0".repeat(254),
            "é".repeat(255),
            format!("{}x", "é".repeat(254)),
            "a.".repeat(127),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for n in &long {
            let f = file_name(n);
            assert!(f.len() <= FILE_NAME_MAX, "{f}");
            assert!(server_log_file(n).len() <= 255, "{n}");
            assert!(seen.insert(f.clone()), "{f} twice");
        }
        let kept = "0".repeat(FILE_NAME_MAX);
        assert_eq!(file_name(&kept), kept, "what fits is kept as it is");
        assert!(file_name(&"é".repeat(255)).contains('~'));
        // The head is cut between escapes, never inside one.
        let head = file_name(&"é".repeat(255));
        let head = head.split('~').next().unwrap_or_default();
        assert!(head.len() <= 170 && head.len().is_multiple_of(3), "{head}");
    }

    #[test]
    fn container_names_are_injective_and_valid() {
        let name = |u: &str, s: &str| container_name("quorumhub", u, s, 7, "a1");
        assert_injective("container name", name);
        // Cluster, generation and attempt count too.
        assert_ne!(
            container_name("c", "a", "", 1, "x"),
            container_name("c", "a", "", 2, "x")
        );
        assert_ne!(
            container_name("c.a", "b", "", 1, "x"),
            container_name("c", "a.b", "", 1, "x")
        );
        assert_ne!(
            container_name("c", "a", "", 1, "x"),
            container_name("c", "a", "", 1, "y")
        );
        for (u, s) in pairs() {
            let n = container_name("test-1", u, s, 3, "a1");
            let mut chars = n.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_alphanumeric()));
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{n}"
            );
        }
        assert_eq!(name("alice", ""), "qh.quorumhub.alice..g7.a1");
        assert_eq!(name("alice", "x"), "qh.quorumhub.alice.x.g7.a1");
        assert_eq!(name("alice-x", ""), "qh.quorumhub.alice-x..g7.a1");
        assert_eq!(
            name("bob@example.org", "lab_2"),
            "qh.quorumhub.bob_40example_2Eorg.lab_5F2.g7.a1"
        );
    }
}
