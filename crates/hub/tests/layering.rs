//! The workspace's layering (issue 11), checked on the crates' dependency graph
//! (`cargo metadata`) and on their sources (comments aside), each failure
//! naming the crate, the line or the import path:
//! - `quorumhub-core` depends on no transport, template engine, Raft or
//!   spawner, not even through another crate; `quorumhub-http` on no Raft
//!   or gRPC;
//! - the spawner controller knows no spawner by name: it drives
//!   `quorumhub_spawner::Spawners`, so adding a spawner touches the spawner
//!   crate only;
//! - in `quorumhub-http`, the REST API (`api/`) and the browser pages
//!   (`web/`) never import each other; what both need is in `auth/` and
//!   `error.rs`, and `app.rs` composes them; no two modules of the core,
//!   HTTP, hub or proxy crate import each other in a cycle;
//! - tokens are minted in one place (`quorumhub-core`'s `ops/tokens.rs`);
//! - the hub's errors become gRPC statuses only in `grpc/status.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Names that belong to one spawner or to the choice between them.
const SPAWNER_SPECIFIC: &[&str] = &[
    "SpawnerKind",
    "docker",
    "Docker",
    "ProcessSpawner",
    "spawn_process",
    "stop_process",
    "is_alive",
    "pick_free_port",
    "quorumhub_spawner::local",
    "quorumhub_spawner::account",
];

/// What no part of the hub may do itself: start, check or stop a server,
/// or hold one spawner's types.
const SPAWNING: &[&str] = &[
    "spawn_process",
    "stop_process",
    "is_alive(",
    "docker::Engine",
    "DockerSpawner",
    "ProcessSpawner",
];

