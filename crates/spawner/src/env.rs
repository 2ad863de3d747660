//! The environment JupyterHub's `Spawner.get_env()` hands a single-user server.
//!
//! Written against `jupyterhub/spawner.py` (`Spawner.get_env`), `user.py`
//! (`User._new_spawner`, `User.public_url`) and `app.py` (`init_hub`) of
//! JupyterHub 5.x/6.x, so that a real `jupyterhub-singleuser` started by
//! quorumhub finds exactly what it would find under JupyterHub.
//!
//! `MEM_LIMIT` and `CPU_LIMIT` come from the server's profile
//! ([`quorumhub_state::Overrides::apply_env`]). Not produced, because
//! quorumhub does not support the feature behind them: `JUPYTERHUB_SSL_*`
//! (internal SSL), `MEM_GUARANTEE`/`CPU_GUARANTEE`, subdomain hosts (`JUPYTERHUB_HOST` is always the public
//! scheme://host:port and URLs are path-based). `LocalProcessSpawner.user_env`
//! (`USER`, `HOME`, `SHELL` of the target Unix user) is added by the hub's
//! controller when a server runs as its user's account; otherwise
//! [`crate::spawn_process`] passes the hub's `PATH`, `HOME` and `LANG`.
//! Nothing else of the hub's environment reaches a server: no `QUORUMHUB_*`
//! variable ever does ([`crate::is_hub_only_env`]).

use std::collections::BTreeMap;

/// Everything [`jupyterhub_env`] needs to describe one server to its process.
///
/// Field names follow JupyterHub's traits. URLs are given without changes;
/// paths (`base_url`) are normalised to start and end with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEnv {
    /// The user's name, unescaped (`alice`, `a.b@example.org`).
    pub user: String,
    /// The server's name; `""` for the user's default server.
    pub server_name: String,
    /// The API token the server authenticates to the hub with.
    pub api_token: String,
    /// `JupyterHub.admin_access`: admins may reach this server.
    pub admin_access: bool,
    /// JupyterHub's `base_url` (`c.JupyterHub.base_url`), usually `/`.
    pub base_url: String,
    /// Hub API URL as the server should reach it, e.g.
    /// `http://127.0.0.1:8000/hub/api` (JupyterHub: `hub.api_url`, or
    /// `hub_connect_url` + its path when that is set).
    pub hub_api_url: String,
    /// Public URL of the proxy in front of the hub, e.g.
    /// `http://127.0.0.1:8000` (`c.JupyterHub.public_url`); any path is
    /// ignored. `None`: JupyterHub then sets `JUPYTERHUB_HOST`,
    /// `JUPYTERHUB_PUBLIC_URL` and `JUPYTERHUB_PUBLIC_HUB_URL` to `""`.
    pub public_url: Option<String>,
    /// Address the server binds to (`Spawner.ip`, default `127.0.0.1`).
    /// IPv6 addresses are bracketed in URLs.
    pub ip: String,
    /// Port the server binds to (`Spawner.port`).
    pub port: u16,
    /// Extra scopes for tokens the server's OAuth client issues
    /// (`Spawner.oauth_client_allowed_scopes`, default empty).
    pub oauth_client_allowed_scopes: Vec<String>,
    /// `Spawner.oauth_access_scopes`; `None` = JupyterHub's default
    /// (`access:servers!server=USER/NAME`, `access:servers!user=USER`).
    pub oauth_access_scopes: Option<Vec<String>>,
    /// `JupyterHub.cookie_options`, already JSON-encoded as JupyterHub would
    /// (`json.dumps(cookie_options)`); `None` or empty = not set.
    pub cookie_options_json: Option<String>,
    /// `JupyterHub.cookie_host_prefix_enabled`.
    pub cookie_host_prefix_enabled: bool,
    /// `Spawner.default_url`, already formatted (e.g. `/lab`).
    pub default_url: Option<String>,
    /// `Spawner.notebook_dir`, already formatted.
    pub root_dir: Option<String>,
    /// `Spawner.debug`.
    pub debug: bool,
    /// `Spawner.disable_user_config`.
    pub disable_user_config: bool,
    /// The server's OAuth client id (`JUPYTERHUB_CLIENT_ID`), as recorded in
    /// the replicated state when the spawn was requested
    /// (`quorumhub_state::Server::client_id`); `None` = [`oauth_client_id`].
    pub oauth_client_id: Option<String>,
    /// Variables kept from the hub's own environment (`Spawner.env_keep`,
    /// whose JupyterHub default is `JUPYTERHUB_SINGLEUSER_APP` only); see
    /// [`env_keep_from_os`]. Applied first, so everything else wins.
    pub env_keep: BTreeMap<String, String>,
    /// `Spawner.environment`: applied last, so it overrides everything.
    pub environment: BTreeMap<String, String>,
}

