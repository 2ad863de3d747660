//! What operators rely on: start-up refusals, re-seeding, hubctl.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{auth, client, exe, Cluster, SECRET, TOKEN};
use reqwest::StatusCode;
use serde_json::Value;

fn hubctl(c: &Cluster, id: u64, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(exe())
        .arg("ctl")
        .args(["--hub", &c.node(id).grpc, "--output", "json"])
        .args(args)
        .env("QUORUMHUB_CLUSTER_SECRET", SECRET)
        .output()
        .expect("run hubctl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

/// Run `quorumhub reseed` for replica `id` of `c` from replica `from`.
fn reseed(c: &Cluster, id: u64, from: u64) -> std::process::Output {
    Command::new(exe())
        .args([
            "reseed",
            "--data-dir",
            &c.node(id).data.display().to_string(),
        ])
        .args(["--node-id", &id.to_string(), "--cluster-id", &c.cluster_id])
        .args(["--from", &c.node(from).grpc])
        .env("QUORUMHUB_CLUSTER_SECRET", SECRET)
        .output()
        .expect("reseed")
}

/// Run a replica that must refuse to start; return its stderr.
fn refused(c: &Cluster, args: Vec<String>) -> String {
    let out = Command::new(exe())
        .args(args)
        .env("QUORUMHUB_CLUSTER_SECRET", SECRET)
        .env("QUORUMHUB_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run");
    assert!(!out.status.success(), "it started: {}", c.cluster_id);
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubctl_status_and_transfer_leader() {
    let c = common::start(3, &[]).await;
    let (ok, status, err) = hubctl(&c, 2, &["status"]);
    assert!(ok, "{err}");
    assert_eq!(status["voters"], 3);
    let leader = status["leader"].as_u64().expect("a leader");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["reachable"] == true && m["lag"].is_u64()),
        "{status}"
    );
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    // The cluster-version gate: every member says which log format its
    // build understands; the cluster is at the one they all know.
    let format = quorumhub_state::LOG_FORMAT_VERSION;
    assert!(
        members.iter().all(|m| m["log_format_version"] == format),
        "{status}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = status;
    while status["cluster_version"] != format {
        assert!(
            Instant::now() < deadline,
            "cluster version never raised: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = hubctl(&c, 2, &["status"]).1;
    }
    // wait-ready: the rolling upgrade's step between two replicas.
    let (ok, ready, err) = hubctl(&c, 1, &["wait-ready", "3", "--timeout-s", "10"]);
    assert!(ok, "{err}");
    assert_eq!(ready["node"], 3);
    assert!(ready["applied_index"].as_u64() >= status["last_log_index"].as_u64());
    let (ok, _, err) = hubctl(&c, 1, &["wait-ready", "9", "--timeout-s", "1"]);
    assert!(!ok && err.contains("not a member"), "{err}");

    let target = (1..=3).find(|i| *i != leader).expect("follower");
    let term_before = hubctl(&c, 1, &["status"]).1["term"].as_u64().expect("term");
    let (ok, moved, err) = hubctl(&c, 1, &["transfer-leader", "--to", &target.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(moved["new_leader"].as_u64(), Some(target), "{moved}");
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, target);
    // Exactly one election: the target's own (issue 9).
    assert_eq!(moved["term"].as_u64(), Some(term_before + 1), "{moved}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = hubctl(&c, 2, &["status"]).1;
    let terms: Vec<Option<u64>> = after["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["term"].as_u64())
        .collect();
    assert_eq!(terms, vec![Some(term_before + 1); 3], "{after}");
    // Writes work under the new leader, through the old one.
    assert_eq!(
        create_user(&c, leader, "after-transfer").await,
        StatusCode::CREATED
    );

    let (ok, users, _) = hubctl(&c, 3, &["users", "add", "Carol", "--admin"]);
    assert!(ok);
    assert_eq!(users["name"], "carol");
    let (ok, _, err) = hubctl(&c, 3, &["users", "add", "carol"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, list, _) = hubctl(&c, 1, &["users", "list"]);
    assert!(ok);
    let names: Vec<&str> = list["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(
        names.contains(&"carol") && names.contains(&"after-transfer"),
        "{names:?}"
    );

    let (ok, digests, _) = hubctl(&c, 1, &["digest"]);
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut digests = digests;
    loop {
        let ds: Vec<&str> = digests["replicas"]
            .as_array()
            .expect("r")
            .iter()
            .filter_map(|r| r["digest"].as_str())
            .collect();
        if ds.len() == 3 && ds.iter().all(|d| *d == ds[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas disagree: {digests}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        digests = hubctl(&c, 1, &["digest"]).1;
    }

    // The wrong secret is refused with a hint.
    let out = Command::new(exe())
        .args(["ctl", "--hub", &c.node(1).grpc, "status"])
        .env("QUORUMHUB_CLUSTER_SECRET", "not-the-secret-0123456789")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_store_is_refused_and_reseed_recovers() {
    let mut c = common::start(3, &[]).await;
    for i in 0..10 {
        assert_eq!(
            create_user(&c, 1, &format!("d-{i}")).await,
            StatusCode::CREATED
        );
    }
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let victim = (1..=3).find(|i| *i != leader).expect("follower");
    // The victim holds the entry to damage (a quorum may not include it).
    wait_digests_agree(&c, leader).await;
    c.stop(victim);
    let raft_dir = c.node(victim).data.join("raft");
    assert!(quorumhub_raft::log_store::damage_entry(&raft_dir, 5, false).expect("sled"));

    // Start-up refuses, says why and what to do, and touches nothing.
    let err = refused(&c, c.hub_args(victim));
    assert!(
        err.contains("damaged") && err.contains("quorumhub reseed"),
        "{err}"
    );

    // Other refusals, each with its own message.
    let mut other_cluster = c.hub_args(victim);
    let at = other_cluster
        .iter()
        .position(|a| a == "--cluster-id")
        .expect("flag")
        + 1;
    other_cluster[at] = "someone-else".into();
    // Only itself as a peer, so that the data dir, not a peer, says so.
    let at = other_cluster
        .iter()
        .position(|a| a == "--peer")
        .expect("flag")
        + 1;
    let me = c.node(victim);
    other_cluster[at] = format!("{victim}={}/{}", me.grpc, me.http);
    assert!(refused(&c, other_cluster).contains("another cluster"));
    let mut missing = c.hub_args(victim);
    let at = missing
        .iter()
        .position(|a| a == "--data-dir")
        .expect("flag")
        + 1;
    missing[at] = c.dir.path().join("nope").display().to_string();
    assert!(refused(&c, missing).contains("does not exist"));
    let locked = c.hub_args(leader);
    assert!(refused(&c, locked).contains("locked by another running replica"));

    // Re-seeding refuses a running replica's data dir.
    let running = reseed(&c, leader, leader);
    assert!(!running.status.success());
    assert!(String::from_utf8_lossy(&running.stderr).contains("in use by a running replica"));

    // One command re-seeds it from a peer; it then catches up.
    let out = reseed(&c, victim, leader);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aside: Vec<_> = std::fs::read_dir(c.dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged dir is kept aside, not deleted");
    c.spawn(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client()
            .get(c.url(victim, "/hub/api/users/d-9"))
            .header("Authorization", auth())
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "re-seeded replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn bad_configuration_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    // A misconfigured role in the TOML file: refused with its line.
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("hub.toml");
    std::fs::write(
        &conf,
        "node_id = 1\njoin = true\n\n[[roles]]\nname = \"ta\"\nscopes = [\"read:everything\"]\n",
    )
    .expect("write");
    let conf = conf.display().to_string();
    let role_error = format!("{conf}:4: role \"ta\": Unknown scope \"read:everything\"");
    // A service with a URL that has a path, and a role naming a service
    // that is not configured.
    let services = conf_dir.path().join("services.toml");
    std::fs::write(
        &services,
        "node_id = 1\njoin = true\n\n[[services]]\nname = \"dash\"\nurl = \"http://10.0.0.5:9000/dash\"\napi_token = \"0123456789abcdef0123\"\n",
    )
    .expect("write");
    let services = services.display().to_string();
    let service_error =
        format!("{services}:4: service \"dash\": url \"http://10.0.0.5:9000/dash\" has a path");
    let roles = conf_dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        "node_id = 1\njoin = true\n\n[[roles]]\nname = \"viewer\"\nscopes = [\"list:users\"]\nservices = [\"grafana\"]\n",
    )
    .expect("write");
    let roles = roles.display().to_string();
    let unknown_service = format!(
        "{roles}:4: role \"viewer\": names the service \"grafana\", but no service by that name is configured"
    );
    // A profile that names an image for the process spawner, in its own
    // file given by the environment (as the container deployment does).
    let profiles = conf_dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        "[[profiles]]\ndisplay_name = \"Plain\"\n\n[[profiles]]\nslug = \"gpu\"\ndisplay_name = \"GPU\"\nimage = \"lab:gpu\"\n",
    )
    .expect("write");
    let profiles = profiles.display().to_string();
    let profile_error = format!(
        "{profiles}:4: profile \"gpu\": sets image \"lab:gpu\", which only the Docker spawner uses"
    );
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--node-id", "0"],
            SECRET,
            "--node-id must be a positive integer",
        ),
        (&["--node-id", "1", "--join"], "short", "use at least 16"),
        (
            &["--node-id", "1", "--peer", "1=a:1"],
            SECRET,
            "expected ID=GRPC_ADDR/HTTP_ADDR",
        ),
        (
            &["--node-id", "1", "--peer", "2=a:1/b:2"],
            SECRET,
            "does not include this replica",
        ),
        (
            &["--node-id", "1", "--heartbeat-ms", "500"],
            SECRET,
            "timeouts must satisfy",
        ),
        (
            &[
                "--node-id",
                "1",
                "--join",
                "--named-server-limit-per-user",
                "0",
            ],
            SECRET,
            "--named-server-limit-per-user must be at least 1",
        ),
        (
            &[
                "--node-id",
                "1",
                "--join",
                "--max-token-note-bytes",
                "100000",
            ],
            SECRET,
            "cannot exceed --max-body-bytes",
        ),
        (&["--config", &conf], SECRET, &role_error),
        (&["--config", &services], SECRET, &service_error),
        (&["--config", &roles], SECRET, &unknown_service),
    ];
    for (args, secret, want) in cases {
        let out = Command::new(exe())
            .args(["hub", "--data-dir", &data])
            .args(*args)
            .env("QUORUMHUB_CLUSTER_SECRET", secret)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(exe())
        .args(["hub", "--data-dir", &data, "--node-id", "1", "--join"])
        .arg("--spawner-run-as-hub-user")
        .env("QUORUMHUB_CLUSTER_SECRET", SECRET)
        .env("QUORUMHUB_PROFILES_FILE", &profiles)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&profile_error),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "nothing was written"
    );
}

/// SIGTERM of the leader while a proxy watches its routes: it hands
/// leadership over first, ends the route watch, and exits by itself; a
/// client writing through another replica meanwhile sees no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_and_exits_with_a_proxy_watching() {
    let mut c = common::start(3, &[]).await;
    // The proxy watches node 1 first; make node 1 the leader.
    c.start_proxy();
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    if leader != 1 {
        let (ok, _, err) = hubctl(&c, 1, &["transfer-leader", "--to", "1"]);
        assert!(ok, "transfer-leader failed: {err}");
    }
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, 1);
    wait_proxy_ready(&c).await;

    let writer_base = c.url(2, "");
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop_writing.clone();
        async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("during-stop-{i}");
                i += 1;
                match client()
                    .post(format!("{writer_base}/hub/api/users/{name}"))
                    .header("Authorization", auth())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::CREATED => acked.push(name),
                    Ok(r) => failed.push(format!("{name}: {}", r.status())),
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
            (acked, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exited_by_itself = tokio::task::block_in_place(|| c.stop(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writer.await.expect("writer");

    if !exited_by_itself {
        c.dump_logs();
    }
    assert!(exited_by_itself, "the replica had to be killed");
    assert!(
        failed.is_empty(),
        "writes failed during the stop: {failed:?}"
    );
    assert!(
        acked.len() > 5,
        "too few writes to mean anything: {acked:?}"
    );
    let new_leader = c.wait_leader(Duration::from_secs(5)).await;
    assert_ne!(new_leader, 1);
    // Every acknowledged write is on both survivors, and the proxy, now
    // watching another replica, still reaches the hub API.
    for id in [2, 3] {
        let (ok, users, err) = hubctl(&c, id, &["users", "list"]);
        assert!(ok, "{err}");
        let text = users.to_string();
        for name in &acked {
            assert!(text.contains(name.as_str()), "replica {id} lacks {name}");
        }
    }
    let r = client()
        .get(c.proxy_url("/hub/api/"))
        .send()
        .await
        .expect("proxy");
    assert_eq!(r.status(), StatusCode::OK);
}

async fn wait_proxy_ready(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client().get(c.proxy_url("/hub/api/")).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "proxy never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replica with the wrong secret, a `--peer` list that misnames a node, or
/// another cluster's id refuses to start, says so, and leaves its (new)
/// data dir untouched; the running cluster goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_replica_refuses_to_start_and_touches_nothing() {
    let c = common::start(3, &[]).await;
    c.wait_leader(Duration::from_secs(5)).await;
    let fresh = tempfile::tempdir().expect("tempdir");
    // Replica 3's own flags, but on an empty data dir.
    let base = |c: &Cluster| -> Vec<String> {
        let mut a = c.hub_args(3);
        let i = a.iter().position(|x| x == "--data-dir").expect("flag") + 1;
        a[i] = fresh.path().display().to_string();
        a
    };
    let swap = |mut a: Vec<String>, flag: &str, value: String| {
        let i = a.iter().position(|x| x == flag).expect("flag") + 1;
        a[i] = value;
        a
    };
    let (n1, n2) = (c.node(1), c.node(2));
    let misnamed = format!(
        "1={}/{},2={}/{},3={}/{}",
        n2.grpc,
        n2.http,
        n1.grpc,
        n1.http,
        c.node(3).grpc,
        c.node(3).http
    );
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            base(&c),
            "another-secret-0123456789",
            "refuses this replica's cluster secret",
        ),
        (
            swap(base(&c), "--peer", misnamed),
            SECRET,
            "but the replica there is node 2",
        ),
        (
            swap(base(&c), "--cluster-id", "other".into()),
            SECRET,
            "belongs to cluster",
        ),
    ];
    for (args, secret, want) in cases {
        let out = Command::new(exe())
            .args(&args)
            .env("QUORUMHUB_CLUSTER_SECRET", secret)
            .env("QUORUMHUB_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{want}: {err}");
        assert_eq!(
            std::fs::read_dir(fresh.path()).expect("ls").count(),
            0,
            "the data dir was touched"
        );
    }
    assert_eq!(create_user(&c, 1, "still-fine").await, StatusCode::CREATED);
}

/// Garbage on a replica's gRPC (Raft) port: the connection is dropped and
/// the cluster goes on as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_raft_port_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = common::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let payloads: Vec<Vec<u8>> = vec![
        // Not HTTP/2 at all.
        (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        // The HTTP/2 preface, then a frame header announcing a 16 MiB frame
        // of an unknown type, then noise.
        [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
            &[0xff, 0xff, 0xff, 0x42, 0, 0, 0, 0, 1],
            &[0xab; 4096],
        ]
        .concat(),
    ];
    for payload in payloads {
        let mut s = tokio::net::TcpStream::connect(&c.node(leader).grpc)
            .await
            .expect("connect");
        let _ = s.write_all(&payload).await;
        let mut buf = vec![0u8; 65536];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the replica kept a garbage connection open");
    }
    // Same leader, and writes through every replica still work.
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, leader);
    for id in 1..=3 {
        assert_eq!(
            create_user(&c, id, &format!("after-garbage-{id}")).await,
            StatusCode::CREATED
        );
    }
}

fn users_of(c: &Cluster, id: u64) -> Vec<String> {
    let (ok, v, err) = hubctl(c, id, &["users", "list"]);
    assert!(ok, "{err}");
    let mut names: Vec<String> = v["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Restore `file` into every data dir of the prepared cluster `to`, start
/// it, and wait for a leader.
async fn restore_and_start(to: &mut Cluster, file: &std::path::Path) {
    for id in 1..=3 {
        let out = Command::new(exe())
            .args(["restore", "--from"])
            .arg(file)
            .arg("--data-dir")
            .arg(&to.node(id).data)
            .args(["--node-id", &id.to_string(), "--cluster-id", &to.cluster_id])
            .args(["--peer", &to.peers()])
            .output()
            .expect("restore");
        assert!(
            out.status.success(),
            "restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in 1..=3 {
        to.spawn(id);
    }
    to.wait_leader(Duration::from_secs(30)).await;
}

/// `hubctl backup` from a live cluster, `quorumhub restore` into a new one:
/// the new cluster holds exactly what was acknowledged before the backup,
/// every replica agrees, and it takes writes. A restore refuses a data dir
/// that is not empty and a damaged file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_into_a_new_cluster() {
    let a = common::start(3, &[]).await;
    for i in 0..10 {
        assert_eq!(
            create_user(&a, 1 + i % 3, &format!("b-{i}")).await,
            StatusCode::CREATED
        );
    }
    let before = users_of(&a, 1);
    let file = a.dir.path().join("backup.qhb");
    let (ok, taken, err) = hubctl(&a, 2, &["backup", "--out", &file.display().to_string()]);
    assert!(ok, "{err}");
    assert_eq!(taken["users"].as_u64(), Some(before.len() as u64));
    assert_eq!(
        create_user(&a, 1, "after-backup").await,
        StatusCode::CREATED
    );

    let mut b = Cluster::prepare(exe(), 3, &[]);
    restore_and_start(&mut b, &file).await;
    for id in 1..=3 {
        assert_eq!(
            users_of(&b, id),
            before,
            "replica {id} of the restored cluster"
        );
    }
    assert_eq!(
        create_user(&b, 2, "after-restore").await,
        StatusCode::CREATED
    );
    wait_digests_agree(&b, 1).await;

    // Refusals: a data dir in use, and a damaged file.
    let out = Command::new(exe())
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&b.node(1).data)
        .args([
            "--node-id",
            "1",
            "--cluster-id",
            &b.cluster_id,
            "--peer",
            &b.peers(),
        ])
        .output()
        .expect("restore");
    assert!(!out.status.success());
    let mut bytes = std::fs::read(&file).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let damaged = a.dir.path().join("damaged.qhb");
    std::fs::write(&damaged, bytes).expect("write");
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(exe())
        .args(["restore", "--from"])
        .arg(&damaged)
        .arg("--data-dir")
        .arg(empty.path())
        .args(["--node-id", "1", "--peer", &b.peers()])
        .output()
        .expect("restore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("checksum"), "{err}");
    assert_eq!(std::fs::read_dir(empty.path()).expect("ls").count(), 0);
}

/// Quorum lost for good: two of three replicas are gone with their disks.
/// The survivor's data dir (stopped) is read offline and a new cluster is
/// started from it, with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_from_the_last_surviving_replica() {
    let mut a = common::start(3, &[]).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("s-{i}");
        assert_eq!(create_user(&a, 1 + i % 3, &name).await, StatusCode::CREATED);
        acked.push(name);
    }
    let survivor = a.wait_leader(Duration::from_secs(5)).await;
    for id in 1..=3 {
        a.kill(id);
    }
    let file = a.dir.path().join("survivor.qhb");
    let out = Command::new(exe())
        .args(["backup", "--data-dir"])
        .arg(&a.node(survivor).data)
        .args([
            "--node-id",
            &survivor.to_string(),
            "--cluster-id",
            &a.cluster_id,
        ])
        .arg("--out")
        .arg(&file)
        .output()
        .expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut b = Cluster::prepare(exe(), 3, &[]);
    restore_and_start(&mut b, &file).await;
    let users = users_of(&b, 3);
    for name in &acked {
        assert!(users.contains(name), "{name} was lost: {users:?}");
    }
}

/// The runbook's "Add a replica" and "Remove a replica", as written: a
/// fourth replica started with --join, added (learner, then voter), holding
/// the state; then removed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_a_replica() {
    let c = common::start(3, &[]).await;
    assert_eq!(create_user(&c, 1, "before-join").await, StatusCode::CREATED);
    let data = c.dir.path().join("node4");
    std::fs::create_dir_all(&data).expect("mkdir");
    let grpc = format!("127.0.0.1:{}", quorumhub_testkit::free_port());
    let http = format!("127.0.0.1:{}", quorumhub_testkit::free_port());
    let args: Vec<String> = vec![
        "hub".into(),
        "--node-id".into(),
        "4".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--cluster-id".into(),
        c.cluster_id.clone(),
        "--grpc-listen".into(),
        grpc.clone(),
        "--http-listen".into(),
        http.clone(),
        "--join".into(),
        "--spawner-run-as-hub-user".into(),
    ];
    let fourth = KillOnDrop(c.command(&args, "hub4"));
    // As in the runbook: once it runs (it answers on its gRPC port).
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&grpc).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the fourth replica never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, added, err) = hubctl(
        &c,
        1,
        &["members", "add", "4", "--grpc", &grpc, "--http", &http],
    );
    assert!(ok, "{err}");
    let (_, status, _) = hubctl(&c, 2, &["status"]);
    assert_eq!(status["voters"], 4, "{added} {status}");
    // The new replica serves the state it was sent.
    let r = client()
        .get(format!("http://{http}/hub/api/users/before-join"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);

    let (ok, _, err) = hubctl(&c, 1, &["members", "remove", "4"]);
    assert!(ok, "{err}");
    let (_, status, _) = hubctl(&c, 2, &["status"]);
    assert_eq!(status["voters"], 3, "{status}");
    assert!(
        !status["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["id"] == 4),
        "{status}"
    );
    drop(fourth);
}

/// A process started by hand in a test, killed however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unmounts a tmpfs when the test ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill `dir`'s filesystem to the last byte; returns the filler's path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The leader's disk fills up: its Raft node stops on the write error, the
/// replica exits saying why, the others elect a leader and no client write
/// fails. Once space is back and it is started again, it verifies its store,
/// catches up and agrees with the others. (Needs root to mount a small
/// tmpfs for that replica's data dir, as CI has.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_only_that_replica_and_it_recovers() {
    let mut c = Cluster::prepare(exe(), 3, &[]);
    let mnt = c.dir.path().join("small-disk");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test mounts a tmpfs: run it as root"
    );
    let _guard = Mounted(mnt.clone());
    c.nodes[0].data = mnt.join("node1");
    std::fs::create_dir_all(&c.nodes[0].data).expect("mkdir");
    for id in 1..=3 {
        c.spawn(id);
    }
    if c.wait_leader(Duration::from_secs(30)).await != 1 {
        let (ok, _, err) = hubctl(&c, 2, &["transfer-leader", "--to", "1"]);
        assert!(ok, "{err}");
    }
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, 1);

    let filler = fill(&mnt);
    let mut acked = 0;
    let mut exited = None;
    for i in 0..3000 {
        let r = client()
            .post(c.url(2, &format!("/hub/api/users/full-{i}")))
            .header("Authorization", auth())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::CREATED, "write {i} failed");
        acked += 1;
        if let Some(child) = c.nodes[0].child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                break;
            }
        }
    }
    let status = exited.expect("the replica on the full disk kept running");
    assert!(!status.success());
    c.nodes[0].child = None;
    let log = std::fs::read_to_string(c.dir.path().join("hub1.log")).unwrap_or_default();
    assert!(
        log.contains("No space left on device") && log.contains("Raft stopped on its own"),
        "{log}"
    );
    // The others go on.
    assert_eq!(create_user(&c, 3, "while-full").await, StatusCode::CREATED);

    // Space returns; the replica starts again and catches up.
    std::fs::remove_file(&filler).expect("rm filler");
    c.spawn(1);
    let (ok, _, err) = hubctl(&c, 2, &["wait-ready", "1", "--timeout-s", "30"]);
    assert!(ok, "{err}");
    wait_digests_agree(&c, 2).await;
    assert_eq!(create_user(&c, 1, "after-space").await, StatusCode::CREATED);
    assert!(acked > 0);
}

