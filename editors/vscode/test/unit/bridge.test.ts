// Unit tests of the document bridge against a small fake of VS Code's documents and applyEdit.

import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BridgeHost, DocumentBridge } from '../../src/bridge';
import { Change, EditParams } from '../../src/protocol';

const URI = 'file:///work/doc.txt';

/** Offset of a line/character position in `text` (lines end at \n; UTF-16 units, as JS strings count). */
function offsetOf(text: string, line: number, character: number): number {
  let offset = 0;
  for (let l = 0; l < line; l++) {
    const next = text.indexOf('\n', offset);
    assert.ok(next >= 0, `line ${line} is past the end`);
    offset = next + 1;
  }
  return offset + character;
}

function at(text: string, offset: number): { line: number; character: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length - 1, character: before[before.length - 1].length };
}

/** An insertion of `text` at `offset` of `doc`, as a change. */
function insert(doc: string, offset: number, text: string): Change {
  const p = at(doc, offset);
  return { range: { start: p, end: p }, text };
}

interface Sent {
  method: string;
  params: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * One VS Code document and the extension host's view of it. Like VS Code, an applied edit fires its change event
 * before the apply's promise resolves, and an edit checked against an old version is refused.
 */
class FakeEditor implements BridgeHost {
  text: string;
  version = 1;
  readonly sent: Sent[] = [];
  readonly bridge: DocumentBridge;
  applying = 0;
  maxConcurrentApplies = 0;
  /** Runs on the "main thread" just before an apply is checked (a keystroke that gets in first). */
  beforeApply: (() => void) | undefined;
  /** Runs just after an apply succeeded, before its promise resolves (a keystroke that comes right after). */
  afterApply: (() => void) | undefined;
  refuseAll = false;
  /** Delivers an applied edit's change event only after the apply resolved (VS Code does, under load). */
  lateEcho = false;
  applies = 0;

  constructor(text: string) {
    this.text = text;
    this.bridge = new DocumentBridge(this);
    this.bridge.open(URI, this.version, text);
  }

  notify(method: string, params: unknown): void {
    this.sent.push({ method, params });
  }

  /** The edits sent, without where undo steps end (see `stops`). */
  edits(): EditParams[] {
    return this.sent
      .filter((s) => s.method === 'collab/edit')
      .map((s) => {
        const { undoStop: _, ...edit } = s.params as EditParams; // eslint-disable-line @typescript-eslint/no-unused-vars
        return edit;
      });
  }

  /** Whether each edit sent starts an undo step. */
  stops(): (boolean | undefined)[] {
    return this.sent.filter((s) => s.method === 'collab/edit').map((s) => (s.params as EditParams).undoStop);
  }

  unchanged(uri: string, c: Change): boolean {
    assert.equal(uri, URI);
    const start = offsetOf(this.text, c.range.start.line, c.range.start.character);
    const end = offsetOf(this.text, c.range.end.line, c.range.end.character);
    return this.text.slice(start, end) === c.text;
  }

  /** Changes the buffer and fires the change event, as VS Code does for a keystroke or an applied edit. */
  change(changes: Change[], deliver = true): () => void {
    for (const c of changes) {
      const start = offsetOf(this.text, c.range.start.line, c.range.start.character);
      const end = offsetOf(this.text, c.range.end.line, c.range.end.character);
      this.text = this.text.slice(0, start) + c.text + this.text.slice(end);
    }
    this.version += 1;
    const event = { version: this.version, changes };
    const fire = () => this.bridge.localChange(URI, event);
    if (deliver) {
      fire();
    }
    return fire;
  }

  type(offset: number, text: string): void {
    this.change([insert(this.text, offset, text)]);
  }