/// A line without its `//` comment; a `//` inside a string literal (a URL)
/// is code.
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` for every code line of `files` naming one of `names`.
fn naming(files: &[PathBuf], names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).expect("read");
        for (i, line) in text.lines().enumerate() {
            let code = code_of(line);
            if names.iter().any(|n| code.contains(n)) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

/// The hub crate's sources.
fn src() -> PathBuf {
    crate_src("hub")
}

/// `crates/<name>/src`.
fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

/// Every Rust file of the hub, core and HTTP crates.
fn hub_side_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for c in ["hub", "core", "http"] {
        rust_files(&crate_src(c), &mut files);
    }
    files
}

#[test]
fn the_controller_names_no_spawner() {
    let found = naming(&[src().join("controller.rs")], SPAWNER_SPECIFIC);
    assert!(
        found.is_empty(),
        "the controller must go through quorumhub_spawner::Spawners, not name a spawner:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_hub_never_starts_checks_or_stops_a_server_itself() {
    // The rest of the hub may read the spawner flags (e.g.
    // `servers_as_user_accounts`) and validate names, but servers are the
    // spawners' business.
    let files = hub_side_files();
    assert!(files.len() > 30, "found the hub's sources: {files:?}");
    let found = naming(&files, SPAWNING);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The top-level modules a path names: `crate::x`, `crate::{x, y::z}` (the
/// top of each item, nested groups included), and from a directory module
/// `super::x` (in its `mod.rs`) or `super::super::x` (in its files).
fn named_modules(code: &str, depth: usize) -> Vec<String> {
    fn ident(s: &str) -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    }
    let mut found = Vec::new();
    let prefix = match depth {
        0 => None,
        1 => Some("super::"),
        _ => Some("super::super::"),
    };
    for root in std::iter::once("crate::").chain(prefix) {
        for (i, _) in code.match_indices(root) {
            // `super::super::x` also contains `super::x`: only whole paths.
            if root == "super::" && code[..i].ends_with("super::") {
                continue;
            }
            let rest = &code[i + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level items of the group, up to its closing brace.
                let mut level = 0;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            found.push(ident(&group[j..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                found.push(ident(rest));
            }
        }
    }
    found
}

/// A crate's top-level modules (a file, or a directory with its files) and
/// the top-level modules each names.
fn module_imports(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = crate_src(krate);
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let top = parts[0].trim_end_matches(".rs").to_string();
        // How far below the crate root `super` starts: a top-level file or
        // a `dir/mod.rs` is 1 (its `super` is the root), `dir/x.rs` is 2.
        let depth = match parts.as_slice() {
            [_] => 0,
            [_, "mod.rs"] => 1,
            _ => 2,
        };
        let text = std::fs::read_to_string(path).expect("read");
        let entry = named.entry(top).or_default();
        for line in text.lines() {
            entry.extend(named_modules(code_of(line), depth));
        }
    }
    let names: BTreeSet<String> = named.keys().cloned().collect();
    named
        .into_iter()
        .map(|(module, deps)| {
            let deps = deps
                .into_iter()
                .filter(|d| *d != module && names.contains(d))
                .collect();
            (module, deps)
        })
        .collect()
}

#[test]
fn the_import_reader_reads_every_form() {
    assert_eq!(named_modules("use crate::web::session;", 0), ["web"]);
    assert_eq!(
        named_modules("use crate::{api::{a, b}, web, hub::Hub};", 0),
        ["api", "web", "hub"]
    );
    assert_eq!(
        named_modules("impl super::super::api::ApiError {", 2),
        ["api"]
    );
    assert_eq!(named_modules("use super::session;", 1), ["session"]);
    assert_eq!(
        named_modules("use super::session;", 2),
        Vec::<String>::new()
    );
    assert_eq!(
        code_of(r#"let u = "http://x"; // crate::web"#),
        r#"let u = "http://x"; "#
    );
    // And on the HTTP crate itself: `app` sees both front ends.
    let graph = module_imports("http");
    for dep in ["api", "web", "auth", "error"] {
        assert!(
            graph["app"].contains(dep),
            "app imports {dep}: {:?}",
            graph["app"]
        );
    }
    for dep in ["auth", "error"] {
        assert!(
            graph["api"].contains(dep),
            "api imports {dep}: {:?}",
            graph["api"]
        );
        assert!(
            graph["web"].contains(dep),
            "web imports {dep}: {:?}",
            graph["web"]
        );
    }
}

#[test]
fn the_api_and_the_pages_never_import_each_other() {
    let graph = module_imports("http");
    for (from, to) in [("api", "web"), ("web", "api")] {
        assert!(graph.contains_key(from), "module {from} exists: {graph:?}");
        assert!(
            !graph[from].contains(to),
            "{from} imports {to}; move what both need to auth/ or error.rs (or the use case to quorumhub-core)"
        );
    }
}

/// A cycle of imports in `graph`, if there is one (as the modules on it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(graph, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let proxy = module_imports("proxy");
    // The reader sees real edges (so an empty graph cannot pass).
    assert!(
        proxy["forward"].contains("shared") && proxy["health"].contains("client"),
        "{proxy:?}"
    );
    for krate in ["http", "hub", "core", "proxy"] {
        let graph = module_imports(krate);
        assert!(graph.len() > 5, "{krate}: {graph:?}");
        if let Some(c) = cycle(&graph) {
            panic!(
                "the modules of crates/{krate} import each other in a cycle: {}; move what both \
                 need into a module of its own (as the proxy's client.rs, drain.rs and shared.rs are)",
                c.join(" -> ")
            );
        }
    }
}

/// The crates `krate` depends on to build (normal dependencies, through
/// every other crate), from `cargo metadata`.
fn dependency_closure(krate: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().expect("resolve");
    let normal_deps = |id: &str| -> Vec<String> {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["deps"].as_array())
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_string))
            .collect()
    };
    let root = name_of
        .iter()
        .find(|(_, n)| **n == krate)
        .map(|(id, _)| id.to_string())
        .expect("the crate is in the workspace");
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(normal_deps(&id));
        }
    }
    seen.iter()
        .filter_map(|id| name_of.get(id.as_str()).map(|n| n.to_string()))
        .collect()
}

#[test]
fn core_depends_on_no_transport_and_http_on_no_raft() {
    let core = dependency_closure("quorumhub-core");
    assert!(core.contains("quorumhub-state"), "{core:?}");
    let forbidden: Vec<_> = [
        "axum",
        "http",
        "hyper",
        "tonic",
        "minijinja",
        "openraft",
        "sled",
        "quorumhub-raft",
        "quorumhub-proto",
        "quorumhub-spawner",
        "quorumhub-edge",
        "quorumhub-http",
        "bollard",
    ]
    .into_iter()
    .filter(|c| core.contains(*c))
    .collect();
    assert!(
        forbidden.is_empty(),
        "quorumhub-core must know nothing about transports, Raft or spawners, but depends on {forbidden:?}"
    );
    let http = dependency_closure("quorumhub-http");
    assert!(
        http.contains("axum") && http.contains("quorumhub-core"),
        "{http:?}"
    );
    let forbidden: Vec<_> = [
        "tonic",
        "openraft",
        "sled",
        "quorumhub-raft",
        "quorumhub-proto",
        "quorumhub-spawner",
        "quorumhub-hub",
    ]
    .into_iter()
    .filter(|c| http.contains(*c))
    .collect();
    assert!(
        forbidden.is_empty(),
        "quorumhub-http must know nothing about Raft or gRPC, but depends on {forbidden:?}"
    );
}

#[test]
fn the_replica_hands_the_http_side_only_a_cluster() {
    // The Raft-backed replica (`hub.rs`, `cluster.rs`) is what the HTTP
    // crate sees through `Cluster`; it must not know the HTTP crate back.
    let found = naming(
        &[src().join("hub.rs"), src().join("cluster.rs")],
        &["quorumhub_http", "axum", "minijinja"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_use_cases_name_no_transport() {
    let mut files = Vec::new();
    rust_files(&crate_src("core"), &mut files);
    assert!(files.len() > 5);
    let found = naming(
        &files,
        &[
            "axum",
            "http::",
            "hyper",
            "minijinja",
            "tonic",
            "StatusCode",
            "openraft",
            "quorumhub_raft",
            "quorumhub_spawner",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Whether a line of code builds a `Token` record (not `NewToken`,
/// `CreateToken`, `NoSuchToken`, ...).
fn mints(line: &str) -> bool {
    let code = code_of(line);
    code.match_indices("Token {").any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn tokens_are_minted_in_one_place() {
    // A `Token { .. }` record is built only in core's ops/tokens.rs, which
    // also makes its secret: the API, the OAuth provider and the controller
    // all mint through it.
    let files = hub_side_files();
    let mut found = Vec::new();
    for path in files.iter().filter(|f| !f.ends_with("ops/tokens.rs")) {
        let text = std::fs::read_to_string(path).expect("read");
        for (i, line) in text.lines().enumerate() {
            if mints(line) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    assert!(mints("    let token = Token {"));
    assert!(mints("token: quorumhub_state::Token {"));
    assert!(!mints("Rejection::NoSuchToken { .. }"));
    assert!(!mints("Command::CreateToken { token }"));
    assert!(!mints("// Token { in a comment"));
}

/// Whether `word` occurs in `code` as a whole identifier (`Status`, not
/// `StatusCode` or `NodeStatus`).
fn has_word(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        !code[..i].chars().next_back().is_some_and(ident)
            && !code[i + word.len()..].chars().next().is_some_and(ident)
    })
}

#[test]
fn errors_become_grpc_statuses_in_one_place() {
    assert!(has_word("Err(Status::internal(e))", "Status"));
    assert!(!has_word("StatusCode::OK", "Status"));
    assert!(!has_word("NodeStatusReply", "Status"));
    assert!(!has_word("StatusC", "Status"));
    let files = hub_side_files();
    let outside: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| !f.starts_with(src().join("grpc")))
        .collect();
    let mut found = Vec::new();
    for path in &outside {
        let text = std::fs::read_to_string(path).expect("read");
        for (i, line) in text.lines().enumerate() {
            let code = code_of(line);
            let maps = has_word(code, "Status")
                && ["HubError", "Rejection", "TransferError"]
                    .iter()
                    .any(|e| code.contains(e));
            let is_status = |after: &str| {
                let t = after.trim_start();
                let t = t.strip_prefix("tonic::").unwrap_or(t);
                t.starts_with("Status") && has_word(&t[..t.len().min(7)], "Status")
            };
            let returns = code
                .match_indices("->")
                .any(|(i, _)| is_status(&code[i + 2..]));
            let converts = code
                .match_indices(" for ")
                .any(|(i, _)| is_status(&code[i + 5..]));
            if maps || returns || converts {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "map errors to a gRPC status in grpc/status.rs:\n{}",
        found.join("\n")
    );
    let status = std::fs::read_to_string(src().join("grpc/status.rs")).expect("grpc/status.rs");
    for f in [
        "fn status(e: HubError)",
        "fn rejection_status(",
        "fn transfer_status(",
        "fn membership_status(",
    ] {
        assert!(status.contains(f), "grpc/status.rs has {f}");
    }
}

#[test]
fn no_front_end_decodes_a_command_outcome_itself() {
    // What a command answered is decoded in core (`ops::outcome`), typed;
    // a handler (REST, pages, OAuth, OIDC, gRPC admin) that matches
    // `Response::...` arms again grows the "unexpected outcome" arms this
    // layering removed.
    let mut files = Vec::new();
    rust_files(&crate_src("http"), &mut files);
    rust_files(&src().join("grpc"), &mut files);
    assert!(files.len() > 15);
    let found = naming(
        &files,
        &[
            "unexpected outcome",
            "SmResponse::",
            "Response::Rejected",
            "Response::User",
            "Response::TokenCreated",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_http_side_changes_state_only_through_the_use_cases() {
    // Every command the front end causes is proposed by a use case in
    // core's ops/ (typed, its outcome decoded there); `ctx.rs` only hands
    // the cluster on.
    let mut files = Vec::new();
    rust_files(&crate_src("http"), &mut files);
    files.retain(|f| !f.ends_with("ctx.rs"));
    assert!(files.len() > 15);
    let found = naming(&files, &["Command::", ".propose("]);
    assert!(
        found.is_empty(),
        "propose through a use case in crates/core/src/ops/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_what_it_looks_for() {
    // The checker itself: a line naming a spawner is found, a comment is not.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.rs");
    std::fs::write(
        &file,
        "// SpawnerKind in a comment\nlet k = SpawnerKind::Docker;\nlet p = quorumhub_spawner::spawn_process(&spec);\n",
    )
    .expect("write");
    let found = naming(std::slice::from_ref(&file), SPAWNER_SPECIFIC);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with(":2: let k = SpawnerKind::Docker;"));
    assert_eq!(naming(&[file], SPAWNING).len(), 1);
}