impl ServerEnv {
    /// A description with JupyterHub's defaults for everything but the
    /// identity, token, URLs and port.
    pub fn new(
        user: impl Into<String>,
        server_name: impl Into<String>,
        api_token: impl Into<String>,
        hub_api_url: impl Into<String>,
        public_url: Option<String>,
        port: u16,
    ) -> Self {
        Self {
            user: user.into(),
            server_name: server_name.into(),
            api_token: api_token.into(),
            admin_access: false,
            base_url: "/".to_owned(),
            hub_api_url: hub_api_url.into(),
            public_url,
            ip: "127.0.0.1".to_owned(),
            port,
            oauth_client_allowed_scopes: Vec::new(),
            oauth_access_scopes: None,
            cookie_options_json: None,
            cookie_host_prefix_enabled: false,
            default_url: None,
            root_dir: None,
            debug: false,
            disable_user_config: false,
            oauth_client_id: None,
            env_keep: BTreeMap::new(),
            environment: BTreeMap::new(),
        }
    }

    /// The server's URL prefix, e.g. `/user/alice/` or `/user/alice/lab2/`
    /// (JupyterHub's `server.base_url`); names are escaped like JupyterHub's
    /// `url_escape_path` (everything but `A-Za-z0-9_.-~@` percent-encoded).
    pub fn service_prefix(&self) -> String {
        server_prefix(&self.base_url, &self.user, &self.server_name)
    }

    /// Where the server listens, as the proxy should reach it:
    /// `http://IP:PORT` (no path), e.g. `http://127.0.0.1:40123`.
    pub fn target_url(&self) -> String {
        format!("http://{}:{}", fmt_ip_url(&self.ip), self.port)
    }
}

/// JupyterHub's default `Spawner.env_keep`.
pub const DEFAULT_ENV_KEEP: &[&str] = &["JUPYTERHUB_SINGLEUSER_APP"];