  async apply(uri: string, version: number, changes: Change[]): Promise<boolean> {
    assert.equal(uri, URI);
    this.applying += 1;
    this.maxConcurrentApplies = Math.max(this.maxConcurrentApplies, this.applying);
    this.applies += 1;
    await Promise.resolve(); // the round trip to the main thread
    try {
      this.beforeApply?.();
      if (this.refuseAll || version !== this.version) {
        return false;
      }
      const fire = this.change(changes, !this.lateEcho);
      if (this.lateEcho) {
        setTimeout(() => {
          fire();
          this.afterApply?.(); // typing after the edit is delivered after its echo
        }, 5);
      } else {
        this.afterApply?.();
      }
      await Promise.resolve();
      return true;
    } finally {
      this.applying -= 1;
    }
  }
}

test('local edits carry the number of daemon edits applied, and count as sent', async () => {
  const ed = new FakeEditor('abc');
  assert.deepEqual(ed.sent[0], { method: 'collab/open', params: { uri: URI, text: 'abc' } });
  ed.type(3, 'd');
  ed.type(4, 'e');
  assert.deepEqual(
    ed.edits().map((e) => e.revision),
    [0, 0],
  );
  ed.bridge.daemonEdit({ uri: URI, revision: 2, changes: [insert(ed.text, 0, 'X')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'Xabcde');
  ed.type(6, 'f');
  assert.deepEqual(ed.edits()[2], { uri: URI, revision: 1, changes: [insert('Xabcde', 6, 'f')] });
  assert.deepEqual(ed.bridge.counters(URI), { version: 5, sent: 3, applied: 1 });
});

test('the echo of an applied daemon edit is recognized by version and not sent back', async () => {
  const ed = new FakeEditor('hello');
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('hello', 5, ' world')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'hello world');
  assert.equal(ed.edits().length, 0, 'the echo is not an editor edit');
  // An edit whose text is identical to the echo's, typed by the user, is still sent: recognition is by version.
  ed.type(11, ' world');
  assert.equal(ed.edits().length, 1);
  assert.equal(ed.edits()[0].revision, 1);
});

test('a keystroke right after an applied edit is held, then sent after the echo with the new count', async () => {
  const ed = new FakeEditor('ab');
  ed.afterApply = () => {
    ed.afterApply = undefined;
    ed.type(0, 'u'); // the user types while the apply's promise is still pending
  };
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 2, 'D')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'uabD');
  assert.deepEqual(ed.edits(), [{ uri: URI, revision: 1, changes: [insert('abD', 0, 'u')] }]);
  assert.deepEqual(ed.bridge.counters(URI), { version: 3, sent: 1, applied: 1 });
});

test('a refused apply sends the keystroke that got in first, then the empty edit', async () => {
  const ed = new FakeEditor('ab');
  ed.beforeApply = () => {
    ed.beforeApply = undefined;
    ed.type(1, 'k'); // VS Code refuses the edit: the document moved on
  };
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 2, 'D')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'akb', 'the daemon edit was not applied');
  assert.deepEqual(ed.edits(), [
    { uri: URI, revision: 0, changes: [insert('ab', 1, 'k')] },
    { uri: URI, revision: 0, changes: [] },
  ]);
  assert.deepEqual(ed.bridge.counters(URI), { version: 2, sent: 2, applied: 0 });
});

test('a refused apply with no keystroke sends the empty edit, and the re-sent edit then applies', async () => {
  const ed = new FakeEditor('ab');
  ed.refuseAll = true;
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 0, 'D')] });
  await ed.bridge.idle();
  assert.deepEqual(ed.edits(), [{ uri: URI, revision: 0, changes: [] }]);
  ed.refuseAll = false;
  // The daemon answers the empty edit by re-sending its queue, tagged with the editor edits it has processed.
  ed.bridge.daemonEdit({ uri: URI, revision: 1, changes: [insert('ab', 0, 'D')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'Dab');
  assert.deepEqual(ed.bridge.counters(URI), { version: 2, sent: 1, applied: 1 });
});

test('stale daemon edits are dropped without a word', async () => {
  const ed = new FakeEditor('ab');
  ed.type(2, 'c'); // sent = 1, but the daemon made its edit having seen none of ours
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 0, 'D')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'abc');
  assert.equal(ed.edits().length, 1, 'nothing is sent for a dropped edit');
  assert.deepEqual(ed.bridge.counters(URI), { version: 2, sent: 1, applied: 0 });
});

test('daemon edits are applied one at a time, in order, each against the version the previous left', async () => {
  const ed = new FakeEditor('');
  let text = '';
  for (const ch of 'queued') {
    ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert(text, text.length, ch)] });
    text += ch;
  }
  await ed.bridge.idle();
  assert.equal(ed.text, 'queued');
  assert.equal(ed.maxConcurrentApplies, 1);
  assert.deepEqual(ed.bridge.counters(URI), { version: 7, sent: 0, applied: 6 });
});

test('a multi-change daemon edit (descending ranges) is applied as one edit', async () => {
  const ed = new FakeEditor('one\ntwo\nthree');
  const changes: Change[] = [
    { range: { start: { line: 2, character: 0 }, end: { line: 2, character: 5 } }, text: '3' },
    { range: { start: { line: 0, character: 3 }, end: { line: 0, character: 3 } }, text: '!' },
  ];
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes });
  await ed.bridge.idle();
  assert.equal(ed.text, 'one!\ntwo\n3');
  assert.deepEqual(ed.bridge.counters(URI), { version: 2, sent: 0, applied: 1 });
});

