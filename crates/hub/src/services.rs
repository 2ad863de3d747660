//! Services from the configuration (JupyterHub's `c.JupyterHub.services`):
//! read and checked at start-up. The `--config` file's `[[services]]`
//! tables (or `--services-file`) with a misconfigured service are refused
//! with the line and the reason, before anything starts. The leader
//! replicates them and runs the managed ones ([`crate::service_sync`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::tables::TableError;

use quorumhub_state::Service;
use serde::Deserialize;

/// A configured service: what is replicated, and a managed service's
/// environment, which is not (it may hold secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    pub service: Service,
    pub environment: BTreeMap<String, String>,
}

/// A `[[services]]` table as written (JupyterHub's service keys).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    url: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Prefer `api_token_file`: the file is checked to be private.
    api_token: Option<String>,
    api_token_file: Option<PathBuf>,
    #[serde(default = "shown")]
    display: bool,
    #[serde(default)]
    info: BTreeMap<String, String>,
    oauth_redirect_uri: Option<String>,
    #[serde(default)]
    oauth_no_confirm: bool,
}

fn shown() -> bool {
    true
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    services: Option<Vec<toml::Spanned<Raw>>>,
}

/// The services of the TOML file at `path` (its `[[services]]` tables;
/// other keys are the replica's flags and are ignored here), each checked,
/// sorted by name; `None` if the file has no `services` key.
pub fn load(path: &Path) -> Result<Option<Vec<Configured>>, TableError> {
    let (text, file): (String, File) = crate::tables::read(path)?;
    let Some(raws) = file.services else {
        return Ok(None);
    };
    let mut out: Vec<Configured> = Vec::new();
    for spanned in raws {
        let line = crate::tables::line_of(&text, spanned.span());
        let raw = spanned.into_inner();
        let name = raw.name.clone();
        let service =
            check(raw, &out).map_err(crate::tables::refused(path, line, "service", name))?;
        out.push(service);
    }
    out.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    Ok(Some(out))
}

