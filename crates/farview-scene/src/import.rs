//! glTF 2.0 import: JSON `.gltf` (external or data-URI buffers and images) and binary `.glb`.
//!
//! Every file is untrusted. Before any attribute is read, each accessor's byte range is checked
//! against its buffer view and buffer with overflow-checked arithmetic, counts are checked against
//! [`ImportLimits`], and the node graph is checked for cycles and shared children. Attribute data
//! is read by our own bounds-checked reader (not the `gltf` crate's, which assumes valid input).
//! External URIs go through a resolver, so [`import_gltf`] touches no filesystem; [`import_file`]
//! supplies one that is sandboxed to the assets root.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use glam::{Mat4, Quat, Vec3};
use gltf::accessor::{DataType, Dimensions};
use gltf::mesh::Mode;

use crate::model::{Aabb, Material, Mesh, Model, ModelNode, Primitive, Texture, Transform};

/// Bounds checked before anything is allocated for a file.
#[derive(Debug, Clone)]
pub struct ImportLimits {
    /// Largest `.gltf`/`.glb` file, external buffer or image, in bytes.
    pub max_file_bytes: u64,
    /// Most elements in one accessor.
    pub max_accessor_count: u64,
    /// Largest texture side in pixels (checked from the image header, before decoding). Decoded
    /// texels over the whole model are also capped at `4 × max_texture_dim²` (1 GiB of RGBA8 at
    /// the default), so many large but well-compressed images cannot exhaust memory.
    pub max_texture_dim: u32,
    /// Most textures decoded for one model.
    pub max_textures: usize,
    /// Most nodes in one file.
    pub max_nodes: usize,
    /// Deepest node hierarchy.
    pub max_node_depth: usize,
    /// Most vertices over the whole model, counted after flat-normal expansion and before any
    /// attribute is read. Triangle-list indices over the model are capped at six times this (a
    /// closed mesh has about two triangles per vertex), so a file cannot reuse one small index
    /// accessor from many primitives to exhaust memory.
    pub max_total_vertices: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 256 << 20,
            max_accessor_count: 16_000_000,
            max_texture_dim: 8192,
            max_textures: 256,
            max_nodes: 100_000,
            max_node_depth: 256,
            max_total_vertices: 20_000_000,
        }
    }
}

/// Broad class of an import failure; the host maps it to a stable wire error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportErrorKind {
    /// The file (or a file it references) does not exist.
    NotFound,
    /// A path or URI escapes the assets root or uses a forbidden scheme.
    Forbidden,
    /// The file is not valid glTF, or its data is inconsistent.
    Malformed,
    /// The file needs something the importer does not support.
    Unsupported,
    /// The file exceeds an [`ImportLimits`] bound.
    LimitExceeded,
    /// Reading failed for another reason.
    Io,
    /// The caller cancelled it.
    Cancelled,
}

/// Why a model could not be imported. Messages name the offending item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// No file at that path (the model, or a buffer or image it references).
    #[error("file not found: {0}")]
    NotFound(String),
    /// The path or URI is not allowed.
    #[error("forbidden path '{path}': {reason}")]
    Forbidden {
        /// The path as given.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The file is not valid glTF or its contents are inconsistent.
    #[error("malformed glTF: {0}")]
    Malformed(String),
    /// A required extension or a data layout the importer does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A limit was exceeded.
    #[error("{what} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// What was measured.
        what: String,
        /// Its value.
        actual: u64,
        /// The limit.
        limit: u64,
    },
    /// The caller cancelled the import.
    #[error("import cancelled")]
    Cancelled,
    /// An I/O error other than not-found.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl ImportError {
    /// The error's class.
    pub fn kind(&self) -> ImportErrorKind {
        match self {
            Self::NotFound(_) => ImportErrorKind::NotFound,
            Self::Forbidden { .. } => ImportErrorKind::Forbidden,
            Self::Malformed(_) => ImportErrorKind::Malformed,
            Self::Unsupported(_) => ImportErrorKind::Unsupported,
            Self::LimitExceeded { .. } => ImportErrorKind::LimitExceeded,
            Self::Io { .. } => ImportErrorKind::Io,
            Self::Cancelled => ImportErrorKind::Cancelled,
        }
    }
}

fn malformed(msg: impl Into<String>) -> ImportError {
    ImportError::Malformed(msg.into())
}

fn limit(what: impl Into<String>, actual: u64, limit: u64) -> Result<(), ImportError> {
    if actual > limit {
        Err(ImportError::LimitExceeded {
            what: what.into(),
            actual,
            limit,
        })
    } else {
        Ok(())
    }
}

/// Extensions the importer handles (as required or used).
const SUPPORTED_EXTENSIONS: &[&str] = &[
    "KHR_mesh_quantization",
    "KHR_texture_transform",
    "KHR_materials_emissive_strength",
    "KHR_lights_punctual",
];

// ---------------------------------------------------------------------------------------------
// Sandboxed file access

fn forbidden(path: &str, reason: &'static str) -> ImportError {
    ImportError::Forbidden {
        path: path.to_owned(),
        reason,
    }
}

