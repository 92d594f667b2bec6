//! Accessor data, read by our own bounds-checked reader (not the `gltf` crate's, which assumes
//! valid input): buffer view ranges and strides, each accessor's byte range (sparse parts too)
//! checked with overflow-checked arithmetic before anything is read, normalized and quantized
//! components expanded to f32, and indices checked against the vertex count.
//!
//! Errors name the accessor (or buffer view) only; the caller adds the mesh and primitive it
//! was reading for ([`ImportError::in_primitive`]).

use gltf::accessor::{DataType, Dimensions};

use super::Buffer;
use super::error::{ImportError, ImportProblem, invalid, over};

fn component_size(t: DataType) -> usize {
    match t {
        DataType::I8 | DataType::U8 => 1,
        DataType::I16 | DataType::U16 => 2,
        DataType::U32 | DataType::F32 => 4,
    }
}

fn accessor_error(accessor: usize, problem: ImportProblem) -> ImportError {
    ImportError::Accessor {
        mesh: None,
        primitive: None,
        accessor,
        problem,
    }
}

fn view_error(view: &gltf::buffer::View<'_>, problem: ImportProblem) -> ImportError {
    ImportError::BufferView {
        view: view.index(),
        buffer: view.buffer().index(),
        problem,
    }
}

/// The byte range `start..end` of a view within its buffer, checked (and its stride).
pub(super) fn view_range(
    view: &gltf::buffer::View<'_>,
    buffers: &[Buffer<'_>],
) -> Result<(usize, usize), ImportError> {
    let buf = buffers
        .get(view.buffer().index())
        .ok_or_else(|| view_error(view, invalid("refers to a buffer that does not exist")))?;
    let end = view
        .offset()
        .checked_add(view.length())
        .ok_or_else(|| view_error(view, invalid("has a byte range that overflows")))?;
    if end > buf.len() {
        return Err(view_error(
            view,
            invalid(format!(
                "spans bytes {}..{end} of a buffer of {} bytes",
                view.offset(),
                buf.len()
            )),
        ));
    }
    if let Some(s) = view.stride()
        && (!(4..=252).contains(&s) || s % 4 != 0)
    {
        return Err(view_error(
            view,
            invalid(format!(
                "has byteStride {s} (must be 4..=252, a multiple of 4)"
            )),
        ));
    }
    Ok((view.offset(), end))
}

/// The bytes of a view's whole buffer (offsets within it are the view's plus the accessor's).
pub(super) fn view_buffer<'a>(
    view: &gltf::buffer::View<'_>,
    buffers: &'a [Buffer<'_>],
) -> Result<&'a [u8], ImportError> {
    buffers
        .get(view.buffer().index())
        .map(|b| &**b)
        .ok_or_else(|| view_error(view, invalid("refers to a buffer that does not exist")))
}

