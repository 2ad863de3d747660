//! A browser-like HTTP client for the page tests: a cookie jar that honours
//! host and `Path`, and redirects followed one hop at a time so each step
//! can be checked.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

pub struct Browser {
    /// (host, path, name) -> value
    jar: BTreeMap<(String, String, String), String>,
    /// `http://host:port` that relative URLs are resolved against.
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

/// (`http://host:port`, path-and-query) of an absolute or relative URL.
fn split(base: &str, url: &str) -> (String, String) {
    if let Some(rest) = url.strip_prefix("http://") {
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        (format!("http://{host}"), path)
    } else {
        (base.to_string(), url.to_string())
    }
}

impl Browser {
    pub fn new(base: String) -> Browser {
        Browser {
            jar: BTreeMap::new(),
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Cookie `name` as the base host would send it to `for_path`.
    pub fn cookie(&self, name: &str, for_path: &str) -> Option<String> {
        self.cookie_on(&self.base.clone(), name, for_path)
    }

    pub fn cookie_on(&self, origin: &str, name: &str, for_path: &str) -> Option<String> {
        self.jar
            .iter()
            .filter(|((h, p, n), _)| h == origin && n == name && for_path.starts_with(p.as_str()))
            .max_by_key(|((_, p, _), _)| p.len())
            .map(|(_, v)| v.clone())
    }

    pub fn set_cookie(&mut self, path: &str, name: &str, value: &str) {
        self.jar
            .insert((self.base.clone(), path.into(), name.into()), value.into());
    }

    pub fn cookie_header(&self, path: &str) -> String {
        self.header_for(&self.base.clone(), path)
    }

    fn header_for(&self, origin: &str, path: &str) -> String {
        self.jar
            .iter()
            .filter(|((h, p, _), _)| h == origin && path.starts_with(p.as_str()))
            .map(|((_, _, n), v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Forget the base host's cookies set for exactly `path`.
    pub fn forget(&mut self, path: &str) {
        let base = self.base.clone();
        self.jar.retain(|(h, p, _), _| !(h == &base && p == path));
    }

    fn store(&mut self, origin: &str, resp: &reqwest::Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let mut parts = v.split(';');
            let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_string();
            let mut expired = value.is_empty() || value == "\"\"";
            for attr in parts {
                let attr = attr.trim();
                if let Some(p) = attr.strip_prefix("Path=").or(attr.strip_prefix("path=")) {
                    path = p.to_string();
                }
                if attr.eq_ignore_ascii_case("Max-Age=0") {
                    expired = true;
                }
            }
            let key = (origin.to_string(), path, name.trim().to_string());
            if expired {
                self.jar.remove(&key);
            } else {
                self.jar.insert(key, value.to_string());
            }
        }
    }

    /// Send a request the way a browser would (cookies of that host and
    /// path); `xsrf` adds the base host's `_xsrf` cookie as `X-XSRFToken`.
    pub async fn send(
        &mut self,
        method: Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
        xsrf: bool,
    ) -> Page {
        let (origin, path) = split(&self.base, url);
        let bare = path.split('?').next().unwrap_or("/").to_string();
        let mut req = self
            .http
            .request(method, format!("{origin}{path}"))
            .header(COOKIE, self.header_for(&origin, &bare));
        if xsrf {
            if let Some(x) = self.cookie_on(&origin, "_xsrf", &bare) {
                req = req.header("X-XSRFToken", x);
            }
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{origin}{path}: {e}"));
        self.store(&origin, &resp);
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                if l.starts_with('/') && origin != self.base {
                    format!("{origin}{l}")
                } else {
                    l.to_string()
                }
            });
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    /// Fill in and post the hub's password form, as a person would.
    pub async fn password_login(&mut self, user: &str, password: &str) -> Page {
        self.get("/hub/login").await;
        let xsrf = self
            .cookie("_xsrf", "/hub/")
            .expect("the login page sets _xsrf");
        self.send(
            Method::POST,
            "/hub/login",
            Some(&[("username", user), ("password", password), ("_xsrf", &xsrf)]),
            false,
        )
        .await
    }

    pub async fn get(&mut self, url: &str) -> Page {
        self.send(Method::GET, url, None, false).await
    }

    /// GET `url` and follow redirects, returning every hop's URL and the end.
    pub async fn follow(&mut self, url: &str) -> (Vec<String>, Page) {
        let mut hops = vec![url.to_string()];
        let mut page = self.get(url).await;
        while let Some(next) = page
            .location
            .clone()
            .filter(|_| page.status.is_redirection())
        {
            assert!(hops.len() < 12, "redirect loop: {hops:?}");
            hops.push(next.clone());
            page = self.get(&next).await;
        }
        (hops, page)
    }
}
