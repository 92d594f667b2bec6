//! The CPU side of an environment: an equirectangular HDR image decoded with bounded input.

use std::io::Read;
use std::path::Path;

use image::ImageDecoder;
use image::codecs::hdr::HdrDecoder;

use crate::RenderError;

/// The default environment: a synthetic gradient sky (128x64 RGBE), the same file the reference
/// renders with the Khronos glTF Sample Viewer use (`assets/environments/neutral_sky.hdr`).
pub const NEUTRAL_SKY_HDR: &[u8] =
    include_bytes!("../../../../assets/environments/neutral_sky.hdr");

/// Bounds on an environment file, checked before pixels are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvironmentLimits {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// Largest accepted width in texels.
    pub max_width: u32,
    /// Largest accepted height in texels.
    pub max_height: u32,
}

impl Default for EnvironmentLimits {
    /// 128 MiB, 8192x4096 texels. Decoding the largest image takes about 2 x 384 MiB at its peak
    /// (the `image` crate's RGB f32 buffer and ours).
    fn default() -> Self {
        Self {
            max_bytes: 128 << 20,
            max_width: 8192,
            max_height: 4096,
        }
    }
}

/// An equirectangular (latitude-longitude) environment in linear RGB radiance.
///
/// Texels are stored in file order: row 0 is the top row of a Radiance `-Y h +X w` file, which
/// is the upward direction (see the direction mapping in
/// `crates/farview-render/src/environment/mod.rs`). Every texel
/// is finite and non-negative.
#[derive(Clone, PartialEq)]
pub struct EnvironmentMap {
    width: u32,
    height: u32,
    texels: Vec<[f32; 3]>,
}

impl std::fmt::Debug for EnvironmentMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentMap")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl std::fmt::Display) -> RenderError {
    RenderError::Environment(what.to_string())
}

fn too_large(what: &'static str, got: u64, max: u64) -> RenderError {
    RenderError::EnvironmentTooLarge { what, got, max }
}

impl EnvironmentMap {
    /// Decodes a Radiance `.hdr` (RGBE, `-Y h +X w` orientation) file's bytes. Refuses input over
    /// `limits` (size first, then the header's dimensions, before the pixels are decoded), bad
    /// or truncated data, and non-finite or negative texels.
    pub fn from_hdr_bytes(bytes: &[u8], limits: &EnvironmentLimits) -> Result<Self, RenderError> {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if len > limits.max_bytes {
            return Err(too_large("file size in bytes", len, limits.max_bytes));
        }
        Self::decode(bytes, limits)
    }

    /// Reads and decodes a Radiance `.hdr` file, refusing one larger than `limits.max_bytes`
    /// before reading it (see [`Self::from_hdr_bytes`] for the other checks).
    pub fn load(path: &Path, limits: &EnvironmentLimits) -> Result<Self, RenderError> {
        let io = |e: std::io::Error| invalid(format_args!("{}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > limits.max_bytes {
            return Err(too_large("file size in bytes", len, limits.max_bytes));
        }
        // Read at most one byte past the limit, in case the file grew since the stat.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(limits.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_hdr_bytes(&bytes, limits)
    }

    /// The default environment, [`NEUTRAL_SKY_HDR`].
    pub fn neutral_sky() -> Self {
        // Decoding a checked-in asset cannot fail once its test passes; fall back to the same
        // grey the sky averages rather than panic.
        Self::from_hdr_bytes(NEUTRAL_SKY_HDR, &EnvironmentLimits::default())
            .unwrap_or_else(|_| Self::uniform([0.5; 3]))
    }

    /// A constant environment of radiance `rgb` (8x4 texels). Negative or NaN components become
    /// 0, infinite ones `f32::MAX`.
    pub fn uniform(rgb: [f32; 3]) -> Self {
        let c = rgb.map(|v| {
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, f32::MAX)
            }
        });
        Self {
            width: 8,
            height: 4,
            texels: vec![c; 32],
        }
    }

    /// An environment from linear RGB texels, rows top (up) to bottom, checked against `limits`
    /// and for finite non-negative values.
    pub fn from_texels(
        width: u32,
        height: u32,
        texels: Vec<[f32; 3]>,
        limits: &EnvironmentLimits,
    ) -> Result<Self, RenderError> {
        check_dimensions(width, height, limits)?;
        if texels.len() as u64 != u64::from(width) * u64::from(height) {
            return Err(invalid(format_args!(
                "{} texels for {width}x{height}",
                texels.len()
            )));
        }
        if let Some(i) = texels
            .iter()
            .position(|t| t.iter().any(|v| !v.is_finite() || *v < 0.0))
        {
            let (x, y) = (i as u64 % u64::from(width), i as u64 / u64::from(width));
            return Err(invalid(format_args!(
                "texel ({x}, {y}) is {:?}; radiance must be finite and non-negative",
                texels[i]
            )));
        }
        Ok(Self {
            width,
            height,
            texels,
        })
    }

    fn decode(bytes: &[u8], limits: &EnvironmentLimits) -> Result<Self, RenderError> {
        let decoder = HdrDecoder::new(bytes)
            .map_err(|e| invalid(format_args!("not a Radiance HDR image: {e}")))?;
        let (width, height) = decoder.dimensions();
        check_dimensions(width, height, limits)?;
        let count = width as usize * height as usize;
        let mut texels = vec![[0f32; 3]; count];
        decoder
            .read_image(bytemuck::cast_slice_mut(texels.as_mut_slice()))
            .map_err(|e| invalid(format_args!("corrupt Radiance HDR pixels: {e}")))?;
        Self::from_texels(width, height, texels, limits)
    }

    /// Width in texels (the full 360 degrees of longitude).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in texels (180 degrees of latitude, the top row up).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The texel at column `x`, row `y` (row 0 the top), or `None` outside the image.
    pub fn texel(&self, x: u32, y: u32) -> Option<[f32; 3]> {
        (x < self.width && y < self.height)
            .then(|| self.texels[y as usize * self.width as usize + x as usize])
    }

    /// All texels, rows top to bottom.
    pub fn texels(&self) -> &[[f32; 3]] {
        &self.texels
    }

    /// The mean of all texels (unweighted by solid angle).
    pub fn mean(&self) -> [f32; 3] {
        let mut sum = [0f64; 3];
        for t in &self.texels {
            for c in 0..3 {
                sum[c] += f64::from(t[c]);
            }
        }
        sum.map(|s| (s / self.texels.len().max(1) as f64) as f32)
    }
}

fn check_dimensions(
    width: u32,
    height: u32,
    limits: &EnvironmentLimits,
) -> Result<(), RenderError> {
    if width == 0 || height == 0 {
        return Err(invalid(format_args!("empty image ({width}x{height})")));
    }
    if width > limits.max_width {
        return Err(too_large(
            "width in texels",
            width.into(),
            limits.max_width.into(),
        ));
    }
    if height > limits.max_height {
        return Err(too_large(
            "height in texels",
            height.into(),
            limits.max_height.into(),
        ));
    }
    Ok(())
}
