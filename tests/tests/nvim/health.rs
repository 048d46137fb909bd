//! :checkhealth reports a working setup, and a missing daemon clearly (as :CodeCollab share does).

use codecollab_tests::harness::TempDir;
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn checkhealth_reports_ok_and_a_missing_daemon_clearly() {
    let dir = TempDir::new("nvim-health");
    let health =
        "vim.cmd('checkhealth codecollab') return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')";
    let mut good = Nvim::start(dir.path(), "{}", true).expect("nvim");
    let report = good.lua(health, json!([])).expect("checkhealth").as_str().unwrap_or_default().to_owned();
    assert!(report.contains("OK") && report.contains("daemon: codecollab-daemon"), "{report}");
    let mut missing = Nvim::start(dir.path(), "{ daemon = '/nonexistent/codecollab-daemon' }", false).expect("nvim");
    let report = missing.lua(health, json!([])).expect("checkhealth").as_str().unwrap_or_default().to_owned();
    assert!(
        report.contains("ERROR") && report.contains("codecollab-daemon not found") && report.contains("cargo build"),
        "{report}"
    );
    assert!(report.contains("looked in: /nonexistent/codecollab-daemon"), "{report}");
    // With no `daemon` set and none on $PATH, the one built in the plugin's own checkout is found (what lazy.nvim's
    // `build` step in the README makes), with no PATH change.
    let mut checkout = Nvim::start(dir.path(), "{}", false).expect("nvim");
    let report = checkout.lua(health, json!([])).expect("checkhealth").as_str().unwrap_or_default().to_owned();
    let built = codecollab_tests::harness::binary("codecollab-daemon", "codecollab-daemon");
    assert!(report.contains("OK") && report.contains("/target/"), "{report}");
    assert!(
        built.starts_with(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo"))
    );
    // And :CodeCollab share says the same, as an error message, instead of failing obscurely.
    let error = missing.command("CodeCollab share").expect_err("reported as an error");
    assert!(error.to_string().contains("codecollab-daemon not found"), "{error}");
}
