//! The encode crate's error type.

/// Errors from conversion and encoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Dimensions are zero, odd, or too large.
    #[error("invalid frame size {width}x{height}: need even sizes from 2 to 8192")]
    InvalidDimensions {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// An input buffer is smaller than its dimensions require, or sizes do not match.
    #[error("buffer holds {actual} bytes, need {expected}")]
    BufferSize {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The encoder failed.
    #[error("encoder: {0}")]
    Encoder(String),
    /// The configuration names an encoder this build does not have.
    #[error("unknown encoder {name:?}: this build has auto, {known}")]
    UnknownBackend {
        /// The name asked for (cut at 64 characters).
        name: String,
        /// The backends compiled in.
        known: String,
    },
}
