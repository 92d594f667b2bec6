//! The renderer's error type.

/// Errors from device selection, resource creation, rendering and readback.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// No adapter matched the requested choice.
    #[error(
        "no GPU adapter for choice '{choice}' (found: {found}); on a machine without a GPU install mesa-vulkan-drivers"
    )]
    NoAdapter {
        /// What was asked for.
        choice: String,
        /// Adapters that were found, for the log.
        found: String,
    },
    /// The adapter refused to create a device.
    #[error("cannot create a device on {adapter}: {reason}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// The wgpu error.
        reason: String,
    },
    /// Resolution is zero, odd, or above the adapter's texture limit.
    #[error("invalid frame size {width}x{height} (need even sizes from 16 to {max})")]
    InvalidSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The largest side the adapter supports.
        max: u32,
    },
    /// A texture is larger than the adapter supports.
    #[error("texture of {width}x{height} exceeds the adapter limit of {max}")]
    TextureTooLarge {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Limit.
        max: u32,
    },
    /// Every readback buffer is waiting to be collected.
    #[error("all {0} readback buffers are in flight; collect a frame first")]
    RingFull(usize),
    /// A frame's readback did not finish within the renderer's wait budget (see
    /// [`FrameRenderer::set_readback_timeout`](crate::FrameRenderer::set_readback_timeout)),
    /// typically because the shared device is busy with other streams' frames. Transient: the
    /// frame stays in flight and a later [`collect`](crate::FrameRenderer::collect) returns it.
    #[error(
        "GPU readback of frame {tag} not finished after {waited:?} (device busy); the frame is still in flight, collect again"
    )]
    ReadbackTimeout {
        /// The frame's tag.
        tag: u64,
        /// How long this call waited.
        waited: std::time::Duration,
    },
    /// The device was lost (driver reset, out of memory, destroyed): every renderer on its
    /// [`GpuContext`](crate::GpuContext) is unusable and a new context is needed.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Waiting for the GPU or mapping a buffer failed for a reason other than a timeout or a
    /// lost device; the frame is gone.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// An environment map could not be used: bad or truncated Radiance HDR bytes, an unsupported
    /// orientation, a non-finite or negative texel, an unreadable file, or invalid prefilter
    /// options.
    #[error("invalid environment map: {0}")]
    Environment(String),
    /// An environment map exceeds its [`EnvironmentLimits`](crate::EnvironmentLimits) (file
    /// size, or the header's width or height, checked before any pixel is decoded).
    #[error("environment map too large: {what} {got} exceeds the limit of {max}")]
    EnvironmentTooLarge {
        /// What was measured: "file size in bytes", "width in texels" or "height in texels".
        what: &'static str,
        /// The measured value.
        got: u64,
        /// The limit.
        max: u64,
    },
    /// The device reported a validation or out-of-memory error.
    #[error("GPU error: {0}")]
    Gpu(String),
}

impl RenderError {
    /// True when the renderer is still usable and the same call may succeed if retried:
    /// [`Self::ReadbackTimeout`] (collect again; the frame is still in flight) and
    /// [`Self::RingFull`] (collect a frame, then submit again). Anything else ends the stream.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::ReadbackTimeout { .. } | Self::RingFull(_))
    }
}