/// `reseed` refuses while another replica lags: the entries the lost disk
/// acknowledged might then exist only on the leader, and the empty replica
/// could help elect one that lacks them. Once the laggard has caught up the
/// re-seed goes ahead, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_waits_until_the_other_replicas_hold_everything() {
    let mut c = common::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let mut followers = (1..=3).filter(|i| *i != leader);
    let (lagger, victim) = (followers.next().expect("f"), followers.next().expect("f"));
    c.kill(lagger);
    let mut acked = Vec::new();
    for i in 0..10 {
        let name = format!("only-two-{i}");
        assert_eq!(create_user(&c, leader, &name).await, StatusCode::CREATED);
        acked.push(name);
    }
    // The victim's disk, which acknowledged those writes, is lost.
    c.kill(victim);
    let data = c.node(victim).data.clone();
    std::fs::remove_dir_all(&data).expect("wipe");
    let out = reseed(&c, victim, leader);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("caught up"), "{err}");
    assert!(!data.exists(), "the refused re-seed created the data dir");

    c.spawn(lagger);
    let (ok, _, err) = hubctl(
        &c,
        leader,
        &["wait-ready", &lagger.to_string(), "--timeout-s", "30"],
    );
    assert!(ok, "{err}");
    let out = reseed(&c, victim, leader);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.spawn(victim);
    let (ok, _, err) = hubctl(
        &c,
        leader,
        &["wait-ready", &victim.to_string(), "--timeout-s", "30"],
    );
    assert!(ok, "{err}");
    wait_digests_agree(&c, leader).await;
    let held = users_of(&c, victim);
    assert!(acked.iter().all(|n| held.contains(n)), "{held:?}");
}

