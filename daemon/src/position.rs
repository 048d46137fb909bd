//! Every conversion between the editor's positions and char offsets, in one place: LSP positions in the
//! negotiated encoding (UTF-8 bytes, UTF-16 code units, or UTF-32 = chars) and LSP line breaks (`\n`, `\r\n`,
//! `\r`; ropey is built with `cr_lines` and without Unicode line separators), and LSP change lists to and from
//! text operations.

use codecollab_protocol::{Replacement, TextOperation};
use ropey::Rope;
use tower_lsp_server::lsp_types::{Position, Range};

use crate::lsp_ext::Change;

/// The position encoding negotiated at `initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "utf-8" => Some(Encoding::Utf8),
            "utf-16" => Some(Encoding::Utf16),
            "utf-32" => Some(Encoding::Utf32),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("line {line} is past the end of the document ({lines} lines)")]
    LineOutOfRange { line: u32, lines: usize },
    #[error("range end {end:?} is before its start {start:?}")]
    Reversed { start: Position, end: Position },
}

/// Chars of `line`'s content, without its line break.
fn content_chars(rope: &Rope, line: usize) -> usize {
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    if len > 0 && slice.char(len - 1) == '\n' {
        len -= 1;
    }
    if len > 0 && slice.char(len - 1) == '\r' {
        len -= 1;
    }
    len
}

/// The char offset of `position`. A character past the end of its line means the end of the line (as LSP
/// specifies); a line past the end of the document is an error. O(log n): ropey indexes UTF-16 and bytes.
pub fn offset(rope: &Rope, position: Position, encoding: Encoding) -> Result<usize, PositionError> {
    let line = position.line as usize;
    if line >= rope.len_lines() {
        return Err(PositionError::LineOutOfRange { line: position.line, lines: rope.len_lines() });
    }
    let start = rope.line_to_char(line);
    let end = start + content_chars(rope, line);
    let wanted = position.character as usize;
    Ok(match encoding {
        Encoding::Utf32 => (start + wanted).min(end),
        Encoding::Utf16 => {
            let (first, last) = (rope.char_to_utf16_cu(start), rope.char_to_utf16_cu(end));
            rope.utf16_cu_to_char((first + wanted).min(last))
        }
        Encoding::Utf8 => {
            let (first, last) = (rope.char_to_byte(start), rope.char_to_byte(end));
            rope.byte_to_char((first + wanted).min(last))
        }
    })
}

/// The LSP position of char `offset` (clamped to the document).
pub fn position(rope: &Rope, offset: usize, encoding: Encoding) -> Position {
    let offset = offset.min(rope.len_chars());
    let line = rope.char_to_line(offset);
    let start = rope.line_to_char(line);
    let character = match encoding {
        Encoding::Utf32 => offset - start,
        Encoding::Utf16 => rope.char_to_utf16_cu(offset) - rope.char_to_utf16_cu(start),
        Encoding::Utf8 => rope.char_to_byte(offset) - rope.char_to_byte(start),
    };
    Position { line: line as u32, character: character as u32 }
}

pub fn range(rope: &Rope, start: usize, end: usize, encoding: Encoding) -> Range {
    Range { start: position(rope, start, encoding), end: position(rope, end, encoding) }
}

/// The operation an editor's change list makes on `text` (the editor's buffer before the changes); also returns
/// the text after. `text` itself is left untouched if any change is invalid.
pub fn changes_to_operation(
    text: &Rope,
    changes: &[Change],
    encoding: Encoding,
) -> Result<(TextOperation, Rope), PositionError> {
    // Rope clones share their nodes: the working copy costs O(log n) per change, not a copy of the text.
    let mut working = text.clone();
    let mut replacements = Vec::with_capacity(changes.len());
    for change in changes {
        let start = offset(&working, change.range.start, encoding)?;
        let end = offset(&working, change.range.end, encoding)?;
        if end < start {
            return Err(PositionError::Reversed { start: change.range.start, end: change.range.end });
        }
        working.remove(start..end);
        working.insert(start, &change.text);
        replacements.push(Replacement::new(start, end, change.text.as_str()));
    }
    let op = TextOperation::from_replacements(text.len_chars(), &replacements)
        .expect("replacements were checked against the text as it evolved");
    Ok((op, working))
}

