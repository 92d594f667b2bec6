//! What an import failure is, and for a failure in one item of the file, which item: indices are
//! fields (like rend3-gltf's errors), so a caller can point at the part of the file at fault
//! without parsing a message.

use std::fmt;

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
    /// The file exceeds an [`ImportLimits`](super::ImportLimits) bound.
    LimitExceeded,
    /// Reading failed for another reason.
    Io,
    /// The caller cancelled it.
    Cancelled,
}

/// What is wrong with one item of a file (the item is named by the [`ImportError`] variant).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportProblem {
    /// Its data is inconsistent, out of range or of the wrong type: a phrase saying how.
    Invalid(String),
    /// It exceeds an [`ImportLimits`](super::ImportLimits) bound.
    Limit {
        /// What was measured (`"count"`, `"width"`, `"total vertices"`, ...).
        what: &'static str,
        /// Its value.
        actual: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => f.write_str(why),
            Self::Limit {
                what,
                actual,
                limit,
            } => write!(f, "{what} is {actual}, over the limit of {limit}"),
        }
    }
}

/// Why a model could not be imported. Variants about one item of the file carry its index, and
/// the indices of what led to it where known, as fields.
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
    /// The file as a whole is not valid glTF: not JSON, a broken GLB container, or a schema
    /// error the checks by item below do not cover (the message holds the JSON path).
    #[error("malformed glTF: {0}")]
    Malformed(String),
    /// A glTF version, required extension or data layout the importer does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The file as a whole exceeds a limit (its size, JSON nesting, node count).
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
    /// A buffer cannot be loaded, or holds fewer bytes than it declares.
    #[error("buffer {buffer}: {problem}")]
    Buffer {
        /// Index into the file's `buffers`.
        buffer: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// A buffer view lies outside its buffer or has an invalid stride.
    #[error("bufferView {view} (of buffer {buffer}): {problem}")]
    BufferView {
        /// Index into the file's `bufferViews`.
        view: usize,
        /// The buffer it views.
        buffer: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// An accessor does not exist, reads outside its buffer view, is too large, or has the
    /// wrong type for its use.
    #[error("accessor {accessor}{}: {problem}", used_by(*.mesh, *.primitive))]
    Accessor {
        /// The mesh of the primitive that reads it (the first one, for a shared accessor);
        /// `None` when no primitive reads it (animation or skin data).
        mesh: Option<usize>,
        /// That primitive's index within the mesh.
        primitive: Option<usize>,
        /// Index into the file's `accessors`.
        accessor: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// A primitive is inconsistent as a whole (no `POSITION`, attributes of different lengths,
    /// a missing material), or pushes the model over its vertex budget.
    #[error("mesh {mesh} primitive {primitive}: {problem}")]
    Primitive {
        /// Index into the file's `meshes`.
        mesh: usize,
        /// Index into that mesh's `primitives`.
        primitive: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// A material refers to a texture that does not exist.
    #[error("material {material}{}: {problem}", texture_ref(*.texture))]
    Material {
        /// Index into the file's `materials`.
        material: usize,
        /// The texture it refers to, when that is the fault.
        texture: Option<usize>,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// An image does not exist, cannot be read or decoded, or is too large.
    #[error("image {image}{}: {problem}", texture_of(*.texture, *.material))]
    Image {
        /// Index into the file's `images`.
        image: usize,
        /// The texture whose source it is.
        texture: Option<usize>,
        /// The material that uses that texture (the first one, for a shared image).
        material: Option<usize>,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// A node's transform or place in the hierarchy is invalid.
    #[error("node {node}: {problem}")]
    Node {
        /// Index into the file's `nodes`.
        node: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// A skin's joints or inverse bind matrices are invalid.
    #[error("skin {skin}: {problem}")]
    Skin {
        /// Index into the file's `skins`.
        skin: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
    /// An animation's channel or sampler is invalid.
    #[error("animation {animation}: {problem}")]
    Animation {
        /// Index into the file's `animations`.
        animation: usize,
        /// What is wrong.
        problem: ImportProblem,
    },
}

fn used_by(mesh: Option<usize>, primitive: Option<usize>) -> String {
    match (mesh, primitive) {
        (Some(m), Some(p)) => format!(" (mesh {m} primitive {p})"),
        (Some(m), None) => format!(" (mesh {m})"),
        _ => String::new(),
    }
}

fn texture_ref(texture: Option<usize>) -> String {
    texture.map_or_else(String::new, |t| format!(" (texture {t})"))
}

fn texture_of(texture: Option<usize>, material: Option<usize>) -> String {
    match (texture, material) {
        (Some(t), Some(m)) => format!(" (texture {t} of material {m})"),
        (Some(t), None) => format!(" (texture {t})"),
        (None, Some(m)) => format!(" (material {m})"),
        (None, None) => String::new(),
    }
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
            Self::Buffer { problem, .. }
            | Self::BufferView { problem, .. }
            | Self::Accessor { problem, .. }
            | Self::Primitive { problem, .. }
            | Self::Material { problem, .. }
            | Self::Image { problem, .. }
            | Self::Node { problem, .. }
            | Self::Skin { problem, .. }
            | Self::Animation { problem, .. } => match problem {
                ImportProblem::Invalid(_) => ImportErrorKind::Malformed,
                ImportProblem::Limit { .. } => ImportErrorKind::LimitExceeded,
            },
        }
    }

    /// The accessor error, attributed to the primitive that read it (when it names none yet).
    pub(crate) fn in_primitive(self, mesh: usize, primitive: usize) -> Self {
        match self {
            Self::Accessor {
                mesh: None,
                primitive: None,
                accessor,
                problem,
            } => Self::Accessor {
                mesh: Some(mesh),
                primitive: Some(primitive),
                accessor,
                problem,
            },
            other => other,
        }
    }

    /// The image error, attributed to the texture and material that use the image.
    pub(crate) fn for_texture(self, texture: usize, material: usize) -> Self {
        match self {
            Self::Image {
                image,
                texture: None,
                material: None,
                problem,
            } => Self::Image {
                image,
                texture: Some(texture),
                material: Some(material),
                problem,
            },
            other => other,
        }
    }
}

/// A file-level error for a malformed file.
pub(crate) fn malformed(msg: impl Into<String>) -> ImportError {
    ImportError::Malformed(msg.into())
}

/// An item-level problem: inconsistent data.
pub(crate) fn invalid(msg: impl Into<String>) -> ImportProblem {
    ImportProblem::Invalid(msg.into())
}

/// A file-level limit check.
pub(crate) fn limit(what: impl Into<String>, actual: u64, limit: u64) -> Result<(), ImportError> {
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

/// An item-level limit check.
pub(crate) fn over(what: &'static str, actual: u64, limit: u64) -> Result<(), ImportProblem> {
    if actual > limit {
        Err(ImportProblem::Limit {
            what,
            actual,
            limit,
        })
    } else {
        Ok(())
    }
}