/// Resolves `rel` against `base` and insists the real path stays under `root` (canonical).
fn resolve_under(root: &Path, base: &Path, rel: &str) -> Result<PathBuf, ImportError> {
    if rel.is_empty() {
        return Err(ImportError::NotFound("(empty path)".into()));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(forbidden(rel, "contains a NUL or backslash"));
    }
    if has_scheme(rel) {
        return Err(forbidden(
            rel,
            "URI schemes other than data: are not allowed",
        ));
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::ParentDir => return Err(forbidden(rel, "'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(forbidden(rel, "absolute paths are not allowed"));
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let joined = base.join(p);
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NotFound(rel.to_owned()),
        _ => ImportError::Io {
            path: rel.to_owned(),
            source: e,
        },
    })?;
    if !real.starts_with(root) {
        return Err(forbidden(rel, "resolves outside the assets root"));
    }
    if !real.is_file() {
        return Err(ImportError::NotFound(format!("{rel} (not a file)")));
    }
    Ok(real)
}

fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Reads a file whose size (from the open handle's metadata) is within `max`. The read itself is
/// capped too, so a file that grows after the check cannot push past the limit.
fn read_limited(path: &Path, shown: &str, max: u64) -> Result<Vec<u8>, ImportError> {
    use std::io::Read;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NotFound(shown.to_owned()),
        _ => ImportError::Io {
            path: shown.to_owned(),
            source: e,
        },
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    limit(format!("size of {shown}"), len, max)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    limit(format!("size of {shown}"), bytes.len() as u64, max)?;
    Ok(bytes)
}

/// Imports `relative` (`/`-separated, relative to `assets_root`) from disk, sandboxed to the root.
pub fn import_file(
    assets_root: &Path,
    relative: &str,
    limits: &ImportLimits,
) -> Result<Model, ImportError> {
    import_file_with(assets_root, relative, limits, &mut |_| true)
}

/// [`import_file`] with progress: `progress` gets 0–100 as the import advances and cancels it
/// by returning `false`.
pub fn import_file_with(
    assets_root: &Path,
    relative: &str,
    limits: &ImportLimits,
    progress: &mut dyn FnMut(u8) -> bool,
) -> Result<Model, ImportError> {
    let root = assets_root.canonicalize().map_err(|e| ImportError::Io {
        path: assets_root.display().to_string(),
        source: e,
    })?;
    let path = resolve_under(&root, &root, relative)?;
    let bytes = read_limited(&path, relative, limits.max_file_bytes)?;
    let dir = path
        .parent()
        .map_or_else(|| root.clone(), Path::to_path_buf);
    let mut resolve = |uri: &str| {
        let p = resolve_under(&root, &dir, uri)?;
        read_limited(&p, uri, limits.max_file_bytes)
    };
    if !progress(5) {
        return Err(ImportError::Cancelled);
    }
    import_gltf_with(&bytes, &mut resolve, limits, progress)
}

fn percent_decode(s: &str) -> Result<String, ImportError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| malformed(format!("bad percent escape in URI '{s}'")))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| malformed(format!("URI '{s}' is not UTF-8 after percent-decoding")))
}

fn load_uri(
    uri: &str,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    max: u64,
) -> Result<Vec<u8>, ImportError> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let (_, payload) = rest
            .split_once(";base64,")
            .ok_or_else(|| malformed("data URI is not base64"))?;
        limit("data URI size", payload.len() as u64 / 4 * 3, max)?;
        return base64::engine::general_purpose::STANDARD
            .decode(payload.trim_end())
            .map_err(|e| malformed(format!("bad base64 in data URI: {e}")));
    }
    resolve(&percent_decode(uri)?)
}

// ---------------------------------------------------------------------------------------------
// Accessors

fn component_size(t: DataType) -> usize {
    match t {
        DataType::I8 | DataType::U8 => 1,
        DataType::I16 | DataType::U16 => 2,
        DataType::U32 | DataType::F32 => 4,
    }
}

fn view_range(
    view: &gltf::buffer::View<'_>,
    buffers: &[Vec<u8>],
) -> Result<(usize, usize), ImportError> {
    let buf = buffers
        .get(view.buffer().index())
        .ok_or_else(|| malformed("buffer view references a missing buffer"))?;
    let end = view
        .offset()
        .checked_add(view.length())
        .ok_or_else(|| malformed("buffer view range overflows"))?;
    if end > buf.len() {
        return Err(malformed(format!(
            "bufferView {} spans bytes {}..{end} of buffer {} which has {} bytes",
            view.index(),
            view.offset(),
            view.buffer().index(),
            buf.len()
        )));
    }
    if let Some(s) = view.stride()
        && (!(4..=252).contains(&s) || s % 4 != 0)
    {
        return Err(malformed(format!(
            "bufferView {} has byteStride {s} (must be 4..=252, a multiple of 4)",
            view.index()
        )));
    }
    Ok((view.offset(), end))
}