/// The change list, in the editor's encoding, that applies `op` to `text`. The changes come last one first
/// (descending, never overlapping), so each range is valid both in sequence (LSP `didChange` semantics) and against
/// `text` itself: an editor with an atomic multi-edit API (VS Code's `WorkspaceEdit`) applies the list as is.
pub fn operation_to_changes(text: &Rope, op: &TextOperation, encoding: Encoding) -> Vec<Change> {
    // `to_replacements` counts each start after the replacements before it; undo that shift to get offsets in
    // `text`, then reverse.
    let mut shift: isize = 0;
    let mut changes: Vec<Change> = op
        .to_replacements()
        .into_iter()
        .map(|r| {
            let start = r.start.checked_add_signed(-shift).expect("a replacement starts after the ones before it");
            let end = start + (r.end - r.start);
            shift += r.text.chars().count() as isize - (r.end - r.start) as isize;
            Change { range: range(text, start, end, encoding), text: r.text }
        })
        .collect();
    changes.reverse();
    changes
}

/// A minimal-ish edit from `from` to `to`: a line diff, each changed hunk one replacement, so the cursor and
/// undo history of unchanged lines survive.
pub fn diff(from: &str, to: &str) -> TextOperation {
    let mut op = TextOperation::new();
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(std::time::Duration::from_millis(500))
        .diff_lines(from, to);
    for change in diff.iter_all_changes() {
        let chars = change.value().chars().count();
        match change.tag() {
            similar::ChangeTag::Equal => op.retain(chars),
            similar::ChangeTag::Delete => op.delete(chars),
            similar::ChangeTag::Insert => op.insert(change.value()),
        };
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn encodings_count_units_per_line() {
        // "a😀é" then CRLF, then "日本", then CR, then "x".
        let rope = Rope::from_str("a😀é\r\n日本\rx");
        assert_eq!(rope.len_lines(), 3);
        assert_eq!(offset(&rope, pos(0, 3), Encoding::Utf16), Ok(2)); // after the emoji (2 units)
        assert_eq!(offset(&rope, pos(0, 5), Encoding::Utf8), Ok(2)); // 1 + 4 bytes
        assert_eq!(offset(&rope, pos(0, 2), Encoding::Utf32), Ok(2));
        assert_eq!(offset(&rope, pos(1, 3), Encoding::Utf8), Ok(6)); // after 日 (3 bytes)
        assert_eq!(offset(&rope, pos(0, 99), Encoding::Utf16), Ok(3), "clamped before the CRLF");
        assert_eq!(offset(&rope, pos(2, 1), Encoding::Utf16), Ok(9));
        assert!(offset(&rope, pos(3, 0), Encoding::Utf16).is_err());
        for encoding in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            for o in [0, 1, 2, 3, 5, 6, 7, 8, 9] {
                assert_eq!(offset(&rope, position(&rope, o, encoding), encoding), Ok(o), "{encoding:?} {o}");
            }
        }
    }

    #[test]
    fn change_lists_round_trip() {
        let text = Rope::from_str("one\r\ntwo 👩\u{200d}💻\nthree");
        let changes = vec![
            Change { range: Range { start: pos(1, 0), end: pos(1, 3) }, text: "2".into() },
            Change { range: Range { start: pos(0, 3), end: pos(0, 3) }, text: " é".into() },
        ];
        for encoding in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            let (op, after) = changes_to_operation(&text, &changes, encoding).expect("valid");
            assert_eq!(after.to_string(), "one é\r\n2 👩\u{200d}💻\nthree");
            assert_eq!(op.apply(&text.to_string()).expect("fits"), after.to_string());
            let back = operation_to_changes(&text, &op, encoding);
            assert!(
                back.windows(2).all(|w| (w[1].range.end.line, w[1].range.end.character)
                    <= (w[0].range.start.line, w[0].range.start.character)),
                "descending: {back:?}"
            );
            let (again, _) = changes_to_operation(&text, &back, encoding).expect("valid");
            assert_eq!(again, op);
        }
    }

    #[test]
    fn diffs_touch_only_changed_lines() {
        let op = diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(op.apply("a\nb\nc\n").expect("fits"), "a\nB\nc\nd\n");
        assert_eq!(op.to_replacements().len(), 2);
    }
}
