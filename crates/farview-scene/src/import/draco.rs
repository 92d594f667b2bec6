//! `KHR_draco_mesh_compression`: a primitive whose attributes and indices are one Draco stream
//! in a buffer view, decoded by `draco-oxide` (a pure-Rust decoder of Draco's bitstream 2.2,
//! which Google's encoder writes and the Khronos samples use).
//!
//! The stream is untrusted like the rest of the file: its buffer view is range-checked, the
//! decoder bounds its own allocations by the stream's length, and every decoded count must equal
//! what the primitive's accessors declare (and reserved in the import budget before decoding)
//! before a value is read. The decoder is a young crate, so a panic inside it is caught here and
//! reported as a malformed stream rather than taking down the load.

use draco_oxide_core::attribute::ComponentDataType;
use gltf::accessor::DataType;
use serde_json::Value;

use super::Buffer;
use super::accessor::{view_buffer, view_range};
use super::error::{ImportProblem, invalid};

/// The extension's name.
pub(super) const EXT: &str = "KHR_draco_mesh_compression";

/// One decoded attribute, per point, before the accessor's normalization is applied.
struct Attribute {
    /// The accessor it stands in for.
    accessor: usize,
    components: usize,
    /// `points × components` values as stored (integers unnormalized).
    values: Vec<f32>,
}

/// A primitive's decoded Draco stream: its points' attributes, keyed by the accessor each
/// replaces, and its triangle list.
pub(super) struct DracoPrimitive {
    points: usize,
    indices: Vec<u32>,
    attributes: Vec<Attribute>,
}

impl DracoPrimitive {
    /// The values standing in for `acc`, as `N`-vectors with the accessor's normalization;
    /// `None` when the stream does not carry that accessor (it is read from its buffer view).
    pub(super) fn read<const N: usize>(
        &self,
        acc: &gltf::Accessor<'_>,
    ) -> Option<Result<Vec<[f32; N]>, ImportProblem>> {
        let a = self.attributes.iter().find(|a| a.accessor == acc.index())?;
        if a.components != N {
            return Some(Err(invalid(format!(
                "decodes {} components from Draco where {N} are read",
                a.components
            ))));
        }
        let scale = match (acc.normalized(), acc.data_type()) {
            (false, _) | (_, DataType::F32 | DataType::U32) => None,
            (true, DataType::U8) => Some((255.0, 0.0)),
            (true, DataType::U16) => Some((65535.0, 0.0)),
            (true, DataType::I8) => Some((127.0, -1.0)),
            (true, DataType::I16) => Some((32767.0, -1.0)),
        };
        Some(Ok(a
            .values
            .chunks_exact(N)
            .map(|c| {
                let mut v = [0.0; N];
                for (o, x) in v.iter_mut().zip(c) {
                    *o = scale.map_or(*x, |(s, lo)| (x / s).max(lo));
                }
                v
            })
            .collect()))
    }

    /// Number of decoded points (every attribute has this many).
    pub(super) fn points(&self) -> usize {
        self.points
    }

    /// The decoded triangle list (each index below the point count).
    pub(super) fn indices(&self) -> &[u32] {
        &self.indices
    }
}