/// Checks that every byte an accessor reads lies inside its view and buffer.
fn check_accessor(
    acc: &gltf::Accessor<'_>,
    buffers: &[Vec<u8>],
    limits: &ImportLimits,
) -> Result<(), ImportError> {
    let i = acc.index();
    let count = acc.count();
    limit(
        format!("accessor {i} count"),
        count as u64,
        limits.max_accessor_count,
    )?;
    let elem = acc.size();
    let in_view = |view: &gltf::buffer::View<'_>,
                   offset: usize,
                   stride: usize,
                   size: usize,
                   n: usize,
                   what: &str| {
        let (start, end) = view_range(view, buffers)?;
        if n == 0 {
            return Ok(());
        }
        let need = stride
            .checked_mul(n - 1)
            .and_then(|x| x.checked_add(size))
            .and_then(|x| x.checked_add(offset))
            .ok_or_else(|| malformed(format!("accessor {i} {what} range overflows")))?;
        if need > end - start {
            return Err(malformed(format!(
                "accessor {i} {what} needs {need} bytes of bufferView {} which has {}",
                view.index(),
                end - start
            )));
        }
        Ok(())
    };
    if let Some(view) = acc.view() {
        let stride = view.stride().unwrap_or(elem);
        if stride < elem {
            return Err(malformed(format!(
                "accessor {i}: stride {stride} is smaller than its element size {elem}"
            )));
        }
        in_view(&view, acc.offset(), stride, elem, count, "data")?;
    }
    if let Some(sparse) = acc.sparse() {
        let n = sparse.count();
        if n > count {
            return Err(malformed(format!(
                "accessor {i}: {n} sparse values for {count} elements"
            )));
        }
        let isz = sparse_index_size(&sparse);
        in_view(
            &sparse.indices().view(),
            sparse.indices().offset(),
            isz,
            isz,
            n,
            "sparse indices",
        )?;
        in_view(
            &sparse.values().view(),
            sparse.values().offset(),
            elem,
            elem,
            n,
            "sparse values",
        )?;
    }
    Ok(())
}

fn read_component(
    buf: &[u8],
    off: usize,
    t: DataType,
    normalized: bool,
) -> Result<f32, ImportError> {
    let b = off
        .checked_add(component_size(t))
        .and_then(|end| buf.get(off..end))
        .ok_or_else(|| malformed("accessor read out of bounds"))?;
    Ok(match t {
        DataType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        DataType::U8 if normalized => f32::from(b[0]) / 255.0,
        DataType::U8 => f32::from(b[0]),
        DataType::I8 if normalized => (f32::from(b[0] as i8) / 127.0).max(-1.0),
        DataType::I8 => f32::from(b[0] as i8),
        DataType::U16 if normalized => f32::from(u16::from_le_bytes([b[0], b[1]])) / 65535.0,
        DataType::U16 => f32::from(u16::from_le_bytes([b[0], b[1]])),
        DataType::I16 if normalized => {
            (f32::from(i16::from_le_bytes([b[0], b[1]])) / 32767.0).max(-1.0)
        }
        DataType::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
        DataType::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
    })
}

fn sparse_index_size(sparse: &gltf::accessor::sparse::Sparse<'_>) -> usize {
    match sparse.indices().index_type() {
        gltf::accessor::sparse::IndexType::U8 => 1,
        gltf::accessor::sparse::IndexType::U16 => 2,
        gltf::accessor::sparse::IndexType::U32 => 4,
    }
}

/// Reads one unsigned integer of `size` (1, 2 or 4) bytes.
fn read_index(buf: &[u8], off: usize, size: usize) -> Result<usize, ImportError> {
    let b = off
        .checked_add(size)
        .and_then(|end| buf.get(off..end))
        .ok_or_else(|| malformed("index read out of bounds"))?;
    Ok(match size {
        1 => usize::from(b[0]),
        2 => usize::from(u16::from_le_bytes([b[0], b[1]])),
        _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
    })
}

/// Reads an accessor (already checked) as `N`-component f32 vectors, applying sparse overrides.
fn read_vec<const N: usize>(
    acc: &gltf::Accessor<'_>,
    buffers: &[Vec<u8>],
) -> Result<Vec<[f32; N]>, ImportError> {
    if acc.dimensions().multiplicity() != N {
        return Err(malformed(format!(
            "accessor {} has {:?} elements, expected {N} components",
            acc.index(),
            acc.dimensions()
        )));
    }
    let (t, norm, count) = (acc.data_type(), acc.normalized(), acc.count());
    let cs = component_size(t);
    let mut out = vec![[0f32; N]; count];
    let read_into = |out: &mut [f32; N], buf: &[u8], off: usize| -> Result<(), ImportError> {
        for (c, v) in out.iter_mut().enumerate() {
            *v = read_component(buf, off + c * cs, t, norm)?;
        }
        Ok(())
    };
    if let Some(view) = acc.view() {
        let buf = &buffers[view.buffer().index()];
        let stride = view.stride().unwrap_or(acc.size());
        let base = view.offset() + acc.offset();
        for (i, o) in out.iter_mut().enumerate() {
            read_into(o, buf, base + i * stride)?;
        }
    }
    if let Some(sparse) = acc.sparse() {
        let iv = sparse.indices().view();
        let ibuf = &buffers[iv.buffer().index()];
        let isz = sparse_index_size(&sparse);
        let vv = sparse.values().view();
        let vbuf = &buffers[vv.buffer().index()];
        for k in 0..sparse.count() {
            let idx = read_index(ibuf, iv.offset() + sparse.indices().offset() + k * isz, isz)?;
            let slot = out.get_mut(idx).ok_or_else(|| {
                malformed(format!(
                    "accessor {}: sparse index {idx} out of range",
                    acc.index()
                ))
            })?;
            read_into(
                slot,
                vbuf,
                vv.offset() + sparse.values().offset() + k * acc.size(),
            )?;
        }
    }
    Ok(out)
}