test('version bumps without a text change are not edits; closing drops queued edits', async () => {
  const ed = new FakeEditor('ab');
  ed.version += 1;
  ed.bridge.localChange(URI, { version: ed.version, changes: [] }); // the dirty flag changed
  assert.equal(ed.edits().length, 0);
  ed.refuseAll = true;
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 0, 'x')] });
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 0, 'y')] });
  ed.bridge.close(URI);
  await ed.bridge.idle();
  assert.equal(ed.text, 'ab');
  assert.deepEqual(ed.sent.at(-1), { method: 'collab/close', params: { uri: URI } });
  assert.equal(ed.bridge.isTracked(URI), false);
  ed.type(0, 'z');
  assert.equal(ed.edits().length, 0, 'an untracked document sends nothing');
});

test('an apply that throws counts as refused', async () => {
  const ed = new FakeEditor('ab');
  const logs: string[] = [];
  const bridge = new DocumentBridge({
    apply: () => Promise.reject(new Error('boom')),
    unchanged: () => false,
    notify: (method, params) => ed.notify(method, params),
    log: (m) => logs.push(m),
  });
  bridge.open(URI, 1, 'ab');
  bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 0, 'x')] });
  await bridge.idle();
  assert.deepEqual(ed.edits().at(-1), { uri: URI, revision: 0, changes: [] });
  assert.match(logs[0], /boom/);
});

test('an echo that arrives after the apply resolved is still recognized by version', async () => {
  const ed = new FakeEditor('ab');
  ed.lateEcho = true;
  let typed = false;
  ed.afterApply = () => {
    if (!typed) {
      typed = true;
      ed.type(0, 'u'); // typed after the applied edit, delivered after its echo
    }
  };
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('ab', 2, 'D')] });
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('abD', 3, 'E')] }); // stale once 'u' is sent
  await ed.bridge.idle();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ed.text, 'uabD');
  assert.deepEqual(ed.edits(), [{ uri: URI, revision: 1, changes: [insert('abD', 0, 'u')] }], 'the echo is not sent');
  assert.deepEqual(ed.bridge.counters(URI), { version: 3, sent: 1, applied: 1 });
});

test('the next daemon edit waits for the echo of the previous one', async () => {
  const ed = new FakeEditor('');
  ed.lateEcho = true;
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('', 0, 'a')] });
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert('a', 1, 'b')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'ab', 'both applied, the second against the version the first made');
  assert.equal(ed.applies, 2, 'no refusal and no re-send were needed');
  await new Promise((r) => setTimeout(r, 20)); // the second echo, late too
  assert.equal(ed.edits().length, 0);
  assert.deepEqual(ed.bridge.counters(URI), { version: 3, sent: 0, applied: 2 });
});

test('a daemon edit that changes nothing is counted without touching the buffer', async () => {
  const ed = new FakeEditor('abc');
  const same: Change = { range: { start: { line: 0, character: 1 }, end: { line: 0, character: 2 } }, text: 'b' };
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [same] });
  await ed.bridge.idle();
  assert.equal(ed.applies, 0);
  ed.type(3, 'd');
  assert.deepEqual(ed.edits(), [{ uri: URI, revision: 1, changes: [insert('abc', 3, 'd')] }]);
});

test('undo steps end as VS Code ends them: a word and its spaces, a run of deletions, anything else alone', async () => {
  const ed = new FakeEditor('');
  // "ab cd": a word and its space, then the next word.
  for (const [i, c] of [...'ab cd'].entries()) {
    ed.type(i, c);
  }
  // Two backspaces, then a paste, then typing somewhere else.
  const del = (from: number) => {
    const start = at(ed.text, from);
    const end = at(ed.text, from + 1);
    ed.change([{ range: { start, end }, text: '' }]);
  };
  del(4);
  del(3);
  ed.type(3, 'pasted text');
  ed.type(0, 'x');
  ed.type(1, 'y');
  assert.equal(ed.text, 'xyab pasted text');
  assert.deepEqual(ed.stops(), [true, false, false, true, false, true, false, true, true, false]);
  // The empty edit (a refused apply) says nothing of steps.
  ed.refuseAll = true;
  ed.bridge.daemonEdit({ uri: URI, revision: ed.bridge.counters(URI)!.sent, changes: [insert(ed.text, 0, 'Z')] });
  await ed.bridge.idle();
  assert.equal(ed.stops().at(-1), undefined);
});

test('the start of the last daemon edit applied is kept, for the cursor after an undo', async () => {
  const ed = new FakeEditor('one\ntwo\nthree\n');
  // Descending order, as the daemon sends them: the last change is the first in the document.
  ed.bridge.daemonEdit({ uri: URI, revision: 0, changes: [insert(ed.text, 8, '!'), insert(ed.text, 4, '>')] });
  await ed.bridge.idle();
  assert.equal(ed.text, 'one\n>two\n!three\n');
  assert.deepEqual(ed.bridge.lastApplied(URI), { line: 1, character: 0 });
});
