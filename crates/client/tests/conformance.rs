//! The conformance scenario (clients/conformance/scenario.json) with this library's runner
//! (examples/conformance.rs, built by `cargo test` with the tests) against a real cluster of
//! the regent binary named by `REGENT_BIN`, else the one beside this test's target directory
//! (`cargo test` of the workspace builds it there). Without a binary the test says so and
//! passes, unless `CI` is set: in CI a missing prerequisite fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>/deps/conformance-<hash> -> target/<profile>.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

#[test]
fn the_rust_library_passes_the_conformance_scenario() {
    let bin = std::env::var_os("REGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("regent"));
    if !bin.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no regent binary at {} (set REGENT_BIN)",
            bin.display()
        );
        eprintln!(
            "no regent binary at {}: the conformance scenario is skipped",
            bin.display()
        );
        return;
    }
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/conformance/run.py");
    let out = Command::new("python3")
        .arg(driver)
        .arg("--regent")
        .arg(bin)
        .args(["--name", "rust", "--"])
        .arg(profile_dir().join("examples/conformance"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"failed\": 0"), "{stdout}");
}
