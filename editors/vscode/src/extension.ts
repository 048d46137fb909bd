// The CodeCollab extension: starts codecollab-daemon, wires VS Code's documents to it through the bridge, and offers
// the commands, the status bar item and the remote cursors.

import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  LanguageClientOptions,
  ResponseError,
  ServerOptions,
} from 'vscode-languageclient/node';
import { DocumentBridge } from './bridge';
import { RemoteCursors } from './cursors';
import { DaemonNotFound, locate } from './daemon';
import {
  AllowResult,
  ApprovalParams,
  Change,
  ConnectionState,
  CursorsParams,
  EditParams,
  FilesParams,
  JOIN_CONFLICTS,
  JoinParams,
  JoinResult,
  Methods,
  Peer,
  PeersParams,
  ShareResult,
  StateParams,
  StatusResult,
  UndoResult,
} from './protocol';

/** Where the host token is kept in VS Code's secret storage. */
const HOST_TOKEN_KEY = 'codecollab.hostToken';
/** The editor protocol this extension speaks; the daemon announces its own in `initialize`. */
const EDITOR_PROTOCOL = 2;

/** The button that runs Set Host Token. */
const SET_HOST_TOKEN = 'Set Host Token';

/** The button that closes the editor of a file deleted in the session. */
const CLOSE_EDITOR = 'Close Editor';

/** Leave's choices when edits have not reached the server. */
const WAIT_AND_LEAVE = 'Wait and Leave';
const LEAVE_NOW = 'Leave Now';

/** The button that lets a join move local files that differ from the session's into a backup folder. */
const MOVE_ASIDE = 'Move Mine Aside and Join';

let controller: Controller | undefined;

export function activate(context: vscode.ExtensionContext): void {
  controller = new Controller(context);
  const commands: [string, (arg?: unknown) => Promise<unknown>][] = [
    ['codecollab.share', () => controller!.share()],
    ['codecollab.join', () => controller!.join()],
    ['codecollab.leave', () => controller!.leave()],
    ['codecollab.copyInvite', () => controller!.copyInvite()],
    ['codecollab.followPeer', (name?: unknown) => controller!.followPeer(typeof name === 'string' ? name : undefined)],
    ['codecollab.stopFollowing', () => controller!.stopFollowing()],
    ['codecollab.setHostToken', () => controller!.setHostToken()],
    ['codecollab.showPeers', () => controller!.showPeers()],
    ['codecollab.removePeer', () => controller!.removePeer()],
    ['codecollab.undo', () => controller!.undo(false)],
    ['codecollab.redo', () => controller!.undo(true)],
  ];
  for (const [id, run] of commands) {
    context.subscriptions.push(
      vscode.commands.registerCommand(id, (arg?: unknown) => run(arg).catch((e) => controller!.fail(e))),
    );
  }
  context.subscriptions.push(controller);
}

export function deactivate(): Thenable<void> | undefined {
  const stopping = controller?.stop();
  controller = undefined;
  return stopping;
}

function toChange(change: vscode.TextDocumentContentChangeEvent): Change {
  const { start, end } = change.range;
  return {
    range: { start: { line: start.line, character: start.character }, end: { line: end.line, character: end.character } },
    text: change.text,
  };
}

function openDocument(uri: string): vscode.TextDocument | undefined {
  return vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri);
}

/** Every editor tab showing the text file `uri`, in every group (visible or behind others). */
function textTabs(uri: string): vscode.Tab[] {
  return vscode.window.tabGroups.all.flatMap((group) =>
    group.tabs.filter((tab) => tab.input instanceof vscode.TabInputText && tab.input.uri.toString() === uri),
  );
}

