//! `EXT_meshopt_compression`: buffer views whose bytes are meshoptimizer-encoded in another
//! buffer. Each such view is decoded into its own place in its (usually "fallback") buffer before
//! any accessor is checked, so everything after this step reads plain glTF data through the
//! bounds-checked reader.
//!
//! Every field of the extension is checked before anything is decoded: the compressed range lies
//! in its buffer, the decoded size (`count × byteStride`, overflow-checked) fits the view and the
//! accessor-count limit, and the mode, stride and filter are ones the format defines.
//! meshoptimizer's decoders are documented as safe on untrusted input (they fail, or produce
//! garbage that the accessor checks then see); the filters are reimplemented here in Rust, on
//! the decoded bytes in place, and tested against meshoptimizer's own.

use serde_json::Value;

use super::error::{ImportError, ImportProblem, invalid, over};
use super::{Buffer, ImportLimits};

/// The extension's name.
const EXT: &str = "EXT_meshopt_compression";

/// True when buffer `b`'s JSON marks it as a fallback: it may have no data (or data we do not
/// need to read), since every view on it is decoded from a compressed one.
pub(super) fn is_fallback(b: &gltf::json::Buffer) -> bool {
    b.extensions
        .as_ref()
        .and_then(|e| e.others.get(EXT))
        .and_then(|e| e.get("fallback"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// How the decoded elements are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Attributes,
    Triangles,
    Indices,
}

/// Post-decoding transform of attribute data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    None,
    Octahedral,
    Quaternion,
    Exponential,
}

/// One view's extension object, checked.
struct Compressed {
    buffer: usize,
    offset: usize,
    length: usize,
    stride: usize,
    count: usize,
    mode: Mode,
    filter: Filter,
}

fn field(ext: &Value, key: &str) -> Result<Option<usize>, ImportProblem> {
    match ext.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("has {EXT}.{key} {v}, not a non-negative integer"))),
    }
}

fn parse(ext: &Value) -> Result<Compressed, ImportProblem> {
    let need =
        |key: &str| field(ext, key)?.ok_or_else(|| invalid(format!("has {EXT} without {key}")));
    let mode = match ext.get("mode").and_then(Value::as_str) {
        Some("ATTRIBUTES") => Mode::Attributes,
        Some("TRIANGLES") => Mode::Triangles,
        Some("INDICES") => Mode::Indices,
        other => return Err(invalid(format!("has {EXT} mode {other:?}"))),
    };
    let filter = match ext.get("filter").and_then(Value::as_str) {
        None | Some("NONE") => Filter::None,
        Some("OCTAHEDRAL") => Filter::Octahedral,
        Some("QUATERNION") => Filter::Quaternion,
        Some("EXPONENTIAL") => Filter::Exponential,
        Some(other) => return Err(invalid(format!("has {EXT} filter {other:?}"))),
    };
    let c = Compressed {
        buffer: need("buffer")?,
        offset: field(ext, "byteOffset")?.unwrap_or(0),
        length: need("byteLength")?,
        stride: need("byteStride")?,
        count: need("count")?,
        mode,
        filter,
    };
    let stride_ok = match (c.mode, c.filter) {
        (Mode::Attributes, Filter::None | Filter::Exponential) => {
            c.stride.is_multiple_of(4) && (4..=256).contains(&c.stride)
        }
        (Mode::Attributes, Filter::Octahedral) => c.stride == 4 || c.stride == 8,
        (Mode::Attributes, Filter::Quaternion) => c.stride == 8,
        (_, Filter::None) => c.stride == 2 || c.stride == 4,
        _ => false,
    };
    if !stride_ok {
        return Err(invalid(format!(
            "has {EXT} byteStride {} with mode {:?} and filter {:?}",
            c.stride, c.mode, c.filter
        )));
    }
    if c.mode == Mode::Triangles && !c.count.is_multiple_of(3) {
        return Err(invalid(format!(
            "has {EXT} mode TRIANGLES with {} indices, not a multiple of 3",
            c.count
        )));
    }
    Ok(c)
}

