// The document bridge: the editor side of the revision-pair protocol (docs/editor-protocol.md), independent of VS Code.
//
// Per tracked document it keeps `sent` (local edits sent) and `applied` (daemon edits applied). Local edits go out
// as `collab/edit` with `revision = applied`. Daemon edits wait in one queue and are applied one at a time, only if
// their `revision == sent`, with an edit the host checks against the document version the bridge last saw, so an
// applied edit always makes exactly the next version. That version is how its echo (the change event the editor
// fires for it) is recognized, never by comparing text: while an apply is in flight the document's change events
// are held; when it resolves successfully, the event with the next version is the echo, whether it came before
// the apply resolved or comes later (VS Code under load delivers it after), and everything else is the user's
// typing, forwarded in order. The next daemon edit waits for that echo. A refused apply whose revision matched
// sends the empty edit, which makes the daemon re-send its queue.

import { Change, EditParams, Methods, Position } from './protocol';
import { UndoSteps } from './steps';

/** What the bridge needs from the editor; the extension passes VS Code, the unit tests a fake. */
export interface BridgeHost {
  /**
   * Applies `changes` (descending and non-overlapping, so every range is against the document at `version`) as one
   * edit, only if the document is still at `version`. Resolves to whether it was applied.
   */
  apply(uri: string, version: number, changes: Change[]): PromiseLike<boolean>;
  /** Whether `change` would leave the document as it is (its text is already what its range holds). */
  unchanged(uri: string, change: Change): boolean;
  /** Sends a notification to the daemon. */
  notify(method: string, params: unknown): void;
  /** Reports a problem worth a log line. */
  log?(message: string): void;
}

/** One `onDidChangeTextDocument` event, reduced to what the protocol needs. */
export interface LocalChange {
  /** The document version after the change. */
  version: number;
  changes: Change[];
}

interface Tracked {
  uri: string;
  /** The document version the bridge has accounted for: every change up to it was sent or recognized as an echo. */
  version: number;
  sent: number;
  applied: number;
  /** The version an in-flight apply was checked against, if one is in flight. */
  applying?: number;
  /** Change events that arrived while an apply was in flight. */
  held: LocalChange[];
  /** The version of an applied edit whose change event has not arrived yet; the event is the echo. */
  echo?: number;
  /** Called when that echo arrives. */
  echoArrived?: () => void;
  /** Where the user's undo steps end. */
  steps: UndoSteps;
  /** Where the last daemon edit applied began (its first change in the document). */
  lastApplied?: Position;
}

export interface Counters {
  version: number;
  sent: number;
  applied: number;
}

