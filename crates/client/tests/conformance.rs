//! The conformance scenario (clients/conformance/scenario.json) with this library's runner
//! (examples/conformance.rs, built by `cargo test` with the tests) against a real cluster,
//! when `REGENT_BIN` names the regent binary (CI sets it; the test says so and passes
//! otherwise, since this crate cannot build the binary itself).

use std::path::{Path, PathBuf};
use std::process::Command;

fn runner() -> PathBuf {
    // target/<profile>/deps/conformance-<hash> -> target/<profile>/examples/conformance
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/conformance")
}

#[test]
fn the_rust_library_passes_the_conformance_scenario() {
    let Some(bin) = std::env::var_os("REGENT_BIN") else {
        eprintln!("REGENT_BIN is not set: the conformance scenario is skipped");
        return;
    };
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/conformance/run.py");
    let out = Command::new("python3")
        .arg(driver)
        .arg("--regent")
        .arg(bin)
        .args(["--name", "rust", "--"])
        .arg(runner())
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
