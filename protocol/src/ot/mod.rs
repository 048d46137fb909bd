//! The text operation algebra: the operation type and its normal form, apply, compose, transform, invert,
//! cursor transformation and conversion from editor-style replacement lists.

mod apply;
mod compose;
mod cursor;
mod edit;
mod operation;
mod replace;
mod serde_impl;
mod transform;

pub use apply::EditText;
pub use cursor::{Bias, Selection};
pub use operation::{Component, OpError, Text, TextOperation};
pub use replace::Replacement;
pub use transform::transform;
