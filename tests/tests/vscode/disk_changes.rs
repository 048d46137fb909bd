//! The host's disk changes under a session while a VS Code joiner and a Neovim joiner type in other files:
//! `git checkout` of a branch that adds, deletes, renames and changes files (a CRLF one among them), `mv` of a
//! folder, `rm`, and a formatter rewriting a closed file and one the host has open in Neovim. At the end every
//! joiner's folder equals the host's byte for byte, and every token typed is in its file everywhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::fixtures::{files_under, git, until_server_text};
use codecollab_tests::harness::{poll_until, TempDir};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

/// One change on the host's disk (given the host's Neovim, for the one that must notice it).
type Step<'a> = Box<dyn Fn(&mut Nvim) + 'a>;

/// Every file under `root` (but version control and build output), with its bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .filter(|p| !p.starts_with(".git/") && !p.starts_with("target/"))
        .map(|p| {
            let bytes = std::fs::read(root.join(&p)).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

#[test]
fn git_checkout_mv_rm_and_a_formatter_on_the_host_reach_vscode_and_neovim_joiners_while_they_type() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    let host = host_dir.path().to_owned();
    for (path, text) in [
        ("v.txt", "VS Code types here\n"),
        ("n.txt", "Neovim types here\n"),
        ("keep.txt", "kept until rm\n"),
        ("change.txt", "one\ntwo\nthree\n"),
        ("dos.txt", "first\r\nsecond\r\n"),
        ("delete.txt", "deleted on the branch\n"),
        ("rename.txt", "renamed on the branch\n"),
        ("src/a.rs", "fn a() {}\n"),
        ("fmt.rs", "fn  f( )  {  }\n"),
        ("open.rs", "fn  open( )  {  }\n"),
        (".gitignore", "target/\n"),
    ] {
        std::fs::create_dir_all(host.join(path).parent().expect("folder")).expect("mkdir");
        std::fs::write(host.join(path), text).expect("write");
    }
    git(&host, &["init", "-q", "-b", "main"]);
    git(&host, &["add", "-A"]);
    git(&host, &["commit", "-q", "-m", "main"]);
    git(&host, &["checkout", "-q", "-b", "other"]);
    std::fs::write(host.join("change.txt"), "one\n2\nthree\nfour\n").expect("write");
    std::fs::write(host.join("dos.txt"), "first\r\nsecond, changed\r\nthird\r\n").expect("write");
    std::fs::write(host.join("added.txt"), "added on the branch\n").expect("write");
    git(&host, &["rm", "-q", "delete.txt"]);
    git(&host, &["mv", "rename.txt", "renamed.txt"]);
    git(&host, &["add", "-A"]);
    git(&host, &["commit", "-q", "-m", "other"]);
    git(&host, &["checkout", "-q", "main"]);

    // Nils shares and has open.rs open (autoread: the formatter's rewrite reloads it, and its edit carries it).
    let (mut nils, invite) = Nvim::share(&host, &server.url(), "nils").expect("Neovim shares");
    nils.command("set autoread | edit open.rs").expect("edit");
    let nvim_dir = TempDir::new("vscode-nvim-joiner");
    let mut nora = Nvim::join(&invite, nvim_dir.path(), "nora").expect("Neovim joins");
    nora.command("edit n.txt").expect("edit");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("v.txt").expect("open");

    let steps: Vec<Step> = vec![
        Box::new(|_| git(&host, &["checkout", "-q", "other"])),
        Box::new(|_| std::fs::rename(host.join("src"), host.join("lib")).expect("mv")),
        Box::new(|_| std::fs::remove_file(host.join("keep.txt")).expect("rm")),
        Box::new(|_| std::fs::write(host.join("fmt.rs"), "fn f() {}\n").expect("format a closed file")),
        Box::new(|nils| {
            std::fs::write(host.join("open.rs"), "fn open() {}\n").expect("format an open file");
            nils.command("checktime").expect("Neovim notices");
        }),
        Box::new(|_| {
            std::fs::create_dir_all(host.join("target")).expect("mkdir");
            std::fs::write(host.join("target/out.txt"), "build output\n").expect("ignored");
        }),
    ];
    let mut typed = (Vec::new(), Vec::new());
    for (i, step) in steps.iter().enumerate() {
        for j in 0..3 {
            let (v, n) = (format!("<v{i}.{j}>"), format!("[n{i}.{j}]"));
            vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
            vscode.call("type", json!({ "text": v })).expect("type");
            nora.input(&format!("GA{n}<Esc>")).expect("type");
            typed.0.push(v);
            typed.1.push(n);
        }
        step(&mut nils);
    }
    nora.settle_input().expect("settled");
    for (path, tokens) in [("v.txt", &typed.0), ("n.txt", &typed.1)] {
        until_server_text(&invite, path, |text| tokens.iter().all(|t| text.matches(t.as_str()).count() == 1));
    }
    // The files the joiners have open are theirs to write: they save, as their users would.
    vscode.save().expect("save");
    if let Err(error) = nora.command("write") {
        let said = codecollab_tests::fixtures::nvim::messages(&mut nora);
        let info = nora.lua("return { vim.fn.expand('%:p'), vim.bo.modified, vim.fn.getbufinfo('%')[1] }", json!([]));
        panic!("Nora's :write: {error}\n{said}\n{info:?}");
    }
    nils.command("wall").expect("write");

    let joiners = [("VS Code's", guest_dir.path().to_owned()), ("Neovim's", nvim_dir.path().to_owned())];
    let mut last = String::new();
    let waited =
        poll_until("every folder to equal the host's", Duration::from_secs(60), Duration::from_millis(250), || {
            let want = tree(&host);
            for (who, dir) in &joiners {
                let have = tree(dir);
                if have != want {
                    let differing: Vec<&String> =
                        want.keys().chain(have.keys()).filter(|k| want.get(*k) != have.get(*k)).collect();
                    let show = |files: &BTreeMap<String, Vec<u8>>, k: &String| {
                        files.get(k).map(|b| String::from_utf8_lossy(b).into_owned())
                    };
                    let details: Vec<String> = differing
                        .iter()
                        .map(|k| format!("{k}: host {:?}, {who} {:?}", show(&want, k), show(&have, k)))
                        .collect();
                    last = format!("{who} folder differs: {details:?}");
                    return Ok(false);
                }
            }
            Ok(true)
        });
    waited.unwrap_or_else(|e| panic!("{e}: {last}"));
    let files: Vec<String> = tree(&host).into_keys().collect();
    let expected = [
        ".gitignore",
        "added.txt",
        "change.txt",
        "doc.txt",
        "dos.txt",
        "fmt.rs",
        "lib/a.rs",
        "n.txt",
        "open.rs",
        "renamed.txt",
        "v.txt",
    ];
    assert_eq!(files, expected);
    let on_disk = |p: &str| std::fs::read(nvim_dir.path().join(p)).expect("reads");
    assert_eq!(on_disk("dos.txt"), b"first\r\nsecond, changed\r\nthird\r\n", "CRLF kept");
    assert_eq!(on_disk("open.rs"), b"fn open() {}\n");
    assert_eq!(on_disk("fmt.rs"), b"fn f() {}\n");
    for (path, tokens) in [("v.txt", &typed.0), ("n.txt", &typed.1)] {
        let text = String::from_utf8(on_disk(path)).expect("UTF-8");
        for token in tokens {
            assert_eq!(text.matches(token.as_str()).count(), 1, "{token} in {path}: {text:?}");
        }
    }
}
