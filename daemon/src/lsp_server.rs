//! The LSP side: tower-lsp-server's `LanguageServer` and the custom `collab/*` methods. Handlers convert and
//! forward to the main loop *synchronously*, on their future's first poll: the transport ([`crate::transport`])
//! gives each message that poll in the order the messages arrive, so editor edits reach the main loop in order
//! even though requests waiting for an answer run concurrently.

use std::future::{ready, Ready};
use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::lsp_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::lsp_ext::*;
use crate::main_loop::Event;
use crate::output::{Output, Progress};
use crate::position::Encoding;

#[derive(Debug)]
pub struct Backend {
    events: mpsc::UnboundedSender<Event>,
}

impl Backend {
    pub fn new(events: mpsc::UnboundedSender<Event>) -> Backend {
        Backend { events }
    }

    fn forward(&self, event: Event) -> Ready<()> {
        let _ = self.events.send(event);
        ready(())
    }

    /// Forwards a request and waits for the main loop's answer.
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Event,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.events.send(make(reply)).is_ok();
        async move {
            if !sent {
                return Err(jsonrpc::Error::internal_error());
            }
            answer.await.unwrap_or_else(|_| Err(jsonrpc::Error::internal_error()))
        }
    }

    pub fn share(
        &self,
        params: ShareParams,
    ) -> impl std::future::Future<Output = Result<ShareResult>> + Send + 'static {
        self.ask(|reply| Event::Share { params, reply })
    }

    pub fn join(&self, params: JoinParams) -> impl std::future::Future<Output = Result<JoinResult>> + Send + 'static {
        self.ask(|reply| Event::Join { params, reply })
    }

    /// `collab/leave`: its params are optional (`{}`, `null` or none leave at once).
    pub fn leave(&self, params: serde_json::Value) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let params = match params {
            serde_json::Value::Null => Ok(LeaveParams::default()),
            params => serde_json::from_value::<LeaveParams>(params)
                .map_err(|error| jsonrpc::Error::invalid_params(format!("collab/leave: {error}"))),
        };
        let asked = params.map(|params| self.ask(move |reply| Event::Leave { when_sent: params.when_sent, reply }));
        async move { asked?.await }
    }

    pub fn status(
        &self,
        _: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<StatusResult>> + Send + 'static {
        self.ask(|reply| Event::Status { reply })
    }

    pub fn allow(
        &self,
        params: AllowParams,
    ) -> impl std::future::Future<Output = Result<AllowResult>> + Send + 'static {
        self.ask(|reply| Event::Allow { params, reply })
    }

    pub fn remove_peer(
        &self,
        params: RemovePeerParams,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        self.ask(|reply| Event::RemovePeer { params, reply })
    }

    /// `collab/undo`: undoes the editor's most recent own step in `uri` (the change goes out as a `collab/edit`
    /// before the answer).
    pub fn undo(&self, params: UndoParams) -> impl std::future::Future<Output = Result<UndoResult>> + Send + 'static {
        self.ask(|reply| Event::Undo { params, redo: false, reply })
    }

    /// `collab/redo`: the same for the most recently undone step.
    pub fn redo(&self, params: UndoParams) -> impl std::future::Future<Output = Result<UndoResult>> + Send + 'static {
        self.ask(|reply| Event::Undo { params, redo: true, reply })
    }

    pub fn open(&self, params: OpenParams) -> Ready<()> {
        self.forward(Event::Open(params))
    }

    pub fn edit(&self, params: EditParams) -> Ready<()> {
        self.forward(Event::Edit(params))
    }

    pub fn cursor(&self, params: CursorParams) -> Ready<()> {
        self.forward(Event::Cursor(params))
    }

    pub fn close(&self, params: CloseParams) -> Ready<()> {
        self.forward(Event::Close(params))
    }
}

/// Picks the first encoding the editor lists that the daemon supports; UTF-16 if it lists none.
fn negotiate(params: &InitializeParams) -> Encoding {
    params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .and_then(|list| list.iter().find_map(|e| Encoding::from_name(e.as_str())))
        .unwrap_or(Encoding::Utf16)
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let encoding = negotiate(&params);
        let options = params.initialization_options.as_ref();
        let ca_file = options.and_then(|o| o.get("caFile")).and_then(|v| v.as_str()).map(PathBuf::from);
        let allow_runnable_files =
            options.and_then(|o| o.get("allowRunnableFiles")).and_then(|v| v.as_bool()).unwrap_or(false);
        let _ = self.events.send(Event::Initialized { encoding, ca_file, allow_runnable_files });
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(PositionEncodingKind::new(encoding.name())),
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: None,
                    file_operations: Some(file_operations()),
                }),
                experimental: Some(serde_json::json!({ "codecollab": { "editorProtocol": EDITOR_PROTOCOL } })),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "codecollab-daemon".into(),
                version: Some(codecollab_protocol::version_with_commit(env!("CARGO_PKG_VERSION"))),
            }),
        })
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_create_files(&self, params: CreateFilesParams) {
        self.forward(Event::FilesCreated(params.files.into_iter().map(|f| f.uri).collect())).await
    }

    async fn will_rename_files(&self, params: RenameFilesParams) -> Result<Option<WorkspaceEdit>> {
        let (done, finished) = oneshot::channel();
        let renames = params.files.into_iter().map(|f| (f.old_uri, f.new_uri)).collect();
        let _ = self.events.send(Event::FilesRenamed { renames, done: Some(done) });
        let _ = finished.await;
        Ok(None)
    }

    async fn did_rename_files(&self, params: RenameFilesParams) {
        let renames = params.files.into_iter().map(|f| (f.old_uri, f.new_uri)).collect();
        self.forward(Event::FilesRenamed { renames, done: None }).await
    }

    async fn did_delete_files(&self, params: DeleteFilesParams) {
        self.forward(Event::FilesDeleted(params.files.into_iter().map(|f| f.uri).collect())).await
    }
}

