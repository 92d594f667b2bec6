//! glTF 2.0 import: JSON `.gltf` (external or data-URI buffers and images) and binary `.glb`.
//!
//! Every file is untrusted. Before any attribute is read, each accessor's byte range is checked
//! against its buffer view and buffer with overflow-checked arithmetic, counts are checked against
//! [`ImportLimits`], and the node graph is checked for cycles and shared children. Attribute data
//! is read by our own bounds-checked reader (not the `gltf` crate's, which assumes valid input).
//! External URIs go through a resolver, so [`import_gltf`] touches no filesystem; [`import_file`]
//! supplies one that is sandboxed to the assets root.
//!
//! Compressed files decode inside the same checks: `EXT_meshopt_compression` buffer views are
//! decoded into their buffers before any accessor is checked, `KHR_draco_mesh_compression`
//! streams stand in for a primitive's accessors, `KHR_texture_basisu` (KTX2) and
//! `EXT_texture_webp` images decode with the others, and `EXT_mesh_gpu_instancing` instances
//! become nodes.
//!
//! The parts, each using only those listed before it: [`error`] (what went wrong, and where),
//! [`sandbox`] (paths and URIs), [`meshopt`] (compressed buffer views), [`accessor`] (buffer
//! views and accessor data), [`texture_source`] (which image a texture samples), [`image`]
//! (texture images), [`material`] (materials, their texture slots and samplers), [`tangent`]
//! (MikkTSpace tangents), [`draco`] (Draco streams), [`primitive`] (one mesh primitive),
//! [`gltf`] (the document walk). This file holds the entry points and the checks on the file as
//! a whole.

mod accessor;
mod animation;
mod draco;
mod error;
mod gltf;
mod image;
mod material;
mod meshopt;
mod primitive;
mod sandbox;
mod tangent;
mod texture_source;

use std::borrow::Cow;
use std::path::Path;

use crate::model::Model;

pub use error::{ImportError, ImportErrorKind, ImportProblem};
use error::{limit, malformed};

/// One glTF buffer's bytes: a GLB's binary chunk is borrowed from the file's bytes, an
/// external file or a decoded one is owned. (The chunk of a 20-million-triangle scan is 480 MB:
/// copied twice, once out of the container and once per buffer naming it, it cost about a
/// gigabyte of fresh memory, a third of the import on a VM.)
type Buffer<'a> = Cow<'a, [u8]>;

/// A parsed document and the GLB binary chunk of the bytes it was parsed from.
struct Parsed<'a> {
    document: ::gltf::Document,
    blob: Option<Buffer<'a>>,
}

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
    /// Most nodes in one file. This also bounds the work of walking the hierarchy, which is
    /// iterative: a deep chain costs what a flat list of as many nodes costs, so there is no
    /// separate depth limit.
    pub max_nodes: usize,
    /// Most vertices over the whole model, counted after flat-normal expansion and before any
    /// attribute is read. Triangle-list indices over the model are capped at six times this (a
    /// closed mesh has about two triangles per vertex), so a file cannot reuse one small index
    /// accessor from many primitives to exhaust memory.
    pub max_total_vertices: u64,
    /// Whether import builds the clusters and levels of detail of large primitives (the
    /// default). A host that shows a model at full detail first and refines it when the
    /// levels are ready sets this to `false` and builds them with
    /// [`crate::lod::build_levels`]: on a 20-million-triangle mesh they are most of the import.
    pub levels_at_import: bool,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            // A 20-million-triangle mesh (the premium size's budget) is a 0.5 GB GLB with a
            // 60-million-index accessor; a million-node hierarchy is a 60 MB JSON. Memory stays
            // bounded by `max_total_vertices` and the index cap derived from it.
            max_file_bytes: 1 << 30,
            max_accessor_count: 64_000_000,
            max_texture_dim: 8192,
            max_textures: 256,
            max_nodes: 1_000_000,
            max_total_vertices: 20_000_000,
            levels_at_import: true,
        }
    }
}

