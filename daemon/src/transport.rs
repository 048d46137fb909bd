//! The LSP transport between the editor's stdio and tower-lsp-server's `LspService`: `Content-Length` framed
//! JSON-RPC, read with a buffer sized to each message and freed after it.
//!
//! tower-lsp-server's own `Server` reads into one growing buffer that keeps the capacity of the largest message
//! it ever saw for the life of the process: after a 10 MB `collab/open`, 16 MB stayed resident. Here only the
//! header bytes go through a small reused buffer; each body gets a buffer of exactly its length, dropped once it
//! is parsed. Everything else follows `Server`: requests are handed to the service in the order they arrive
//! (its handlers forward to the main loop synchronously, so editor edits keep their order), their responses and
//! the service's own requests to the editor share one writer, and the editor's responses go back to the service.

use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Error, Id, Request, Response};
use tower_lsp_server::{ClientSocket, LanguageServer, LspService};
use tower_service::Service;

/// Largest message body accepted; a larger one is skipped with a JSON-RPC error. Far above any file the daemon
/// shares (4 MiB) or opens in practice.
pub const MAX_BODY_BYTES: usize = 1 << 30;
/// Longest header line; a longer one means the stream is not LSP framing.
const MAX_HEADER_LINE: usize = 1024;

/// A JSON-RPC message, either way: from the editor, or to it.
#[derive(Serialize)]
#[serde(untagged)]
enum Message {
    Response(Response),
    Request(Request),
}

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The stream broke or ended in the middle of a message: nothing more can be read.
    #[error("reading from the editor: {0}")]
    Io(#[from] std::io::Error),
    /// The header is broken; reading goes on at the next line, so a later well-framed message is still read.
    #[error("bad LSP header: {0}")]
    Header(String),
    /// The body was skipped (it was too large); the next message can be read.
    #[error("message of {0} bytes is over the limit of {MAX_BODY_BYTES}")]
    TooLarge(usize),
}

