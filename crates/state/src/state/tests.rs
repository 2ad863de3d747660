//! apply() as data: a script of commands and the transcript they produce.

use expect_test::{expect, Expect};

use super::*;
use crate::model::{OAuthCode, Session, SpawnerState};

fn spawner(port: u16) -> SpawnerState {
    SpawnerState {
        kind: "process".into(),
        host: "h".into(),
        pid: 4242,
        proc_start: 99,
        port,
        target: format!("http://127.0.0.1:{port}"),
        token_id: None,
    }
}

fn token(owner: &str, hash: &str) -> Token {
    Token {
        id: String::new(),
        owner: TokenOwner::User { name: owner.into() },
        hash: hash.into(),
        prefix: hash[..2].into(),
        note: "test".into(),
        created: 7,
        expires_at: Some(1_000),
        last_activity: None,
        scopes: vec![],
        client_id: None,
        session: None,
    }
}

/// Applies `script` from index 1 on and renders one line per entry.
fn run(state: &mut HubState, script: Vec<Command>) -> String {
    let mut out = String::new();
    let start = state.revision + 1;
    for (i, command) in script.into_iter().enumerate() {
        let index = start + i as u64;
        let req = Request {
            client_id: "c".into(),
            serial: index,
            at: 1_000 + index,
            command,
        };
        let applied = state.apply(index, &req);
        let response = match &applied.response {
            Response::Done => "done".to_string(),
            Response::User { user } => format!("user {} admin={}", user.name, user.admin),
            Response::SpawnRequested { generation } => format!("spawn gen={generation}"),
            Response::TokenCreated { id } => format!("token {id}"),
            Response::Group { group } => format!("group {} {:?}", group.name, group.users),
            Response::Rejected { rejection } => format!("REJECTED {rejection}"),
        };
        let events: Vec<String> = applied
            .route_events
            .iter()
            .map(|e| match e {
                RouteEvent::Upsert(r) => format!("+{}->{}", r.prefix, r.target),
                RouteEvent::Delete { prefix } => format!("-{prefix}"),
            })
            .collect();
        out += &format!(
            "{index} {}: {response} {}\n",
            req.command.name(),
            events.join(" ")
        );
    }
    out
}

fn check(script: Vec<Command>, expect: Expect) -> HubState {
    let mut state = HubState::default();
    let transcript = run(&mut state, script);
    expect.assert_eq(&transcript);
    state
}

fn create(name: &str) -> Command {
    Command::CreateUser {
        name: name.into(),
        admin: false,
    }
}
fn spawn(user: &str) -> Command {
    Command::RequestSpawn {
        user: user.into(),
        server_name: String::new(),
        user_options: serde_json::Value::Null,
        display_name: None,
        limits: None,
    }
}
fn started(user: &str, generation: u64) -> Command {
    Command::SpawnStarted {
        user: user.into(),
        server_name: String::new(),
        generation,
        spawner: spawner(9000),
    }
}
fn ready(user: &str, generation: u64) -> Command {
    Command::ServerReady {
        user: user.into(),
        server_name: String::new(),
        generation,
    }
}
fn stop(user: &str) -> Command {
    Command::RequestStop {
        user: user.into(),
        server_name: String::new(),
        remove: false,
    }
}
fn stopped(user: &str, generation: u64) -> Command {
    Command::ServerStopped {
        user: user.into(),
        server_name: String::new(),
        generation,
        reason: "test".into(),
    }
}