/// Extensions the importer handles (as required or used).
const SUPPORTED_EXTENSIONS: &[&str] = &[
    "KHR_mesh_quantization",
    "KHR_texture_transform",
    "KHR_materials_emissive_strength",
    "KHR_lights_punctual",
    "KHR_materials_unlit",
    "KHR_materials_ior",
    "KHR_materials_specular",
    "KHR_materials_clearcoat",
    "KHR_materials_sheen",
    "KHR_materials_transmission",
    "KHR_materials_volume",
    "KHR_materials_variants",
    "KHR_texture_basisu",
    "EXT_texture_webp",
    "EXT_meshopt_compression",
    "KHR_draco_mesh_compression",
    "EXT_mesh_gpu_instancing",
];

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
    let path = sandbox::resolve_under(&root, &root, relative)?;
    let bytes = sandbox::read_limited(&path, relative, limits.max_file_bytes)?;
    let dir = path
        .parent()
        .map_or_else(|| root.clone(), Path::to_path_buf);
    let mut resolve = |uri: &str| {
        let p = sandbox::resolve_under(&root, &dir, uri)?;
        sandbox::read_limited(&p, uri, limits.max_file_bytes)
    };
    if !progress(5) {
        return Err(ImportError::Cancelled);
    }
    import_gltf_with(&bytes, &mut resolve, limits, progress)
}

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
    let parsed = parse(bytes, limits)?;
    let json = parsed.document.as_json();
    let mut ignored: Vec<String> = parsed
        .document
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
    let mut model = gltf::import_document(&parsed, resolve, limits, &mut step)?;
    model.ignored_extensions = ignored;
    Ok(model)
}

/// Parses the file and checks it as a whole: container, JSON nesting, version, required
/// extensions, references (by item) and the schema.
fn parse<'a>(bytes: &'a [u8], limits: &ImportLimits) -> Result<Parsed<'a>, ImportError> {
    limit("file size", bytes.len() as u64, limits.max_file_bytes)?;
    if bytes.is_empty() {
        return Err(malformed("empty file"));
    }
    check_glb_header(bytes)?;
    let depth = json_depth(json_part(bytes));
    limit("JSON nesting depth", depth as u64, MAX_JSON_DEPTH as u64)?;
    let parsed = parse_document(bytes)?;
    let json = parsed.document.as_json();
    let major = json.asset.version.split('.').next().unwrap_or("");
    if major != "2" {
        return Err(ImportError::Unsupported(format!(
            "glTF version {} (only 2.x)",
            json.asset.version
        )));
    }
    for ext in parsed.document.extensions_required() {
        if !SUPPORTED_EXTENSIONS.contains(&ext) {
            return Err(ImportError::Unsupported(format!(
                "required extension {ext}"
            )));
        }
    }
    // Before the gltf crate's validation, which indexes the POSITION accessor without a bounds
    // check, and reports dangling references only as JSON paths.
    gltf::check_references(json)?;
    // The gltf crate flags extensions it does not know (e.g. KHR_mesh_quantization) as invalid;
    // we decided on required extensions above, so only the other findings count.
    let mut invalid = Vec::new();
    {
        use ::gltf::json::validation::Validate;
        json.validate(json, ::gltf::json::Path::new, &mut |path, e| {
            let path = path().0;
            // An accessor without a bufferView is valid glTF (zeros, or data a Draco stream
            // supplies); the gltf crate reports it as missing data.
            let dataless_accessor = path.starts_with("accessors[")
                && path.ends_with("].bufferView")
                && matches!(e, ::gltf::json::validation::Error::Missing);
            if !path.starts_with("extensionsRequired")
                && !path.starts_with("extensionsUsed")
                && !dataless_accessor
                && invalid.len() < 8
            {
                invalid.push(format!("{path}: {e}"));
            }
        });
    }
    if !invalid.is_empty() {
        return Err(malformed(format!("invalid glTF: {}", invalid.join("; "))));
    }
    Ok(parsed)
}

/// The container and JSON parsed without the `gltf` crate's validation (ours runs after), with
/// the textures' extension images filled in where the core `source` is missing.
fn parse_document(bytes: &[u8]) -> Result<Parsed<'_>, ImportError> {
    let (json, blob) = if bytes.starts_with(b"glTF") {
        let glb = ::gltf::binary::Glb::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        (glb.json, glb.bin)
    } else {
        (Cow::Borrowed(bytes), None)
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| malformed(e.to_string()))?;
    texture_source::fill_missing_sources(&mut value);
    let root: ::gltf::json::Root =
        serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    Ok(Parsed {
        document: ::gltf::Document::from_json_without_validation(root),
        blob,
    })
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

#[cfg(test)]
mod tests;
