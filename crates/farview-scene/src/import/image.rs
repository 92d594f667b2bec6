//! Texture images: bytes from a buffer view or URI, the format and size read from the header
//! before decoding (PNG and JPEG only), decoded texels capped over the whole model, then decoded
//! to RGBA8.
//!
//! Errors name the image only; the caller adds the texture and material that use it
//! ([`ImportError::for_texture`]).

use std::io::Cursor;

use crate::model::Texture;

use super::accessor::{view_buffer, view_range};
use super::error::{ImportError, ImportProblem, invalid, over};
use super::sandbox::load_uri;

/// The [`ImportLimits`](super::ImportLimits) bounds that images obey.
pub(super) struct ImageLimits {
    /// Largest encoded image (data URI or external file), in bytes.
    pub(super) max_bytes: u64,
    /// Most textures decoded for one model.
    pub(super) max_textures: usize,
    /// Largest side in pixels; decoded texels over the model are capped at `4 × max_dim²`.
    pub(super) max_dim: u32,
}

/// Decodes image `index` and appends it to `textures`, returning its slot; `None` when the image
/// is in a format the renderer does not take (the material is drawn without it).
pub(super) fn load_image(
    index: usize,
    doc: &gltf::Document,
    buffers: &[Vec<u8>],
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImageLimits,
    textures: &mut Vec<Texture>,
) -> Result<Option<usize>, ImportError> {
    let fail = |problem: ImportProblem| ImportError::Image {
        image: index,
        texture: None,
        material: None,
        problem,
    };
    let img = doc
        .as_json()
        .images
        .get(index)
        .ok_or_else(|| fail(invalid("does not exist")))?;
    let bytes = match (&img.buffer_view, &img.uri) {
        (Some(v), _) => {
            let view = doc.views().nth(v.value()).ok_or_else(|| {
                fail(invalid(format!(
                    "refers to bufferView {}, which does not exist",
                    v.value()
                )))
            })?;
            let (start, end) = view_range(&view, buffers)?;
            view_buffer(&view, buffers)?
                .get(start..end)
                .ok_or_else(|| fail(invalid("has a bufferView outside its buffer")))?
                .to_vec()
        }
        (None, Some(uri)) => load_uri(uri, resolve, limits.max_bytes, fail)?,
        (None, None) => return Err(fail(invalid("has neither uri nor bufferView"))),
    };
    let reader = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| fail(invalid(format!("cannot be read: {e}"))))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ if declared_png_or_jpeg(img) => {
            return Err(fail(invalid(format!(
                "is declared PNG/JPEG but its {} bytes are neither",
                bytes.len()
            ))));
        }
        other => {
            tracing::warn!(image = index, format = ?other, "image format not supported; material drawn without it");
            return Ok(None);
        }
    }
    over(
        "texture count",
        textures.len() as u64 + 1,
        limits.max_textures as u64,
    )
    .map_err(fail)?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| fail(invalid(format!("has an unreadable header: {e}"))))?;
    let max_dim = u64::from(limits.max_dim);
    over("width", u64::from(w), max_dim).map_err(fail)?;
    over("height", u64::from(h), max_dim).map_err(fail)?;
    let texels: u64 = textures
        .iter()
        .map(|t| u64::from(t.width) * u64::from(t.height))
        .sum();
    over(
        "decoded texels of the model with it",
        texels + u64::from(w) * u64::from(h),
        4 * max_dim * max_dim,
    )
    .map_err(fail)?;
    let decoded = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| fail(invalid(format!("cannot be read: {e}"))))?
        .decode()
        .map_err(|e| fail(invalid(format!("cannot be decoded: {e}"))))?
        .into_rgba8();
    textures.push(Texture {
        name: img.name.clone(),
        width: decoded.width(),
        height: decoded.height(),
        rgba8: decoded.into_raw(),
    });
    Ok(Some(textures.len() - 1))
}

/// True when the file says an image is PNG or JPEG (MIME type, data URI type or file extension),
/// so bytes in another format mean a corrupt image rather than an unsupported one.
fn declared_png_or_jpeg(img: &gltf::json::Image) -> bool {
    const MIME: [&str; 2] = ["image/png", "image/jpeg"];
    if img
        .mime_type
        .as_ref()
        .is_some_and(|m| MIME.contains(&m.0.as_str()))
    {
        return true;
    }
    let Some(uri) = img.uri.as_deref() else {
        return false;
    };
    if let Some(rest) = uri.strip_prefix("data:") {
        return MIME.iter().any(|m| rest.starts_with(m));
    }
    let path = uri
        .split(['?', '#'])
        .next()
        .unwrap_or(uri)
        .to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| path.ends_with(e))
}
