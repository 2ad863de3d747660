//! The spawner controller knows no spawner by name (issue 11, step 4): it
//! drives `quorumhub_spawner::Spawners`, so adding a spawner touches the
//! spawner crate only. Fails, naming the line, if the hub's code (comments
//! aside) names a spawner kind or a spawner's own functions.

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
