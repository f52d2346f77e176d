//! The crate's error type: every failure a user can cause or meet (bad shapes, missing devices,
//! bad input data) is a typed error with a message they can act on, never a panic.

use crate::graph::{DType, Shape};

/// Everything that can go wrong in lumen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A graph node was given inputs whose shapes or dtypes do not fit the op.
    #[error("{op}: {msg}")]
    Shape {
        /// The op being added.
        op: String,
        /// What was wrong, naming the shapes involved.
        msg: String,
    },
    /// A tensor handed to a graph input does not match the input's declaration.
    #[error("input `{name}` expects {want_dtype:?} {want_shape}, got {got_dtype:?} {got_shape}")]
    InputMismatch {
        /// The input's name.
        name: String,
        /// Declared dtype.
        want_dtype: DType,
        /// Declared shape.
        want_shape: Shape,
        /// Given dtype.
        got_dtype: DType,
        /// Given shape.
        got_shape: Shape,
    },
    /// A node id that does not belong to the graph, or an input that was never set.
    #[error("graph: {0}")]
    Graph(String),
    /// No backend could be created, or the requested one is unavailable.
    #[error("backend: {0}")]
    Backend(String),
    /// Data handed to an op is invalid (an index out of range, a length that does not match).
    #[error("invalid data: {0}")]
    Data(String),
    /// A file could not be read or written; the message names the path.
    #[error("io: {0}")]
    Io(String),
    /// A model directory is unusable: bad config, missing/extra/misshapen tensor, bad tokenizer.
    #[error("model: {0}")]
    Model(String),
    /// A request is unusable: corrupt or oversized image, prompt too long, bad template.
    #[error("input: {0}")]
    Input(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), msg: msg.into() }
    }
}
