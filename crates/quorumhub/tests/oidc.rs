//! Sign in with OpenID Connect against a real provider someone else wrote:
//! django-oidc-provider from PyPI (scripts/oidc-venv.sh installs it;
//! tests/oidc-provider/ configures it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::{client, TOKEN};
use reqwest::{Method, StatusCode};

fn venv_python() -> PathBuf {
    let venv = std::env::var("QH_OIDC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/oidc-venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/oidc-venv.sh (or set QH_OIDC_VENV)",
        py.display()
    );
    py
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// The provider's server; killed on drop.
struct Provider {
    child: std::process::Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(dir: &Path, redirect_uri: &str) -> Provider {
    let py = venv_python();
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider"),
        dir,
    );
    let port = quorumhub_testkit::free_port();
    let issuer = format!("http://127.0.0.1:{port}/openid");
    let run = |args: &[&str], stdin: Option<&Path>| {
        let mut cmd = Command::new(&py);
        cmd.args(args)
            .current_dir(dir)
            .env("OP_REDIRECT_URI", redirect_uri)
            .env("OP_SITE_URL", format!("http://127.0.0.1:{port}"));
        if let Some(f) = stdin {
            cmd.stdin(std::fs::File::open(f).expect("seed"));
        }
        let out = cmd.output().expect("python");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["manage.py", "migrate", "-v0"], None);
    run(&["manage.py", "creatersakey"], None);
    run(&["manage.py", "shell", "-v0"], Some(&dir.join("seed.py")));
    let log = std::fs::File::create(dir.join("op.log")).expect("log");
    let child = Command::new(&py)
        .args([
            "manage.py",
            "runserver",
            &format!("127.0.0.1:{port}"),
            "--noreload",
            "--skip-checks",
        ])
        .current_dir(dir)
        .env("OP_SITE_URL", format!("http://127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("runserver");
    let provider = Provider { child, issuer };
    let deadline = Instant::now() + Duration::from_secs(30);
    let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
    loop {
        if std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &discovery])
            .status()
            .is_ok_and(|s| s.success())
        {
            return provider;
        }
        assert!(
            Instant::now() < deadline,
            "the provider did not start: {}",
            std::fs::read_to_string(dir.join("op.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of `<input name="NAME" value="...">` in a page.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.split("value=\"").nth(1)?;
    let raw = v.split('"').next()?;
    Some(
        raw.replace("&amp;", "&")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// From quorumhub's "Sign in with" to the provider's login form, signing in
/// there as `user`, until the provider sends the browser back. Returns the
/// callback URL (not yet visited).
async fn sign_in_at_provider(b: &mut Browser, start: &str, user: &str) -> String {
    let go = b.get(start).await;
    let authorize = go.location.expect("to the provider");
    assert!(authorize.contains("/openid/authorize"), "{authorize}");
    assert!(
        authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="),
        "{authorize}"
    );
    provider_login(b, &authorize, user).await
}

async fn provider_login(b: &mut Browser, authorize: &str, user: &str) -> String {
    let (hops, form) = b.follow(authorize).await;
    assert_eq!(form.status, StatusCode::OK, "{hops:?}");
    let login_url = hops.last().expect("hop").clone();
    let csrf = input_value(&form.body, "csrfmiddlewaretoken").expect("csrf token");
    let next = input_value(&form.body, "next").expect("next");
    let password = format!("{user}-pw");
    let posted = b
        .send(
            Method::POST,
            &login_url,
            Some(&[
                ("csrfmiddlewaretoken", &csrf),
                ("username", user),
                ("password", &password),
                ("next", &next),
            ]),
            false,
        )
        .await;
    let back = posted
        .location
        .unwrap_or_else(|| panic!("provider login: {} {}", posted.status, posted.body));
    let again = b.get(&back).await;
    let callback = again
        .location
        .unwrap_or_else(|| panic!("{back}: {} {}", again.status, again.body));
    assert!(callback.contains("/hub/oauth_callback?"), "{callback}");
    callback
}

async fn user_json(c: &common::Cluster, name: &str) -> (StatusCode, serde_json::Value) {
    let r = client()
        .get(c.url(1, &format!("/hub/api/users/{name}")))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .expect("get user");
    let s = r.status();
    (s, r.json().await.unwrap_or_default())
}

fn refused(page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_openid_connect() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proxy_port = quorumhub_testkit::free_port();
    let callback_uri = format!("http://127.0.0.1:{proxy_port}/hub/oauth_callback");
    let op = start_provider(tmp.path(), &callback_uri);
    let proxy = format!("127.0.0.1:{proxy_port}");
    let mut c = common::start_with_proxy_addr(
        3,
        &proxy,
        &[
            "--oidc-issuer",
            &op.issuer,
            "--oidc-client-id",
            "quorumhub-test",
            "--oidc-client-secret",
            "s3cret",
            "--oidc-scopes",
            "openid,profile,email,groups",
            "--oidc-allowed-groups",
            "devs",
            "--oidc-admin-groups",
            "admins",
            "--oidc-display-name",
            "Test Provider",
        ],
    )
    .await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;

    // alice (devs, admins) signs in: created on the spot, as an admin.
    let mut b = Browser::new(format!("http://{proxy}"));
    let login = b.get("/hub/login").await;
    assert!(
        login.body.contains("Sign in with Test Provider"),
        "{}",
        login.body
    );
    let cb = sign_in_at_provider(&mut b, "/hub/oidc/login?next=%2Fhub%2Fhome", "alice").await;
    let done = b.get(&cb).await;
    assert_eq!(done.location.as_deref(), Some("/hub/home"), "{}", done.body);
    let home = b.get("/hub/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("alice"));
    let (s, alice) = user_json(&c, "alice").await;
    assert_eq!(
        (s, alice["admin"].clone()),
        (StatusCode::OK, serde_json::json!(true)),
        "{alice}"
    );

    // The same callback again (a replayed code): refused, no new session.
    let mut replay = Browser::new(format!("http://{proxy}"));
    refused(
        &replay.get(&cb).await,
        "replayed callback without the flow cookie",
    );

    // carol (devs only) is allowed but not an admin.
    let mut carol = Browser::new(format!("http://{proxy}"));
    let cb = sign_in_at_provider(&mut carol, "/hub/oidc/login", "carol").await;
    assert_eq!(carol.get(&cb).await.location.as_deref(), Some("/hub/home"));
    let (_, u) = user_json(&c, "carol").await;
    assert_eq!(u["admin"], false);

    // bob is in no allowed group: refused, and no user is created.
    let mut bob = Browser::new(format!("http://{proxy}"));
    let cb = sign_in_at_provider(&mut bob, "/hub/oidc/login", "bob").await;
    let page = bob.get(&cb).await;
    refused(&page, "bob");
    assert!(page.body.contains("not allowed"), "{}", page.body);
    assert_eq!(user_json(&c, "bob").await.0, StatusCode::NOT_FOUND);
    assert_eq!(bob.get("/hub/home").await.status, StatusCode::FOUND);

    // dave is allowed, but a local (password) account named dave exists:
    // the provider's dave must not take it over.
    let created = client()
        .post(c.url(1, "/hub/api/users/dave"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .expect("create dave");
    assert_eq!(created.status(), StatusCode::CREATED);
    common::set_password(&c, "dave", "local-dave-password");
    let mut dave = Browser::new(format!("http://{proxy}"));
    let cb = sign_in_at_provider(&mut dave, "/hub/oidc/login", "dave").await;
    let page = dave.get(&cb).await;
    refused(&page, "dave over a local account");
    assert!(page.body.contains("local account"), "{}", page.body);

    // A wrong state: refused.
    let mut m = Browser::new(format!("http://{proxy}"));
    let cb = sign_in_at_provider(&mut m, "/hub/oidc/login", "carol").await;
    let tampered = cb.replace("state=", "state=x");
    refused(&m.get(&tampered).await, "wrong state");

    // An ID token for another nonce: the provider signs it correctly, but
    // it was not issued for this browser's sign-in.
    let mut n = Browser::new(format!("http://{proxy}"));
    let go = n.get("/hub/oidc/login").await;
    let authorize = go.location.expect("authorize");
    let nonce = authorize
        .split("nonce=")
        .nth(1)
        .and_then(|v| v.split('&').next())
        .expect("nonce")
        .to_string();
    let other = authorize.replace(&format!("nonce={nonce}"), "nonce=an-old-nonce");
    let cb = provider_login(&mut n, &other, "carol").await;
    let page = n.get(&cb).await;
    refused(&page, "wrong nonce");
    assert!(page.body.contains("ID token is not valid"), "{}", page.body);
    assert_eq!(n.get("/hub/home").await.status, StatusCode::FOUND);
    drop(op);
}