/// Checks that every byte an accessor reads lies inside its view and buffer, and that its count
/// is within `max_count`.
pub(super) fn check_accessor(
    acc: &gltf::Accessor<'_>,
    buffers: &[Buffer<'_>],
    max_count: u64,
) -> Result<(), ImportError> {
    let i = acc.index();
    let fail = |problem| accessor_error(i, problem);
    let count = acc.count();
    over("count", count as u64, max_count).map_err(fail)?;
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
            .ok_or_else(|| fail(invalid(format!("has a {what} range that overflows"))))?;
        if need > end - start {
            return Err(fail(invalid(format!(
                "needs {need} bytes of bufferView {} for its {what}, which has {}",
                view.index(),
                end - start
            ))));
        }
        Ok(())
    };
    if let Some(view) = acc.view() {
        let stride = view.stride().unwrap_or(elem);
        if stride < elem {
            return Err(fail(invalid(format!(
                "has stride {stride}, smaller than its element size {elem}"
            ))));
        }
        in_view(&view, acc.offset(), stride, elem, count, "data")?;
    }
    if let Some(sparse) = acc.sparse() {
        let n = sparse.count();
        if n > count {
            return Err(fail(invalid(format!(
                "has {n} sparse values for {count} elements"
            ))));
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

/// One component as f32 (normalized integers mapped to [0, 1] or [-1, 1]); `None` past the end.
fn read_component(buf: &[u8], off: usize, t: DataType, normalized: bool) -> Option<f32> {
    let b = buf.get(off..off.checked_add(component_size(t))?)?;
    Some(match t {
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

/// Reads one unsigned integer of `size` (1, 2 or 4) bytes; `None` past the end.
fn read_index(buf: &[u8], off: usize, size: usize) -> Option<usize> {
    let b = buf.get(off..off.checked_add(size)?)?;
    Some(match size {
        1 => usize::from(b[0]),
        2 => usize::from(u16::from_le_bytes([b[0], b[1]])),
        _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
    })
}

/// Reads an accessor (already checked) as `N`-component f32 vectors, applying sparse overrides.
pub(super) fn read_vec<const N: usize>(
    acc: &gltf::Accessor<'_>,
    buffers: &[Buffer<'_>],
) -> Result<Vec<[f32; N]>, ImportError> {
    let fail = |problem| accessor_error(acc.index(), problem);
    if acc.dimensions().multiplicity() != N {
        return Err(fail(invalid(format!(
            "has {:?} elements where {N} components are expected",
            acc.dimensions()
        ))));
    }
    let (t, norm, count) = (acc.data_type(), acc.normalized(), acc.count());
    let cs = component_size(t);
    let mut out = vec![[0f32; N]; count];
    let read_into = |out: &mut [f32; N], buf: &[u8], off: usize| -> Result<(), ImportError> {
        for (c, v) in out.iter_mut().enumerate() {
            *v = read_component(buf, off + c * cs, t, norm)
                .ok_or_else(|| fail(invalid("is read out of bounds")))?;
        }
        Ok(())
    };
    if let Some(view) = acc.view() {
        let buf = view_buffer(&view, buffers)?;
        let stride = view.stride().unwrap_or(acc.size());
        let base = view.offset() + acc.offset();
        if t == DataType::F32 && stride >= 4 * N {
            // The common case (positions, normals, UVs as floats), element by element
            // without a per-component type dispatch and bounds check: about a third of the
            // import of a 20-million-triangle scan went to those.
            let elements = buf.get(base..).unwrap_or(&[]).chunks(stride);
            if elements.len() < count {
                return Err(fail(invalid("is read out of bounds")));
            }
            for (o, e) in out.iter_mut().zip(elements) {
                let e = e
                    .get(..4 * N)
                    .ok_or_else(|| fail(invalid("is read out of bounds")))?;
                for (v, b) in o.iter_mut().zip(e.chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                read_into(o, buf, base + i * stride)?;
            }
        }
    }
    if let Some(sparse) = acc.sparse() {
        let iv = sparse.indices().view();
        let ibuf = view_buffer(&iv, buffers)?;
        let isz = sparse_index_size(&sparse);
        let vv = sparse.values().view();
        let vbuf = view_buffer(&vv, buffers)?;
        for k in 0..sparse.count() {
            let idx = read_index(ibuf, iv.offset() + sparse.indices().offset() + k * isz, isz)
                .ok_or_else(|| fail(invalid("has sparse indices read out of bounds")))?;
            let slot = out.get_mut(idx).ok_or_else(|| {
                fail(invalid(format!(
                    "has sparse index {idx}, past its {count} elements"
                )))
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

/// Reads an index accessor (already checked): unsigned scalars, each below `vertices`.
pub(super) fn read_indices(
    acc: &gltf::Accessor<'_>,
    buffers: &[Buffer<'_>],
    vertices: usize,
) -> Result<Vec<u32>, ImportError> {
    let fail = |problem| accessor_error(acc.index(), problem);
    if acc.dimensions() != Dimensions::Scalar
        || !matches!(
            acc.data_type(),
            DataType::U8 | DataType::U16 | DataType::U32
        )
    {
        return Err(fail(invalid(format!(
            "holds {:?} {:?} where unsigned scalar indices are expected",
            acc.dimensions(),
            acc.data_type()
        ))));
    }
    // Integers straight from the bytes: u32 must stay exact.
    let (t, count) = (acc.data_type(), acc.count());
    let cs = component_size(t);
    let oob = || fail(invalid("is read out of bounds"));
    let mut out = Vec::with_capacity(count);
    if let Some(view) = acc.view() {
        let buf = view_buffer(&view, buffers)?;
        let stride = view.stride().unwrap_or(cs);
        let base = view.offset() + acc.offset();
        if t == DataType::U32 && stride >= 4 {
            // The common case for big meshes, without a per-index size dispatch.
            let elements = buf.get(base..).unwrap_or(&[]).chunks(stride);
            if elements.len() < count {
                return Err(oob());
            }
            for e in elements.take(count) {
                let b = e.get(..4).ok_or_else(oob)?;
                out.push(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        } else {
            for i in 0..count {
                out.push(read_index(buf, base + i * stride, cs).ok_or_else(oob)? as u32);
            }
        }
    } else {
        out.resize(count, 0);
    }
    if let Some(sparse) = acc.sparse() {
        let (iv, vv) = (sparse.indices().view(), sparse.values().view());
        let (ibuf, vbuf) = (view_buffer(&iv, buffers)?, view_buffer(&vv, buffers)?);
        let isz = sparse_index_size(&sparse);
        let ibase = iv.offset() + sparse.indices().offset();
        let vbase = vv.offset() + sparse.values().offset();
        for k in 0..sparse.count() {
            let idx = read_index(ibuf, ibase + k * isz, isz).ok_or_else(oob)?;
            let value = read_index(vbuf, vbase + k * cs, cs).ok_or_else(oob)?;
            let slot = out.get_mut(idx).ok_or_else(|| {
                fail(invalid(format!(
                    "has sparse index {idx}, past its {count} elements"
                )))
            })?;
            *slot = value as u32;
        }
    }
    if let Some((i, bad)) = out
        .iter()
        .enumerate()
        .find(|(_, v)| **v as usize >= vertices)
    {
        return Err(fail(invalid(format!(
            "has index {bad} at element {i}, past the {vertices} vertices"
        ))));
    }
    Ok(out)
}