/// The variables of `keys` that are set in this process's environment
/// (JupyterHub: `for key in self.env_keep: if key in os.environ: ...`).
pub fn env_keep_from_os(keys: &[&str]) -> BTreeMap<String, String> {
    keys.iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// The server's URL prefix for `user`'s server `server_name` under JupyterHub's
/// `base_url`: `{base_url}user/{escaped user}/` or
/// `{base_url}user/{escaped user}/{escaped server}/`.
pub fn server_prefix(base_url: &str, user: &str, server_name: &str) -> String {
    url_path_join(&[
        &url_path_join(&[base_url, "user", &url_escape_path(user)]),
        &url_escape_path(server_name),
        "/",
    ])
}

/// The environment JupyterHub's `Spawner.get_env()` builds, key by key:
///
/// | variable | value |
/// | --- | --- |
/// | `JUPYTERHUB_API_TOKEN` | the server's API token |
/// | `JPY_API_TOKEN` | the same token (deprecated name, for old singleuser versions) |
/// | `JUPYTERHUB_ADMIN_ACCESS` | `1`, only when admin access is on |
/// | `JUPYTERHUB_CLIENT_ID` | `jupyterhub-user-{quote(user)}` or `jupyterhub-user-{quote(user)}!{quote(server)}` (Python `urllib.parse.quote`, `/` kept; JupyterHub's `-` before the server is ambiguous, see `quorumhub_state::ids`), or the recorded id |
/// | `JUPYTERHUB_COOKIE_OPTIONS` | JSON cookie options, only when set |
/// | `JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED` | `0` or `1` |
/// | `JUPYTERHUB_HOST` | public `scheme://host[:port]` without path, or `""` |
/// | `JUPYTERHUB_OAUTH_CALLBACK_URL` | `{base_url}user/{user}/oauth_callback` or `{base_url}user/{user}/{server}/oauth_callback` (a path) |
/// | `JUPYTERHUB_OAUTH_SCOPES` | JSON list of access scopes (deprecated name) |
/// | `JUPYTERHUB_OAUTH_ACCESS_SCOPES` | JSON list, default `["access:servers!server={user}/{server}", "access:servers!user={user}"]` (names unescaped) |
/// | `JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES` | JSON list of the configured extra scopes, default `[]` |
/// | `JUPYTERHUB_USER` | user name, unescaped |
/// | `JUPYTERHUB_SERVER_NAME` | server name, `""` for the default server |
/// | `JUPYTERHUB_API_URL` | hub API URL, e.g. `http://127.0.0.1:8000/hub/api` |
/// | `JUPYTERHUB_ACTIVITY_URL` | `{api_url}/users/{user}/activity` |
/// | `JUPYTERHUB_BASE_URL` | JupyterHub's base URL, e.g. `/` (`hub.base_url[:-4]`) |
/// | `JUPYTERHUB_SERVICE_PREFIX` | the server's prefix, e.g. `/user/alice/` |
/// | `JUPYTERHUB_SERVICE_URL` | bind URL `http://{ip}:{port}{prefix}`, e.g. `http://127.0.0.1:40123/user/alice/` (singleuser binds to its host and port) |
/// | `JUPYTERHUB_PUBLIC_URL` | `{public scheme://host}{prefix}`, or `""` without a public URL |
/// | `JUPYTERHUB_PUBLIC_HUB_URL` | `{public scheme://host}{base_url}hub/`, or `""` without a public URL |
/// | `JUPYTERHUB_ROOT_DIR` | notebook dir, only when set |
/// | `JUPYTERHUB_DEFAULT_URL` | default URL, only when set |
/// | `JUPYTERHUB_DEBUG` | `1`, only when debug is on |
/// | `JUPYTERHUB_DISABLE_USER_CONFIG` | `1`, only when set |
///
/// JSON lists are formatted like Python's `json.dumps` (`", "` between
/// items, non-ASCII as `\uXXXX`). `env_keep` goes in first and
/// `environment` last, as in JupyterHub.
/// The OAuth client id of a server: JupyterHub's
/// `jupyterhub-user-{quote(user)}` for a default server, and
/// `jupyterhub-user-{quote(user)}!{quote(server)}` for a named one, which
/// no other server's id can equal ([`quorumhub_state::ids`] proves it).
pub fn oauth_client_id(user: &str, server_name: &str) -> String {
    quorumhub_state::ids::oauth_client_id(user, server_name)
}

pub use quorumhub_state::ids::oauth_callback_url;

pub fn jupyterhub_env(e: &ServerEnv) -> BTreeMap<String, String> {
    let mut env = e.env_keep.clone();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };

    // env['JUPYTERHUB_API_TOKEN'] = self.api_token; JPY_API_TOKEN likewise
    set("JUPYTERHUB_API_TOKEN", e.api_token.clone());
    set("JPY_API_TOKEN", e.api_token.clone());
    if e.admin_access {
        set("JUPYTERHUB_ADMIN_ACCESS", "1".to_owned());
    }

    set(
        "JUPYTERHUB_CLIENT_ID",
        e.oauth_client_id
            .clone()
            .unwrap_or_else(|| oauth_client_id(&e.user, &e.server_name)),
    );
    if let Some(opts) = e
        .cookie_options_json
        .as_ref()
        .filter(|o| !o.is_empty() && o.as_str() != "{}")
    {
        set("JUPYTERHUB_COOKIE_OPTIONS", opts.clone());
    }
    set(
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
        if e.cookie_host_prefix_enabled {
            "1"
        } else {
            "0"
        }
        .to_owned(),
    );

    // hub.public_host = urlunparse(urlparse(public_url)._replace(path=""))
    let public_host = e
        .public_url
        .as_deref()
        .map(strip_url_path)
        .unwrap_or_default();
    set("JUPYTERHUB_HOST", public_host.clone());

    // url_path_join(self.user.url, url_escape_path(self.name), 'oauth_callback')
    set(
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        oauth_callback_url(&e.base_url, &e.user, &e.server_name),
    );

    let access_scopes = e.oauth_access_scopes.clone().unwrap_or_else(|| {
        vec![
            format!("access:servers!server={}/{}", e.user, e.server_name),
            format!("access:servers!user={}", e.user),
        ]
    });
    set("JUPYTERHUB_OAUTH_SCOPES", py_json_str_list(&access_scopes));
    set(
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
        py_json_str_list(&access_scopes),
    );
    set(
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
        py_json_str_list(&e.oauth_client_allowed_scopes),
    );

    set("JUPYTERHUB_USER", e.user.clone());
    set("JUPYTERHUB_SERVER_NAME", e.server_name.clone());
    set("JUPYTERHUB_API_URL", e.hub_api_url.clone());
    // url_path_join(hub_api_url, 'users', user.escaped_name, 'activity')
    set(
        "JUPYTERHUB_ACTIVITY_URL",
        url_path_join(&[
            &e.hub_api_url,
            "users",
            &url_escape_path(&e.user),
            "activity",
        ]),
    );
    // hub.base_url is url_path_join(base_url, '/hub/'); [:-4] drops "hub/"
    let hub_prefix = url_path_join(&[&e.base_url, "/hub/"]);
    set(
        "JUPYTERHUB_BASE_URL",
        hub_prefix[..hub_prefix.len() - 4].to_owned(),
    );

    let prefix = e.service_prefix();
    set("JUPYTERHUB_SERVICE_PREFIX", prefix.clone());
    // f"{proto}://{fmt_ip_url(self.ip)}:{self.port}{base_url}"
    set(
        "JUPYTERHUB_SERVICE_URL",
        format!("http://{}:{}{}", fmt_ip_url(&e.ip), e.port, prefix),
    );

    let (public_url, public_hub_url) = if public_host.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("{public_host}{prefix}"),
            format!("{public_host}{hub_prefix}"),
        )
    };
    set("JUPYTERHUB_PUBLIC_URL", public_url);
    set("JUPYTERHUB_PUBLIC_HUB_URL", public_hub_url);

    if let Some(dir) = e.root_dir.as_ref().filter(|d| !d.is_empty()) {
        set("JUPYTERHUB_ROOT_DIR", dir.clone());
    }
    if let Some(url) = e.default_url.as_ref().filter(|u| !u.is_empty()) {
        set("JUPYTERHUB_DEFAULT_URL", url.clone());
    }
    if e.debug {
        set("JUPYTERHUB_DEBUG", "1".to_owned());
    }
    if e.disable_user_config {
        set("JUPYTERHUB_DISABLE_USER_CONFIG", "1".to_owned());
    }

    for (k, v) in &e.environment {
        set(k, v.clone());
    }
    env
}

