//! The project's own OpenAPI file (docs/rest-api.yml) against a live
//! cluster, by schemathesis: every operation it lists, with generated
//! valid and invalid inputs, must never get a server error (5xx) and must
//! answer as the file says (status codes, content types, response shapes).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn schemathesis() -> PathBuf {
    let venv = std::env::var("QH_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv")
        });
    let st = venv.join("bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/schemathesis-venv.sh (or set QH_SCHEMATHESIS_VENV)",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_mismatch_with_the_openapi_file() {
    let st = schemathesis();
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rest-api.yml");
    // Starts answer within a second (202 after), so generated spawns and
    // stops do not hold the run.
    let c = common::start(3, &["--slow-spawn-timeout-s", "1"]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let report = tempfile::tempdir().expect("tempdir");
    let base = c.url(1, "/hub/api");
    let st_run = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("run")
            .arg(&spec)
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: token {}", common::TOKEN)])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "12", "--workers", "1", "--seed", "20261202"])
            .args(["--request-timeout", "20"])
            .arg("--report-dir")
            .arg(report.path())
            // Its cache (found crashes) goes to the working directory.
            .current_dir(report.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("st run")
    });
    let out = tokio::time::timeout(Duration::from_secs(900), st_run)
        .await
        .expect("schemathesis finished within 15 min")
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // It ran every operation of the file.
    let operations = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rest-api.yml"),
    )
    .expect("the OpenAPI file")
    .matches("operationId:")
    .count();
    assert!(
        stdout.contains(&format!("{operations} selected / {operations} total")),
        "not all {operations} operations ran:
{stdout}"
    );
}