/// Reads one message body; `None` at a clean end of input (between messages).
async fn read_message<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut length = None;
    // A bad header line is reported once the header block ends, so reading goes on right after it.
    let mut bad = None;
    let mut first = true;
    loop {
        line.clear();
        let read = (&mut *input).take(MAX_HEADER_LINE as u64).read_until(b'\n', line).await?;
        if read == 0 {
            return if first { Ok(None) } else { Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())) };
        }
        first = false;
        if line.last() != Some(&b'\n') {
            return Err(ReadError::Header("header line too long".into()));
        }
        let Ok(text) = std::str::from_utf8(line) else {
            bad.get_or_insert_with(|| "header is not UTF-8".to_owned());
            continue;
        };
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        match text.split_once(':') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                match value.trim().parse::<usize>() {
                    Ok(n) => length = Some(n),
                    Err(_) => {
                        bad.get_or_insert_with(|| format!("length {:?}", value.trim()));
                    }
                }
            }
            Some(_) => {}
            None => {
                bad.get_or_insert_with(|| format!("{text:?}"));
            }
        }
    }
    if let Some(bad) = bad {
        return Err(ReadError::Header(bad));
    }
    let length = length.ok_or_else(|| ReadError::Header("no Content-Length".into()))?;
    if length > MAX_BODY_BYTES {
        let skipped = tokio::io::copy(&mut (&mut *input).take(length as u64), &mut tokio::io::sink()).await?;
        if skipped < length as u64 {
            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        return Err(ReadError::TooLarge(length));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Parses a body as a request or notification, else as a response to one of ours.
fn parse(body: &[u8]) -> Result<Message, Error> {
    // tower-lsp-server's `Request` treats a missing `method` as empty, so a response also parses as one: the
    // method tells them apart. Requests are nearly every message, and the large ones; responses are small.
    match serde_json::from_slice::<Request>(body) {
        Ok(request) if !request.method().is_empty() => Ok(Message::Request(request)),
        Ok(_) => serde_json::from_slice::<Response>(body).map(Message::Response).map_err(|_| Error::invalid_request()),
        Err(error) if error.is_data() => Err(Error::invalid_request()),
        Err(_) => Err(Error::parse_error()),
    }
}

fn frame(message: &Message) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("JSON-RPC messages serialize");
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Writes what arrives on `outgoing` to the editor, flushing whenever nothing more is waiting.
async fn write_output<O: AsyncWrite>(output: O, mut outgoing: mpsc::UnboundedReceiver<Message>) {
    let mut output = std::pin::pin!(tokio::io::BufWriter::new(output));
    while let Some(message) = outgoing.recv().await {
        let mut next = Some(message);
        while let Some(message) = next.take() {
            if output.write_all(&frame(&message)).await.is_err() {
                return;
            }
            next = outgoing.try_recv().ok();
        }
        if output.flush().await.is_err() {
            return;
        }
    }
}

/// Serves `service` on `input`/`output` until `exit` or the end of `input`.
pub async fn serve<S, I, O>(input: I, output: O, mut service: LspService<S>, socket: ClientSocket)
where
    S: LanguageServer,
    I: AsyncRead + Unpin,
    O: AsyncWrite,
{
    let (mut to_editor, mut responses_from_editor) = socket.split();
    let (outgoing, outgoing_receiver) = mpsc::unbounded_channel();
    // The service's requests and notifications to the editor.
    let requests = {
        let outgoing = outgoing.clone();
        tokio::spawn(async move {
            while let Some(request) = to_editor.next().await {
                if outgoing.send(Message::Request(request)).is_err() {
                    break;
                }
            }
        })
    };
    let writer = write_output(output, outgoing_receiver);
    let reader = async {
        // An error about a message that could not be read, so there is no id to answer.
        let refuse = |error: Error| {
            let _ = outgoing.send(Message::Response(Response::from_error(Id::Null, error)));
        };
        let mut input = BufReader::with_capacity(8 * 1024, input);
        let mut line = Vec::new();
        let mut handlers = tokio::task::JoinSet::new();
        loop {
            let body = match read_message(&mut input, &mut line).await {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(error @ ReadError::TooLarge(_)) => {
                    tracing::warn!(%error, "message skipped");
                    refuse(Error::invalid_request());
                    continue;
                }
                Err(error @ ReadError::Header(_)) => {
                    tracing::warn!(%error, "skipping to the next header");
                    refuse(Error::parse_error());
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "the editor's input cannot be read on; stopping");
                    break;
                }
            };
            let message = parse(&body);
            drop(body);
            match message {
                Ok(Message::Request(request)) => {
                    if std::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
                        break; // The service has exited.
                    }
                    let exit = request.method() == "exit";
                    // tower-lsp-server runs a handler on its future's first poll: poll it here, in arrival order,
                    // so the handlers forward to the main loop in that order. Notifications finish on that poll;
                    // requests that wait for the main loop's answer finish in a task of their own.
                    let mut answer = service.call(request);
                    match std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await {
                        Poll::Ready(Ok(Some(response))) => {
                            let _ = outgoing.send(Message::Response(response));
                        }
                        Poll::Ready(_) => {}
                        Poll::Pending => {
                            let outgoing = outgoing.clone();
                            handlers.spawn(async move {
                                if let Ok(Some(response)) = answer.await {
                                    let _ = outgoing.send(Message::Response(response));
                                }
                            });
                        }
                    }
                    if exit {
                        break;
                    }
                }
                Ok(Message::Response(response)) => {
                    if responses_from_editor.send(response).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "undecodable message from the editor");
                    refuse(error);
                }
            }
            // Reap the requests that have been answered, so the set holds only those still waiting.
            while handlers.try_join_next().is_some() {}
        }
        // Handlers still waiting (for a reply that needs the server, say) are of no use to an editor that left.
        handlers.abort_all();
        requests.abort();
        drop(outgoing);
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads messages until the end of input or an error after which nothing more can be read.
    async fn read_all(input: &[u8]) -> Vec<Result<Option<Vec<u8>>, String>> {
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let result = read_message(&mut reader, &mut line).await;
            let more = matches!(result, Ok(Some(_)) | Err(ReadError::TooLarge(_) | ReadError::Header(_)));
            out.push(result.map_err(|e| e.to_string()));
            if !more {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn reads_framed_messages_with_any_header_case_and_extra_headers() {
        let input =
            b"Content-Length: 2\r\n\r\n{}content-length:3\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n[1]";
        let read = read_all(input).await;
        assert_eq!(read, vec![Ok(Some(b"{}".to_vec())), Ok(Some(b"[1]".to_vec())), Ok(None)]);
    }

    #[tokio::test]
    async fn a_body_cut_short_ends_reading() {
        let read = read_all(b"Content-Length: 10\r\n\r\n{}").await;
        assert!(matches!(read.as_slice(), [Err(e)] if e.contains("reading")), "{read:?}");
    }

    #[tokio::test]
    async fn after_a_broken_header_the_next_message_is_still_read() {
        let input = b"Content-Length: x\r\n\r\nFoo: 1\r\n\r\nContent-Length: 2\r\n\r\n{}";
        let read = read_all(input).await;
        assert_eq!(read.len(), 4, "one error per broken header block: {read:?}");
        assert!(read[..2].iter().all(|r| matches!(r, Err(e) if e.contains("header"))), "{read:?}");
        assert_eq!(read[2..], [Ok(Some(b"{}".to_vec())), Ok(None)]);
    }

    #[test]
    fn tells_requests_responses_and_garbage_apart() {
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","method":"exit"}"#), Ok(Message::Request(_))));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":1,"result":null}"#), Ok(Message::Response(_))));
        assert_eq!(parse(b"{not json").err().map(|e| e.code), Some(Error::parse_error().code));
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1}"#).err().map(|e| e.code), Some(Error::invalid_request().code));
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":1}"#).err().map(|e| e.code),
            Some(Error::invalid_request().code)
        );
    }
}
