// Where this editor's undo steps end, told to the daemon with each edit (`undoStop`, docs/editor-protocol.md), so that
// CodeCollab's undo of your own changes takes back what VS Code's Ctrl+Z would: a run of typing in one place, word by
// word (a word and the spaces after it), a run of deletions, or one edit of any other kind (a paste, Enter, a
// multi-cursor edit, a formatter's). Moving elsewhere starts a new step.

import { Change, Position } from './protocol';

type Kind = 'word' | 'space' | 'delete' | 'other';

function samePosition(a: Position, b: Position): boolean {
  return a.line === b.line && a.character === b.character;
}

/** One document's steps. */
export class UndoSteps {
  private kind: Kind | undefined;
  /** Where the caret is after the last change, if it was typing or deleting. */
  private caret: Position | undefined;

  /** Whether the user's change `changes` (one change event) starts a new undo step. */
  next(changes: Change[]): boolean {
    const previous = this.kind;
    const caret = this.caret;
    let kind: Kind = 'other';
    let contiguous = false;
    this.caret = undefined;
    if (changes.length === 1) {
      const { range, text } = changes[0];
      const empty = samePosition(range.start, range.end);
      const chars = [...text];
      if (text === '' && !empty) {
        kind = 'delete';
        // Backspace ends where the caret was; Delete starts there.
        contiguous = caret !== undefined && (samePosition(range.end, caret) || samePosition(range.start, caret));
        this.caret = range.start;
      } else if (empty && chars.length === 1 && text !== '\n' && text !== '\r') {
        kind = /\s/.test(text) ? 'space' : 'word';
        contiguous = caret !== undefined && samePosition(range.start, caret);
        this.caret = { line: range.start.line, character: range.start.character + text.length };
      }
    }
    this.kind = kind;
    const joins =
      contiguous && previous !== undefined && (kind === previous || (previous === 'word' && kind === 'space'));
    return !joins;
  }
}
