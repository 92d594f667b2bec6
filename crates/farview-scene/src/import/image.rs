//! Texture images: bytes from a buffer view or URI, the format and size read from the header
//! before decoding (PNG, JPEG, WebP from `EXT_texture_webp`, and KTX2 with Basis Universal from
//! `KHR_texture_basisu`), decoded texels capped over the whole model, then decoded to RGBA8.
//!
//! KTX2 is transcoded to RGBA8 here, on the CPU, whatever the adapter: the scene crate holds no
//! GPU, and every renderer can upload RGBA8 (software rasterizers sample it fastest). The
//! container is kept beside it ([`Texture::basis`]): a renderer on an adapter that samples BC7,
//! ASTC or ETC2 transcodes it to that format instead.
//!
//! Errors name the image only; the caller adds the texture and material that use it
//! ([`ImportError::for_texture`]).

use std::io::Cursor;

use crate::model::Texture;

use super::Buffer;
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
    buffers: &[Buffer<'_>],
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
    if bytes.starts_with(&KTX2_MAGIC) {
        return load_ktx2(index, img, &bytes, limits, textures).map_err(fail);
    }
    let reader = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| fail(invalid(format!("cannot be read: {e}"))))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP) => {}
        _ if let Some(declared) = declared_format(img) => {
            return Err(fail(invalid(format!(
                "is declared {declared} but its {} bytes are not",
                bytes.len()
            ))));
        }
        other => {
            tracing::warn!(image = index, format = ?other, "image format not supported; material drawn without it");
            return Ok(None);
        }
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| fail(invalid(format!("has an unreadable header: {e}"))))?;
    reserve_texels(w, h, limits, textures).map_err(fail)?;
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
        basis: None,
    });
    Ok(Some(textures.len() - 1))
}

/// The 12-byte identifier every KTX2 file starts with.
const KTX2_MAGIC: [u8; 12] = *b"\xABKTX 20\xBB\r\n\x1A\n";

/// Checks a KTX2 file's level index (KTX 2.0 §3.9: from byte 80, per level its byte offset,
/// byte length and uncompressed byte length, u64 little-endian): at most 32 levels, each
/// level's data inside the file, and each uncompressed length no more than the level's 4x4
/// blocks at 16 bytes each (the most any Basis Universal payload takes) or its own stored
/// length.
fn check_ktx2_levels(bytes: &[u8], width: u32, height: u32) -> Result<(), ImportProblem> {
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let bad = |why: &str| invalid(format!("is a KTX2 file with {why}"));
    let levels = u32_at(40).ok_or_else(|| bad("a cut header"))?.max(1);
    if levels > 32 {
        return Err(bad(&format!("{levels} mip levels")));
    }
    for level in 0..levels {
        let at = 80 + level as usize * 24;
        let (Some(offset), Some(length), Some(uncompressed)) =
            (u64_at(at), u64_at(at + 8), u64_at(at + 16))
        else {
            return Err(bad("a cut level index"));
        };
        if offset.saturating_add(length) > bytes.len() as u64 {
            return Err(bad(&format!("level {level} outside the file")));
        }
        let (w, h) = ((width >> level).max(1), (height >> level).max(1));
        let blocks = u64::from(w.div_ceil(4)) * u64::from(h.div_ceil(4));
        if uncompressed > (blocks * 16).max(length) {
            return Err(bad(&format!(
                "level {level} declaring {uncompressed} bytes uncompressed for {w}x{h} pixels"
            )));
        }
    }
    Ok(())
}

/// Checks the texture count, the side limit and the model's decoded-texel cap for a `w × h`
/// image, before it is decoded.
fn reserve_texels(
    w: u32,
    h: u32,
    limits: &ImageLimits,
    textures: &[Texture],
) -> Result<(), ImportProblem> {
    over(
        "texture count",
        textures.len() as u64 + 1,
        limits.max_textures as u64,
    )?;
    let max_dim = u64::from(limits.max_dim);
    over("width", u64::from(w), max_dim)?;
    over("height", u64::from(h), max_dim)?;
    if w == 0 || h == 0 {
        return Err(invalid(format!("is {w}x{h} pixels")));
    }
    let texels: u64 = textures
        .iter()
        .map(|t| u64::from(t.width) * u64::from(t.height))
        .sum();
    over(
        "decoded texels of the model with it",
        texels + u64::from(w) * u64::from(h),
        4 * max_dim * max_dim,
    )
}

