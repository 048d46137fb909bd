// The document bridge: the editor side of the revision-pair protocol (DESIGN section 2), independent of VS Code.
//
// Per tracked document it keeps `sent` (local edits sent) and `applied` (daemon edits applied). Local edits go out
// as `collab/edit` with `revision = applied`. Daemon edits wait in one queue and are applied one at a time, only if
// their `revision == sent`, with an edit the host checks against the document version the bridge last saw. While an
// apply is in flight, the document's change events are held: when the apply resolves, the first held event with
// the next version is the echo of the daemon's edit if (and only if) the apply succeeded, and everything else is the
// user's typing, forwarded in order. A refused apply whose revision matched sends the empty edit, which makes the
// daemon re-send its queue.

import { Change, EditParams, Methods } from './protocol';

/** What the bridge needs from the editor; the extension passes VS Code, the unit tests a fake. */
export interface BridgeHost {
  /**
   * Applies `changes` (descending and non-overlapping, so every range is against the document at `version`) as one
   * edit, only if the document is still at `version`. Resolves to whether it was applied.
   */
  apply(uri: string, version: number, changes: Change[]): PromiseLike<boolean>;
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
    this.docs.set(uri, { uri, version, sent: 0, applied: 0, held: [] });
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
    this.send(doc, change.changes);
  }

  private send(doc: Tracked, changes: Change[]): void {
    const params: EditParams = { uri: doc.uri, revision: doc.applied, changes };
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

  private async applyOne(edit: EditParams): Promise<void> {
    const doc = this.docs.get(edit.uri);
    if (!doc || edit.revision !== doc.sent) {
      return; // stale: the daemon has not seen our latest edits, and will re-send this one transformed
    }
    const changes = edit.changes.filter((c) => c.text !== '' || !isEmpty(c.range));
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
      if (held.length > 0 && held[0].version === base + 1) {
        doc.version = base + 1; // the echo of our own edit
        rest = held.slice(1);
      } else {
        this.host.log?.(`no change event for an applied edit to ${doc.uri} (version ${base})`);
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

function isEmpty(range: Change['range']): boolean {
  return range.start.line === range.end.line && range.start.character === range.end.character;
}