/// Decodes every compressed buffer view of the file into its place in its buffer.
pub(super) fn decode_views(
    json: &gltf::json::Root,
    buffers: &mut [Buffer<'_>],
    limits: &ImportLimits,
) -> Result<(), ImportError> {
    for (v, view) in json.buffer_views.iter().enumerate() {
        let Some(ext) = view.extensions.as_ref().and_then(|e| e.others.get(EXT)) else {
            continue;
        };
        let fail = |problem| ImportError::BufferView {
            view: v,
            buffer: view.buffer.value(),
            problem,
        };
        let c = parse(ext).map_err(fail)?;
        over("meshopt count", c.count as u64, limits.max_accessor_count).map_err(fail)?;
        let decoded_len = c
            .count
            .checked_mul(c.stride)
            .ok_or_else(|| fail(invalid("has a decoded size that overflows")))?;
        let target_len = view.byte_length.0 as usize;
        if decoded_len > target_len {
            return Err(fail(invalid(format!(
                "decodes {decoded_len} bytes into a view of {target_len}"
            ))));
        }
        let start = view.byte_offset.map_or(0, |o| o.0 as usize);
        // The target range is checked before decoding: buffers are bounded by the file limit,
        // so this also bounds what the decoder allocates.
        let target_end = start
            .checked_add(decoded_len)
            .filter(|end| {
                buffers
                    .get(view.buffer.value())
                    .is_some_and(|b| *end <= b.len())
            })
            .ok_or_else(|| fail(invalid("decodes past the end of its buffer")))?;
        let source = buffers
            .get(c.buffer)
            .and_then(|b| b.get(c.offset..c.offset.checked_add(c.length)?))
            .ok_or_else(|| {
                fail(invalid(format!(
                    "has {EXT} bytes {}..+{} outside buffer {}",
                    c.offset, c.length, c.buffer
                )))
            })?;
        let mut decoded = decode(source, &c).map_err(fail)?;
        apply_filter(c.filter, c.stride, &mut decoded);
        let target = buffers
            .get_mut(view.buffer.value())
            .and_then(|b| b.to_mut().get_mut(start..target_end))
            .ok_or_else(|| fail(invalid("lies outside its buffer")))?;
        target.copy_from_slice(&decoded);
    }
    Ok(())
}

/// One vertex of `N` bytes, as meshoptimizer's vertex codec sees it (any `N`: arrays over 32
/// have no `Default`).
#[derive(Clone, Copy)]
struct Row<const N: usize>([u8; N]);

impl<const N: usize> Default for Row<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

fn vertices<const N: usize>(source: &[u8], count: usize) -> Result<Vec<u8>, meshopt::Error> {
    let rows = meshopt::encoding::decode_vertex_buffer::<Row<N>>(source, count)?;
    Ok(rows.iter().flat_map(|r| r.0).collect())
}

/// Dispatches a runtime stride (a multiple of 4 up to 256, checked) to the codec's compile-time
/// vertex size.
macro_rules! by_stride {
    ($stride:expr, $source:expr, $count:expr, $($n:literal)*) => {
        match $stride {
            $($n => vertices::<$n>($source, $count),)*
            _ => Err(meshopt::Error::Native(-1)),
        }
    };
}

fn decode(source: &[u8], c: &Compressed) -> Result<Vec<u8>, ImportProblem> {
    let failed = |e: meshopt::Error| {
        invalid(format!(
            "has {EXT} data that does not decode as {:?} ({e})",
            c.mode
        ))
    };
    let le16 = |v: Vec<u16>| v.into_iter().flat_map(u16::to_le_bytes).collect();
    let le32 = |v: Vec<u32>| v.into_iter().flat_map(u32::to_le_bytes).collect();
    use meshopt::encoding::{decode_index_buffer, decode_index_sequence};
    match (c.mode, c.stride) {
        (Mode::Attributes, s) => by_stride!(s, source, c.count,
            4 8 12 16 20 24 28 32 36 40 44 48 52 56 60 64 68 72 76 80 84 88 92 96 100 104 108
            112 116 120 124 128 132 136 140 144 148 152 156 160 164 168 172 176 180 184 188 192
            196 200 204 208 212 216 220 224 228 232 236 240 244 248 252 256)
        .map_err(failed),
        (Mode::Triangles, 2) => decode_index_buffer::<u16>(source, c.count)
            .map(le16)
            .map_err(failed),
        (Mode::Triangles, _) => decode_index_buffer::<u32>(source, c.count)
            .map(le32)
            .map_err(failed),
        (Mode::Indices, 2) => decode_index_sequence::<u16>(source, c.count)
            .map(le16)
            .map_err(failed),
        (Mode::Indices, _) => decode_index_sequence::<u32>(source, c.count)
            .map(le32)
            .map_err(failed),
    }
}

/// The filters of the extension's specification, on little-endian elements in place.
fn apply_filter(filter: Filter, stride: usize, data: &mut [u8]) {
    match filter {
        Filter::None => {}
        Filter::Octahedral if stride == 4 => data.chunks_exact_mut(4).for_each(|e| {
            let v = [e[0], e[1], e[2], e[3]].map(|b| f32::from(b as i8));
            let [x, y, z] = octahedral(v, 127.0);
            e[0] = x as i8 as u8;
            e[1] = y as i8 as u8;
            e[2] = z as i8 as u8;
        }),
        Filter::Octahedral => data.chunks_exact_mut(8).for_each(|e| {
            let v = [0, 1, 2, 3].map(|i| f32::from(i16::from_le_bytes([e[2 * i], e[2 * i + 1]])));
            for (i, c) in octahedral(v, 32767.0).into_iter().enumerate() {
                e[2 * i..2 * i + 2].copy_from_slice(&(c as i16).to_le_bytes());
            }
        }),
        Filter::Quaternion => data.chunks_exact_mut(8).for_each(|e| {
            let v = [0, 1, 2, 3].map(|i| i16::from_le_bytes([e[2 * i], e[2 * i + 1]]));
            for (i, c) in quaternion(v).into_iter().enumerate() {
                e[2 * i..2 * i + 2].copy_from_slice(&c.to_le_bytes());
            }
        }),
        Filter::Exponential => data.chunks_exact_mut(4).for_each(|e| {
            let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            e.copy_from_slice(&exponential(v).to_le_bytes());
        }),
    }
}

/// Octahedral unit vector: x, y signed, the third component holds 1.0 at the same bit count; the
/// fourth is kept. Returns the rounded x, y, z at `max`.
fn octahedral([x, y, one, _]: [f32; 4], max: f32) -> [i32; 3] {
    let z = one - x.abs() - y.abs();
    let t = z.min(0.0);
    let x = x + if x >= 0.0 { t } else { -t };
    let y = y + if y >= 0.0 { t } else { -t };
    let l = (x * x + y * y + z * z).sqrt();
    let s = if l > 0.0 { max / l } else { 0.0 };
    [x, y, z].map(|c| round_signed(c * s))
}

/// Rounds half away from zero, as the reference's `int(v + (v >= 0 ? 0.5 : -0.5))`.
fn round_signed(v: f32) -> i32 {
    (v + if v >= 0.0 { 0.5 } else { -0.5 }) as i32
}

/// Quaternion with the largest component dropped: three components in fixed point with the
/// scale in the fourth's high bits, whose low 2 bits say where the reconstructed one goes.
/// Computed unscaled, then scaled once, as meshoptimizer does (so the rounding matches).
fn quaternion(v: [i16; 4]) -> [i16; 4] {
    let s = (i32::from(v[3]) | 3) as f32;
    let [x, y, z] = [v[0], v[1], v[2]].map(f32::from);
    let w = (s * s * 2.0 - x * x - y * y - z * z).max(0.0).sqrt();
    let ss = 32767.0 * std::f32::consts::FRAC_1_SQRT_2 / s;
    let [xf, yf, zf, wf] = [x, y, z, w].map(|c| round_signed(c * ss) as i16);
    let qc = (v[3] & 3) as usize;
    let mut out = [0i16; 4];
    out[(qc + 1) & 3] = xf;
    out[(qc + 2) & 3] = yf;
    out[(qc + 3) & 3] = zf;
    out[qc] = wf;
    out
}

/// A 24-bit signed mantissa and an 8-bit signed exponent, to the f32's bits: `m × 2^e` with the
/// power built from its exponent bits, as meshoptimizer does (so e = -127 gives 0, not a
/// subnormal, exactly like the reference).
fn exponential(v: u32) -> u32 {
    let m = ((v << 8) as i32) >> 8;
    let e = (v as i32) >> 24;
    let power = f32::from_bits(((e + 127) as u32) << 23);
    (power * m as f32).to_bits()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A deterministic byte stream (xorshift), so the tests need no RNG crate.
    fn noise(n: usize, mut s: u32) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            })
            .collect()
    }

    /// meshoptimizer's SIMD paths round a few values the other way than its scalar reference,
    /// which ours follows: equal within one step.
    fn within_one(
        ours: impl IntoIterator<Item = i32>,
        theirs: impl IntoIterator<Item = i32>,
        what: &str,
    ) {
        let (ours, theirs): (Vec<i32>, Vec<i32>) =
            (ours.into_iter().collect(), theirs.into_iter().collect());
        assert_eq!(ours.len(), theirs.len());
        let off = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert!(
            ours.iter().zip(&theirs).all(|(a, b)| (a - b).abs() <= 1) && off * 100 < ours.len(),
            "{what}: {off} of {} values differ",
            ours.len()
        );
    }

    #[test]
    fn filters_match_meshoptimizer() {
        let raw = noise(8 * 500, 7);
        // Octahedral, 8-bit: set the "one" component to 127 as encoders write it.
        let mut ours = raw[..4 * 500].to_vec();
        ours.chunks_exact_mut(4).for_each(|e| e[2] = 127);
        let mut theirs: Vec<[i8; 4]> = ours
            .chunks_exact(4)
            .map(|e| [e[0] as i8, e[1] as i8, e[2] as i8, e[3] as i8])
            .collect();
        apply_filter(Filter::Octahedral, 4, &mut ours);
        meshopt::encoding::decode_filter_oct(&mut theirs);
        let theirs: Vec<u8> = theirs.iter().flatten().map(|&b| b as u8).collect();
        within_one(
            ours.iter().map(|&b| i32::from(b as i8)),
            theirs.iter().map(|&b| i32::from(b as i8)),
            "octahedral i8",
        );

        let as_i16 = |b: &[u8]| -> Vec<[i16; 4]> {
            b.chunks_exact(8)
                .map(|e| [0, 1, 2, 3].map(|i| i16::from_le_bytes([e[2 * i], e[2 * i + 1]])))
                .collect()
        };
        let mut ours = raw.clone();
        ours.chunks_exact_mut(8).for_each(|e| {
            e[4..6].copy_from_slice(&32767i16.to_le_bytes());
        });
        let mut theirs = as_i16(&ours);
        apply_filter(Filter::Octahedral, 8, &mut ours);
        meshopt::encoding::decode_filter_oct(&mut theirs);
        let flat = |v: Vec<[i16; 4]>| v.into_iter().flatten().map(i32::from).collect::<Vec<_>>();
        within_one(flat(as_i16(&ours)), flat(theirs), "octahedral i16");

        let mut ours = raw.clone();
        let mut theirs = as_i16(&ours);
        apply_filter(Filter::Quaternion, 8, &mut ours);
        meshopt::encoding::decode_filter_quat(&mut theirs);
        within_one(flat(as_i16(&ours)), flat(theirs), "quaternion");

        let mut ours = raw;
        let mut theirs: Vec<[u32; 2]> = ours
            .chunks_exact(8)
            .map(|e| {
                [0, 1].map(|i| {
                    u32::from_le_bytes([e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]])
                })
            })
            .collect();
        apply_filter(Filter::Exponential, 8, &mut ours);
        meshopt::encoding::decode_filter_exp(&mut theirs);
        let theirs: Vec<u8> = theirs
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(ours, theirs, "exponential");
    }

    #[test]
    fn vertices_and_indices_round_trip_through_the_codec() {
        let verts: Vec<[u8; 12]> = (0..300u32)
            .map(|i| {
                let mut v = [0u8; 12];
                v[..4].copy_from_slice(&(i * 3).to_le_bytes());
                v[4..8].copy_from_slice(&(i as f32).to_le_bytes());
                v
            })
            .collect();
        let encoded = meshopt::encoding::encode_vertex_buffer(&verts).unwrap();
        let c = Compressed {
            buffer: 0,
            offset: 0,
            length: encoded.len(),
            stride: 12,
            count: 300,
            mode: Mode::Attributes,
            filter: Filter::None,
        };
        assert_eq!(decode(&encoded, &c).unwrap(), verts.concat());
        let indices: Vec<u32> = (0..99).map(|i| (i * 7) % 300).collect();
        let encoded = meshopt::encoding::encode_index_buffer(&indices, 300).unwrap();
        let c = Compressed {
            length: encoded.len(),
            stride: 4,
            count: 99,
            mode: Mode::Triangles,
            ..c
        };
        let bytes = decode(&encoded, &c).unwrap();
        let back: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // The codec may rotate a triangle's corners; each triangle must come back as a rotation.
        for (t, (b, i)) in back
            .chunks_exact(3)
            .zip(indices.chunks_exact(3))
            .enumerate()
        {
            let rotations = [[i[0], i[1], i[2]], [i[1], i[2], i[0]], [i[2], i[0], i[1]]];
            assert!(
                rotations.contains(&[b[0], b[1], b[2]]),
                "triangle {t}: {b:?} vs {i:?}"
            );
        }
    }

    #[test]
    fn hostile_streams_fail_with_a_reason() {
        let c = Compressed {
            buffer: 0,
            offset: 0,
            length: 64,
            stride: 16,
            count: 1 << 20,
            mode: Mode::Attributes,
            filter: Filter::None,
        };
        for seed in 1..64 {
            let junk = noise(64, seed);
            assert!(decode(&junk, &c).is_err(), "seed {seed}");
            let tri = Compressed {
                stride: 2,
                count: 3 << 10,
                mode: Mode::Triangles,
                ..c
            };
            assert!(decode(&junk, &tri).is_err(), "seed {seed}");
        }
        let bad_stride = serde_json::json!({
            "buffer": 0, "byteLength": 4, "byteStride": 6, "count": 1, "mode": "ATTRIBUTES"
        });
        assert!(parse(&bad_stride).is_err());
        let bad_mode = serde_json::json!({
            "buffer": 0, "byteLength": 4, "byteStride": 4, "count": 1, "mode": "POINTS"
        });
        assert!(parse(&bad_mode).is_err());
    }
}