/// A KTX2 image (`KHR_texture_basisu`): its header is read and the size checked before level 0
/// is transcoded to RGBA8. The transcoder is pure Rust and checks every offset in the file, so a
/// hostile container fails with its error; levels below 0 are not read (mipmaps are generated
/// from level 0 like every other texture's).
fn load_ktx2(
    index: usize,
    img: &gltf::json::Image,
    bytes: &[u8],
    limits: &ImageLimits,
    textures: &mut Vec<Texture>,
) -> Result<Option<usize>, ImportProblem> {
    // The transcoder is a young pure-Rust port: a panic inside it on a hostile file is caught
    // and reported as a damaged image, like a decoding error.
    let panicked = || invalid("is a KTX2 file the transcoder could not handle (it panicked)");
    let ktx = std::panic::catch_unwind(|| basisu::Transcoder::new(bytes))
        .map_err(|_| panicked())?
        .map_err(|e| {
            invalid(format!(
                "is a KTX2 file without a Basis Universal payload the transcoder reads ({e:?})"
            ))
        })?;
    let (w, h) = ktx.base_dimensions();
    if ktx.is_video() || ktx.layer_count() > 1 || ktx.face_count() != 1 {
        tracing::warn!(
            image = index,
            "KTX2 video, array or cube texture not supported; the core source is used if any"
        );
        return Ok(None);
    }
    reserve_texels(w, h, limits, textures)?;
    // The transcoder inflates a Zstandard-supercompressed level into a buffer of the length
    // the file declares, before reading a byte of it: a hostile length is an allocation the
    // process cannot survive. Every level (a renderer may transcode them all) is checked
    // against what its blocks can hold first.
    check_ktx2_levels(bytes, w, h)?;
    let rgba8 = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ktx.transcode(0, basisu::TargetFormat::Rgba32, basisu::DecodeFlags::NONE)
    }))
    .map_err(|_| panicked())?
    .map_err(|e| invalid(format!("cannot be transcoded from KTX2 ({e:?})")))?;
    if rgba8.len() as u64 != u64::from(w) * u64::from(h) * 4 {
        return Err(invalid(format!(
            "transcoded to {} bytes for {w}x{h} pixels",
            rgba8.len()
        )));
    }
    textures.push(Texture {
        name: img.name.clone(),
        width: w,
        height: h,
        rgba8,
        basis: Some(bytes.into()),
    });
    Ok(Some(textures.len() - 1))
}

/// The format the file says an image is in (MIME type, data URI type or file extension), so
/// bytes in another format mean a corrupt image rather than an unsupported one.
fn declared_format(img: &gltf::json::Image) -> Option<&'static str> {
    const KNOWN: [(&str, &str, &[&str]); 4] = [
        ("image/png", "PNG", &[".png"]),
        ("image/jpeg", "JPEG", &[".jpg", ".jpeg"]),
        ("image/webp", "WebP", &[".webp"]),
        ("image/ktx2", "KTX2", &[".ktx2"]),
    ];
    if let Some(m) = img.mime_type.as_ref()
        && let Some((_, name, _)) = KNOWN.iter().find(|(mime, _, _)| *mime == m.0)
    {
        return Some(name);
    }
    let uri = img.uri.as_deref()?;
    if let Some(rest) = uri.strip_prefix("data:") {
        return KNOWN
            .iter()
            .find(|(mime, _, _)| rest.starts_with(mime))
            .map(|(_, name, _)| *name);
    }
    let path = uri
        .split(['?', '#'])
        .next()
        .unwrap_or(uri)
        .to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(_, _, exts)| exts.iter().any(|e| path.ends_with(e)))
        .map(|(_, name, _)| *name)
}