/// JupyterHub's `fmt_ip_url`: IPv6 addresses (anything with `:`) in brackets.
pub fn fmt_ip_url(ip: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// `scheme://netloc` of a URL, dropping path, query and fragment.
fn strip_url_path(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{}{}", &url[..i + 3], &rest[..end])
        }
        None => url.to_owned(),
    }
}

pub use quorumhub_state::ids::{url_escape_path, url_path_join};

/// `json.dumps(list_of_str)` with Python's defaults.
fn py_json_str_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| py_json_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// A JSON string literal as Python's `json.dumps` writes it (`ensure_ascii`).
fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumhub_state::ids::py_quote;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn default_server_matches_jupyterhub() {
        let e = ServerEnv::new(
            "alice",
            "",
            "tok123",
            "http://127.0.0.1:8000/hub/api",
            Some("http://127.0.0.1:8000".to_owned()),
            40123,
        );
        let expected = map(&[
            ("JPY_API_TOKEN", "tok123"),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                "http://127.0.0.1:8000/hub/api/users/alice/activity",
            ),
            ("JUPYTERHUB_API_TOKEN", "tok123"),
            ("JUPYTERHUB_API_URL", "http://127.0.0.1:8000/hub/api"),
            ("JUPYTERHUB_BASE_URL", "/"),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice"),
            ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0"),
            ("JUPYTERHUB_HOST", "http://127.0.0.1:8000"),
            (
                "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                r#"["access:servers!server=alice/", "access:servers!user=alice"]"#,
            ),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback",
            ),
            ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]"),
            (
                "JUPYTERHUB_OAUTH_SCOPES",
                r#"["access:servers!server=alice/", "access:servers!user=alice"]"#,
            ),
            ("JUPYTERHUB_PUBLIC_HUB_URL", "http://127.0.0.1:8000/hub/"),
            ("JUPYTERHUB_PUBLIC_URL", "http://127.0.0.1:8000/user/alice/"),
            ("JUPYTERHUB_SERVER_NAME", ""),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/"),
            (
                "JUPYTERHUB_SERVICE_URL",
                "http://127.0.0.1:40123/user/alice/",
            ),
            ("JUPYTERHUB_USER", "alice"),
        ]);
        assert_eq!(jupyterhub_env(&e), expected);
        assert_eq!(e.target_url(), "http://127.0.0.1:40123");
    }

    #[test]
    fn named_server_escaping_base_url_and_options() {
        let mut e = ServerEnv::new(
            "bob@example.org",
            "my lab",
            "t",
            "http://hub.internal:8081/jh/hub/api",
            Some("https://jh.example.org/jh/".to_owned()),
            5555,
        );
        e.base_url = "/jh/".to_owned();
        e.ip = "::1".to_owned();
        e.admin_access = true;
        e.cookie_host_prefix_enabled = true;
        e.cookie_options_json = Some(r#"{"SameSite": "Strict"}"#.to_owned());
        e.oauth_client_allowed_scopes = vec!["read:users".to_owned(), "café".to_owned()];
        e.default_url = Some("/lab".to_owned());
        e.root_dir = Some("/srv/nb".to_owned());
        e.debug = true;
        e.disable_user_config = true;
        e.env_keep = map(&[
            ("JUPYTERHUB_SINGLEUSER_APP", "x"),
            ("JUPYTERHUB_USER", "overridden"),
        ]);
        e.environment = map(&[("EXTRA", "1"), ("JUPYTERHUB_DEBUG", "0")]);
        let expected = map(&[
            ("EXTRA", "1"),
            ("JPY_API_TOKEN", "t"),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                "http://hub.internal:8081/jh/hub/api/users/bob@example.org/activity",
            ),
            ("JUPYTERHUB_ADMIN_ACCESS", "1"),
            ("JUPYTERHUB_API_TOKEN", "t"),
            ("JUPYTERHUB_API_URL", "http://hub.internal:8081/jh/hub/api"),
            ("JUPYTERHUB_BASE_URL", "/jh/"),
            (
                "JUPYTERHUB_CLIENT_ID",
                "jupyterhub-user-bob%40example.org!my%20lab",
            ),
            ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "1"),
            ("JUPYTERHUB_COOKIE_OPTIONS", r#"{"SameSite": "Strict"}"#),
            ("JUPYTERHUB_DEBUG", "0"),
            ("JUPYTERHUB_DEFAULT_URL", "/lab"),
            ("JUPYTERHUB_DISABLE_USER_CONFIG", "1"),
            ("JUPYTERHUB_HOST", "https://jh.example.org"),
            (
                "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                r#"["access:servers!server=bob@example.org/my lab", "access:servers!user=bob@example.org"]"#,
            ),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/jh/user/bob@example.org/my%20lab/oauth_callback",
            ),
            (
                "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
                r#"["read:users", "caf\u00e9"]"#,
            ),
            (
                "JUPYTERHUB_OAUTH_SCOPES",
                r#"["access:servers!server=bob@example.org/my lab", "access:servers!user=bob@example.org"]"#,
            ),
            (
                "JUPYTERHUB_PUBLIC_HUB_URL",
                "https://jh.example.org/jh/hub/",
            ),
            (
                "JUPYTERHUB_PUBLIC_URL",
                "https://jh.example.org/jh/user/bob@example.org/my%20lab/",
            ),
            ("JUPYTERHUB_ROOT_DIR", "/srv/nb"),
            ("JUPYTERHUB_SERVER_NAME", "my lab"),
            (
                "JUPYTERHUB_SERVICE_PREFIX",
                "/jh/user/bob@example.org/my%20lab/",
            ),
            (
                "JUPYTERHUB_SERVICE_URL",
                "http://[::1]:5555/jh/user/bob@example.org/my%20lab/",
            ),
            ("JUPYTERHUB_SINGLEUSER_APP", "x"),
            ("JUPYTERHUB_USER", "bob@example.org"),
        ]);
        assert_eq!(jupyterhub_env(&e), expected);
    }

    #[test]
    fn without_public_url_public_fields_are_empty() {
        let e = ServerEnv::new("carol", "", "t", "http://127.0.0.1:8081/hub/api", None, 1);
        let env = jupyterhub_env(&e);
        assert_eq!(env.get("JUPYTERHUB_HOST").map(String::as_str), Some(""));
        assert_eq!(
            env.get("JUPYTERHUB_PUBLIC_URL").map(String::as_str),
            Some("")
        );
        assert_eq!(
            env.get("JUPYTERHUB_PUBLIC_HUB_URL").map(String::as_str),
            Some("")
        );
        assert!(!env.contains_key("JUPYTERHUB_DEFAULT_URL"));
        assert!(!env.contains_key("JUPYTERHUB_ADMIN_ACCESS"));
        assert!(!env.contains_key("JUPYTERHUB_COOKIE_OPTIONS"));
    }

    #[test]
    fn the_recorded_client_id_wins() {
        let mut e = ServerEnv::new("alice", "x", "t", "http://h/hub/api", None, 1);
        let id = |e: &ServerEnv| jupyterhub_env(e)["JUPYTERHUB_CLIENT_ID"].clone();
        assert_eq!(id(&e), "jupyterhub-user-alice!x");
        // A server spawned before log format 6 keeps JupyterHub's id.
        e.oauth_client_id = Some("jupyterhub-user-alice-x".into());
        assert_eq!(id(&e), "jupyterhub-user-alice-x");
    }

    #[test]
    fn url_path_join_like_jupyterhub() {
        assert_eq!(url_path_join(&["/", "user", "alice"]), "/user/alice");
        assert_eq!(url_path_join(&["/user/alice", "", "/"]), "/user/alice/");
        assert_eq!(url_path_join(&["/", "/hub/"]), "/hub/");
        assert_eq!(url_path_join(&["/jh/", "/hub/"]), "/jh/hub/");
        assert_eq!(url_path_join(&["/", ""]), "/");
        assert_eq!(url_path_join(&["", ""]), "");
        assert_eq!(server_prefix("/", "alice", "gpu"), "/user/alice/gpu/");
    }

    #[test]
    fn quoting_like_python() {
        assert_eq!(url_escape_path("a b/c@d~é"), "a%20b%2Fc@d~%C3%A9");
        assert_eq!(py_quote("a b/c@d", b"/"), "a%20b/c%40d");
        assert_eq!(py_json_str("q\"\\\n😀"), r#""q\"\\\n\ud83d\ude00""#);
    }
}