/// The leader's disk is lost. Re-seeded at once from a follower, before
/// that follower has seen a new leader, the replica must not record its own
/// old leadership as its vote (openraft would start it as the leader of
/// that old term, with a log copied from a newer one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_the_replica_that_was_the_leader() {
    let mut c = common::start(3, &[]).await;
    let victim = c.wait_leader(Duration::from_secs(5)).await;
    let from = (1..=3).find(|i| *i != victim).expect("a follower");
    let (ok, status, err) = hubctl(&c, victim, &["status"]);
    assert!(ok, "{err}");
    let old_term = status["term"].as_u64().expect("term");
    let mut acked = Vec::new();
    for i in 0..10 {
        let name = format!("before-{i}");
        assert_eq!(create_user(&c, victim, &name).await, StatusCode::CREATED);
        acked.push(name);
    }
    c.kill(victim);
    let data = c.node(victim).data.clone();
    std::fs::remove_dir_all(&data).expect("wipe");
    let out = reseed(&c, victim, from);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (term, leader) = said
        .split_once("vote set to term ")
        .and_then(|(_, rest)| rest.split_once(" (leader "))
        .and_then(|(t, rest)| {
            Some((
                t.parse::<u64>().ok()?,
                rest.split(')').next()?.parse::<u64>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("no vote in {said:?}"));
    assert!(term > old_term && leader != victim, "{said}");
    c.spawn(victim);
    let (ok, _, err) = hubctl(
        &c,
        from,
        &["wait-ready", &victim.to_string(), "--timeout-s", "30"],
    );
    assert!(ok, "{err}");
    wait_digests_agree(&c, from).await;
    assert_eq!(create_user(&c, victim, "after").await, StatusCode::CREATED);
    acked.push("after".into());
    wait_digests_agree(&c, from).await;
    let held = users_of(&c, victim);
    assert!(acked.iter().all(|n| held.contains(n)), "{held:?}");
}

/// `POST /hub/api/users/{name}` through replica `id`, as the admin.
async fn create_user(c: &Cluster, id: u64, name: &str) -> StatusCode {
    client()
        .post(c.url(id, &format!("/hub/api/users/{name}")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("post")
        .status()
}

/// Every replica reaches the same state digest (digests are read without a
/// barrier, so followers get a moment to apply the last write).
async fn wait_digests_agree(c: &Cluster, via: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, digest, err) = hubctl(c, via, &["digest"]);
        assert!(ok, "{err}");
        let digests: std::collections::BTreeSet<String> = digest["replicas"]
            .as_array()
            .map(|r| r.iter().map(|x| x["digest"].to_string()).collect())
            .unwrap_or_default();
        if digests.len() == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "replicas disagree: {digest}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
