// Remote cursors and selections as editor decorations: one colour per peer, the peer's name beside the caret.

import * as vscode from 'vscode';
import { CursorsParams, RemoteCursor } from './protocol';

interface PeerStyle {
  selection: vscode.TextEditorDecorationType;
  caret: vscode.TextEditorDecorationType;
  name: string;
  color: string;
}

/** Accepts `#rgb` / `#rrggbb` colours only, so nothing the network sends can inject CSS. */
function safeColor(color: string): string {
  return /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color) ? color : '#888888';
}

function translucent(color: string): string {
  const hex = color.length === 4 ? color.replace(/^#(.)(.)(.)$/, '#$1$1$2$2$3$3') : color;
  return `${hex}40`;
}

export class RemoteCursors implements vscode.Disposable {
  private readonly byUri = new Map<string, RemoteCursor[]>();
  private readonly styles = new Map<number, PeerStyle>();

  /** New cursors for one document, already in the editor's coordinates. */
  update(params: CursorsParams): void {
    this.byUri.set(params.uri, params.cursors);
    this.render();
  }

  /** The caret of `peer` in document `only` if given, else in any document, if known. */
  caretOf(peer: number, only?: string): { uri: string; position: vscode.Position } | undefined {
    for (const [uri, cursors] of this.byUri) {
      if (only !== undefined && uri !== only) {
        continue;
      }
      const cursor = cursors.find((c) => c.peer === peer);
      const range = cursor?.ranges[0];
      if (range) {
        return { uri, position: new vscode.Position(range.end.line, range.end.character) };
      }
    }
    return undefined;
  }

  /** Draws every visible editor again (after an update, or when the visible editors change). */
  render(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      const cursors = this.byUri.get(editor.document.uri.toString()) ?? [];
      const shown = new Set<number>();
      for (const cursor of cursors) {
        const style = this.style(cursor);
        shown.add(cursor.peer);
        const selections: vscode.Range[] = [];
        const carets: vscode.Range[] = [];
        for (const r of cursor.ranges) {
          const anchor = editor.document.validatePosition(new vscode.Position(r.start.line, r.start.character));
          const caret = editor.document.validatePosition(new vscode.Position(r.end.line, r.end.character));
          if (!anchor.isEqual(caret)) {
            selections.push(new vscode.Range(anchor, caret));
          }
          carets.push(new vscode.Range(caret, caret));
        }
        editor.setDecorations(style.selection, selections);
        editor.setDecorations(style.caret, carets);
      }
      for (const [peer, style] of this.styles) {
        if (!shown.has(peer)) {
          editor.setDecorations(style.selection, []);
          editor.setDecorations(style.caret, []);
        }
      }
    }
  }

  /** Forgets everything (the session ended). */
  clear(): void {
    this.byUri.clear();
    this.disposeStyles();
  }

  dispose(): void {
    this.clear();
  }

  private style(cursor: RemoteCursor): PeerStyle {
    const color = safeColor(cursor.color);
    const existing = this.styles.get(cursor.peer);
    if (existing && existing.name === cursor.name && existing.color === color) {
      return existing;
    }
    existing?.selection.dispose();
    existing?.caret.dispose();
    const style: PeerStyle = {
      name: cursor.name,
      color,
      selection: vscode.window.createTextEditorDecorationType({
        backgroundColor: translucent(color),
        rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
      }),
      caret: vscode.window.createTextEditorDecorationType({
        rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
        before: {
          contentText: '',
          border: `solid ${color}`,
          textDecoration: 'none; border-width: 0 0 0 2px; margin-right: -2px; position: relative; z-index: 1',
        },
        after: {
          contentText: cursor.name,
          color: '#ffffff',
          backgroundColor: color,
          textDecoration: 'none; font-size: 0.85em; padding: 0 3px; border-radius: 2px; margin-left: 1px',
        },
      }),
    };
    this.styles.set(cursor.peer, style);
    return style;
  }

  private disposeStyles(): void {
    for (const style of this.styles.values()) {
      style.selection.dispose();
      style.caret.dispose();
    }
    this.styles.clear();
  }
}
