//! Texts made of unique tokens (`<a17>`, some followed by a line break), for tests that check that no one's edit
//! was lost: every token typed must be in the final text exactly once unless someone deleted it, and a text that
//! is not a clean sequence of tokens shows a token was torn apart.

use codecollab_protocol::TextOperation;

use crate::random::Rng;

/// What a token edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEdit {
    Inserted(String),
    Deleted(String),
}

/// The tokens of `text` in order (`<a17>`, without their line breaks), or `None` if anything in it is not part of
/// a whole token.
pub fn parse(text: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let body = rest.strip_prefix('<')?;
        let end = body.find('>')?;
        let name = &body[..end];
        let mut chars = name.chars();
        let valid =
            chars.next().is_some_and(|c| c.is_ascii_lowercase()) && name.len() > 1 && chars.all(|c| c.is_ascii_digit());
        if !valid {
            return None;
        }
        tokens.push(format!("<{name}>"));
        rest = &body[end + 1..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    Some(tokens)
}

/// Char offsets of the boundaries between the tokens of `text` (its start and end included).
pub fn boundaries(text: &str) -> Vec<usize> {
    let mut offsets = vec![0];
    let mut at = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        at += 1;
        if c == '>' {
            if chars.peek() == Some(&'\n') {
                chars.next();
                at += 1;
            }
            offsets.push(at);
        }
    }
    offsets
}

/// A new token by `author` (a lowercase letter), numbered from `counter`.
pub fn token(author: char, counter: &mut u64, rng: &mut Rng) -> String {
    *counter += 1;
    let newline = if rng.chance(0.2) { "\n" } else { "" };
    format!("<{author}{counter}>{newline}")
}

/// A random edit of a token text: insert a new token of `author` between two tokens, or (with probability
/// `delete`) delete a whole token. Returns the operation on `text` and what it did.
pub fn random_edit(
    rng: &mut Rng,
    text: &str,
    author: char,
    counter: &mut u64,
    delete: f64,
) -> (TextOperation, TokenEdit) {
    let cuts = boundaries(text);
    let len = text.chars().count();
    if cuts.len() > 1 && rng.chance(delete) {
        let i = rng.below(cuts.len() - 1);
        let (start, end) = (cuts[i], cuts[i + 1]);
        let deleted: String = text.chars().skip(start).take(end - start).collect();
        let name = parse(&deleted).and_then(|t| t.into_iter().next()).expect("a whole token");
        let op = TextOperation::replace(len, start, end, "").expect("in bounds");
        return (op, TokenEdit::Deleted(name));
    }
    let at = *rng.pick(&cuts);
    let new = token(author, counter, rng);
    let name = parse(&new).and_then(|t| t.into_iter().next()).expect("a whole token");
    (TextOperation::replace(len, at, at, &new).expect("in bounds"), TokenEdit::Inserted(name))
}
