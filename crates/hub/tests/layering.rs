//! The hub's layering (issue 11), checked on its sources (comments aside),
//! each failure naming the line or the import path:
//! - the spawner controller knows no spawner by name: it drives
//!   `quorumhub_spawner::Spawners`, so adding a spawner touches the spawner
//!   crate only;
//! - the REST API (`api/`) and the browser pages (`web/`) never import each
//!   other; what both need is in `auth/`, `ops/` and `error.rs`, and
//!   `app.rs` composes them;
//! - the use cases (`ops/`) name no transport or template engine;
//! - the replica (`hub.rs`) knows nothing of the HTTP side;
//! - tokens are minted in one place (`ops/tokens.rs`).

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
            let code = line.split("//").next().unwrap_or_default();
            if names.iter().any(|n| code.contains(n)) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 10, "found the hub's sources: {files:?}");
    let found = naming(&files, SPAWNING);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The hub's top-level modules (a file, or a directory with its files) and
/// the top-level modules each names as `crate::<module>`.
fn module_imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for path in &files {
        let rel = path.strip_prefix(src()).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("name")
            .trim_end_matches(".rs")
            .to_string();
        let code: String = std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        text.entry(top).or_default().push_str(&code);
    }
    let names: BTreeSet<String> = text.keys().cloned().collect();
    text.iter()
        .map(|(module, code)| {
            let mut deps = BTreeSet::new();
            let mut word = |w: &str| {
                let dep: String = w
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if dep != *module && names.contains(&dep) {
                    deps.insert(dep);
                }
            };
            for (i, _) in code.match_indices("crate::") {
                word(&code[i + "crate::".len()..]);
            }
            for group in code.split("crate::{").skip(1) {
                let group = group.split('}').next().unwrap_or_default();
                for part in group.split(',') {
                    word(part);
                }
            }
            (module.clone(), deps)
        })
        .collect()
}

#[test]
fn the_api_and_the_pages_never_import_each_other() {
    let graph = module_imports();
    for (from, to) in [("api", "web"), ("web", "api")] {
        assert!(graph.contains_key(from), "module {from} exists: {graph:?}");
        assert!(
            !graph[from].contains(to),
            "{from} imports {to}; move what both need to auth/, ops/ or error.rs"
        );
    }
}

#[test]
fn the_replica_knows_nothing_of_http() {
    let graph = module_imports();
    let http_side = ["api", "web", "auth", "app", "error"];
    let found: Vec<_> = graph["hub"]
        .iter()
        .filter(|m| http_side.contains(&m.as_str()))
        .collect();
    assert!(found.is_empty(), "hub.rs imports {found:?}");
    // The use cases lean on the replica only.
    for m in &graph["ops"] {
        assert!(!http_side.contains(&m.as_str()), "ops/ imports {m}");
    }
}

#[test]
fn the_use_cases_name_no_transport() {
    let mut files = Vec::new();
    rust_files(&src().join("ops"), &mut files);
    assert!(!files.is_empty());
    let found = naming(
        &files,
        &[
            "axum",
            "http::",
            "hyper",
            "minijinja",
            "tonic",
            "StatusCode",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Whether a line of code builds a `Token` record (not `NewToken`,
/// `CreateToken`, `NoSuchToken`, ...) or makes a token's secret.
fn mints(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    let builds = code.match_indices("Token {").any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    });
    builds || (code.contains("new_token()") && !code.contains("fn new_token()"))
}

#[test]
fn tokens_are_minted_in_one_place() {
    // A `Token { .. }` record is built, and a token's secret made, only in
    // ops/tokens.rs: the API, the OAuth provider and the controller all
    // mint through it. (The session id uses the same generator, but it is
    // no token.)
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for path in files
        .iter()
        .filter(|f| !f.ends_with("ops/tokens.rs") && !f.ends_with("auth/session.rs"))
    {
        let text = std::fs::read_to_string(path).expect("read");
        for (i, line) in text.lines().enumerate() {
            if mints(line) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    assert!(mints("    let token = Token {"));
    assert!(mints("let t = new_token();"));
    assert!(!mints("Rejection::NoSuchToken { .. }"));
    assert!(!mints("Command::CreateToken { token }"));
    assert!(!mints("// Token { in a comment"));
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