/// `scheme://host:port`, nothing after it but `/`.
fn check_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "url {url:?} {why}; give where the service listens, e.g. \"http://127.0.0.1:10101\""
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("is not http or https"));
    }
    if parsed.host_str().is_none() {
        return Err(bad("has no host"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(
            "has a path: the proxies send /services/<name>/... to it as it is",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn check(raw: Raw, before: &[Configured]) -> Result<Configured, String> {
    quorumhub_state::validate_group_name(&raw.name)
        .map_err(|why| why.replacen("username", "service name", 1))?;
    if before.iter().any(|c| c.service.name == raw.name) {
        return Err("defined twice; merge the two".into());
    }
    for k in raw.environment.keys() {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(format!("environment: {k:?} is not a variable name"));
        }
    }
    if raw.environment.values().any(|v| v.contains('\0')) {
        return Err("environment values cannot contain NUL characters".into());
    }
    let url = raw.url.as_deref().map(check_url).transpose()?;
    let command = raw.command.unwrap_or_default();
    if command.first().is_some_and(|p| p.trim().is_empty()) {
        return Err("command must name a program (its first item)".into());
    }
    let token = match (raw.api_token, raw.api_token_file) {
        (Some(_), Some(_)) => return Err("give api_token or api_token_file, not both".into()),
        (Some(t), None) => Some(t),
        (None, Some(f)) => Some(
            quorumhub_proto::secret_file::read_secret_file("api_token_file", &f)
                .map_err(|e| e.to_string())?,
        ),
        (None, None) => None,
    };
    if let Some(t) = &token {
        if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err("api_token must be at least 16 printable characters without spaces (e.g. `openssl rand -hex 32`)".into());
        }
    }
    let token_hash = token.as_deref().map(quorumhub_core::secrets::hash_token);
    if let Some(other) = before
        .iter()
        .find(|c| token_hash.is_some() && c.service.token_hash == token_hash)
    {
        return Err(format!(
            "has the same api_token as service {:?}; give each service its own",
            other.service.name
        ));
    }
    if command.is_empty() && url.is_none() && token.is_none() {
        return Err("has no command (a managed service), url or api_token (an external one): it would do nothing".into());
    }
    if let Some(uri) = &raw.oauth_redirect_uri {
        let absolute = uri.starts_with("http://") || uri.starts_with("https://");
        if !(absolute || uri.starts_with('/')) || uri.chars().any(char::is_whitespace) {
            return Err(format!(
                "oauth_redirect_uri {uri:?} must be a path on this hub (/services/{}/oauth_callback) or an http(s) URL",
                raw.name
            ));
        }
    }
    Ok(Configured {
        service: Service {
            name: raw.name,
            url,
            oauth_redirect_uri: raw.oauth_redirect_uri,
            oauth_no_confirm: raw.oauth_no_confirm,
            command,
            display: raw.display,
            info: raw.info,
            token_hash,
            process: None,
            retired: false,
        },
        environment: raw.environment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Option<Vec<Configured>>, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).expect("write");
        load(&path).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "hub.toml")
        })
    }

    #[test]
    fn services_files_as_data() {
        let cases: &[(&str, &str)] = &[
            ("node_id = 1\n", "none"),
            (
                "[[services]]\nname = \"culler\"\ncommand = [\"python3\", \"-m\", \"jupyterhub_idle_culler\"]\nenvironment = { TZ = \"UTC\" }\n\n[[services]]\nname = \"dash\"\nurl = \"http://10.0.0.5:9000/\"\napi_token = \"0123456789abcdef0123\"\ndisplay = false\n",
                "culler managed url=None token=false display=true env={\"TZ\": \"UTC\"}; dash external url=Some(\"http://10.0.0.5:9000\") token=true display=false env={}",
            ),
            (
                "[[services]]\nname = \"a\"\ncommand = [\"x\"]\n[[services]]\nname = \"a\"\nurl = \"http://h:1\"\n",
                "hub.toml:4: service \"a\": defined twice; merge the two",
            ),
            (
                "[[services]]\nname = \"a\"\nurl = \"http://h:1/base/\"\n",
                "hub.toml:1: service \"a\": url \"http://h:1/base/\" has a path: the proxies send /services/<name>/... to it as it is; give where the service listens, e.g. \"http://127.0.0.1:10101\"",
            ),
            (
                "[[services]]\nname = \"a\"\nurl = \"ftp://h:1\"\n",
                "hub.toml:1: service \"a\": url \"ftp://h:1\" is not http or https; give where the service listens, e.g. \"http://127.0.0.1:10101\"",
            ),
            (
                "[[services]]\nname = \"a\"\n",
                "hub.toml:1: service \"a\": has no command (a managed service), url or api_token (an external one): it would do nothing",
            ),
            (
                "[[services]]\nname = \"a\"\napi_token = \"0123456789abcdef0123\"\n[[services]]\nname = \"b\"\napi_token = \"0123456789abcdef0123\"\n",
                "hub.toml:4: service \"b\": has the same api_token as service \"a\"; give each service its own",
            ),
            (
                "[[services]]\nname = \"a\"\ncommand = [\"x\"]\nenvironment = { \"A=B\" = \"c\" }\n",
                "hub.toml:1: service \"a\": environment: \"A=B\" is not a variable name",
            ),
            (
                "[[services]]\nname = \"a\"\napi_token = \"short\"\n",
                "hub.toml:1: service \"a\": api_token must be at least 16 printable characters without spaces (e.g. `openssl rand -hex 32`)",
            ),
            (
                "[[services]]\nname = \"a/b\"\ncommand = [\"x\"]\n",
                "hub.toml:1: service \"a/b\": service name contains '/'; allowed are a-z, 0-9 and -_.@",
            ),
            (
                "[[services]]\nname = \"a\"\ncommand = [\"\"]\n",
                "hub.toml:1: service \"a\": command must name a program (its first item)",
            ),
            (
                "[[services]]\nname = \"a\"\ncommand = [\"x\"]\noauth_client_secret = \"x\"\n",
                "hub.toml: TOML parse error at line 4, column 1\n  |\n4 | oauth_client_secret = \"x\"\n  | ^^^^^^^^^^^^^^^^^^^\nunknown field `oauth_client_secret`, expected one of `name`, `url`, `command`, `environment`, `api_token`, `api_token_file`, `display`, `info`, `oauth_redirect_uri`, `oauth_no_confirm`\n",
            ),
            (
                "[[services]]\nname = \"a\"\nurl = \"http://h:1\"\napi_token = \"0123456789abcdef0123\"\noauth_redirect_uri = \"evil\"\n",
                "hub.toml:1: service \"a\": oauth_redirect_uri \"evil\" must be a path on this hub (/services/a/oauth_callback) or an http(s) URL",
            ),
        ];
        for (text, want) in cases {
            let got = match load_str(text) {
                Ok(None) => "none".to_string(),
                Ok(Some(list)) => list
                    .iter()
                    .map(|c| {
                        let s = &c.service;
                        format!(
                            "{} {} url={:?} token={} display={} env={:?}",
                            s.name,
                            if s.managed() { "managed" } else { "external" },
                            s.url,
                            s.token_hash.is_some(),
                            s.display,
                            c.environment
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => e,
            };
            assert_eq!(&got, want, "{text}");
        }
    }
}
