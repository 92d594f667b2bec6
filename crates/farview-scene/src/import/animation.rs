//! Skins and keyframe animations: joints and inverse bind matrices, and each animation's
//! channels with their samplers, read through the bounds-checked accessor reader and checked
//! before use (target nodes exist, key times are finite and non-decreasing, each sampler holds
//! exactly the values its keys and interpolation need, weight channels match the mesh's targets).
//! A channel that cannot apply (weights on a node without morph targets) is dropped with a
//! warning, as viewers do; a malformed one fails the import.

use gltf::json::animation::{Interpolation as GltfInterpolation, Property};
use gltf::json::validation::Checked;

use crate::animation::{Animation, Channel, ChannelPath, Interpolation};
use crate::model::{Mesh, ModelNode, Skin};

use super::Buffer;
use super::accessor::read_vec;
use super::error::{ImportError, ImportProblem, invalid, over};

/// Most animations in one file (each is listed to the device).
const MAX_ANIMATIONS: usize = 1024;

/// Longest animation name kept, in bytes (longer ones are cut at a character boundary).
const MAX_NAME: usize = 256;

fn short_name(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Most joints in one skin.
const MAX_JOINTS: usize = 1024;

/// The file's skins.
pub(super) fn import_skins(
    doc: &gltf::Document,
    buffers: &[Buffer<'_>],
    node_count: usize,
) -> Result<Vec<Skin>, ImportError> {
    let mut skins = Vec::new();
    // The JSON, not the gltf crate's wrappers: those unwrap indices they assume valid.
    for (index, skin) in doc.as_json().skins.iter().enumerate() {
        let problem = |problem| ImportError::Skin {
            skin: index,
            problem,
        };
        let fail = |why: String| problem(ImportProblem::Invalid(why));
        let joints: Vec<usize> = skin.joints.iter().map(|j| j.value()).collect();
        over("skin joints", joints.len() as u64, MAX_JOINTS as u64).map_err(problem)?;
        if let Some(j) = joints.iter().find(|&&j| j >= node_count) {
            return Err(fail(format!("joint {j} does not exist")));
        }
        let ibm = skin.inverse_bind_matrices.map(|a| a.value());
        let inverse_bind = match ibm {
            Some(a) => {
                let acc = doc
                    .accessors()
                    .nth(a)
                    .ok_or_else(|| fail(format!("inverse bind accessor {a} does not exist")))?;
                let m = read_vec::<16>(&acc, buffers)?;
                if m.len() < joints.len() || m.iter().flatten().any(|v| !v.is_finite()) {
                    return Err(fail(format!(
                        "has {} inverse bind matrices (non-finite, or fewer than its {} joints)",
                        m.len(),
                        joints.len()
                    )));
                }
                m.iter()
                    .take(joints.len())
                    .map(glam::Mat4::from_cols_array)
                    .collect()
            }
            None => vec![glam::Mat4::IDENTITY; joints.len()],
        };
        skins.push(Skin {
            name: skin.name.clone(),
            joints,
            inverse_bind,
        });
    }
    Ok(skins)
}

/// The file's animations. `nodes` and `meshes` are the imported ones (a weights channel needs
/// its node's mesh's target count); `max_values` bounds the key values over all animations.
pub(super) fn import_animations(
    doc: &gltf::Document,
    buffers: &[Buffer<'_>],
    nodes: &[ModelNode],
    meshes: &[Mesh],
    max_values: u64,
    warnings: &mut Vec<String>,
) -> Result<Vec<Animation>, ImportError> {
    let mut total = 0u64;
    let mut out = Vec::new();
    over(
        "animations",
        doc.as_json().animations.len() as u64,
        MAX_ANIMATIONS as u64,
    )
    .map_err(|problem| ImportError::Animation {
        animation: MAX_ANIMATIONS,
        problem,
    })?;
    for (index, anim) in doc.as_json().animations.iter().enumerate() {
        let fail = |problem: ImportProblem| ImportError::Animation {
            animation: index,
            problem,
        };
        let accessor = |a: usize| {
            doc.accessors().nth(a).ok_or_else(|| {
                fail(invalid(format!(
                    "refers to accessor {a}, which does not exist"
                )))
            })
        };
        let mut channels = Vec::new();
        let mut duration = 0.0f32;
        for ch in &anim.channels {
            let node = ch.target.node.value();
            let Some(model_node) = nodes.get(node) else {
                return Err(fail(invalid(format!(
                    "targets node {node}, which does not exist"
                ))));
            };
            let sampler = anim.samplers.get(ch.sampler.value()).ok_or_else(|| {
                fail(invalid(format!(
                    "uses sampler {}, which does not exist",
                    ch.sampler.value()
                )))
            })?;
            let Checked::Valid(property) = ch.target.path else {
                return Err(fail(invalid(format!(
                    "has a channel on node {node} with an unknown path"
                ))));
            };
            let (path, components) = match property {
                Property::Translation => (ChannelPath::Translation, 3),
                Property::Rotation => (ChannelPath::Rotation, 4),
                Property::Scale => (ChannelPath::Scale, 3),
                Property::MorphTargetWeights => {
                    let targets = model_node
                        .mesh
                        .and_then(|m| meshes.get(m))
                        .map_or(0, |m| m.weights.len());
                    if targets == 0 {
                        if warnings.len() < 32 {
                            warnings.push(format!(
                                "animation {index}: weights channel on node {node}, which has no morph targets, ignored"
                            ));
                        }
                        continue;
                    }
                    (ChannelPath::Weights, targets)
                }
            };
            let interpolation = match sampler.interpolation {
                Checked::Valid(GltfInterpolation::Step) => Interpolation::Step,
                Checked::Valid(GltfInterpolation::Linear) => Interpolation::Linear,
                Checked::Valid(GltfInterpolation::CubicSpline) => Interpolation::CubicSpline,
                Checked::Invalid => {
                    return Err(fail(invalid(format!(
                        "has a sampler on node {node} with an unknown interpolation"
                    ))));
                }
            };
            let times: Vec<f32> = read_vec::<1>(&accessor(sampler.input.value())?, buffers)?
                .into_iter()
                .map(|[t]| t)
                .collect();
            if times.is_empty() {
                return Err(fail(invalid(format!("channel on node {node} has no keys"))));
            }
            if times.iter().any(|t| !t.is_finite() || *t < 0.0)
                || times.windows(2).any(|w| w[1] < w[0])
            {
                return Err(fail(invalid(format!(
                    "channel on node {node} has key times that are negative, non-finite or decreasing"
                ))));
            }
            let output = accessor(sampler.output.value())?;
            let values: Vec<f32> = match path {
                ChannelPath::Weights => read_vec::<1>(&output, buffers)?
                    .into_iter()
                    .map(|[v]| v)
                    .collect(),
                ChannelPath::Rotation => read_vec::<4>(&output, buffers)?.concat(),
                _ => read_vec::<3>(&output, buffers)?.concat(),
            };
            let per_key = components
                * if interpolation == Interpolation::CubicSpline {
                    3
                } else {
                    1
                };
            if values.len() != times.len() * per_key {
                return Err(fail(invalid(format!(
                    "channel on node {node} has {} values for {} keys of {per_key}",
                    values.len(),
                    times.len()
                ))));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(fail(invalid(format!(
                    "channel on node {node} has non-finite values"
                ))));
            }
            total = total.saturating_add(values.len() as u64 + times.len() as u64);
            over("animation key values", total, max_values).map_err(fail)?;
            duration = duration.max(times.last().copied().unwrap_or(0.0));
            channels.push(Channel {
                node,
                path,
                interpolation,
                times,
                values,
                components,
            });
        }
        out.push(Animation {
            name: anim
                .name
                .as_deref()
                .map_or_else(|| format!("animation {index}"), short_name),
            channels,
            duration,
        });
    }
    Ok(out)
}
