//! Separate credentials, with real replica and proxy processes: what each
//! role may call, hubctl with the wrong credential, and rotating the proxy
//! and admin credentials without downtime (docs/operations.md,
//! Credentials).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{auth, client, exe, Cluster, SECRET};
use quorumhub_proto::v1::routes_client::RoutesClient;
use quorumhub_proto::v1::{
    AddUserRequest, BackupRequest, NodeStatusRequest, ProposeRequest, WatchRequest,
};
use quorumhub_testkit::{ADMIN_SECRET, PROXY_SECRET};
use reqwest::StatusCode;
use serde_json::Value;

/// `hubctl --output json ARGS` (the `hubctl` binary README names) against
/// replica `id`, presenting the credential in `file` as `flag`
/// (`--admin-secret-file` or `--cluster-secret-file`).
fn hubctl(c: &Cluster, id: u64, flag: &str, file: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubctl"))
        .args(["--hub", &c.node(id).grpc, "--output", "json"])
        .arg(flag)
        .arg(file)
        .args(args)
        .env_remove("QUORUMHUB_CLUSTER_SECRET")
        .env_remove("QUORUMHUB_CLUSTER_SECRET_FILE")
        .env_remove("QUORUMHUB_ADMIN_SECRET_FILE")
        .output()
        .expect("run hubctl");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn routes(
    c: &Cluster,
    id: u64,
    secret: &str,
) -> RoutesClient<
    tonic::codegen::InterceptedService<tonic::transport::Channel, quorumhub_raft::auth::ClientAuth>,
> {
    let channel = quorumhub_raft::network::channel(&c.node(id).grpc, Duration::from_secs(1))
        .expect("channel");
    RoutesClient::with_interceptor(
        channel,
        quorumhub_raft::auth::ClientAuth::new(secret).expect("secret"),
    )
}

async fn watch_code(c: &Cluster, id: u64, secret: &str) -> Result<(), tonic::Code> {
    routes(c, id, secret)
        .watch(WatchRequest {
            from_revision: 0,
            watcher: "test".into(),
        })
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

fn sighup_hubs(c: &Cluster) {
    for n in &c.nodes {
        if let Some(child) = &n.child {
            unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
        }
    }
}

/// Wait (up to 10 s) until `check` holds: a reload is asynchronous.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(n: u64) -> Cluster {
    let mut c = Cluster::prepare(exe(), n, &[]);
    c.use_role_secrets();
    for id in 1..=n {
        c.spawn(id);
    }
    c.wait_leader(Duration::from_secs(30)).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_may_call_only_its_methods() {
    let c = start(3).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let code = |r: Result<(), tonic::Status>| r.map_err(|s| s.code());
    let propose = || ProposeRequest {
        command: b"{}".to_vec(),
    };

    // The proxy credential: the route watch and nothing else.
    let mut proxy = c.admin_as(leader, PROXY_SECRET);
    let denied = proxy.propose(propose()).await.expect_err("propose");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("replica credential"),
        "{}",
        denied.message()
    );
    let denied = proxy.backup(BackupRequest {}).await.expect_err("backup");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("--admin-secret-file"),
        "{}",
        denied.message()
    );
    assert_eq!(
        code(proxy.node_status(NodeStatusRequest {}).await.map(|_| ())),
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(watch_code(&c, leader, PROXY_SECRET).await, Ok(()));

    // The replica credential: Raft, forwarding, status; no backup, no
    // user admin, no route watch.
    let mut replica = c.admin_as(leader, SECRET);
    assert!(replica.node_status(NodeStatusRequest {}).await.is_ok());
    assert_eq!(
        code(replica.backup(BackupRequest {}).await.map(|_| ())),
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(
        code(
            replica
                .add_user(AddUserRequest {
                    name: "mallory".into(),
                    admin: true,
                })
                .await
                .map(|_| ())
        ),
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(
        watch_code(&c, leader, SECRET).await,
        Err(tonic::Code::PermissionDenied)
    );

    // The admin credential: backup and users; not the replicas' methods.
    let mut admin = c.admin_as(leader, ADMIN_SECRET);
    assert!(admin.backup(BackupRequest {}).await.is_ok());
    assert_eq!(
        code(admin.propose(propose()).await.map(|_| ())),
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(
        watch_code(&c, leader, ADMIN_SECRET).await,
        Err(tonic::Code::PermissionDenied)
    );

    // No credential, or an unknown one.
    let channel = quorumhub_raft::network::channel(&c.node(leader).grpc, Duration::from_secs(1))
        .expect("channel");
    let mut bare = quorumhub_proto::v1::admin_client::AdminClient::new(channel);
    assert_eq!(
        code(bare.node_status(NodeStatusRequest {}).await.map(|_| ())),
        Err(tonic::Code::Unauthenticated)
    );
    let mut wrong = c.admin_as(leader, "wrong-secret-0123456789");
    assert_eq!(
        code(wrong.node_status(NodeStatusRequest {}).await.map(|_| ())),
        Err(tonic::Code::Unauthenticated)
    );

    // hubctl: the proxy credential is refused with a message that names
    // the right one; the admin credential works, also through a follower
    // (which forwards with the caller's credential, not its own).
    let (proxy_file, admin_file) = c.role_files.clone().expect("role files");
    let (ok, _, err) = hubctl(
        &c,
        leader,
        "--admin-secret-file",
        &proxy_file,
        &["users", "list"],
    );
    assert!(!ok, "hubctl with the proxy credential listed users");
    assert!(err.contains("--admin-secret-file"), "{err}");
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let (ok, _, err) = hubctl(
        &c,
        follower,
        "--admin-secret-file",
        &admin_file,
        &["users", "add", "carol"],
    );
    assert!(ok, "{err}");
    let (ok, list, err) = hubctl(
        &c,
        follower,
        "--admin-secret-file",
        &admin_file,
        &["users", "list"],
    );
    assert!(ok, "{err}");
    assert!(list.to_string().contains("carol"), "{list}");
    let (ok, _, err) = hubctl(
        &c,
        follower,
        "--admin-secret-file",
        &admin_file,
        &["transfer-leader"],
    );
    assert!(ok, "transfer-leader through a follower: {err}");
    // The cluster secret still shows status (README's `hubctl status`
    // line), but no longer administers.
    let cluster_file = c.write_secret("cluster-secret-copy", SECRET);
    let (ok, _, err) = hubctl(
        &c,
        follower,
        "--cluster-secret-file",
        &cluster_file,
        &["status"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = hubctl(
        &c,
        follower,
        "--cluster-secret-file",
        &cluster_file,
        &["users", "list"],
    );
    assert!(!ok && err.contains("admin credential"), "{err}");
    // Writes through the REST API (forwarded between replicas with the
    // replica credential) still work.
    let r = client()
        .post(c.url(follower, "/hub/api/users/dave"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_mode_the_cluster_secret_does_everything() {
    let c = common::start(1, &[]).await;
    let mut replica = c.admin_as(1, SECRET);
    assert!(replica.backup(BackupRequest {}).await.is_ok());
    assert_eq!(watch_code(&c, 1, SECRET).await, Ok(()));
    let log = std::fs::read_to_string(c.dir.path().join("hub1.log")).expect("log");
    assert!(
        log.contains("legacy mode"),
        "no legacy-mode warning:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_credential_rotates_without_downtime() {
    let c = start(3).await;
    let old = c.write_secret("hubctl-old", ADMIN_SECRET);
    let new_secret = "test-admin-secret-NEW-0123456789";
    let new = c.write_secret("hubctl-new", new_secret);
    let users = |file: &Path| hubctl(&c, 1, "--admin-secret-file", file, &["users", "list"]).0;
    assert!(users(&old));
    assert!(!users(&new));

    // 1. The new secret as a second line on every hub; reload.
    c.write_secret("admin-secret", &format!("{ADMIN_SECRET}\n{new_secret}\n"));
    sighup_hubs(&c);
    eventually("every hub accepts the new admin secret", || async {
        (1..=3).all(|id| hubctl(&c, id, "--admin-secret-file", &new, &["users", "list"]).0)
    })
    .await;
    // Both work meanwhile: clients move over one by one.
    assert!(users(&old));
    // 2. Clients present the new one (hubctl reads its file on each run).
    // 3. The old one removed from the hubs; reload.
    c.write_secret("admin-secret", &format!("{new_secret}\n"));
    sighup_hubs(&c);
    eventually("no hub accepts the old admin secret", || async {
        (1..=3).all(|id| !hubctl(&c, id, "--admin-secret-file", &old, &["users", "list"]).0)
    })
    .await;
    assert!(users(&new));
    let (_, _, err) = hubctl(&c, 2, "--admin-secret-file", &old, &["users", "list"]);
    assert!(err.contains("unknown credential"), "{err}");

    // A broken file on reload keeps the credentials in force.
    c.write_secret("admin-secret", "short\n");
    sighup_hubs(&c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(users(&new), "a bad reload dropped the admin credential");
}

/// The proxy's watch, per its health endpoint: connected, with an event
/// (heartbeats included) within the stream timeout, and its route count.
async fn proxy_view(c: &Cluster) -> (bool, u64) {
    let Ok(r) = client().get(c.proxy_url("/_proxy/health")).send().await else {
        return (false, 0);
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let live = v["connected"].as_bool().unwrap_or(false)
        && v["last_event_age_ms"]
            .as_u64()
            .is_some_and(|age| age < 3000);
    (live, v["routes"].as_u64().unwrap_or(0))
}

/// Start `user`'s server and wait (up to 30 s) until the proxy holds
/// `routes` routes: a route update reached it.
async fn route_reaches_proxy(c: &Cluster, user: &str, routes: u64) {
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    for path in [
        format!("/hub/api/users/{user}"),
        format!("/hub/api/users/{user}/server"),
    ] {
        let r = client()
            .post(c.url(leader, &path))
            .header("Authorization", auth())
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy_view(c).await.1 < routes {
        assert!(
            Instant::now() < deadline,
            "{user}'s route never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until replica `id` is back and knows a leader.
async fn rejoined(c: &Cluster, id: u64) {
    eventually("the replica rejoined", || async {
        let mut a = c.admin_as(id, SECRET);
        matches!(a.node_status(NodeStatusRequest {}).await, Ok(s) if s.get_ref().has_leader)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_credential_rotates_while_the_proxy_watches() {
    let mut c = start(3).await;
    // The proxy has a file of its own, so that the hubs' and the proxy's
    // change at different steps, as on separate machines.
    let proxy_file = c.write_secret("proxy-own-secret", PROXY_SECRET);
    c.start_proxy_ready_with(&["--proxy-secret-file", &proxy_file.display().to_string()])
        .await;
    route_reaches_proxy(&c, "before", 1).await;
    let proxy_pid = c.proxy_pid().expect("proxy") as i32;
    let new_secret = "test-proxy-secret-NEW-0123456789";

    // Sample the proxy's watch all through the rotation: it must never
    // drop.
    let url = c.proxy_url("/_proxy/health");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut gaps = Vec::new();
        let mut samples = 0u32;
        while !*stop_rx.borrow() {
            if let Ok(r) = client().get(&url).send().await {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                samples += 1;
                if v["connected"] != true
                    || v["last_event_age_ms"].as_u64().is_none_or(|a| a >= 3000)
                {
                    gaps.push(v);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (samples, gaps)
    });

    // 1. Hubs accept both.
    c.write_secret("proxy-secret", &format!("{PROXY_SECRET}\n{new_secret}\n"));
    sighup_hubs(&c);
    eventually("every hub accepts the new proxy secret", || async {
        let mut all = true;
        for id in 1..=3 {
            all &= watch_code(&c, id, new_secret).await.is_ok();
        }
        all
    })
    .await;
    // 2. The proxy presents the new one (from its next watch on).
    c.write_secret("proxy-own-secret", &format!("{new_secret}\n"));
    unsafe { libc::kill(proxy_pid, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 3. Hubs drop the old one.
    c.write_secret("proxy-secret", &format!("{new_secret}\n"));
    sighup_hubs(&c);
    eventually("no hub accepts the old proxy secret", || async {
        let mut none = true;
        for id in 1..=3 {
            none &= watch_code(&c, id, PROXY_SECRET).await == Err(tonic::Code::Unauthenticated);
        }
        none
    })
    .await;
    route_reaches_proxy(&c, "during", 2).await;
    stop_tx.send(true).expect("stop sampler");
    let (samples, gaps) = sampler.await.expect("sampler");
    assert!(samples > 10, "only {samples} samples");
    assert!(
        gaps.is_empty(),
        "the proxy's watch dropped during the rotation: {gaps:?}"
    );

    // The proxy reconnects with the new secret: stop replicas in turn (it
    // watches one of them) and route updates still reach it.
    for (victim, user, routes) in [(1u64, "after1", 3), (2, "after2", 4)] {
        c.stop(victim);
        route_reaches_proxy(&c, user, routes).await;
        c.spawn(victim);
        rejoined(&c, victim).await;
    }
    let text = std::fs::read_to_string(c.dir.path().join("proxy.log")).expect("proxy log");
    assert!(
        !text.contains("refused the proxy's credential"),
        "the proxy was refused:\n{text}"
    );
}

/// A CA and, signed by it, a certificate for 127.0.0.1 usable by servers
/// and clients alike: (ca.pem, cert.pem, key.pem) in `dir` under `name`.
fn issue(dir: &Path, name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let write = |file: &str, text: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("{name}-{file}"));
        std::fs::write(&p, text).expect("write pem");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    };
    (
        write("ca.pem", &ca.pem(), 0o644),
        write("cert.pem", &cert.pem(), 0o644),
        write("key.pem", &key.serialize_pem(), 0o600),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mutual_tls_between_replicas_proxy_and_hubctl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = issue(dir.path(), "good");
    let tls = [
        "--grpc-tls-cert",
        cert.as_str(),
        "--grpc-tls-key",
        key.as_str(),
        "--grpc-tls-ca",
        ca.as_str(),
    ];
    let mut c = Cluster::prepare(exe(), 3, &tls);
    c.use_role_secrets();
    for id in 1..=3 {
        c.spawn(id);
    }
    // The test's own clients speak plain gRPC: it cannot use the testkit's
    // leader probe. Wait through hubctl, which speaks TLS.
    let (_, admin_file) = c.role_files.clone().expect("role files");
    let ctl = |id: u64, extra: &[&str], args: &[&str]| {
        let out = Command::new(exe())
            .arg("ctl")
            .args(["--hub", &c.node(id).grpc, "--output", "json"])
            .arg("--admin-secret-file")
            .arg(&admin_file)
            .args(extra)
            .args(args)
            .env_remove("QUORUMHUB_CLUSTER_SECRET")
            .output()
            .expect("hubctl");
        (
            out.status.success(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, status, err) = ctl(1, &tls, &["status"]);
        if ok && status["leader"].as_u64().is_some_and(|l| l > 0) {
            break;
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("no leader over mutual TLS: {err} {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Replication works over TLS: a write through a follower's REST API.
    let (ok, _, err) = ctl(2, &tls, &["users", "add", "tls-user"]);
    assert!(ok, "{err}");
    let (ok, list, err) = ctl(3, &tls, &["users", "list"]);
    assert!(ok && list.to_string().contains("tls-user"), "{err} {list}");

    // Without TLS, or with a certificate of another CA: refused.
    let (ok, _, err) = ctl(1, &[], &["status"]);
    assert!(!ok, "plain gRPC was accepted: {err}");
    let (other_ca, other_cert, other_key) = issue(dir.path(), "other");
    let foreign = [
        "--grpc-tls-cert",
        other_cert.as_str(),
        "--grpc-tls-key",
        other_key.as_str(),
        "--grpc-tls-ca",
        ca.as_str(),
    ];
    let (ok, _, err) = ctl(1, &foreign, &["status"]);
    assert!(
        !ok,
        "a client certificate of another CA was accepted: {err}"
    );
    let wrong_ca = [
        "--grpc-tls-cert",
        cert.as_str(),
        "--grpc-tls-key",
        key.as_str(),
        "--grpc-tls-ca",
        other_ca.as_str(),
    ];
    let (ok, _, err) = ctl(1, &wrong_ca, &["status"]);
    assert!(
        !ok,
        "a server certificate not of the client's CA was accepted: {err}"
    );
    let (ok, _, err) = ctl(1, &tls[..2], &["status"]);
    assert!(!ok && err.contains("--grpc-tls-key"), "{err}");

    // The proxy watches routes over TLS.
    c.start_proxy_ready_with(&tls).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !proxy_view(&c).await.0 {
        assert!(
            Instant::now() < deadline,
            "the proxy never connected over mutual TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