class Controller implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient> | undefined;
  /** Set while the extension stops the daemon itself (deactivation), when its exit is expected. */
  private stopping = false;
  private readonly output = vscode.window.createOutputChannel('CodeCollab');
  private readonly status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  private readonly cursors = new RemoteCursors();
  private readonly bridge: DocumentBridge;
  private readonly listeners: vscode.Disposable[] = [];
  private readonly activeEditorListener: vscode.Disposable;
  private state: ConnectionState = 'idle';
  private session: string | undefined;
  private root: vscode.Uri | undefined;
  private invites: { edit: string; view: string; webEdit?: string; webView?: string } | undefined;
  private peers: Peer[] = [];
  /** The name of the peer being followed (a name, not an id: a peer's id changes when it reconnects). */
  private following: string | undefined;
  /** Documents this extension made read-only (view-only session), to make writable again. */
  private readonly madeReadonly = new Set<string>();
  /** Set while the extension itself moves the selection (following), so it does not stop the follow. */
  private moving = false;
  /** `collab/files` notifications are carried out one after the other (each moves editors around). */
  private fileOps: Promise<void> = Promise.resolve();
  /** A `collab/leave {whenSent}` is waiting for the server to take the unsent edits. */
  private waitingToLeave = false;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.bridge = new DocumentBridge({
      apply: (uri, version, changes) => this.apply(uri, version, changes),
      unchanged: (uri, change) => {
        const doc = openDocument(uri);
        const { start, end } = change.range;
        return doc?.getText(new vscode.Range(start.line, start.character, end.line, end.character)) === change.text;
      },
      notify: (method, params) => void this.client?.sendNotification(method, params),
      log: (message) => this.output.appendLine(message),
    });
    // Not tied to a session: editors made read-only are reset when they become active after the session ended.
    this.activeEditorListener = vscode.window.onDidChangeActiveTextEditor(
      (editor) => editor && this.applyReadonly(editor),
    );
    this.status.command = 'codecollab.showPeers';
    this.renderStatus();
  }

  dispose(): void {
    void this.stop();
    this.activeEditorListener.dispose();
    this.status.dispose();
    this.cursors.dispose();
    this.output.dispose();
  }

  fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.output.appendLine(`error: ${message}`);
    void vscode.window.showErrorMessage(`CodeCollab: ${message}`);
  }

  async stop(): Promise<void> {
    this.untrackAll();
    const client = this.client;
    this.client = undefined;
    this.starting = undefined;
    if (client) {
      this.stopping = true;
      await client.stop().catch(() => undefined);
      this.stopping = false;
    }
  }

  // ---- commands ----

  async share(): Promise<void> {
    const folder = await this.pickFolder('share');
    if (!folder) {
      return;
    }
    const client = await this.start();
    const config = vscode.workspace.getConfiguration('codecollab');
    // The host token lives in VS Code's secret storage, never in settings.json.
    const token = (await this.context.secrets.get(HOST_TOKEN_KEY)) || undefined;
    let result: ShareResult;
    try {
      result = await client.sendRequest<ShareResult>(Methods.share, {
        root: folder.uri.toString(),
        server: config.get<string>('server') || undefined,
        name: this.name(),
        token,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (!/token/i.test(message)) {
        throw error;
      }
      const what = token ? 'The host token set here was refused' : 'This server needs a host token to share';
      const choice = await vscode.window.showErrorMessage(
        `CodeCollab: ${what} (${message}). Run "CodeCollab: Set Host Token" with a token from the server's admin ` +
          '(codecollab-server token --name <you>).',
        SET_HOST_TOKEN,
      );
      if (choice === SET_HOST_TOKEN) {
        await this.setHostToken();
      }
      return;
    }
    this.invites = {
      edit: result.invite,
      view: result.viewInvite,
      webEdit: result.webInvite,
      webView: result.webViewInvite,
    };
    this.begin(folder.uri, result.session);
    const copied = await vscode.env.clipboard.writeText(result.invite).then(
      () => true,
      () => false,
    );
    const where = copied ? 'copied to the clipboard' : 'copy it from here; Copy Invite Link gives it again';
    const COPY_VIEW = 'Copy View-Only Invite';
    const COPY_WEB = 'Copy Web Link';
    const choice = await vscode.window.showInformationMessage(
      `CodeCollab: sharing ${folder.name}. Invite (${where}): ${result.invite}`,
      COPY_VIEW,
      ...(result.webInvite ? [COPY_WEB] : []),
    );
    if (choice === COPY_VIEW) {
      await vscode.env.clipboard.writeText(result.viewInvite);
    } else if (choice === COPY_WEB && result.webInvite) {
      await vscode.env.clipboard.writeText(result.webInvite);
    }
  }

  /** Asks for a host token and keeps it in VS Code's secret storage (an empty answer removes it). */
  async setHostToken(): Promise<void> {
    const token = await vscode.window.showInputBox({
      title: 'CodeCollab: Set Host Token',
      prompt: 'A host token from the server (codecollab-server token --name <you>); empty removes the one set',
      password: true,
      ignoreFocusOut: true,
    });
    if (token === undefined) {
      return;
    }
    if (token.trim() === '') {
      await this.context.secrets.delete(HOST_TOKEN_KEY);
      void vscode.window.showInformationMessage('CodeCollab: host token removed.');
    } else {
      await this.context.secrets.store(HOST_TOKEN_KEY, token.trim());
      void vscode.window.showInformationMessage('CodeCollab: host token saved (in secret storage); Share uses it.');
    }
  }

  async join(): Promise<void> {
    const invite = await vscode.window.showInputBox({
      title: 'CodeCollab: Join Session',
      prompt: 'Paste the invite you were sent',
      placeHolder: 'ws://host:7830/?session=…#…',
      ignoreFocusOut: true,
      validateInput: (value) => (/^wss?:\/\/\S+#\S+$/.test(value.trim()) ? undefined : 'An invite looks like ws://host/?session=ID#TOKEN'),
    });
    if (!invite) {
      return;
    }
    const folder = await this.pickFolder('join into');
    if (!folder) {
      return;
    }
    const client = await this.start();
    const params: JoinParams = { invite: invite.trim(), root: folder.uri.toString(), name: this.name() };
    let result: JoinResult;
    try {
      result = await client.sendRequest<JoinResult>(Methods.join, params);
    } catch (error) {
      // Local files that differ from the session's are never overwritten without the user's yes.
      if (!(error instanceof ResponseError) || error.code !== JOIN_CONFLICTS) {
        throw error;
      }
      const choice = await vscode.window.showWarningMessage(`CodeCollab: ${error.message}`, MOVE_ASIDE);
      if (choice !== MOVE_ASIDE) {
        return;
      }
      result = await client.sendRequest<JoinResult>(Methods.join, { ...params, onConflict: 'backup' });
    }
    this.invites = undefined;
    this.begin(folder.uri, result.session);
    const unshared = result.unshared ?? [];
    const left =
      unshared.length === 0
        ? ''
        : ` ${unshared.length === 1 ? '1 file is' : `${unshared.length} files are`} not in the session and stay ` +
          'with whoever has them: ' +
          unshared
            .slice(0, 5)
            .map((f) => `${f.path} (${f.reason})`)
            .join(', ') +
          (unshared.length > 5 ? ', …' : '') +
          '.';
    void vscode.window.showInformationMessage(
      `CodeCollab: joined, ${result.files.length} files in ${folder.name}.${left}`,
    );
    if (result.backup) {
      const { files, folder: backup } = result.backup;
      void vscode.window.showWarningMessage(
        `CodeCollab: your ${files.length} differing file(s) were moved to ${backup}: ${files.join(', ')}.`,
      );
    }
  }

  /**
   * Leaves the session. Edits the server has not acknowledged (typed while offline) are never dropped silently:
   * the user is told which files hold them and chooses to leave once the server has them, or now (they then stay
   * in the local files only), or to stay.
   */
  async leave(): Promise<void> {
    const client = this.client;
    if (!client || !this.session) {
      void vscode.window.showInformationMessage('CodeCollab: not in a session.');
      return;
    }
    const status = await client.sendRequest<StatusResult>(Methods.status, {});
    const unsent = status.unsent ?? [];
    if (unsent.length === 0) {
      await client.sendRequest(Methods.leave, {});
      this.end();
      return;
    }
    const files = unsent.join(', ');
    const choice = await vscode.window.showWarningMessage(
      `CodeCollab: your edits in ${files} have not reached the server yet (${this.state}). ` +
        'Leave once they have, or now (they then stay in your files only)?',
      WAIT_AND_LEAVE,
      LEAVE_NOW,
    );
    if (choice === LEAVE_NOW) {
      await client.sendRequest(Methods.leave, {});
      this.end();
      void vscode.window.showWarningMessage(
        `CodeCollab: left the session; your edits in ${files} never reached the server and are in your files only.`,
      );
    } else if (choice === WAIT_AND_LEAVE) {
      this.waitingToLeave = true;
      this.renderStatus();
      void vscode.window.showInformationMessage(
        `CodeCollab: leaving once the server has your edits in ${files} (Leave again to leave now).`,
      );
      try {
        await client.sendRequest(Methods.leave, { whenSent: true });
      } catch (error) {
        // Left at once meanwhile (Leave Now), which said so itself.
        this.output.appendLine(`leave once sent: ${error}`);
        return;
      } finally {
        this.waitingToLeave = false;
        this.renderStatus();
      }
      // The daemon's `idle` state may have ended the session here already, before this answer came.
      if (this.session) {
        this.end();
      }
      void vscode.window.showInformationMessage('CodeCollab: every edit reached the server; left the session.');
    }
  }

  async copyInvite(): Promise<void> {
    if (!this.invites) {
      void vscode.window.showWarningMessage('CodeCollab: no invite here; only the person who shared has one.');
      return;
    }
    const pick = await vscode.window.showQuickPick(
      [
        { label: 'Edit', description: 'may edit', invite: this.invites.edit },
        { label: 'View only', description: 'may watch and point', invite: this.invites.view },
        ...(this.invites.webEdit
          ? [{ label: 'Web link', description: 'may edit, from a browser', invite: this.invites.webEdit }]
          : []),
        ...(this.invites.webView
          ? [{ label: 'Web link, view only', description: 'may watch, from a browser', invite: this.invites.webView }]
          : []),
      ],
      { title: 'CodeCollab: Copy Invite Link' },
    );
    if (pick) {
      await vscode.env.clipboard.writeText(pick.invite);
      void vscode.window.showInformationMessage(`CodeCollab: ${pick.label.toLowerCase()} invite copied.`);
    }
  }

  /**
   * Follows a peer (`name`, else picked from a list): into every file they open and to their cursor, until the user
   * moves the selection or runs Stop Following.
   */
  async followPeer(name?: string): Promise<void> {
    if (name !== undefined && !this.peers.some((p) => !p.you && p.name === name)) {
      const here = this.peers.filter((p) => !p.you).map((p) => p.name);
      const who = here.length ? `here: ${here.join(', ')}` : 'nobody else is here';
      void vscode.window.showErrorMessage(`CodeCollab: no one called ${name} is in the session (${who}).`);
      return;
    }
    const chosen = name ?? (await this.pickPeer('CodeCollab: Follow Peer'))?.peer.name;
    if (chosen) {
      this.following = chosen;
      this.output.appendLine(`following ${chosen}`);
      this.renderStatus();
      await this.followStep();
    }
  }

  async stopFollowing(): Promise<void> {
    if (this.following === undefined) {
      void vscode.window.showInformationMessage('CodeCollab: not following anyone.');
      return;
    }
    this.unfollow('stopped');
  }

  private unfollow(why: string): void {
    this.output.appendLine(`stopped following ${this.following}: ${why}`);
    void vscode.window.setStatusBarMessage(`CodeCollab: stopped following ${this.following}`, 3000);
    this.following = undefined;
    this.renderStatus();
  }

  async showPeers(): Promise<void> {
    const picked = await this.pickPeer('CodeCollab: Peers (pick one to jump to their cursor)', true);
    if (picked?.remove) {
      await this.remove(picked.peer);
    } else if (picked) {
      await this.reveal(picked.peer.id);
    }
  }

  async removePeer(): Promise<void> {
    if (this.session && !this.invites) {
      void vscode.window.showWarningMessage('CodeCollab: only the host of the session can remove people.');
      return;
    }
    const picked = await this.pickPeer('CodeCollab: Remove Peer (they lose access to this session)', false);
    if (picked) {
      await this.remove(picked.peer);
    }
  }

  private async remove(peer: Peer): Promise<void> {
    await this.client?.sendRequest(Methods.removePeer, { name: peer.name });
    void vscode.window.showInformationMessage(`CodeCollab: ${peer.name} was removed from the session.`);
  }

  // ---- the daemon ----

  private start(): Promise<LanguageClient> {
    if (!this.starting) {
      this.starting = this.launch().then(
        (client) => (this.client = client),
        (error) => {
          this.starting = undefined;
          throw error;
        },
      );
    }
    return this.starting;
  }

  private async launch(): Promise<LanguageClient> {
    const configured = vscode.workspace.getConfiguration('codecollab').get<string | null>('daemon.path');
    let daemon;
    try {
      daemon = await locate(configured, this.context.extensionPath);
    } catch (error) {
      if (error instanceof DaemonNotFound) {
        const action = await vscode.window.showErrorMessage(`CodeCollab: ${error.message}`, 'Open Settings');
        if (action) {
          await vscode.commands.executeCommand('workbench.action.openSettings', 'codecollab.daemon.path');
        }
        throw new Error('the daemon is not available');
      }
      throw error;
    }
    this.output.appendLine(`starting ${daemon.path} (${daemon.version}, ${daemon.source})`);
    // No `transport`: the client would add `--stdio`; the daemon speaks on stdio anyway.
    const serverOptions: ServerOptions = { command: daemon.path };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.output,
      // Application scope: a workspace's own settings cannot turn it on.
      initializationOptions: {
        allowRunnableFiles: vscode.workspace.getConfiguration('codecollab').get<boolean>('allowRunnableFiles') === true,
      },
      // A restarted daemon would know nothing of the session: never restart silently; end the session visibly.
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => {
          if (!this.stopping) {
            this.daemonDied();
          }
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient('codecollab', 'CodeCollab', serverOptions, clientOptions);
    client.onNotification(Methods.edit, (params: EditParams) => this.bridge.daemonEdit(params));
    client.onNotification(Methods.cursors, (params: CursorsParams) => this.onCursors(params));
    client.onNotification(Methods.peers, (params: PeersParams) => {
      this.peers = params.peers;
      this.renderStatus();
      if (this.following !== undefined) {
        void this.followStep();
      }
    });
    client.onNotification(Methods.state, (params: StateParams) => this.onState(params));
    client.onNotification(Methods.approval, (params: ApprovalParams) => void this.onApproval(params));
    client.onNotification(Methods.files, (params: FilesParams) => {
      this.fileOps = this.fileOps.then(() => this.onFiles(params)).catch((error) => this.fail(error));
    });
    await client.start();
    // A daemon older than this extension lacks what the extension sends and expects: say so, and do not go on.
    const experimental = client.initializeResult?.capabilities.experimental as
      | { codecollab?: { editorProtocol?: number } }
      | undefined;
    const speaks = experimental?.codecollab?.editorProtocol ?? 1;
    if (speaks < EDITOR_PROTOCOL) {
      this.stopping = true;
      await client.stop().catch(() => undefined);
      this.stopping = false;
      throw new Error(
        `${daemon.path} (${daemon.version}) is too old for this extension: it speaks editor protocol ${speaks}, the ` +
          `extension needs ${EDITOR_PROTOCOL}. Update it (reinstall the extension with its bundled daemon, or rebuild ` +
          'yours: cargo build --release -p codecollab-daemon), or clear the codecollab.daemon.path setting.',
      );
    }
    return client;
  }

  /** The daemon exited under us: the session is gone with it. */
  private daemonDied(): void {
    this.client = undefined;
    this.starting = undefined;
    const hadSession = this.session !== undefined;
    this.end();
    this.output.appendLine('the daemon exited');
    if (hadSession) {
      void vscode.window.showErrorMessage(
        'CodeCollab: the daemon stopped, so this session ended here. Your files are as you left them; ' +
          'run Join Session (or Share Folder) to continue. Details: output channel "CodeCollab".',
      );
    }
  }

  // ---- the session ----

  private begin(root: vscode.Uri, session: string): void {
    this.root = root;
    this.session = session;
    if (this.state === 'idle') {
      this.state = 'connected';
    }
    this.listeners.push(
      vscode.workspace.onDidOpenTextDocument((doc) => this.track(doc)),
      vscode.workspace.onDidCloseTextDocument((doc) => this.bridge.close(doc.uri.toString())),
      vscode.workspace.onDidChangeTextDocument((event) =>
        this.bridge.localChange(event.document.uri.toString(), {
          version: event.document.version,
          changes: event.contentChanges.map(toChange),
        }),
      ),
      vscode.window.onDidChangeTextEditorSelection((event) => this.onSelection(event)),
      // A file deleted in the session whose editor was kept open is shared again when the user saves it.
      vscode.workspace.onDidSaveTextDocument((doc) => this.track(doc)),
      vscode.window.onDidChangeVisibleTextEditors(() => this.cursors.render()),
      vscode.window.onDidChangeActiveTextEditor(() => this.updateUndoContext()),
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (event.affectsConfiguration('codecollab.undo')) {
          this.updateUndoContext();
        }
      }),
    );
    vscode.workspace.textDocuments.forEach((doc) => this.track(doc));
    this.updateUndoContext();
    this.renderStatus();
  }

  /**
   * Ctrl+Z and redo go to the daemon (your own changes only) in a shared document while `codecollab.undo` is
   * `own`: the keybindings' `when` clause reads this context key.
   */
  private updateUndoContext(): void {
    const active = vscode.window.activeTextEditor?.document.uri.toString();
    const own = vscode.workspace.getConfiguration('codecollab').get<string>('undo', 'own') === 'own';
    const shared = active !== undefined && this.bridge.isTracked(active);
    void vscode.commands.executeCommand('setContext', 'codecollab.ownUndo', own && shared);
  }

  /**
   * Undoes (redoes) your own most recent change in the active shared document, through the daemon, and puts the
   * cursor where it was. Anywhere else, VS Code's own undo (redo).
   */
  async undo(redo: boolean): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const uri = editor?.document.uri.toString();
    const client = this.client;
    if (!editor || !uri || !client || !this.bridge.isTracked(uri)) {
      await vscode.commands.executeCommand(redo ? 'redo' : 'undo');
      return;
    }
    const before = this.bridge.counters(uri)?.applied ?? 0;
    const result = await client.sendRequest<UndoResult>(redo ? Methods.redo : Methods.undo, { uri });
    // The change came before the answer; wait until it is applied here.
    await this.bridge.idle();
    if (!result.done) {
      vscode.window.setStatusBarMessage(`CodeCollab: nothing of yours to ${redo ? 'redo' : 'undo'}`, 3000);
      return;
    }
    const at = this.bridge.lastApplied(uri);
    if ((this.bridge.counters(uri)?.applied ?? 0) > before && at && vscode.window.activeTextEditor === editor) {
      const position = new vscode.Position(at.line, at.character);
      editor.selection = new vscode.Selection(position, position);
      editor.revealRange(new vscode.Range(position, position));
    }
  }

  private end(): void {
    this.state = 'idle';
    // Editors made read-only for a view-only session become writable again.
    vscode.window.visibleTextEditors.forEach((editor) => this.applyReadonly(editor));
    this.untrackAll();
    this.session = undefined;
    this.root = undefined;
    this.invites = undefined;
    this.peers = [];
    this.following = undefined;
    this.renderStatus();
  }

  private untrackAll(): void {
    this.listeners.splice(0).forEach((listener) => listener.dispose());
    for (const uri of this.bridge.tracked()) {
      this.bridge.close(uri, false);
    }
    this.cursors.clear();
    this.updateUndoContext();
  }

  private underRoot(uri: vscode.Uri): boolean {
    if (!this.root || uri.scheme !== 'file') {
      return false;
    }
    const relative = path.relative(this.root.fsPath, uri.fsPath);
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
  }

  private track(doc: vscode.TextDocument): void {
    const uri = doc.uri.toString();
    if (this.session && this.underRoot(doc.uri) && !this.bridge.isTracked(uri)) {
      this.bridge.open(uri, doc.version, doc.getText());
      this.updateUndoContext();
    }
  }

  /** The bridge's host `apply`: one version-checked edit, refused if the document moved on. */
  private async apply(uri: string, version: number, changes: Change[]): Promise<boolean> {
    const doc = openDocument(uri);
    if (!doc || doc.version !== version) {
      return false;
    }
    const ranges = changes.map(({ range: { start, end } }) => new vscode.Range(start.line, start.character, end.line, end.character));
    // Where the user can type, use the editor's own edit: VS Code checks the version it captures here against the
    // model and applies in one step. `workspace.applyEdit` reads the version after an await of its own, so a
    // keystroke landing in between gets the version our edit was meant to have, and its echo would be misread.
    const editor = vscode.window.visibleTextEditors.find((e) => e.document === doc);
    if (editor && this.state !== 'readonly') {
      return editor.edit((builder) => changes.forEach((change, i) => builder.replace(ranges[i], change.text)));
    }
    // Not in an editor (nobody types there), or read-only, which refuses editor edits: a workspace edit.
    const edit = new vscode.WorkspaceEdit();
    changes.forEach((change, i) => edit.replace(doc.uri, ranges[i], change.text));
    return vscode.workspace.applyEdit(edit);
  }

  private onSelection(event: vscode.TextEditorSelectionChangeEvent): void {
    const uri = event.textEditor.document.uri.toString();
    if (!this.bridge.isTracked(uri)) {
      return;
    }
    const byUser = event.kind !== undefined && event.kind !== vscode.TextEditorSelectionChangeKind.Command;
    if (this.following !== undefined && !this.moving && byUser) {
      this.unfollow(`the selection moved (${event.kind})`); // the user moved: stop following
    }
    const ranges = event.selections.map((s) => ({
      start: { line: s.anchor.line, character: s.anchor.character },
      end: { line: s.active.line, character: s.active.character },
    }));
    void this.client?.sendNotification(Methods.cursor, { uri, ranges });
  }

  private onCursors(params: CursorsParams): void {
    this.cursors.update(params);
    if (this.following !== undefined) {
      void this.followStep();
    }
  }

  /**
   * Files the session renamed or deleted (a peer did, or the disk changed), already carried out on disk: every
   * editor tab of a renamed file moves to the new name (in its group; one that was behind others stays behind, and
   * the caret stays where it was); an open editor of a deleted file stays open with its text, untracked, and the
   * user is told that saving it creates the file again for everyone.
   */
  private async onFiles(params: FilesParams): Promise<void> {
    for (const { oldUri, newUri } of params.renamed ?? []) {
      const tabs = textTabs(oldUri);
      if (!openDocument(oldUri) && tabs.length === 0) {
        continue;
      }
      this.output.appendLine(`renamed: ${oldUri} -> ${newUri}; its editors follow`);
      // The session has every edit of it: the old editors go without a save prompt (the file is gone anyway), and
      // the new ones show the session's text (the daemon brings the file's text in line when it is opened).
      this.bridge.close(oldUri);
      const active = vscode.window.activeTextEditor;
      const wasActive = active?.document.uri.toString() === oldUri;
      for (const tab of tabs) {
        await this.moveTab(tab, oldUri, vscode.Uri.parse(newUri));
      }
      // The focus goes back where it was: to the moved editor if it had it, else to the editor the user was in.
      if (wasActive && active) {
        await vscode.window.showTextDocument(vscode.Uri.parse(newUri), { viewColumn: active.viewColumn });
      } else if (active && !active.document.isClosed) {
        await vscode.window.showTextDocument(active.document, { viewColumn: active.viewColumn });
      }
    }
    for (const uri of params.deleted ?? []) {
      const doc = openDocument(uri);
      if (!doc) {
        continue;
      }
      this.bridge.close(uri);
      const name = this.root ? path.relative(this.root.fsPath, doc.uri.fsPath) : doc.uri.fsPath;
      void vscode.window
        .showWarningMessage(
          `CodeCollab: ${name} was deleted in the session. Its editor keeps the text; saving it creates the file ` +
            'again, for everyone.',
          CLOSE_EDITOR,
        )
        .then(async (choice) => {
          if (choice === CLOSE_EDITOR && !doc.isClosed) {
            await vscode.window.showTextDocument(doc);
            await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
          }
        });
    }
  }

  /** Replaces `tab` (an editor of `oldUri`, whose file is gone) by one of `newUri` in the same group. */
  private async moveTab(tab: vscode.Tab, oldUri: string, newUri: vscode.Uri): Promise<void> {
    const viewColumn = tab.group.viewColumn;
    const shown = vscode.window.visibleTextEditors.find(
      (e) => e.document.uri.toString() === oldUri && e.viewColumn === viewColumn,
    );
    const selection = shown?.selection;
    const front = tab.group.activeTab;
    const frontUri = front !== tab && front?.input instanceof vscode.TabInputText ? front.input.uri : undefined;
    if (tab.isDirty) {
      // Closing a dirty tab asks to save it (which would create the old file again): revert and close it instead.
      await vscode.window.showTextDocument(vscode.Uri.parse(oldUri), { viewColumn, preserveFocus: false });
      await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
    } else {
      await vscode.window.tabGroups.close(tab, true);
    }
    await vscode.window.showTextDocument(newUri, { viewColumn, preview: false, preserveFocus: true, selection });
    if (frontUri) {
      // It was behind another tab: that one is in front again.
      await vscode.window.showTextDocument(frontUri, { viewColumn, preview: false, preserveFocus: true });
    }
  }

  /**
   * Someone else created or changed a file that editors or shells run by themselves (a task, a setting, an
   * `.envrc`): it is not written until the user allows it. An existing one can be opened first to read it (its
   * buffer shows the session's text; saving it is a yes too).
   */
  private async onApproval(params: ApprovalParams): Promise<void> {
    const verb = params.created ? 'created' : 'changed';
    const text =
      `CodeCollab: ${params.by.join(', ')} ${verb} ${params.path}, which VS Code or a shell may run by itself when ` +
      'the folder opens. It is not written to disk until you allow it.';
    const actions = params.created ? ['Allow'] : ['Allow', 'Open'];
    const choice = await vscode.window.showWarningMessage(text, ...actions);
    if (choice === 'Allow') {
      const result = await this.client?.sendRequest<AllowResult>(Methods.allow, { uri: params.uri });
      void vscode.window.showInformationMessage(
        result?.written ? `CodeCollab: ${params.path} written.` : `CodeCollab: ${params.path} had nothing to write.`,
      );
    } else if (choice === 'Open') {
      await vscode.window.showTextDocument(vscode.Uri.parse(params.uri));
    }
  }

  private onState(params: StateParams): void {
    const wasReadonly = this.state === 'readonly';
    this.state = params.state;
    if (params.session) {
      this.session = params.session;
    }
    if (params.message) {
      this.output.appendLine(`daemon: ${params.message}`);
    }
    if (params.state === 'readonly' && !wasReadonly) {
      void vscode.window.showInformationMessage('CodeCollab: this session is view-only; shared files are read-only.');
    }
    if ((params.state === 'readonly') !== wasReadonly) {
      vscode.window.visibleTextEditors.forEach((editor) => this.applyReadonly(editor));
    }
    if (params.state === 'idle' && this.session) {
      this.end();
    }
    this.renderStatus();
  }

  /**
   * In a view-only session, shared editors are read-only (for this VS Code session, not persisted); the ones made
   * read-only are reset when that ends. VS Code's commands act on the active editor only.
   */
  private applyReadonly(editor: vscode.TextEditor): void {
    const uri = editor.document.uri.toString();
    if (editor !== vscode.window.activeTextEditor) {
      return;
    }
    if (this.state === 'readonly' && this.underRoot(editor.document.uri) && !this.madeReadonly.has(uri)) {
      this.madeReadonly.add(uri);
      void vscode.commands
        .executeCommand('workbench.action.files.setActiveEditorReadonlyInSession')
        .then(undefined, () => undefined);
    } else if (this.state !== 'readonly' && this.madeReadonly.delete(uri)) {
      void vscode.commands
        .executeCommand('workbench.action.files.resetActiveEditorReadonlyInSession')
        .then(undefined, () => undefined);
    }
  }

  private renderStatus(): void {
    if (!this.session) {
      this.status.hide();
      return;
    }
    const icon: Record<ConnectionState, string> = {
      idle: '$(circle-slash)',
      connecting: '$(sync~spin)',
      connected: '$(broadcast)',
      reconnecting: '$(sync~spin)',
      readonly: '$(eye)',
    };
    // Counted as Neovim's statusline counts: the others, not this editor.
    const others = this.peers.filter((p) => !p.you).length;
    const count = others === 1 ? '1 other' : `${others} others`;
    const follow = this.following !== undefined ? ` · $(eye) following ${this.following}` : '';
    const leaving = this.waitingToLeave ? ' · leaving once sent' : '';
    this.status.text = `${icon[this.state]} CodeCollab: ${this.state} · ${count}${follow}${leaving}`;
    this.status.tooltip = `Session ${this.session}: ${count} here. Click to list them.`;
    this.status.show();
  }

  // ---- peers ----

  /**
   * A peer picked from a list. With `removable` and this editor the host's, each row has a button that removes the
   * peer instead (`remove` in the answer).
   */
  private async pickPeer(title: string, removable = false): Promise<{ peer: Peer; remove: boolean } | undefined> {
    if (!this.session) {
      void vscode.window.showInformationMessage('CodeCollab: not in a session.');
      return undefined;
    }
    const others = this.peers.filter((p) => !p.you);
    if (others.length === 0) {
      void vscode.window.showInformationMessage('CodeCollab: nobody else is here yet.');
      return undefined;
    }
    const removeButton = { iconPath: new vscode.ThemeIcon('trash'), tooltip: 'Remove from the session' };
    const items = others.map((peer) => ({
      label: peer.name,
      description: peer.role,
      detail: peer.uri ? vscode.workspace.asRelativePath(vscode.Uri.parse(peer.uri)) : 'no file open',
      buttons: removable && this.invites ? [removeButton] : [],
      peer,
    }));
    const pick = vscode.window.createQuickPick<(typeof items)[number]>();
    pick.title = title;
    pick.items = items;
    return new Promise((resolve) => {
      let answer: { peer: Peer; remove: boolean } | undefined;
      pick.onDidAccept(() => {
        const chosen = pick.selectedItems[0];
        answer = chosen && { peer: chosen.peer, remove: false };
        pick.hide();
      });
      pick.onDidTriggerItemButton((event) => {
        answer = { peer: event.item.peer, remove: true };
        pick.hide();
      });
      pick.onDidHide(() => {
        pick.dispose();
        resolve(answer);
      });
      pick.show();
    });
  }

  /** Takes the editor to the followed peer (if they are here: one who reconnects is followed again). */
  private async followStep(): Promise<void> {
    const peer = this.peers.find((p) => !p.you && p.name === this.following);
    if (peer) {
      await this.reveal(peer.id, true);
    }
  }

  /**
   * Shows `peer`'s file and caret; with `move`, the selection goes there too (following). The peer list says which
   * file the peer is in; the cursors say where in it (once this editor has it open).
   */
  private async reveal(peer: number, move = false): Promise<void> {
    const file = this.peers.find((p) => p.id === peer)?.uri;
    const caret = this.cursors.caretOf(peer, file);
    const where = file ?? caret?.uri;
    if (!where) {
      return;
    }
    this.moving = true;
    try {
      const editor = await vscode.window.showTextDocument(vscode.Uri.parse(where), { preserveFocus: false }).then(
        (shown) => shown,
        (error: unknown) => {
          this.output.appendLine(`could not show ${where}: ${error}`);
          return undefined;
        },
      );
      if (!editor) {
        return;
      }
      if (caret) {
        const range = new vscode.Range(caret.position, caret.position);
        if (move && !editor.selection.isEqual(range)) {
          editor.selection = new vscode.Selection(caret.position, caret.position);
        }
        editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      }
    } finally {
      this.moving = false;
    }
  }

  // ---- settings and folders ----

  private name(): string {
    return vscode.workspace.getConfiguration('codecollab').get<string>('name') || os.userInfo().username;
  }

  private async pickFolder(verb: string): Promise<vscode.WorkspaceFolder | undefined> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (folders.length === 0) {
      void vscode.window.showErrorMessage(`CodeCollab: open a folder to ${verb} first (File > Open Folder).`);
      return undefined;
    }
    if (folders.length === 1) {
      return folders[0];
    }
    return vscode.window.showWorkspaceFolderPick({ placeHolder: `Folder to ${verb}` });
  }
}
