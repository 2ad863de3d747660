//! The replicated core, end to end: real replica processes on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{auth, client, Cluster};
use reqwest::StatusCode;
use serde_json::Value;

async fn create(base: &str, name: &str) -> Result<StatusCode, reqwest::Error> {
    client()
        .post(format!("{base}/hub/api/users/{name}"))
        .header("Authorization", auth())
        .send()
        .await
        .map(|r| r.status())
}

async fn get_user(base: &str, name: &str) -> Option<Value> {
    let r = client()
        .get(format!("{base}/hub/api/users/{name}"))
        .header("Authorization", auth())
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::OK {
        return None;
    }
    r.json().await.ok()
}

/// Users as one replica answers; empty while it is unreachable.
async fn list_users(base: &str) -> BTreeSet<String> {
    let Ok(r) = client()
        .get(format!("{base}/hub/api/users"))
        .header("Authorization", auth())
        .send()
        .await
    else {
        return BTreeSet::new();
    };
    if r.status() != StatusCode::OK {
        return BTreeSet::new();
    }
    let users: Vec<Value> = r.json().await.unwrap_or_default();
    users
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_string))
        .collect()
}

fn base(c: &Cluster, id: u64) -> String {
    format!("http://{}", c.node(id).http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_replica_are_read_everywhere() {
    let c = common::start(3, &[]).await;
    for writer in 1..=3 {
        let name = format!("user-via-{writer}");
        assert_eq!(
            create(&base(&c, writer), &name).await.ok(),
            Some(StatusCode::CREATED)
        );
        // Linearizable: visible on every replica right after the ack.
        for reader in 1..=3 {
            let u = get_user(&base(&c, reader), &name).await;
            assert_eq!(
                u.as_ref().and_then(|u| u["name"].as_str()),
                Some(name.as_str()),
                "read on {reader}"
            );
        }
    }
    // A duplicate through another replica is a conflict, not a second user.
    assert_eq!(
        create(&base(&c, 2), "user-via-1").await.ok(),
        Some(StatusCode::CONFLICT)
    );
    let all = list_users(&base(&c, 3)).await;
    assert!(
        ["user-via-1", "user-via-2", "user-via-3"]
            .iter()
            .all(|n| all.contains(*n)),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_writes_resume_and_nothing_acknowledged_is_lost() {
    let mut c = common::start(3, &[]).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        if create(&base(&c, 1 + i % 3), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
        }
    }
    assert_eq!(acked.len(), 20);
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(leader);
    let killed = Instant::now();
    let survivor = c.alive()[0];
    // The spec: writes through the survivors succeed again within 2 s.
    let mut n = 0;
    let recovered = loop {
        let name = format!("after-{n}");
        n += 1;
        if create(&base(&c, survivor), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no write succeeded 10 s after the leader died"
        );
    };
    assert!(
        recovered < Duration::from_secs(2),
        "writes resumed only after {recovered:?}"
    );
    for id in c.alive() {
        let all = list_users(&base(&c, id)).await;
        for name in &acked {
            assert!(all.contains(name), "replica {id} lost acknowledged {name}");
        }
    }
    // The killed leader comes back as a follower with everything.
    c.spawn(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = list_users(&base(&c, leader)).await;
        if acked.iter().all(|n| got.contains(n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_kill_and_full_restart_lose_nothing() {
    let mut c = common::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut acked = Vec::new();
    // Writes keep being acknowledged while a follower is down.
    c.kill(follower);
    for i in 0..15 {
        let name = format!("f-{i}");
        if create(&base(&c, leader), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
        }
    }
    assert_eq!(acked.len(), 15, "a 2-of-3 majority keeps accepting writes");
    c.spawn(follower);
    // Then everything goes down at once (kill -9) and comes back.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_leader(Duration::from_secs(30)).await;
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = list_users(&base(&c, id)).await;
            if acked.iter().all(|n| got.contains(n)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {id} is missing acknowledged writes after restart: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_catches_up_by_snapshot() {
    let mut c = common::start(3, &["--snapshot-every", "20", "--keep-logs", "0"]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let lagging = (1..=3).find(|i| *i != leader).expect("a follower");
    c.kill(lagging);
    let mut acked = Vec::new();
    for i in 0..80 {
        let name = format!("s-{i}");
        if create(&base(&c, leader), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
        }
    }
    assert_eq!(acked.len(), 80);
    // Wait until the leader has purged the log the lagging replica would
    // need (openraft purges in batches, between replication attempts to the
    // dead follower); keep writing meanwhile.
    let mut admin = c.admin(leader).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra = 0;
    let status = loop {
        let s = admin
            .node_status(quorumhub_proto::v1::NodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if s.has_snapshot && s.purged_index > 5 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never purged its log: {s:?}"
        );
        let name = format!("s-extra-{extra}");
        extra += 1;
        if create(&base(&c, leader), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.spawn(lagging);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut a = c.admin(lagging).await;
        if let Ok(s) = a
            .node_status(quorumhub_proto::v1::NodeStatusRequest {})
            .await
        {
            let s = s.into_inner();
            if s.has_snapshot && s.applied_index >= status.applied_index {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "lagging replica did not install a snapshot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = list_users(&base(&c, lagging)).await;
    assert!(
        acked.iter().all(|n| got.contains(n)),
        "snapshot carried every user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpc_without_the_secret_is_refused() {
    use quorumhub_proto::v1::raft_client::RaftClient;
    use quorumhub_proto::v1::RaftMessage;

    let c = common::start(3, &[]).await;
    let channel =
        quorumhub_raft::network::channel(&c.node(1).grpc, Duration::from_secs(1)).expect("channel");
    let mut raw = RaftClient::new(channel.clone());
    let msg = RaftMessage {
        format: "json/v1".into(),
        payload: b"{}".to_vec(),
        cluster_id: c.cluster_id.clone(),
    };
    let status = raw.vote(msg.clone()).await.expect_err("no secret");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let wrong = quorumhub_raft::auth::ClientAuth::new("wrong-secret-0123456789").expect("ascii");
    let mut with_wrong = RaftClient::with_interceptor(channel.clone(), wrong);
    assert_eq!(
        with_wrong
            .append_entries(msg.clone())
            .await
            .expect_err("wrong")
            .code(),
        tonic::Code::Unauthenticated
    );
    // Nor can it join: adding a member is an Admin call, behind the same secret.
    let mut admin = quorumhub_proto::v1::admin_client::AdminClient::new(channel.clone());
    let join = quorumhub_proto::v1::AddLearnerRequest {
        member: Some(quorumhub_proto::v1::Member {
            id: 9,
            grpc_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
            voter: false,
        }),
    };
    assert_eq!(
        admin.add_learner(join).await.expect_err("no secret").code(),
        tonic::Code::Unauthenticated
    );
    // With the secret, garbage is refused as such and the cluster is fine.
    let right = quorumhub_raft::auth::ClientAuth::new(common::SECRET).expect("ascii");
    let mut with_right = RaftClient::with_interceptor(channel, right);
    let garbage = RaftMessage {
        payload: b"\x00\xffnot json".to_vec(),
        ..msg.clone()
    };
    assert_eq!(
        with_right.vote(garbage).await.expect_err("garbage").code(),
        tonic::Code::InvalidArgument
    );
    let foreign = RaftMessage {
        cluster_id: "another-cluster".into(),
        ..msg
    };
    assert_eq!(
        with_right.vote(foreign).await.expect_err("foreign").code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        create(&base(&c, 1), "still-fine").await.ok(),
        Some(StatusCode::CREATED)
    );
}

/// openraft 0.9 forgets its log purge point across a restart. A leader in
/// that state must still bring a wiped, re-seeded follower up by snapshot
/// (it used to send the log from index 0, breaking the follower; found by
/// the chaos suite's "restart all" then "wipe follower").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_catches_up_from_a_restarted_leader() {
    // Few enough writes after the restart that no new snapshot is built
    // (which would set the purge point again).
    let mut c = common::start(3, &["--snapshot-every", "100", "--keep-logs", "50"]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let mut acked = Vec::new();
    let mut admin = c.admin(leader).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let name = format!("w-{i}");
        if create(&base(&c, leader), &name).await.ok() == Some(StatusCode::CREATED) {
            acked.push(name);
        }
        let s = admin
            .node_status(quorumhub_proto::v1::NodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if s.has_snapshot && s.purged_index > 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the leader never purged: {s:?}");
    }
    // Restart every replica: the purge point now lives only on disk.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|i| *i != leader).expect("a follower");
    // The leader knows the victim as caught up before its disk is replaced.
    assert_eq!(
        create(&base(&c, leader), "w-mid").await.ok(),
        Some(StatusCode::CREATED)
    );
    acked.push("w-mid".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !list_users(&base(&c, victim)).await.contains("w-mid") {
        assert!(Instant::now() < deadline, "follower did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill(victim);
    let data = c.node(victim).data.clone();
    std::fs::remove_dir_all(&data).expect("wipe");
    let out = std::process::Command::new(common::exe())
        .args([
            "reseed",
            "--data-dir",
            &data.display().to_string(),
            "--node-id",
            &victim.to_string(),
            "--cluster-id",
            &c.cluster_id,
            "--from",
            &c.node(leader).grpc,
        ])
        .env("QUORUMHUB_CLUSTER_SECRET", common::SECRET)
        .output()
        .expect("reseed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It starts from the leader's snapshot, not from an empty log.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("from the leader's snapshot at index"),
        "{said}"
    );
    c.spawn(victim);
    assert_eq!(
        create(&base(&c, leader), "w-after").await.ok(),
        Some(StatusCode::CREATED)
    );
    acked.push("w-after".into());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = list_users(&base(&c, victim)).await;
        if acked.iter().all(|n| got.contains(n)) {
            break;
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!(
                "the wiped replica did not catch up: missing {:?}",
                acked
                    .iter()
                    .filter(|n| !got.contains(*n))
                    .take(5)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (term, leader) as replica `id` sees it, and its applied index.
async fn term_and_leader(c: &Cluster, id: u64) -> Option<(u64, u64, u64)> {
    let mut a = c.admin(id).await;
    let mut req = tonic::Request::new(quorumhub_proto::v1::NodeStatusRequest {});
    req.set_timeout(Duration::from_millis(500));
    let s = a.node_status(req).await.ok()?.into_inner();
    s.has_leader
        .then_some((s.term, s.leader_id, s.applied_index))
}

/// Wait until replica `id` follows `leader` in `term` and has applied at
/// least `index`; panics after `limit`.
async fn wait_caught_up(c: &Cluster, id: u64, term: u64, leader: u64, index: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((t, l, applied)) = term_and_leader(c, id).await {
            if t == term && l == leader && applied >= index {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica {id} did not catch up with leader {leader} in term {term} within {limit:?}: {:?}",
            term_and_leader(c, id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 9, "no disruptive elections": a follower killed (kill -9), stopped
/// (SIGTERM) or paused (SIGSTOP for 3 s) and brought back while the others
/// take writes never raises the term and never deposes the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_or_paused_followers_never_depose_the_leader() {
    let mut c = common::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    // Let the first term settle (the new leader raises the cluster version).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (term, _, _) = term_and_leader(&c, leader).await.expect("leader status");
    let follower = |round: usize| {
        let f: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
        f[round % 2]
    };
    let mut n = 0;
    for round in 0..6 {
        let f = follower(round);
        match round % 3 {
            0 => c.kill(f),
            1 => assert!(c.stop(f), "SIGTERM of follower {f} should end it"),
            _ => {
                let pid = c.node(f).child.as_ref().expect("running").id() as i32;
                unsafe { libc::kill(pid, libc::SIGSTOP) };
            }
        }
        // The others go on: writes are acknowledged meanwhile.
        for _ in 0..20 {
            n += 1;
            assert_eq!(
                create(&base(&c, leader), &format!("r-{n}")).await.ok(),
                Some(StatusCode::CREATED),
                "round {round}: a write while follower {f} is away"
            );
        }
        if round % 3 == 2 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let pid = c.node(f).child.as_ref().expect("running").id() as i32;
            unsafe { libc::kill(pid, libc::SIGCONT) };
        } else {
            c.spawn(f);
        }
        let (_, _, index) = term_and_leader(&c, leader).await.expect("leader status");
        wait_caught_up(&c, f, term, leader, index, Duration::from_secs(20)).await;
        // Give a would-be candidate time to time out and campaign.
        tokio::time::sleep(Duration::from_millis(700)).await;
        for id in 1..=3 {
            let got = term_and_leader(&c, id).await.map(|(t, l, _)| (t, l));
            assert_eq!(
                got,
                Some((term, leader)),
                "round {round}: replica {id} after follower {f} came back"
            );
        }
    }
}