#[test]
fn users() {
    let state = check(
        vec![
            create("alice"),
            create("alice"),
            create("Bad Name"),
            create(""),
            Command::SetAdmin {
                name: "alice".into(),
                admin: true,
            },
            Command::SetAdmin {
                name: "nobody".into(),
                admin: true,
            },
            Command::DeleteUser {
                name: "nobody".into(),
            },
            create("bob"),
            Command::DeleteUser { name: "bob".into() },
            Command::Noop,
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 create_user: REJECTED User alice already exists 
            3 create_user: REJECTED Invalid name "Bad Name": username contains ' '; allowed are a-z, 0-9 and -_.@ 
            4 create_user: REJECTED Invalid name "": username must not be empty 
            5 set_admin: user alice admin=true 
            6 set_admin: REJECTED No such user: nobody 
            7 delete_user: REJECTED No such user: nobody 
            8 create_user: user bob admin=false 
            9 delete_user: done 
            10 noop: done 
        "#]],
    );
    assert_eq!(state.revision, 10);
    assert_eq!(state.users.keys().collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(state.user("alice").map(|u| u.created), Some(1_001));
}

#[test]
fn server_lifecycle() {
    let state = check(
        vec![
            create("alice"),
            spawn("nobody"),
            spawn("alice"),
            spawn("alice"),
            ready("alice", 3),
            started("alice", 99),
            started("alice", 3),
            ready("alice", 3),
            spawn("alice"),
            ready("alice", 3),
            Command::DeleteUser {
                name: "alice".into(),
            },
            stop("alice"),
            stop("alice"),
            stopped("alice", 4),
            stopped("alice", 3),
            stop("alice"),
            Command::DeleteUser {
                name: "alice".into(),
            },
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 request_spawn: REJECTED No such user: nobody 
            3 request_spawn: spawn gen=3 
            4 request_spawn: REJECTED alice's server is pending spawn, please wait 
            5 server_ready: REJECTED alice has no active server 
            6 spawn_started: REJECTED report for an earlier spawn of alice's server (generation 99, current 3) 
            7 spawn_started: done 
            8 server_ready: done +/user/alice/->http://127.0.0.1:9000
            9 request_spawn: REJECTED alice's server is already running 
            10 server_ready: REJECTED alice's server is already running 
            11 delete_user: REJECTED alice still has an active server; stop it first 
            12 request_stop: done -/user/alice/
            13 request_stop: REJECTED alice's server is pending stop, please wait 
            14 server_stopped: REJECTED report for an earlier spawn of alice's server (generation 4, current 3) 
            15 server_stopped: done 
            16 request_stop: REJECTED alice has no active server 
            17 delete_user: done 
        "#]],
    );
    assert!(state.routes.is_empty());
    assert_eq!(state.active_servers().count(), 0);
}

#[test]
fn stop_while_spawning_keeps_the_pid_and_refuses_ready() {
    let state = check(
        vec![
            create("alice"),
            spawn("alice"),
            stop("alice"),
            started("alice", 2),
            ready("alice", 2),
            started("alice", 2),
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 request_spawn: spawn gen=2 
            3 request_stop: done 
            4 spawn_started: done 
            5 server_ready: REJECTED alice's server is pending stop, please wait 
            6 spawn_started: REJECTED a process is already recorded for this spawn of alice's server (pid 4242) 
        "#]],
    );
    let server = state.server("alice", "").expect("still stopping");
    assert_eq!(server.phase, Phase::Stopping);
    assert_eq!(server.spawner.as_ref().map(|s| s.pid), Some(4242));
    assert!(state.routes.is_empty());
}

#[test]
fn named_servers_have_their_own_prefix() {
    let mut state = HubState::default();
    run(&mut state, vec![create("alice")]);
    let named = |cmd: fn(&str, u64) -> Command, generation| match cmd("alice", generation) {
        Command::SpawnStarted {
            user,
            generation,
            spawner,
            ..
        } => Command::SpawnStarted {
            user,
            server_name: "gpu".into(),
            generation,
            spawner,
        },
        Command::ServerReady {
            user, generation, ..
        } => Command::ServerReady {
            user,
            server_name: "gpu".into(),
            generation,
        },
        other => other,
    };
    let transcript = run(
        &mut state,
        vec![
            Command::RequestSpawn {
                user: "alice".into(),
                server_name: "gpu".into(),
                user_options: serde_json::json!({"size": 2}),
                display_name: None,
                limits: None,
            },
            named(started, 2),
            named(ready, 2),
            Command::RequestSpawn {
                user: "alice".into(),
                server_name: "bad/name".into(),
                user_options: serde_json::Value::Null,
                display_name: None,
                limits: None,
            },
        ],
    );
    expect![[r#"
        2 request_spawn: spawn gen=2 
        3 spawn_started: done 
        4 server_ready: done +/user/alice/gpu/->http://127.0.0.1:9000
        5 request_spawn: REJECTED Invalid name "bad/name": server name contains '/'; allowed are a-z, 0-9 and -_.@ 
    "#]]
    .assert_eq(&transcript);
}

#[test]
fn tokens() {
    let mut state = check(
        vec![
            create("alice"),
            Command::CreateToken {
                token: token("alice", "aa11"),
            },
            Command::CreateToken {
                token: token("alice", "aa11"),
            },
            Command::CreateToken {
                token: token("nobody", "bb22"),
            },
            Command::CreateToken {
                token: token("alice", "cc33"),
            },
            Command::RevokeToken { id: "a2".into() },
            Command::RevokeToken { id: "a2".into() },
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 create_token: token a1 
            3 create_token: REJECTED Token a1 already exists 
            4 create_token: REJECTED No such user: nobody 
            5 create_token: token a2 
            6 revoke_token: done 
            7 revoke_token: REJECTED No such token: a2 
        "#]],
    );
    assert_eq!(
        state.token_by_hash("aa11", 999).map(|t| t.id.as_str()),
        Some("a1")
    );
    assert!(state.token_by_hash("aa11", 1_000).is_none(), "expired");
    assert!(state.token_by_hash("cc33", 0).is_none(), "revoked");
    run(
        &mut state,
        vec![Command::DeleteUser {
            name: "alice".into(),
        }],
    );
    assert!(
        state.tokens.is_empty(),
        "a deleted user's tokens go with it"
    );
}

#[test]
fn activity_only_moves_forward() {
    let mut state = HubState::default();
    run(&mut state, vec![create("alice")]);
    let act = |at| Command::RecordActivity {
        user: "alice".into(),
        server_name: None,
        at,
    };
    let transcript = run(
        &mut state,
        vec![
            act(50),
            act(40),
            Command::RecordActivity {
                user: "x".into(),
                server_name: None,
                at: 1,
            },
        ],
    );
    expect![[r#"
        2 record_activity: done 
        3 record_activity: done 
        4 record_activity: REJECTED No such user: x 
    "#]]
    .assert_eq(&transcript);
    assert_eq!(state.user("alice").and_then(|u| u.last_activity), Some(50));
}

#[test]
fn a_retried_request_applies_once() {
    let mut state = HubState::default();
    let req = Request {
        client_id: "replica-2".into(),
        serial: 7,
        at: 1,
        command: create("alice"),
    };
    let first = state.apply(1, &req);
    // The same request reaches a new leader and is committed a second time.
    let again = state.apply(2, &req);
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        first.response, again.response,
        "the retry sees the first outcome, not 'exists'"
    );
    assert_eq!(state.revision, 2);
    // Another serial from the same client is a new request.
    let other = state.apply(
        3,
        &Request {
            serial: 8,
            ..req.clone()
        },
    );
    assert!(matches!(
        other.response,
        Response::Rejected {
            rejection: Rejection::UserExists { .. }
        }
    ));
}

#[test]
fn dedupe_forgets_in_apply_order() {
    let mut state = HubState {
        dedupe: Dedupe::with_capacity(2),
        ..HubState::default()
    };
    for serial in 1..=3 {
        state.apply(
            serial,
            &Request {
                client_id: "c".into(),
                serial,
                at: 0,
                command: Command::Noop,
            },
        );
    }
    assert!(state.dedupe.get("c", 1).is_none());
    assert!(state.dedupe.get("c", 2).is_some());
    assert!(state.dedupe.get("c", 3).is_some());
}

#[test]
fn snapshots_round_trip_and_digests_agree() {
    let mut a = HubState::default();
    run(
        &mut a,
        vec![
            create("alice"),
            create("bob"),
            spawn("alice"),
            started("alice", 3),
            ready("alice", 3),
            Command::CreateToken {
                token: token("bob", "ff00"),
            },
        ],
    );
    let b = HubState::decode(&a.encode()).expect("decodes");
    assert_eq!(a, b, "derived indexes are rebuilt");
    assert_eq!(a.digest(), b.digest());
    assert!(b.token_by_hash("ff00", 0).is_some());
    assert_eq!(b.active_servers().count(), 1);

    let mut c = b.clone();
    run(&mut c, vec![create("carol")]);
    assert_ne!(a.digest(), c.digest());
    assert!(HubState::decode(b"{not json").is_err());
}

#[test]
fn cluster_version_only_rises() {
    let set = |version| Command::SetClusterVersion { version };
    let state = check(
        vec![set(1), set(3), set(2), set(3)],
        expect![[r#"
            1 set_cluster_version: done 
            2 set_cluster_version: done 
            3 set_cluster_version: REJECTED the cluster version is 3; it never goes back to 2 
            4 set_cluster_version: done 
        "#]],
    );
    assert_eq!(state.cluster_version, 3);
    assert_eq!(HubState::default().cluster_version, 1);
}

#[test]
fn a_snapshot_from_before_the_gate_is_at_cluster_version_1() {
    let mut value = serde_json::to_value(HubState::default()).expect("encode");
    value
        .as_object_mut()
        .expect("object")
        .remove("cluster_version");
    let state: HubState = serde_json::from_value(value).expect("decode");
    assert_eq!(state.cluster_version, 1);
}

#[test]
fn every_command_is_known_to_this_builds_log_format() {
    let all = [
        create("a"),
        Command::DeleteUser { name: "a".into() },
        spawn("a"),
        Command::Noop,
        Command::SetClusterVersion { version: 1 },
        Command::SetCookieSecret { secret: "k".into() },
        session("s", "a", 1),
        Command::EndSession { hash: "s".into() },
        code("c", "a", 1),
        redeem("c", "x", "a", "tt"),
    ];
    for c in all {
        assert!(c.min_version() <= crate::LOG_FORMAT_VERSION, "{}", c.name());
    }
}

#[test]
fn rename_user() {
    let rename = |name: &str, new_name: &str| Command::RenameUser {
        name: name.into(),
        new_name: new_name.into(),
    };
    let state = check(
        vec![
            create("alice"),
            create("bob"),
            Command::CreateToken {
                token: token("alice", "aa11"),
            },
            rename("alice", "alicia"),
            rename("alice", "x"),
            rename("alicia", "bob"),
            rename("alicia", "Not Valid"),
            spawn("bob"),
            rename("bob", "robert"),
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 create_user: user bob admin=false 
            3 create_token: token a1 
            4 rename_user: user alicia admin=false 
            5 rename_user: REJECTED No such user: alice 
            6 rename_user: REJECTED User bob already exists 
            7 rename_user: REJECTED Invalid name "Not Valid": username contains ' '; allowed are a-z, 0-9 and -_.@ 
            8 request_spawn: spawn gen=8 
            9 rename_user: REJECTED bob still has an active server; stop it first 
        "#]],
    );
    assert!(state.user("alice").is_none());
    assert_eq!(
        state.user("alicia").map(|u| u.name.as_str()),
        Some("alicia")
    );
    let owners: Vec<&str> = state.tokens.values().map(|t| t.owner.user()).collect();
    assert_eq!(owners, vec!["alicia"], "the token follows its user");
    assert_eq!(
        Command::RenameUser {
            name: "a".into(),
            new_name: "b".into()
        }
        .min_version(),
        2
    );
}

fn session(hash: &str, user: &str, expires_at: Millis) -> Command {
    Command::CreateSession {
        session: Session {
            hash: hash.into(),
            user: user.into(),
            created: 1_000,
            expires_at,
        },
    }
}

fn code(hash: &str, user: &str, expires_at: Millis) -> Command {
    Command::IssueOAuthCode {
        code: OAuthCode {
            hash: hash.into(),
            client_id: format!("jupyterhub-user-{user}"),
            user: user.into(),
            redirect_uri: format!("/user/{user}/oauth_callback"),
            scopes: vec![format!("access:servers!server={user}/")],
            code_challenge: None,
            challenge_method: None,
            session: Some("s1".into()),
            expires_at,
        },
    }
}

fn redeem(hash: &str, client: &str, user: &str, token_hash: &str) -> Command {
    let mut t = token(user, token_hash);
    t.client_id = Some(client.into());
    t.session = Some("s1".into());
    t.expires_at = None;
    Command::RedeemOAuthCode {
        hash: hash.into(),
        client_id: client.into(),
        token: t,
    }
}

#[test]
fn login_sessions_and_oauth_codes() {
    let state = check(
        vec![
            create("alice"),
            Command::SetPassword {
                name: "alice".into(),
                hash: Some("$argon2id$x".into()),
            },
            Command::SetPassword {
                name: "nobody".into(),
                hash: None,
            },
            Command::SetCookieSecret {
                secret: "k1".into(),
            },
            Command::SetCookieSecret {
                secret: "k2".into(),
            },
            session("s1", "alice", 5_000),
            session("s9", "nobody", 5_000),
            code("c1", "alice", 1_050),
            // The wrong client: refused, and the code is gone anyway.
            redeem("c1", "jupyterhub-user-bob", "alice", "t0"),
            redeem("c1", "jupyterhub-user-alice", "alice", "t1"),
            code("c2", "alice", 1_050),
            redeem("c2", "jupyterhub-user-alice", "alice", "t2"),
            // Replayed.
            redeem("c2", "jupyterhub-user-alice", "alice", "t3"),
            // Expired: applied at 1_000 + index > 1_050... issued with a
            // lifetime already over.
            code("c3", "alice", 1_010),
            redeem("c3", "jupyterhub-user-alice", "alice", "t4"),
            // A code waiting when the browser logs out dies with the session.
            code("c4", "alice", 9_000),
            // Logout revokes the session and the tokens it obtained.
            Command::EndSession { hash: "s1".into() },
            Command::EndSession { hash: "s1".into() },
            redeem("c4", "jupyterhub-user-alice", "alice", "t5"),
            // A code for a session that no longer exists is not issued.
            code("c5", "alice", 9_000),
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 set_password: done 
            3 set_password: REJECTED No such user: nobody 
            4 set_cookie_secret: done 
            5 set_cookie_secret: REJECTED the cookie secret is already set 
            6 create_session: done 
            7 create_session: REJECTED No such user: nobody 
            8 issue_oauth_code: done 
            9 redeem_oauth_code: REJECTED invalid_grant 
            10 redeem_oauth_code: REJECTED invalid_grant 
            11 issue_oauth_code: done 
            12 redeem_oauth_code: token a1 
            13 redeem_oauth_code: REJECTED invalid_grant 
            14 issue_oauth_code: done 
            15 redeem_oauth_code: REJECTED invalid_grant 
            16 issue_oauth_code: done 
            17 end_session: done 
            18 end_session: REJECTED No such session 
            19 redeem_oauth_code: REJECTED invalid_grant 
            20 issue_oauth_code: REJECTED No such session 
        "#]],
    );
    assert_eq!(state.cookie_secret.as_deref(), Some("k1"));
    assert_eq!(
        state.users["alice"].password_hash.as_deref(),
        Some("$argon2id$x")
    );
    assert!(state.tokens.is_empty(), "logout revoked the OAuth token");
    assert!(state.sessions.is_empty() && state.oauth_codes.is_empty());
}

#[test]
fn a_deleted_or_renamed_user_takes_its_sessions_along() {
    let state = check(
        vec![
            create("alice"),
            create("bob"),
            session("sa", "alice", 9_000),
            session("s1", "bob", 9_000),
            code("cb", "bob", 9_000),
            Command::DeleteUser {
                name: "alice".into(),
            },
            Command::RenameUser {
                name: "bob".into(),
                new_name: "robert".into(),
            },
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 create_user: user bob admin=false 
            3 create_session: done 
            4 create_session: done 
            5 issue_oauth_code: done 
            6 delete_user: done 
            7 rename_user: user robert admin=false 
        "#]],
    );
    let users: Vec<&str> = state.sessions.values().map(|s| s.user.as_str()).collect();
    assert_eq!(users, ["robert"]);
    assert_eq!(state.oauth_codes["cb"].user, "robert");
}

#[test]
fn state_without_format_3_fields_encodes_as_before() {
    // (subject, groups and the other format-3 fields are left out too)
    // A replica of format 2 computes the same digest for the same state, so
    // digests agree across a rolling upgrade until format 3 is used.
    let state = check(
        vec![create("alice")],
        expect![[r#"
        1 create_user: user alice admin=false 
    "#]],
    );
    let text = String::from_utf8(state.encode()).expect("utf8");
    for field in [
        "password_hash",
        "cookie_secret",
        "sessions",
        "oauth_codes",
        "client_id",
    ] {
        assert!(!text.contains(field), "{field} in {text}");
    }
}

#[test]
fn groups_and_their_members_agree() {
    let users = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let state = check(
        vec![
            create("alice"),
            create("bob"),
            Command::CreateGroup {
                name: "g1".into(),
                users: users(&["bob", "alice"]),
            },
            Command::CreateGroup {
                name: "g1".into(),
                users: vec![],
            },
            Command::CreateGroup {
                name: "g2".into(),
                users: users(&["nobody"]),
            },
            Command::CreateGroup {
                name: "bad name".into(),
                users: vec![],
            },
            Command::AddGroupMembers {
                name: "g1".into(),
                users: users(&["alice"]),
            },
            Command::CreateGroup {
                name: "g2".into(),
                users: vec![],
            },
            Command::AddGroupMembers {
                name: "g2".into(),
                users: users(&["alice"]),
            },
            Command::RemoveGroupMembers {
                name: "g1".into(),
                users: users(&["bob", "nobody"]),
            },
            Command::SetGroupProperties {
                name: "g2".into(),
                properties: serde_json::json!({"k": 1}),
            },
            Command::SetGroupProperties {
                name: "g2".into(),
                properties: serde_json::json!([1]),
            },
            Command::RenameUser {
                name: "alice".into(),
                new_name: "alicia".into(),
            },
            Command::DeleteGroup { name: "g1".into() },
            Command::DeleteGroup { name: "g1".into() },
            Command::DeleteUser {
                name: "alicia".into(),
            },
        ],
        expect![[r#"
            1 create_user: user alice admin=false 
            2 create_user: user bob admin=false 
            3 create_group: group g1 ["alice", "bob"] 
            4 create_group: REJECTED Group g1 already exists 
            5 create_group: REJECTED No such user: nobody 
            6 create_group: REJECTED Invalid name "bad name": username contains ' '; allowed are a-z, 0-9 and -_.@ 
            7 add_group_members: group g1 ["alice", "bob"] 
            8 create_group: group g2 [] 
            9 add_group_members: group g2 ["alice"] 
            10 remove_group_members: group g1 ["alice"] 
            11 set_group_properties: group g2 ["alice"] 
            12 set_group_properties: REJECTED group properties must be a JSON object 
            13 rename_user: user alicia admin=false 
            14 delete_group: done 
            15 delete_group: REJECTED No such group: g1 
            16 delete_user: done 
        "#]],
    );
    assert_eq!(state.groups["g2"].users, Vec::<String>::new());
    assert_eq!(state.groups["g2"].properties, serde_json::json!({"k": 1}));
    assert!(state.users["bob"].groups.is_empty());
}

#[test]
fn external_identities_link_once_and_never_take_over_local_accounts() {
    let link = |name: &str, subject: &str, admin: Option<bool>| Command::LinkIdentity {
        name: name.into(),
        subject: subject.into(),
        admin,
    };
    let state = check(
        vec![
            link("alice", "idp|1", Some(true)),
            link("alice", "idp|1", None),
            link("alice", "idp|2", None),
            create("carol"),
            link("carol", "idp|3", Some(false)),
            create("dave"),
            Command::SetPassword {
                name: "dave".into(),
                hash: Some("$argon2id$x".into()),
            },
            link("dave", "idp|4", None),
            link("Bad Name", "idp|5", None),
        ],
        expect![[r#"
            1 link_identity: user alice admin=true 
            2 link_identity: user alice admin=true 
            3 link_identity: REJECTED alice is already linked to another identity, or is a local account 
            4 create_user: user carol admin=false 
            5 link_identity: user carol admin=false 
            6 create_user: user dave admin=false 
            7 set_password: done 
            8 link_identity: REJECTED dave is already linked to another identity, or is a local account 
            9 link_identity: REJECTED Invalid name "Bad Name": username contains ' '; allowed are a-z, 0-9 and -_.@ 
        "#]],
    );
    assert_eq!(state.users["alice"].subject.as_deref(), Some("idp|1"));
    assert!(state.users["alice"].admin);
    assert_eq!(state.users["carol"].subject.as_deref(), Some("idp|3"));
    assert_eq!(state.users["dave"].subject, None);
}

#[test]
fn oversized_commands_are_refused_from_log_format_4() {
    let set = |version| Command::SetClusterVersion { version };
    let big = |user: &str, bytes: usize| Command::RequestSpawn {
        user: user.into(),
        server_name: String::new(),
        user_options: serde_json::json!({ "x": "a".repeat(bytes) }),
        display_name: None,
        limits: None,
    };
    let limit = crate::MAX_COMMAND_BYTES;
    // Before the gate a big command still applies (as an older release
    // would), so replicas of two releases agree; from version 4 it is
    // refused and changes nothing; one that fits still applies.
    let state = check(
        vec![
            set(3),
            create("a"),
            create("b"),
            create("c"),
            big("a", limit),
            set(4),
            big("b", limit),
            big("c", limit - 200),
        ],
        expect![[r#"
            1 set_cluster_version: done 
            2 create_user: user a admin=false 
            3 create_user: user b admin=false 
            4 create_user: user c admin=false 
            5 request_spawn: spawn gen=5 
            6 set_cluster_version: done 
            7 request_spawn: REJECTED the request is 1048650 bytes encoded; the hub stores at most 1048576 bytes per change 
            8 request_spawn: spawn gen=8 
        "#]],
    );
    assert!(
        state.users["b"].servers.is_empty(),
        "the refused spawn left nothing"
    );
}

#[test]
fn a_stop_reason_is_kept_from_cluster_version_5() {
    let failed = |user: &str, generation| Command::ServerStopped {
        user: user.into(),
        server_name: String::new(),
        generation,
        reason: "user alice has no system account".into(),
    };
    // Before the gate: the reason is dropped (as by a build of format 4).
    let mut state = HubState::default();
    run(
        &mut state,
        vec![create("alice"), spawn("alice"), failed("alice", 2)],
    );
    assert_eq!(state.user("alice").and_then(|u| u.last_stop.clone()), None);
    // From version 5 on it is kept, for the latest stop only.
    let mut state = HubState::default();
    run(
        &mut state,
        vec![
            Command::SetClusterVersion { version: 5 },
            create("alice"),
            spawn("alice"),
            failed("alice", 3),
        ],
    );
    let rec = state
        .user("alice")
        .and_then(|u| u.last_stop.clone())
        .expect("kept");
    assert_eq!(
        (
            rec.server_name.as_str(),
            rec.generation,
            rec.reason.as_str()
        ),
        ("", 3, "user alice has no system account")
    );
    assert_eq!(rec.at, 1_004);
}

fn spawn_named(user: &str, server: &str) -> Command {
    Command::RequestSpawn {
        user: user.into(),
        server_name: server.into(),
        user_options: serde_json::Value::Null,
        display_name: None,
        limits: None,
    }
}
fn stopped_named(user: &str, server: &str, generation: u64) -> Command {
    Command::ServerStopped {
        user: user.into(),
        server_name: server.into(),
        generation,
        reason: "test".into(),
    }
}

/// Who holds `client_id`, as (user, server) pairs.
fn holders(state: &HubState, client_id: &str) -> Vec<(String, String)> {
    state
        .servers_with_client_id(client_id)
        .map(|(u, s)| (u.name.clone(), s.name.clone()))
        .collect()
}

#[test]
fn oauth_client_ids_are_recorded_and_a_taken_one_is_refused_from_log_format_6() {
    let set = |version| Command::SetClusterVersion { version };
    let mut state = HubState::default();
    let transcript = run(
        &mut state,
        vec![
            set(5),
            create("alice"),
            create("alice-x"),
            create("bob"),
            // Before the gate, as a build of format 5: JupyterHub's ids, the
            // same for alice's "x" and alice-x, and nothing refused.
            spawn_named("alice", "x"),
            spawn("alice-x"),
        ],
    );
    expect![[r#"
        1 set_cluster_version: done 
        2 create_user: user alice admin=false 
        3 create_user: user alice-x admin=false 
        4 create_user: user bob admin=false 
        5 request_spawn: spawn gen=5 
        6 request_spawn: spawn gen=6 
    "#]]
    .assert_eq(&transcript);
    assert_eq!(state.server("alice", "x").unwrap().oauth_client_id, None);
    let legacy = "jupyterhub-user-alice-x";
    assert_eq!(
        state.server("alice", "x").unwrap().client_id("alice"),
        legacy
    );
    assert_eq!(
        holders(&state, legacy),
        [("alice".into(), "x".into()), ("alice-x".into(), "".into())]
    );

    // From version 6: new spawns record the injective id, and one that an
    // old server still holds is refused until that server stops.
    let transcript = run(
        &mut state,
        vec![
            stopped("alice-x", 6),
            set(6),
            spawn("alice-x"),
            spawn_named("bob", "x"),
            stopped_named("alice", "x", 5),
            spawn("alice-x"),
            spawn_named("alice", "x"),
        ],
    );
    expect![[r#"
        7 server_stopped: done 
        8 set_cluster_version: done 
        9 request_spawn: REJECTED the OAuth client id jupyterhub-user-alice-x is already used by alice's server x, started before the cluster moved to log format 6; stop that server (its next start gets an id of its own) and try again 
        10 request_spawn: spawn gen=10 
        11 server_stopped: done 
        12 request_spawn: spawn gen=12 
        13 request_spawn: spawn gen=13 
    "#]]
    .assert_eq(&transcript);
    let recorded = |u: &str, s: &str| state.server(u, s).and_then(|s| s.oauth_client_id.clone());
    assert_eq!(recorded("alice-x", "").as_deref(), Some(legacy));
    assert_eq!(
        recorded("alice", "x").as_deref(),
        Some("jupyterhub-user-alice!x")
    );
    assert_eq!(
        recorded("bob", "x").as_deref(),
        Some("jupyterhub-user-bob!x")
    );
    assert_eq!(holders(&state, legacy), [("alice-x".into(), "".into())]);
    assert_eq!(
        holders(&state, "jupyterhub-user-alice!x"),
        [("alice".into(), "x".into())]
    );
    // The index is derived: a snapshot restores it.
    let restored = HubState::decode(&state.encode()).expect("decode");
    assert_eq!(restored, state);
    assert_eq!(holders(&restored, legacy), [("alice-x".into(), "".into())]);
}

#[test]
fn a_refused_spawn_changes_nothing_and_an_old_spawn_encodes_as_before() {
    // Two replicas apply the same log: one whose spawn was refused at
    // version 6 ends with the same digest as one that replays it.
    let script = || {
        vec![
            create("alice"),
            create("alice-x"),
            spawn_named("alice", "x"),
            Command::SetClusterVersion { version: 6 },
            spawn("alice-x"),
        ]
    };
    let mut a = HubState::default();
    let mut b = HubState::default();
    run(&mut a, script());
    run(&mut b, script());
    assert_eq!(a.digest(), b.digest());
    assert!(a.users["alice-x"].servers.is_empty(), "nothing left");
    // A server spawned before the gate has no client id in its encoding,
    // as a build of format 5 writes it.
    let json = String::from_utf8(a.encode()).expect("utf8");
    assert!(!json.contains("oauth_client_id"), "{json}");
}

fn servers_of(state: &HubState, user: &str) -> String {
    let Some(u) = state.user(user) else {
        return "no user".into();
    };
    let active: Vec<String> = u
        .servers
        .values()
        .map(|s| {
            format!(
                "{:?}:{:?} {:?} {}",
                s.name,
                s.phase,
                s.display_name.as_deref().unwrap_or("-"),
                s.user_options
            )
        })
        .collect();
    let stopped: Vec<String> = u
        .stopped
        .values()
        .map(|s| {
            format!(
                "{:?} {:?} {}",
                s.name,
                s.display_name.as_deref().unwrap_or("-"),
                s.user_options
            )
        })
        .collect();
    format!(
        "active [{}] stopped [{}]",
        active.join(", "),
        stopped.join(", ")
    )
}

#[test]
fn server_records_outlive_their_stop_from_log_format_7() {
    let create_server = |name: &str, display: Option<&str>, options| Command::CreateServer {
        user: "alice".into(),
        server_name: name.into(),
        display_name: display.map(str::to_string),
        user_options: options,
    };
    let start = |name: &str, options, display: Option<&str>| Command::RequestSpawn {
        user: "alice".into(),
        server_name: name.into(),
        user_options: options,
        display_name: display.map(str::to_string),
        limits: None,
    };
    let stop_named = |name: &str, remove| Command::RequestStop {
        user: "alice".into(),
        server_name: name.into(),
        remove,
    };
    let update = |name: &str, new_name: Option<&str>, display: Option<&str>, options| {
        Command::UpdateServer {
            user: "alice".into(),
            server_name: name.into(),
            new_name: new_name.map(str::to_string),
            display_name: display.map(str::to_string),
            user_options: options,
        }
    };
    let remove = |name: &str| Command::RemoveServer {
        user: "alice".into(),
        server_name: name.into(),
    };
    let mut state = HubState::default();
    let mut transcript = run(
        &mut state,
        vec![
            Command::SetClusterVersion { version: 7 },
            create("alice"),
            create_server("gpu", Some("My GPU"), serde_json::json!({"size": 2})),
            create_server("gpu", None, serde_json::Value::Null),
            create_server("", None, serde_json::Value::Null),
            create_server("bad/name", None, serde_json::Value::Null),
            create_server("x", Some("  two"), serde_json::Value::Null),
        ],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    // Starting with no options takes the record's; the record becomes the
    // running server, and a PATCH of a running one is refused.
    transcript += &run(
        &mut state,
        vec![
            start("gpu", serde_json::Value::Null, None),
            update("gpu", None, Some("renamed"), None),
            Command::RemoveServer {
                user: "alice".into(),
                server_name: "gpu".into(),
            },
        ],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    // Stopped without remove: the record is back, with its options.
    transcript += &run(
        &mut state,
        vec![stop_named("gpu", false), stopped_named("alice", "gpu", 8)],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    transcript += &run(
        &mut state,
        vec![
            update(
                "gpu",
                Some("big"),
                None,
                Some(serde_json::json!({"size": 8})),
            ),
            update("nope", None, Some("x"), None),
            update("", None, Some("Default"), None),
            update("big", Some(""), None, None),
        ],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    // A start with options replaces them; a stop with remove forgets it,
    // also when asked again while stopping.
    transcript += &run(
        &mut state,
        vec![
            start("big", serde_json::json!({"size": 1}), Some("Small now")),
            stop_named("big", false),
            stop_named("big", true),
        ],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    transcript += &run(
        &mut state,
        vec![stopped_named("alice", "big", 17), remove(""), remove("")],
    );
    transcript += &format!("{}\n", servers_of(&state, "alice"));
    expect![[r#"
        1 set_cluster_version: done 
        2 create_user: user alice admin=false 
        3 create_server: done 
        4 create_server: REJECTED User alice already has server gpu 
        5 create_server: REJECTED User alice already has server  
        6 create_server: REJECTED Invalid name "bad/name": server name contains '/'; allowed are a-z, 0-9 and -_.@ 
        7 create_server: REJECTED Invalid name "  two": display_name must not start or end with a space or hold two in a row 
        active [] stopped ["gpu" "My GPU" {"size":2}]
        8 request_spawn: spawn gen=8 
        9 update_server: REJECTED alice's server gpu is active. Please stop it before modifying it. 
        10 remove_server: REJECTED alice's server gpu is active. Please stop it before modifying it. 
        active ["gpu":Spawning "My GPU" {"size":2}] stopped []
        11 request_stop: done 
        12 server_stopped: done 
        active [] stopped ["gpu" "My GPU" {"size":2}]
        13 update_server: done 
        14 update_server: REJECTED User alice has no such server nope 
        15 update_server: done 
        16 update_server: REJECTED Invalid name "": a server cannot be renamed to the default server 
        active [] stopped ["" "Default" null, "big" "My GPU" {"size":8}]
        17 request_spawn: spawn gen=17 
        18 request_stop: done 
        19 request_stop: done 
        active ["big":Stopping "Small now" {"size":1}] stopped ["" "Default" null]
        20 server_stopped: done 
        21 remove_server: done 
        22 remove_server: REJECTED User alice has no such server  
        active [] stopped []
    "#]]
    .assert_eq(&transcript);
}

#[test]
fn before_log_format_7_a_stopped_server_is_forgotten_and_names_are_ascii() {
    let mut state = HubState::default();
    let transcript = run(
        &mut state,
        vec![
            create("alice"),
            Command::RequestSpawn {
                user: "alice".into(),
                server_name: "gpu".into(),
                user_options: serde_json::json!({"size": 2}),
                display_name: None,
                limits: None,
            },
            Command::RequestStop {
                user: "alice".into(),
                server_name: "gpu".into(),
                remove: false,
            },
            stopped_named("alice", "gpu", 2),
            create("ünï"),
            Command::SetClusterVersion { version: 7 },
            create("ünï"),
        ],
    );
    expect![[r#"
        1 create_user: user alice admin=false 
        2 request_spawn: spawn gen=2 
        3 request_stop: done 
        4 server_stopped: done 
        5 create_user: REJECTED Invalid name "ünï": username contains 'ü'; allowed are a-z, 0-9 and -_.@ 
        6 set_cluster_version: done 
        7 create_user: user ünï admin=false 
    "#]]
    .assert_eq(&transcript);
    let u = state.user("alice").expect("alice");
    assert!(u.stopped.is_empty() && u.servers.is_empty());
    // A user without records encodes as before log format 7.
    assert!(!String::from_utf8_lossy(&state.encode()).contains("stopped"));
    // The new fields of old commands need log format 7 only when used.
    let spawn = |display: Option<&str>| Command::RequestSpawn {
        user: "a".into(),
        server_name: String::new(),
        user_options: serde_json::Value::Null,
        display_name: display.map(str::to_string),
        limits: None,
    };
    assert_eq!(spawn(None).min_version(), 1);
    assert_eq!(spawn(Some("x")).min_version(), 7);
    let stop = |remove| Command::RequestStop {
        user: "a".into(),
        server_name: String::new(),
        remove,
    };
    assert_eq!(stop(false).min_version(), 1);
    assert_eq!(stop(true).min_version(), 7);
    assert_eq!(
        serde_json::to_string(&stop(false)).expect("encodes"),
        r#"{"op":"request_stop","user":"a","server_name":""}"#
    );
    // A unicode user's route prefix is escaped as JupyterHub escapes it.
    assert_eq!(
        Route::prefix_for("ünï", "a b"),
        "/user/%C3%BCn%C3%AF/a%20b/"
    );
    assert_eq!(
        Route::prefix_for("al.ice@x", "g-1_x"),
        "/user/al.ice@x/g-1_x/"
    );
}

/// JupyterHub's spawn limits (log format 8), counted when the entry is
/// applied: servers still starting against `concurrent`, active ones
/// (starting, running or stopping) against `active`; a server that is
/// ready or stopping no longer counts as starting.
#[test]
fn spawn_limits_count_the_servers_of_the_applied_state() {
    let limited = |user: &str, concurrent, active| Command::RequestSpawn {
        user: user.into(),
        server_name: String::new(),
        user_options: serde_json::Value::Null,
        display_name: None,
        limits: SpawnLimits { concurrent, active }.if_any(),
    };
    let state = check(
        vec![
            create("a"),
            create("b"),
            create("c"),
            create("d"),
            limited("a", 2, 3),
            limited("b", 2, 3),
            // Two starting: the third waits.
            limited("c", 2, 3),
            started("a", 5),
            ready("a", 5),
            // a is running: one starting, three active would be too many.
            limited("c", 2, 3),
            limited("d", 2, 3),
            stop("b"),
            // b is stopping: still active, no longer starting.
            limited("d", 0, 3),
            stopped("b", 6),
            limited("d", 1, 3),
            // Without limits (or with zeros), nothing is counted.
            spawn("b"),
            Command::RequestSpawn {
                user: "x".into(),
                server_name: String::new(),
                user_options: serde_json::Value::Null,
                display_name: None,
                limits: SpawnLimits::default().if_any(),
            },
        ],
        expect![[r#"
            1 create_user: user a admin=false 
            2 create_user: user b admin=false 
            3 create_user: user c admin=false 
            4 create_user: user d admin=false 
            5 request_spawn: spawn gen=5 
            6 request_spawn: spawn gen=6 
            7 request_spawn: REJECTED Too many users trying to log in right now (2 of at most 2 spawns pending) 
            8 spawn_started: done 
            9 server_ready: done +/user/a/->http://127.0.0.1:9000
            10 request_spawn: spawn gen=10 
            11 request_spawn: REJECTED Too many users trying to log in right now (2 of at most 2 spawns pending) 
            12 request_stop: done 
            13 request_spawn: REJECTED Active user limit exceeded (3 of at most 3 servers active). Try again in a few minutes. 
            14 server_stopped: done 
            15 request_spawn: REJECTED Too many users trying to log in right now (1 of at most 1 spawns pending) 
            16 request_spawn: spawn gen=16 
            17 request_spawn: REJECTED No such user: x 
        "#]],
    );
    // The derived count is what a snapshot restore rebuilds.
    assert_eq!(HubState::decode(&state.encode()).expect("decodes"), state);
    assert_eq!(state.spawning.len(), 2);
    assert_eq!(limited("a", 0, 0).min_version(), 1);
    assert_eq!(limited("a", 1, 0).min_version(), 8);
    assert_eq!(
        serde_json::to_string(&limited("a", 0, 0)).expect("encodes"),
        r#"{"op":"request_spawn","user":"a","server_name":"","user_options":null}"#
    );
}

fn service(name: &str, url: Option<&str>, command: &[&str], token_hash: Option<&str>) -> Service {
    Service {
        name: name.into(),
        url: url.map(str::to_string),
        command: command.iter().map(|c| c.to_string()).collect(),
        display: true,
        info: BTreeMap::new(),
        token_hash: token_hash.map(str::to_string),
        oauth_redirect_uri: None,
        oauth_no_confirm: false,
        process: None,
        retired: false,
    }
}

fn service_started(name: &str, pid: u32, token_hash: &str) -> Command {
    Command::ServiceStarted {
        name: name.into(),
        host: "h".into(),
        pid,
        proc_start: 7,
        token_hash: token_hash.into(),
    }
}

fn service_stopped(name: &str, generation: u64) -> Command {
    Command::ServiceStopped {
        name: name.into(),
        generation,
        reason: "test".into(),
    }
}

/// Services (log format 8): the leader's set replaces the last one and
/// routes `/services/{name}/`; a managed service has at most one recorded
/// copy, fenced by its generation; a copy's token lives with it; a service
/// removed while its copy runs stays, retired, until the copy is stopped.
#[test]
fn services_are_replaced_whole_and_a_managed_one_has_one_copy() {
    let both = || Command::SetServices {
        services: vec![
            service("culler", None, &["cull", "--every=60"], None),
            service("dash", Some("http://10.0.0.5:9000"), &[], Some("dash-hash")),
        ],
    };
    let mut state = HubState::default();
    let transcript = run(
        &mut state,
        vec![
            both(),
            service_started("culler", 42, "copy-1"),
            service_started("culler", 43, "copy-2"),
            service_started("dash", 44, "copy-3"),
            service_started("nobody", 45, "copy-4"),
            both(),
            service_stopped("culler", 99),
            service_stopped("culler", 2),
            service_started("culler", 46, "copy-5"),
        ],
    );
    expect![[r#"
        1 set_services: done +/services/dash/->http://10.0.0.5:9000
        2 service_started: done 
        3 service_started: REJECTED service culler already runs (pid 42 on h) 
        4 service_started: REJECTED No such service: dash 
        5 service_started: REJECTED No such service: nobody 
        6 set_services: done 
        7 service_stopped: REJECTED report for an earlier copy of service culler (generation 99, current 2) 
        8 service_stopped: done 
        9 service_started: done 
    "#]]
    .assert_eq(&transcript);
    let by = |s: &HubState, h: &str| s.service_by_token_hash(h).map(|s| s.name.clone());
    assert_eq!(by(&state, "dash-hash").as_deref(), Some("dash"));
    assert_eq!(by(&state, "copy-5").as_deref(), Some("culler"));
    assert_eq!(
        by(&state, "copy-1"),
        None,
        "a stopped copy's token went with it"
    );
    assert_eq!(
        state.services["culler"].process.as_ref().map(|p| p.pid),
        Some(46)
    );
    assert_eq!(HubState::decode(&state.encode()).expect("decodes"), state);

    // A changed command drops the recorded copy (and its token): the
    // leader starts one as now configured.
    let changed = || Command::SetServices {
        services: vec![
            service("culler", None, &["cull", "--every=30"], None),
            service("dash", Some("http://10.0.0.5:9000"), &[], Some("dash-hash")),
        ],
    };
    let mut oauth = token("alice", "alice-dash-oauth");
    oauth.client_id = Some("service-dash".into());
    let transcript = run(
        &mut state,
        vec![
            changed(),
            service_started("culler", 47, "copy-6"),
            create("alice"),
            Command::CreateToken { token: oauth },
        ],
    );
    expect![[r#"
        10 set_services: done 
        11 service_started: done 
        12 create_user: user alice admin=false 
        13 create_token: token a1 
    "#]]
    .assert_eq(&transcript);
    assert_eq!(by(&state, "copy-5"), None, "the old copy's token went");
    assert_eq!(by(&state, "copy-6").as_deref(), Some("culler"));

    // Removed from the configuration while its copy runs: retired, hidden,
    // no new copy, gone once the copy is stopped; a removed service's OAuth
    // tokens go with its client.
    let transcript = run(
        &mut state,
        vec![
            Command::SetServices { services: vec![] },
            service_started("culler", 48, "copy-7"),
            service_stopped("culler", 9),
            service_stopped("culler", 11),
        ],
    );
    expect![[r#"
        14 set_services: done -/services/dash/
        15 service_started: REJECTED No such service: culler 
        16 service_stopped: REJECTED report for an earlier copy of service culler (generation 9, current 11) 
        17 service_stopped: done 
    "#]]
    .assert_eq(&transcript);
    assert!(state.services.is_empty());
    assert_eq!(by(&state, "copy-6"), None);
    assert_eq!(by(&state, "dash-hash"), None);
    assert!(state.routes.is_empty());
    assert!(
        state
            .tokens
            .values()
            .all(|t| t.client_id.as_deref() != Some("service-dash")),
        "the removed service's OAuth tokens are revoked"
    );
    for c in [
        both(),
        service_started("a", 1, "x"),
        service_stopped("a", 1),
    ] {
        assert_eq!(c.min_version(), 8, "{}", c.name());
    }
}