/// The file operations the editor tells us of: every file and folder (those outside the shared folder are ignored).
fn file_operations() -> WorkspaceFileOperationsServerCapabilities {
    let every = FileOperationRegistrationOptions {
        filters: vec![FileOperationFilter {
            scheme: Some("file".into()),
            pattern: FileOperationPattern { glob: "**/*".into(), matches: None, options: None },
        }],
    };
    WorkspaceFileOperationsServerCapabilities {
        did_create: Some(every.clone()),
        will_rename: Some(every.clone()),
        did_rename: Some(every.clone()),
        did_delete: Some(every),
        ..Default::default()
    }
}

/// Sends the main loop's output to the editor, in order. Progress goes through a task of its own: it must wait
/// for the editor to answer `window/workDoneProgress/create`, and nothing else may wait behind that.
pub async fn forward_output(client: Client, mut output: mpsc::UnboundedReceiver<Output>) {
    let (progress, progress_receiver) = mpsc::unbounded_channel();
    tokio::spawn(forward_progress(client.clone(), progress_receiver));
    while let Some(out) = output.recv().await {
        match out {
            Output::Edit(params) => client.send_notification::<EditNotification>(params).await,
            Output::Cursors(params) => client.send_notification::<CursorsNotification>(params).await,
            Output::Peers(params) => client.send_notification::<PeersNotification>(params).await,
            Output::Files(params) => client.send_notification::<FilesNotification>(params).await,
            Output::State(params) => client.send_notification::<StateNotification>(params).await,
            Output::Approval(params) => client.send_notification::<ApprovalNotification>(params).await,
            Output::Message(kind, message) => client.show_message(kind, message).await,
            Output::Progress(update) => {
                let _ = progress.send(update);
            }
            // The editor has what went before once it answers a request sent after it (one it answers at once,
            // asking for nothing: configuration of no items). Not waited for here: nothing else waits behind it.
            Output::Then(then) => {
                let client = client.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(2), client.configuration(Vec::new())).await;
                    let _ = then.send(());
                });
            }
        }
    }
}

async fn forward_progress(client: Client, mut updates: mpsc::UnboundedReceiver<Progress>) {
    use tower_lsp_server::lsp_types::notification::Progress as ProgressNotification;
    use tower_lsp_server::lsp_types::request::WorkDoneProgressCreate;
    // Tokens the editor accepted; updates for others are dropped (the editor declined or did not answer).
    let mut accepted = std::collections::HashSet::new();
    while let Some(update) = updates.recv().await {
        let (token, value) = match update {
            Progress::Begin { token, title, total } => {
                let create = WorkDoneProgressCreateParams { token: NumberOrString::String(token.clone()) };
                let answer = client.send_request::<WorkDoneProgressCreate>(create);
                if !matches!(tokio::time::timeout(std::time::Duration::from_secs(5), answer).await, Ok(Ok(()))) {
                    continue;
                }
                accepted.insert(token.clone());
                let begin = WorkDoneProgressBegin {
                    title,
                    message: Some(format!("0/{total}")),
                    percentage: Some(0),
                    cancellable: None,
                };
                (token, WorkDoneProgress::Begin(begin))
            }
            Progress::Report { token, done, total } => {
                let percentage = (done * 100 / total.max(1)) as u32;
                let message = Some(format!("{done}/{total}"));
                (
                    token,
                    WorkDoneProgress::Report(WorkDoneProgressReport {
                        message,
                        percentage: Some(percentage),
                        cancellable: None,
                    }),
                )
            }
            Progress::End { token, message } => {
                (token, WorkDoneProgress::End(WorkDoneProgressEnd { message: Some(message) }))
            }
        };
        if !accepted.contains(&token) {
            continue;
        }
        if matches!(value, WorkDoneProgress::End(_)) {
            accepted.remove(&token);
        }
        let params =
            ProgressParams { token: NumberOrString::String(token), value: ProgressParamsValue::WorkDone(value) };
        client.send_notification::<ProgressNotification>(params).await;
    }
}