export class DocumentBridge {
  private readonly docs = new Map<string, Tracked>();
  private readonly queue: EditParams[] = [];
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly host: BridgeHost) {}

  /** Starts tracking a document: sends `collab/open` with its text; both counters restart at 0. */
  open(uri: string, version: number, text: string): void {
    this.docs.set(uri, { uri, version, sent: 0, applied: 0, held: [], steps: new UndoSteps() });
    this.host.notify(Methods.open, { uri, text });
  }

  /** Stops tracking a document (closed, or the session ended); its queued daemon edits are dropped. */
  close(uri: string, notify = true): void {
    if (!this.docs.delete(uri)) {
      return;
    }
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].uri === uri) {
        this.queue.splice(i, 1);
      }
    }
    if (notify) {
      this.host.notify(Methods.close, { uri });
    }
  }

  isTracked(uri: string): boolean {
    return this.docs.has(uri);
  }

  tracked(): string[] {
    return [...this.docs.keys()];
  }

  /** Where the last daemon edit applied to `uri` began. */
  lastApplied(uri: string): Position | undefined {
    return this.docs.get(uri)?.lastApplied;
  }

  counters(uri: string): Counters | undefined {
    const doc = this.docs.get(uri);
    return doc && { version: doc.version, sent: doc.sent, applied: doc.applied };
  }

  /** A change event of a document (the user's, or the echo of a daemon edit). */
  localChange(uri: string, change: LocalChange): void {
    const doc = this.docs.get(uri);
    if (!doc || change.version <= doc.version) {
      return;
    }
    if (doc.applying !== undefined) {
      doc.held.push(change);
      return;
    }
    if (doc.echo !== undefined && change.version === doc.echo) {
      this.echoed(doc);
      return;
    }
    this.forward(doc, change);
  }

  /** A `collab/edit` from the daemon: queued, applied in arrival order. */
  daemonEdit(params: EditParams): void {
    if (!this.docs.has(params.uri)) {
      return;
    }
    this.queue.push(params);
    void this.run();
  }

  /** Resolves once the queue is empty and no apply is in flight. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private forward(doc: Tracked, change: LocalChange): void {
    doc.version = change.version;
    if (change.changes.length === 0) {
      return; // a version bump without a text change (VS Code fires these when the dirty state changes)
    }
    this.send(doc, change.changes, doc.steps.next(change.changes));
  }

  private send(doc: Tracked, changes: Change[], undoStop?: boolean): void {
    const params: EditParams = { uri: doc.uri, revision: doc.applied, changes, undoStop };
    doc.sent += 1;
    this.host.notify(Methods.edit, params);
  }

  private async run(): Promise<void> {
    if (this.running) {
      return;
    }
    this.running = true;
    try {
      for (let edit = this.queue.shift(); edit; edit = this.queue.shift()) {
        await this.applyOne(edit);
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((resolve) => resolve());
    }
  }

  /** The echo of the last applied edit arrived: account for its version; the next daemon edit may go. */
  private echoed(doc: Tracked): void {
    doc.version = doc.echo ?? doc.version;
    doc.echo = undefined;
    const arrived = doc.echoArrived;
    doc.echoArrived = undefined;
    arrived?.();
  }

  /** Waits (a bounded time) for the echo of the previous apply, so the next one is checked against its version. */
  private async echoSettled(doc: Tracked): Promise<void> {
    if (doc.echo === undefined) {
      return;
    }
    const arrived = new Promise<void>((resolve) => (doc.echoArrived = resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ECHO_TIMEOUT_MS)));
    const timedOut = await Promise.race([arrived.then(() => false), timeout]);
    clearTimeout(timer);
    if (timedOut && doc.echo !== undefined) {
      this.host.log?.(`no change event for an applied edit to ${doc.uri} (version ${doc.echo}) after ${ECHO_TIMEOUT_MS} ms`);
      doc.echo = undefined;
      doc.echoArrived = undefined;
    }
  }

  private async applyOne(edit: EditParams): Promise<void> {
    let doc = this.docs.get(edit.uri);
    if (doc) {
      await this.echoSettled(doc);
      doc = this.docs.get(edit.uri); // closed meanwhile?
    }
    if (!doc || edit.revision !== doc.sent) {
      return; // stale: the daemon has not seen our latest edits, and will re-send this one transformed
    }
    const uri = doc.uri;
    // Changes that change nothing make no change event (and no version) in an editor: leave them out, so every
    // apply makes exactly one new version.
    const changes = edit.changes.filter((c) => !this.host.unchanged(uri, c));
    if (changes.length === 0) {
      doc.applied += 1; // nothing to change in the buffer, but the daemon counts it
      return;
    }
    const base = doc.version;
    doc.applying = base;
    let ok = false;
    try {
      ok = await this.host.apply(doc.uri, base, changes);
    } catch (error) {
      this.host.log?.(`applying a daemon edit to ${doc.uri} failed: ${String(error)}`);
    }
    if (this.docs.get(doc.uri) !== doc) {
      return; // closed meanwhile
    }
    doc.applying = undefined;
    const held = doc.held;
    doc.held = [];
    let rest = held;
    if (ok) {
      doc.applied += 1;
      // Descending document order: the last change is the first in the document.
      doc.lastApplied = changes[changes.length - 1].range.start;
      if (held.length > 0 && held[0].version === base + 1) {
        doc.version = base + 1; // the echo of our own edit
        rest = held.slice(1);
      } else {
        // The echo comes later; nothing the user typed can come before it (it would have made the apply fail).
        doc.echo = base + 1;
      }
    }
    for (const change of rest) {
      if (change.version > doc.version) {
        this.forward(doc, change);
      }
    }
    if (!ok) {
      this.send(doc, []); // the empty edit: asks the daemon to re-send what we could not apply
    }
  }
}

/** How long the next daemon edit waits for the echo of the previous one before going ahead. */
const ECHO_TIMEOUT_MS = 2000;
