//! A daemon too old for the VS Code extension: one clear error naming it, its version and what to do.

use std::path::Path;

use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::vscode::VsCode;

#[test]
fn a_daemon_too_old_for_the_extension_is_named_with_what_to_do() {
    let _serial = serial();
    let setup = Setup::start();
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/old-codecollab-daemon");
    let mut vscode = VsCode::start_with_daemon(setup.host_dir.path(), Some(&setup.server.url()), "vera", Some(&old))
        .expect("VS Code");
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let error = vscode.notification("too old for this extension").expect("told");
    assert!(error.contains("0.0.9") && error.contains("editor protocol 1") && error.contains("needs 2"), "{error}");
    assert!(error.contains("codecollab.daemon.path"), "{error}");
    assert!(vscode.status().expect("status").is_empty(), "no session");
}