/// Decodes `prim`'s Draco stream, or `None` when it has none. `json_prim` is its JSON (for the
/// extension object).
pub(super) fn decode(
    doc: &gltf::Document,
    prim: &gltf::Primitive<'_>,
    json_prim: &gltf::json::mesh::Primitive,
    buffers: &[Buffer<'_>],
) -> Result<Option<DracoPrimitive>, ImportProblem> {
    let Some(ext) = json_prim
        .extensions
        .as_ref()
        .and_then(|e| e.others.get(EXT))
    else {
        return Ok(None);
    };
    let view_index = ext
        .get("bufferView")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("has {EXT} without a bufferView")))?;
    let view = usize::try_from(view_index)
        .ok()
        .and_then(|v| doc.views().nth(v))
        .ok_or_else(|| {
            invalid(format!(
                "has {EXT} bufferView {view_index}, which does not exist"
            ))
        })?;
    let ids = ext
        .get("attributes")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("has {EXT} without attributes")))?;
    let (start, end) = view_range(&view, buffers).map_err(|e| invalid(e.to_string()))?;
    let bytes = view_buffer(&view, buffers)
        .map_err(|e| invalid(e.to_string()))?
        .get(start..end)
        .ok_or_else(|| invalid("has a Draco bufferView outside its buffer"))?;
    let mesh = std::panic::catch_unwind(|| draco_oxide_decoder::decode_mesh(bytes))
        .map_err(|_| invalid("has a Draco stream the decoder could not handle (it panicked)"))?
        .map_err(|e| invalid(format!("has a Draco stream that does not decode: {e}")))?;

    let mut attributes = Vec::new();
    let mut points = None;
    for (semantic, acc) in prim.attributes() {
        let name = semantic.to_string();
        let Some(uid) = ids.get(&name) else { continue };
        let uid = uid
            .as_u64()
            .ok_or_else(|| invalid(format!("has {EXT} attribute {name} = {uid}, not an id")))?;
        let attr = mesh
            .get_attributes()
            .iter()
            .find(|a| a.get_id().as_usize() as u64 == uid)
            .ok_or_else(|| {
                invalid(format!(
                    "names Draco attribute {uid} for {name}, which the stream lacks"
                ))
            })?;
        // Decoders may split or merge points (the accessor's count is the encoder's), so the
        // count is the stream's; it must agree across attributes, and the caller charges any
        // excess to the import budget.
        let n = attr.len();
        if *points.get_or_insert(n) != n {
            return Err(invalid(format!(
                "decodes {n} Draco points for {name} but {} for another attribute",
                points.unwrap_or(0)
            )));
        }
        attributes.push(Attribute {
            accessor: acc.index(),
            components: attr.get_num_components(),
            values: values(attr).ok_or_else(|| {
                invalid(format!(
                    "has Draco attribute {uid} ({name}) with unreadable values"
                ))
            })?,
        });
    }
    // POSITION must come from the stream: its point count is the primitive's vertex count,
    // which every other attribute and the faces are held to.
    if !ids.contains_key("POSITION") {
        return Err(invalid(format!("has {EXT} without POSITION")));
    }
    let points = points.ok_or_else(|| invalid(format!("has {EXT} without POSITION")))?;
    let mut indices = Vec::with_capacity(mesh.get_faces().len().saturating_mul(3));
    for face in mesh.get_faces() {
        for &p in face {
            let p = usize::from(p);
            if p >= points {
                return Err(invalid(format!(
                    "has a Draco face on point {p}, past its {points} points"
                )));
            }
            indices.push(p as u32);
        }
    }
    Ok(Some(DracoPrimitive {
        points,
        indices,
        attributes,
    }))
}

/// An attribute's values per point (its point map applied), as f32; `None` when a value lies
/// outside its buffer or the type has no f32 reading.
fn values(attr: &draco_oxide_core::attribute::Attribute) -> Option<Vec<f32>> {
    let t = attr.get_component_type();
    let size = t.size();
    let comps = attr.get_num_components();
    let bytes = attr.get_data_as_bytes();
    let map = attr.point_map_as_slice();
    let mut out = Vec::with_capacity(attr.len().checked_mul(comps)?);
    for p in 0..attr.len() {
        let value = match map {
            Some(m) => usize::from(*m.get(p)?),
            None => p,
        };
        for c in 0..comps {
            let at = value
                .checked_mul(comps)?
                .checked_add(c)?
                .checked_mul(size)?;
            let b = bytes.get(at..at.checked_add(size)?)?;
            out.push(match t {
                ComponentDataType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                ComponentDataType::U8 => f32::from(b[0]),
                ComponentDataType::I8 => f32::from(b[0] as i8),
                ComponentDataType::U16 => f32::from(u16::from_le_bytes([b[0], b[1]])),
                ComponentDataType::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
                ComponentDataType::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                ComponentDataType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                _ => return None,
            });
        }
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}
