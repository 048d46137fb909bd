//! Files rather than buffers: sharing and joining trees of many files, joining into a folder that holds files.

use std::time::Duration;

use codecollab_tests::fixtures::scripted::{join, share};
use codecollab_tests::harness::{TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};

/// 1,000 files of 9-10 KB each: the size at which a share once hung without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_of_ten_kilobytes_are_shared_and_joined() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    for i in 0..1_000 {
        let dir = host.path().join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text: String = (0..(9_000 + i)).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect();
        std::fs::write(dir.join(format!("f{i}.txt")), text).expect("write");
    }
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = tokio::time::timeout(Duration::from_secs(120), share(&mut a, host.path(), &server.url(), "ada"))
        .await
        .expect("the share answers");
    let joined = tokio::time::timeout(Duration::from_secs(120), join(&mut b, &invite, guest.path(), "bob"))
        .await
        .expect("the join answers");
    assert_eq!(joined["files"].as_array().expect("files").len(), 1_000);
    for i in [0, 499, 999] {
        let path = format!("d{}/f{i}.txt", i % 20);
        let theirs = std::fs::read(host.path().join(&path)).expect("host file");
        let ours = std::fs::read(guest.path().join(&path)).expect("guest file");
        assert_eq!(theirs, ours, "{path}");
    }
}
