// The editor protocol's custom methods and their parameters (docs/editor-protocol.md), mirroring daemon/src/lsp_ext.rs.

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** One change, LSP `didChange` style: a list is applied in order, each relative to the text the previous left. */
export interface Change {
  range: Range;
  text: string;
}

export interface EditParams {
  uri: string;
  revision: number;
  changes: Change[];
  /** Editor → daemon: whether this edit starts a new undo step (see src/steps.ts). */
  undoStop?: boolean;
}

export interface UndoParams {
  uri: string;
}

export interface UndoResult {
  done: boolean;
}

export interface OpenParams {
  uri: string;
  text: string;
}

export interface CursorParams {
  uri: string;
  /** `start` is the anchor, `end` the caret (the daemon keeps the direction). */
  ranges: Range[];
}

export interface CloseParams {
  uri: string;
}

export interface Peer {
  id: number;
  name: string;
  color: string;
  role: string;
  /** The file this peer's cursor is in, if known (a daemon addition). */
  uri?: string;
  /** True on the entry that is this editor itself (a daemon addition). */
  you?: boolean;
}

export interface RemoteCursor {
  peer: number;
  name: string;
  color: string;
  ranges: Range[];
}

export interface CursorsParams {
  uri: string;
  cursors: RemoteCursor[];
}

export interface PeersParams {
  peers: Peer[];
}

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'readonly';

export interface StateParams {
  state: ConnectionState;
  session?: string;
  message?: string;
}

export interface ShareParams {
  root: string;
  server?: string;
  name?: string;
  token?: string;
}

export interface ShareResult {
  session: string;
  invite: string;
  viewInvite: string;
  /** The same invites as links to the web client the server serves (absent from older daemons). */
  webInvite?: string;
  webViewInvite?: string;
}

export interface JoinParams {
  invite: string;
  root: string;
  name?: string;
  /** What to do with local files that differ from the session's (addition): refused by default. */
  onConflict?: 'refuse' | 'backup';
}

/** The error code of a join refused because local files differ; its data is `{conflicts: string[]}`. */
export const JOIN_CONFLICTS = -32010;

export interface JoinResult {
  session: string;
  files: string[];
  /** Files of the session's folder not in the session (binary, too large, not UTF-8), and why (addition). */
  unshared?: { path: string; reason: string }[];
  /** Where `onConflict: 'backup'` moved the differing local files (addition). */
  backup?: { folder: string; files: string[] };
}

export interface StatusResult {
  state: ConnectionState;
  session?: string;
  peers: Peer[];
  /** Files holding edits the server has not acknowledged (a daemon addition). */
  unsent?: string[];
}

/**
 * `collab/approval` (an addition): a file that editors or shells run by themselves was created or changed by others
 * and is not written to disk until the user allows it with `collab/allow`.
 */
/**
 * `collab/files` (an addition): files a peer (or the disk) created, renamed or deleted, already carried out on disk
 * by the daemon, so that open editors follow.
 */
export interface FilesParams {
  created?: string[];
  renamed?: { oldUri: string; newUri: string }[];
  deleted?: string[];
}

export interface ApprovalParams {
  uri: string;
  path: string;
  by: string[];
  created: boolean;
}

export interface AllowParams {
  uri: string;
}

export interface AllowResult {
  written: boolean;
}

/** `collab/removePeer` (an addition, host only). */
export interface RemovePeerParams {
  name: string;
}

export const Methods = {
  share: 'collab/share',
  join: 'collab/join',
  leave: 'collab/leave',
  status: 'collab/status',
  open: 'collab/open',
  edit: 'collab/edit',
  cursor: 'collab/cursor',
  close: 'collab/close',
  cursors: 'collab/cursors',
  peers: 'collab/peers',
  state: 'collab/state',
  approval: 'collab/approval',
  files: 'collab/files',
  allow: 'collab/allow',
  removePeer: 'collab/removePeer',
  undo: 'collab/undo',
  redo: 'collab/redo',
} as const;