fn read_indices(
    acc: &gltf::Accessor<'_>,
    buffers: &[Vec<u8>],
    vertices: usize,
) -> Result<Vec<u32>, ImportError> {
    if acc.dimensions() != Dimensions::Scalar
        || !matches!(
            acc.data_type(),
            DataType::U8 | DataType::U16 | DataType::U32
        )
    {
        return Err(malformed(format!(
            "index accessor {} must be unsigned scalar",
            acc.index()
        )));
    }
    // Read through the float path only for u8/u16; u32 must stay exact.
    let (t, count) = (acc.data_type(), acc.count());
    let cs = component_size(t);
    let mut out = Vec::with_capacity(count);
    if let Some(view) = acc.view() {
        let buf = &buffers[view.buffer().index()];
        let stride = view.stride().unwrap_or(cs);
        let base = view.offset() + acc.offset();
        for i in 0..count {
            out.push(read_index(buf, base + i * stride, cs)? as u32);
        }
    } else {
        out.resize(count, 0);
    }
    if let Some(sparse) = acc.sparse() {
        let (iv, vv) = (sparse.indices().view(), sparse.values().view());
        let (ibuf, vbuf) = (&buffers[iv.buffer().index()], &buffers[vv.buffer().index()]);
        let isz = sparse_index_size(&sparse);
        let ibase = iv.offset() + sparse.indices().offset();
        let vbase = vv.offset() + sparse.values().offset();
        for k in 0..sparse.count() {
            let idx = read_index(ibuf, ibase + k * isz, isz)?;
            let value = read_index(vbuf, vbase + k * cs, cs)?;
            let slot = out.get_mut(idx).ok_or_else(|| {
                malformed(format!(
                    "accessor {}: sparse index {idx} out of range",
                    acc.index()
                ))
            })?;
            *slot = value as u32;
        }
    }
    if let Some((i, bad)) = out
        .iter()
        .enumerate()
        .find(|(_, v)| **v as usize >= vertices)
    {
        return Err(malformed(format!(
            "index {i} of accessor {} is {bad}, past the {vertices} vertices",
            acc.index()
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Import

/// Imports a `.gltf` or `.glb` from bytes. `resolve` loads an external (relative, percent-decoded)
/// URI; data URIs are decoded here. No filesystem access of its own.
pub fn import_gltf(
    bytes: &[u8],
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImportLimits,
) -> Result<Model, ImportError> {
    import_gltf_with(bytes, resolve, limits, &mut |_| true)
}

/// [`import_gltf`] with progress reports (0–100) and cancellation (`progress` returns `false`).
pub fn import_gltf_with(
    bytes: &[u8],
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImportLimits,
    progress: &mut dyn FnMut(u8) -> bool,
) -> Result<Model, ImportError> {
    let mut step = |p: u8| {
        if progress(p) {
            Ok(())
        } else {
            Err(ImportError::Cancelled)
        }
    };
    limit("file size", bytes.len() as u64, limits.max_file_bytes)?;
    if bytes.is_empty() {
        return Err(malformed("empty file"));
    }
    check_glb_header(bytes)?;
    let depth = json_depth(json_part(bytes));
    limit("JSON nesting depth", depth as u64, MAX_JSON_DEPTH as u64)?;
    let gltf =
        gltf::Gltf::from_slice_without_validation(bytes).map_err(|e| malformed(e.to_string()))?;
    let doc = &gltf.document;
    let json = doc.as_json();
    let major = json.asset.version.split('.').next().unwrap_or("");
    if major != "2" {
        return Err(ImportError::Unsupported(format!(
            "glTF version {} (only 2.x)",
            json.asset.version
        )));
    }
    for ext in doc.extensions_required() {
        if !SUPPORTED_EXTENSIONS.contains(&ext) {
            return Err(ImportError::Unsupported(format!(
                "required extension {ext}"
            )));
        }
    }
    // The gltf crate flags extensions it does not know (e.g. KHR_mesh_quantization) as invalid;
    // we decided on required extensions above, so only the other findings count.
    // gltf-json's own validation indexes the POSITION accessor without a bounds check.
    for (m, mesh) in json.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            let pos = prim.attributes.get(&gltf::json::validation::Checked::Valid(
                gltf::Semantic::Positions,
            ));
            if let Some(i) = pos
                && i.value() >= json.accessors.len()
            {
                return Err(malformed(format!(
                    "mesh {m} primitive {p}: POSITION accessor {} does not exist",
                    i.value()
                )));
            }
        }
    }
    let mut invalid = Vec::new();
    {
        use gltf::json::validation::Validate;
        json.validate(json, gltf::json::Path::new, &mut |path, e| {
            let path = path().0;
            if !path.starts_with("extensionsRequired")
                && !path.starts_with("extensionsUsed")
                && invalid.len() < 8
            {
                invalid.push(format!("{path}: {e}"));
            }
        });
    }
    if !invalid.is_empty() {
        return Err(malformed(format!("invalid glTF: {}", invalid.join("; "))));
    }
    let mut ignored: Vec<String> = doc
        .extensions_used()
        .filter(|e| !SUPPORTED_EXTENSIONS.contains(e))
        .map(str::to_owned)
        .collect();
    ignored.sort();
    ignored.dedup();
    limit(
        "node count",
        json.nodes.len() as u64,
        limits.max_nodes as u64,
    )?;

    step(10)?;
    // Buffers.
    let mut buffers = Vec::with_capacity(json.buffers.len());
    for b in doc.buffers() {
        let data = match b.source() {
            gltf::buffer::Source::Bin => gltf.blob.clone().ok_or_else(|| {
                malformed(format!(
                    "buffer {} refers to a GLB binary chunk the file does not have",
                    b.index()
                ))
            })?,
            gltf::buffer::Source::Uri(uri) => load_uri(uri, resolve, limits.max_file_bytes)?,
        };
        if data.len() < b.length() {
            return Err(malformed(format!(
                "buffer {} declares {} bytes but holds {}",
                b.index(),
                b.length(),
                data.len()
            )));
        }
        buffers.push(data);
    }
    for view in doc.views() {
        view_range(&view, &buffers)?;
    }
    for acc in doc.accessors() {
        check_accessor(&acc, &buffers, limits)?;
    }

    step(25)?;
    // Materials and the textures they use.
    let material_count = json.materials.len().max(1);
    let mut textures = Vec::new();
    let mut image_slots: HashMap<usize, Option<usize>> = HashMap::new();
    let mut materials = Vec::with_capacity(json.materials.len());
    for (i, m) in doc.materials().enumerate() {
        step(25 + (35 * i / material_count) as u8)?;
        let pbr = m.pbr_metallic_roughness();
        let (tex_coord, uv_transform) = pbr
            .base_color_texture()
            .map_or((0, crate::model::UV_IDENTITY), |info| uv_transform(&info));
        let base_color_texture = match pbr.base_color_texture() {
            Some(info) => {
                let image = info.texture().source().index();
                match image_slots.get(&image) {
                    Some(slot) => *slot,
                    None => {
                        let slot =
                            load_image(image, doc, &buffers, resolve, limits, &mut textures)?;
                        image_slots.insert(image, slot);
                        slot
                    }
                }
            }
            None => None,
        };
        let strength = m.emissive_strength().unwrap_or(1.0);
        let e = m.emissive_factor();
        materials.push(Material {
            name: m.name().map(str::to_owned),
            base_color_factor: pbr.base_color_factor(),
            base_color_texture,
            metallic_factor: pbr.metallic_factor(),
            roughness_factor: pbr.roughness_factor(),
            emissive_factor: [e[0] * strength, e[1] * strength, e[2] * strength],
            double_sided: m.double_sided(),
            alpha_mode: match m.alpha_mode() {
                gltf::material::AlphaMode::Opaque => crate::model::AlphaMode::Opaque,
                gltf::material::AlphaMode::Mask => crate::model::AlphaMode::Mask,
                gltf::material::AlphaMode::Blend => crate::model::AlphaMode::Blend,
            },
            alpha_cutoff: m
                .alpha_cutoff()
                .filter(|c| c.is_finite())
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
            base_color_tex_coord: tex_coord,
            base_color_uv_transform: uv_transform,
        });
    }

    // Meshes.
    let mut budget = Budget {
        vertices: 0,
        indices: 0,
        max_vertices: limits.max_total_vertices,
        max_indices: limits.max_total_vertices.saturating_mul(6),
    };
    let mut meshes = Vec::with_capacity(json.meshes.len());
    let mesh_count = json.meshes.len().max(1);
    let mut extras = crate::model::ModelExtras::default();
    for (i, mesh) in doc.meshes().enumerate() {
        step(60 + (35 * i / mesh_count) as u8)?;
        let mut primitives = Vec::new();
        for prim in mesh.primitives() {
            extras.morph_targets = extras
                .morph_targets
                .saturating_add(prim.morph_targets().len() as u32);
            match import_primitive(&mesh, &prim, &buffers, &mut budget)? {
                Some(p) => primitives.push(p),
                None if extras.warnings.len() < 32 => extras.warnings.push(format!(
                    "mesh {} primitive {}: {:?} primitives are not drawn",
                    mesh.index(),
                    prim.index(),
                    prim.mode()
                )),
                None => {}
            }
        }
        meshes.push(Mesh {
            name: mesh.name().map(str::to_owned),
            primitives,
        });
    }

    // Nodes and hierarchy.
    let mut nodes = Vec::with_capacity(json.nodes.len());
    let mut parent: Vec<Option<usize>> = vec![None; json.nodes.len()];
    for (i, (n, jn)) in doc.nodes().zip(&json.nodes).enumerate() {
        if jn.matrix.is_some()
            && (jn.translation.is_some() || jn.rotation.is_some() || jn.scale.is_some())
        {
            return Err(malformed(format!(
                "node {i} has both a matrix and TRS properties"
            )));
        }
        let local = node_transform(&n).ok_or_else(|| {
            malformed(format!("node {i} has a non-finite or degenerate transform"))
        })?;
        let children: Vec<usize> = n.children().map(|c| c.index()).collect();
        for &c in &children {
            if c == i {
                return Err(malformed(format!("node {i} lists itself as a child")));
            }
            match parent.get_mut(c) {
                Some(slot @ None) => *slot = Some(i),
                Some(Some(p)) => {
                    return Err(malformed(format!("node {c} has two parents ({p} and {i})")));
                }
                None => return Err(malformed(format!("node {i} has missing child {c}"))),
            }
        }
        nodes.push(ModelNode {
            name: n.name().map(str::to_owned),
            local,
            mesh: n.mesh().map(|m| m.index()),
            children,
        });
    }
    // Walk from every parentless node; anything not reached sits on a cycle.
    let mut depth = vec![usize::MAX; nodes.len()];
    let mut stack: Vec<(usize, usize)> = (0..nodes.len())
        .filter(|&i| parent[i].is_none())
        .map(|i| (i, 1))
        .collect();
    while let Some((i, d)) = stack.pop() {
        limit("node depth", d as u64, limits.max_node_depth as u64)?;
        depth[i] = d;
        stack.extend(nodes[i].children.iter().map(|&c| (c, d + 1)));
    }
    if let Some(i) = depth.iter().position(|&d| d == usize::MAX) {
        return Err(malformed(format!("node {i} is part of a cycle")));
    }
    let roots: Vec<usize> = match doc.default_scene().or_else(|| doc.scenes().next()) {
        Some(scene) => scene
            .nodes()
            .map(|n| n.index())
            .filter(|&i| parent[i].is_none())
            .collect(),
        None => (0..nodes.len()).filter(|&i| parent[i].is_none()).collect(),
    };

    extras.animations = doc
        .animations()
        .map(|a| {
            a.name()
                .map_or_else(|| format!("animation {}", a.index()), str::to_owned)
        })
        .take(1024)
        .collect();
    extras.skins = json.skins.len() as u32;
    extras.cameras = json.cameras.len() as u32;
    extras.lights = import_lights(doc);
    step(100)?;
    Ok(Model {
        meshes,
        materials,
        textures,
        nodes,
        roots,
        ignored_extensions: ignored,
        extras,
    })
}

/// The UV set and `KHR_texture_transform` of a texture reference, as a 2x3 affine matrix
/// (translation x rotation x scale, as the extension's reference shader composes them). Only
/// sets 0 and 1 are imported; others fall back to 0.
fn uv_transform(info: &gltf::texture::Info<'_>) -> (u32, [[f32; 3]; 2]) {
    let mut set = info.tex_coord();
    let mut m = crate::model::UV_IDENTITY;
    if let Some(t) = info.texture_transform() {
        if let Some(c) = t.tex_coord() {
            set = c;
        }
        let [ox, oy] = t.offset();
        let [sx, sy] = t.scale();
        let r = t.rotation();
        let (sin, cos) = r.sin_cos();
        // The ratified README's column-major rotation mat3(cos, sin, 0, -sin, cos, 0, ...), as
        // rows of T * R * S.
        let candidate = [[cos * sx, -sin * sy, ox], [sin * sx, cos * sy, oy]];
        if candidate.iter().flatten().all(|v| v.is_finite()) {
            m = candidate;
        }
    }
    (if set <= 1 { set } else { 0 }, m)
}

/// `KHR_lights_punctual` lights placed on nodes; values out of range are clamped, not refused
/// (a light is decoration, not a reason to fail the model).
fn import_lights(doc: &gltf::Document) -> Vec<(usize, crate::Light)> {
    use gltf::khr_lights_punctual::Kind;
    let mut out = Vec::new();
    for node in doc.nodes() {
        let Some(l) = node.light() else { continue };
        let kind = match l.kind() {
            Kind::Directional => crate::LightKind::Directional,
            Kind::Point => crate::LightKind::Point,
            Kind::Spot {
                inner_cone_angle,
                outer_cone_angle,
            } => {
                let outer = outer_cone_angle.clamp(1e-3, std::f32::consts::FRAC_PI_2);
                crate::LightKind::Spot {
                    inner_cone: inner_cone_angle.clamp(0.0, outer * 0.999),
                    outer_cone: outer,
                }
            }
        };
        let c = l.color();
        let light = crate::Light {
            kind,
            color: c.map(|v| {
                if v.is_finite() {
                    v.clamp(0.0, 1.0)
                } else {
                    1.0
                }
            }),
            intensity: if l.intensity().is_finite() {
                l.intensity().clamp(0.0, 1e6)
            } else {
                1.0
            },
            position: Vec3::ZERO,
            direction: Vec3::NEG_Z,
            range: l.range().filter(|r| r.is_finite() && *r > 0.0),
        };
        out.push((node.index(), light));
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// The GLB container's lengths, checked before the gltf crate reads them (it subtracts the
/// header size from the declared length without a check: found by `tests/fuzz_import.rs`).
fn check_glb_header(bytes: &[u8]) -> Result<(), ImportError> {
    if !bytes.starts_with(b"glTF") {
        return Ok(());
    }
    let word = |at: usize| -> Option<u64> {
        let b = bytes.get(at..at + 4)?;
        Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let declared = word(8).ok_or_else(|| malformed("GLB shorter than its 12-byte header"))?;
    if declared < 20 || declared > bytes.len() as u64 {
        return Err(malformed(format!(
            "GLB declares {declared} bytes but the file has {} (and at least 20 are needed)",
            bytes.len()
        )));
    }
    let json_len = word(12).ok_or_else(|| malformed("GLB has no JSON chunk header"))?;
    if json_len > declared - 20 {
        return Err(malformed(format!(
            "GLB JSON chunk of {json_len} bytes does not fit in {declared}"
        )));
    }
    Ok(())
}

/// Deepest JSON nesting accepted; real glTF needs about ten. Checked before parsing so a hostile
/// file cannot exhaust the parser's stack.
const MAX_JSON_DEPTH: usize = 64;

/// The JSON text of a `.gltf`, or the JSON chunk of a `.glb` (best effort; the parser validates).
fn json_part(bytes: &[u8]) -> &[u8] {
    if bytes.starts_with(b"glTF") {
        let len = bytes
            .get(12..16)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        bytes
            .get(20..20usize.saturating_add(len))
            .unwrap_or(bytes.get(20..).unwrap_or(&[]))
    } else {
        bytes
    }
}

/// Maximum nesting of arrays and objects, ignoring brackets inside strings.
fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn node_transform(n: &gltf::Node<'_>) -> Option<Transform> {
    match n.transform() {
        gltf::scene::Transform::Matrix { matrix } => {
            Transform::from_matrix(Mat4::from_cols_array_2d(&matrix))
        }
        gltf::scene::Transform::Decomposed {
            translation,
            rotation,
            scale,
        } => {
            let q = Quat::from_array(rotation);
            if !(q.is_finite() && q.length_squared() > 1e-12) {
                return None;
            }
            let t = Transform {
                translation: Vec3::from_array(translation),
                rotation: q.normalize(),
                scale: Vec3::from_array(scale),
            };
            t.is_finite().then_some(t)
        }
    }
}

/// Vertices and triangle-list indices the model's primitives will hold, reserved before reading.
struct Budget {
    vertices: u64,
    indices: u64,
    max_vertices: u64,
    max_indices: u64,
}

impl Budget {
    fn take(&mut self, vertices: u64, indices: u64) -> Result<(), ImportError> {
        self.vertices = self.vertices.saturating_add(vertices);
        limit("total vertices", self.vertices, self.max_vertices)?;
        self.indices = self.indices.saturating_add(indices);
        limit("total triangle indices", self.indices, self.max_indices)
    }
}

fn import_primitive(
    mesh: &gltf::Mesh<'_>,
    prim: &gltf::Primitive<'_>,
    buffers: &[Vec<u8>],
    budget: &mut Budget,
) -> Result<Option<Primitive>, ImportError> {
    let mode = prim.mode();
    if !matches!(
        mode,
        Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
    ) {
        tracing::warn!(
            mesh = mesh.index(),
            primitive = prim.index(),
            ?mode,
            "points and lines are not rendered; primitive skipped"
        );
        return Ok(None);
    }
    let pos_acc = prim.get(&gltf::Semantic::Positions).ok_or_else(|| {
        malformed(format!(
            "mesh {} primitive {} has no POSITION",
            mesh.index(),
            prim.index()
        ))
    })?;
    // Reserve what this primitive will hold before reading anything: accessors are shared, so
    // per-accessor limits alone do not bound the model.
    let raw_count = prim.indices().map_or(pos_acc.count(), |a| a.count()) as u64;
    let out_indices = match mode {
        Mode::Triangles => raw_count / 3 * 3,
        _ => raw_count.saturating_sub(2).saturating_mul(3),
    };
    let out_vertices = if prim.get(&gltf::Semantic::Normals).is_some() {
        pos_acc.count() as u64
    } else {
        out_indices.max(pos_acc.count() as u64)
    };
    budget.take(out_vertices, out_indices)?;
    let positions: Vec<[f32; 3]> = read_vec::<3>(&pos_acc, buffers)?;
    if positions.iter().flatten().any(|v| !v.is_finite()) {
        return Err(malformed(format!(
            "mesh {} has non-finite positions",
            mesh.index()
        )));
    }
    let n = positions.len();
    let mut normals = match prim.get(&gltf::Semantic::Normals) {
        Some(a) => Some(read_vec::<3>(&a, buffers)?),
        None => None,
    };
    let mut uvs = match prim.get(&gltf::Semantic::TexCoords(0)) {
        Some(a) => read_vec::<2>(&a, buffers)?,
        None => vec![[0.0; 2]; n],
    };
    let mut uvs1 = match prim.get(&gltf::Semantic::TexCoords(1)) {
        Some(a) => read_vec::<2>(&a, buffers)?,
        None => Vec::new(),
    };
    let mut colors: Vec<[f32; 4]> = match prim.get(&gltf::Semantic::Colors(0)) {
        Some(a) if a.dimensions() == Dimensions::Vec3 => read_vec::<3>(&a, buffers)?
            .into_iter()
            .map(|[r, g, b]| [r, g, b, 1.0])
            .collect(),
        Some(a) => read_vec::<4>(&a, buffers)?,
        None => Vec::new(),
    };
    if normals.as_ref().is_some_and(|v| v.len() != n)
        || uvs.len() != n
        || (!uvs1.is_empty() && uvs1.len() != n)
        || (!colors.is_empty() && colors.len() != n)
    {
        return Err(malformed(format!(
            "mesh {} attributes disagree on vertex count",
            mesh.index()
        )));
    }
    let raw = match prim.indices() {
        Some(a) => read_indices(&a, buffers, n)?,
        None => (0..n as u32).collect(),
    };
    let mut indices = match mode {
        Mode::TriangleStrip => (2..raw.len())
            .flat_map(|i| {
                if i % 2 == 0 {
                    [raw[i - 2], raw[i - 1], raw[i]]
                } else {
                    [raw[i - 1], raw[i - 2], raw[i]]
                }
            })
            .collect(),
        Mode::TriangleFan => (2..raw.len())
            .flat_map(|i| [raw[0], raw[i - 1], raw[i]])
            .collect(),
        _ => {
            let mut v = raw;
            v.truncate(v.len() / 3 * 3);
            v
        }
    };
    let mut positions = positions;
    if normals.is_none() {
        // Flat normals: each triangle gets its own three vertices with the face normal.
        let (mut p2, mut n2, mut u2) = (
            Vec::with_capacity(indices.len()),
            Vec::with_capacity(indices.len()),
            Vec::with_capacity(indices.len()),
        );
        let mut u2b = Vec::with_capacity(if uvs1.is_empty() { 0 } else { indices.len() });
        let mut c2 = Vec::with_capacity(if colors.is_empty() { 0 } else { indices.len() });
        for tri in indices.chunks_exact(3) {
            let [a, b, c] =
                [tri[0], tri[1], tri[2]].map(|i| Vec3::from_array(positions[i as usize]));
            let normal = (b - a).cross(c - a).normalize_or(Vec3::Z).to_array();
            for &i in tri {
                p2.push(positions[i as usize]);
                n2.push(normal);
                u2.push(uvs[i as usize]);
                if let Some(u) = uvs1.get(i as usize) {
                    u2b.push(*u);
                }
                if let Some(c) = colors.get(i as usize) {
                    c2.push(*c);
                }
            }
        }
        indices = (0..p2.len() as u32).collect();
        positions = p2;
        uvs = u2;
        uvs1 = u2b;
        colors = c2;
        normals = Some(n2);
    }
    let normals = normals.unwrap_or_default();
    let bounds = Aabb::from_points(positions.iter().map(|p| Vec3::from_array(*p)));
    for c in &mut colors {
        *c = c.map(|v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                1.0
            }
        });
    }
    Ok(Some(Primitive {
        positions,
        normals,
        uvs,
        uvs1,
        colors,
        indices,
        material: prim.material().index(),
        bounds,
    }))
}

fn load_image(
    index: usize,
    doc: &gltf::Document,
    buffers: &[Vec<u8>],
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImportLimits,
    textures: &mut Vec<Texture>,
) -> Result<Option<usize>, ImportError> {
    let img = doc
        .as_json()
        .images
        .get(index)
        .ok_or_else(|| malformed(format!("image {index} does not exist")))?;
    let bytes = match (&img.buffer_view, &img.uri) {
        (Some(v), _) => {
            let view = doc
                .views()
                .nth(v.value())
                .ok_or_else(|| malformed(format!("image {index}: missing buffer view")))?;
            let (start, end) = view_range(&view, buffers)?;
            buffers[view.buffer().index()][start..end].to_vec()
        }
        (None, Some(uri)) => load_uri(uri, resolve, limits.max_file_bytes)?,
        (None, None) => {
            return Err(malformed(format!(
                "image {index} has neither uri nor bufferView"
            )));
        }
    };
    let reader = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| malformed(format!("image {index}: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ if declared_png_or_jpeg(img) => {
            return Err(malformed(format!(
                "image {index} is declared PNG/JPEG but its {} bytes are neither",
                bytes.len()
            )));
        }
        other => {
            tracing::warn!(image = index, format = ?other, "image format not supported; material drawn without it");
            return Ok(None);
        }
    }
    limit(
        "texture count",
        textures.len() as u64 + 1,
        limits.max_textures as u64,
    )?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| malformed(format!("image {index}: {e}")))?;
    limit(
        format!("image {index} width"),
        u64::from(w),
        u64::from(limits.max_texture_dim),
    )?;
    limit(
        format!("image {index} height"),
        u64::from(h),
        u64::from(limits.max_texture_dim),
    )?;
    let texels: u64 = textures
        .iter()
        .map(|t| u64::from(t.width) * u64::from(t.height))
        .sum();
    let max_dim = u64::from(limits.max_texture_dim);
    limit(
        format!("decoded texels including image {index}"),
        texels + u64::from(w) * u64::from(h),
        4 * max_dim * max_dim,
    )?;
    let decoded = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| malformed(format!("image {index}: {e}")))?
        .decode()
        .map_err(|e| malformed(format!("image {index} cannot be decoded: {e}")))?
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_recognised() {
        assert!(has_scheme("file:///etc/passwd"));
        assert!(has_scheme("http://x"));
        assert!(!has_scheme("Box With Spaces.bin"));
        assert!(!has_scheme("dir/file.bin"));
        assert_eq!(
            percent_decode("Box%20With%20Spaces.bin").unwrap(),
            "Box With Spaces.bin"
        );
        assert!(percent_decode("bad%2").is_err());
        assert_eq!(json_depth(br#"{"a":[1,{"b":"]]]]{{"}]}"#), 3);
    }
}
