//! TLS: wss:// with a certificate generated in the test, https health checks, and plain ws:// refused where
//! TLS is required.

use std::sync::Arc;

use codecollab_protocol::TextOperation;
use codecollab_tests::client::{Connect, WsClient};
use codecollab_tests::editor::Editor;
use codecollab_tests::harness::{parse_response, TempDir, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Tls {
    _dir: TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn generate() -> Tls {
    let dir = TempDir::new("tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls { _dir: dir, cert, key, client: Arc::new(client) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_works_and_plain_ws_is_refused() {
    let tls = generate();
    let server = TestServer::start(|c| {
        c.tls = Some(codecollab_server::config::TlsFiles { cert: tls.cert.clone(), key: tls.key.clone() });
    })
    .await;
    let url = format!("wss://localhost:{}", server.addr.port());
    let connect = Connect { tls: Some(tls.client.clone()), ..Default::default() };
    // Create a session and edit over TLS.
    let mut ws = WsClient::connect_with(&url, connect.clone()).await.expect("wss connects");
    ws.send(&codecollab_protocol::wire::ClientMsg::CreateSession { name: "host".into() }).await.expect("send");
    let edit_token = match ws.recv().await.expect("reply") {
        codecollab_protocol::wire::ServerMsg::SessionCreated { edit_token, .. } => edit_token,
        other => panic!("{other:?}"),
    };
    let connect = Connect { token: Some(edit_token.clone()), ..connect };
    let mut editor = Editor::open_with(&url, connect.clone(), "e", "secure.txt", "tls").await.expect("editor");
    editor.edit(TextOperation::replace(3, 3, 3, "!").expect("op")).await.expect("edit");
    editor.flush().await.expect("acknowledged over TLS");
    // https health check.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.client.clone()).connect(name, tcp).await.expect("tls");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert_eq!(parse_response(&response).expect("response"), (200, "ok\n".to_owned()));
    // Plain WebSocket to the TLS port does not get through.
    let plain = WsClient::connect(&format!("ws://127.0.0.1:{}", server.addr.port()), Some(&edit_token)).await;
    assert!(plain.is_err(), "plain ws:// must be refused where TLS is required");
}
