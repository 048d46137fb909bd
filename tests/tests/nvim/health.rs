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
    // And :CodeCollab share says the same, as an error message, instead of failing obscurely.
    let error = missing.command("CodeCollab share").expect_err("reported as an error");
    assert!(error.to_string().contains("codecollab-daemon not found"), "{error}");
}
