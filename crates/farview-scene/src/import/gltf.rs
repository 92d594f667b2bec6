//! Walking a parsed glTF document into a [`Model`]: references checked by item, buffers loaded,
//! every accessor range checked, then materials and their textures ([`super::material`]), meshes,
//! material variants, the node hierarchy with its instances, skins, animations
//! ([`super::animation`]), cameras and lights.
//!
//! The hierarchy is walked iteratively and its work is bounded by the node count
//! ([`ImportLimits::max_nodes`]), not by depth: a valid chain of any depth within the node limit
//! loads.

use glam::{Mat4, Quat, Vec3};

use crate::model::{Mesh, Model, ModelCamera, ModelExtras, ModelNode, Transform};

use super::accessor::{check_accessor, view_range};
use super::animation::{import_animations, import_skins};
use super::error::{ImportError, ImportProblem, invalid, limit, over};
use super::material::{check_material_references, import_materials};
use super::meshopt;
use super::primitive::{Budget, import_primitive};
use super::sandbox::load_uri;
use super::{Buffer, ImportLimits, Parsed};

/// Checks that each primitive has a POSITION and that the references the importer follows
/// (primitive accessors, materials and variant mappings, material textures with their images and
/// samplers, node children and meshes) exist, so a broken one is reported with the indices of
/// the items involved rather than as a JSON path. Runs before the `gltf` crate's own validation,
/// which catches the rest.
pub(super) fn check_references(json: &gltf::json::Root) -> Result<(), ImportError> {
    for (m, mesh) in json.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            let position = gltf::json::validation::Checked::Valid(gltf::Semantic::Positions);
            if !prim.attributes.contains_key(&position) {
                return Err(ImportError::Primitive {
                    mesh: m,
                    primitive: p,
                    problem: invalid("has no POSITION"),
                });
            }
            let targets = prim
                .targets
                .iter()
                .flatten()
                .flat_map(|t| [t.positions, t.normals, t.tangents])
                .flatten();
            let used = prim
                .attributes
                .values()
                .copied()
                .chain(prim.indices)
                .chain(targets);
            for a in used {
                if a.value() >= json.accessors.len() {
                    return Err(ImportError::Accessor {
                        mesh: Some(m),
                        primitive: Some(p),
                        accessor: a.value(),
                        problem: invalid("does not exist"),
                    });
                }
            }
            if let Some(mat) = prim.material
                && mat.value() >= json.materials.len()
            {
                return Err(ImportError::Primitive {
                    mesh: m,
                    primitive: p,
                    problem: invalid(format!(
                        "refers to material {}, which does not exist",
                        mat.value()
                    )),
                });
            }
            check_variant_mappings(json, prim).map_err(|problem| ImportError::Primitive {
                mesh: m,
                primitive: p,
                problem,
            })?;
        }
    }
    check_material_references(json)?;
    for (i, node) in json.nodes.iter().enumerate() {
        let node_error = |why: String| ImportError::Node {
            node: i,
            problem: ImportProblem::Invalid(why),
        };
        if let Some(c) = node
            .children
            .iter()
            .flatten()
            .find(|c| c.value() >= json.nodes.len())
        {
            return Err(node_error(format!(
                "lists child {}, which does not exist",
                c.value()
            )));
        }
        if let Some(mesh) = node.mesh
            && mesh.value() >= json.meshes.len()
        {
            return Err(node_error(format!(
                "refers to mesh {}, which does not exist",
                mesh.value()
            )));
        }
    }
    Ok(())
}

/// Checks a primitive's `KHR_materials_variants` mappings: each names a material and variants
/// that exist.
fn check_variant_mappings(
    json: &gltf::json::Root,
    prim: &gltf::json::mesh::Primitive,
) -> Result<(), ImportProblem> {
    let variants = json
        .extensions
        .as_ref()
        .and_then(|e| e.khr_materials_variants.as_ref())
        .map_or(0, |v| v.variants.len());
    let mappings = prim
        .extensions
        .as_ref()
        .and_then(|e| e.khr_materials_variants.as_ref())
        .map_or(&[][..], |v| v.mappings.as_slice());
    for mapping in mappings {
        if mapping.material as usize >= json.materials.len() {
            return Err(invalid(format!(
                "maps variants to material {}, which does not exist",
                mapping.material
            )));
        }
        if let Some(v) = mapping.variants.iter().find(|v| **v as usize >= variants) {
            return Err(invalid(format!(
                "maps variant {v} to material {}, but the file has {variants} variants",
                mapping.material
            )));
        }
    }
    Ok(())
}

/// The model in a parsed and validated document. `step` reports progress (and cancels).
pub(super) fn import_document(
    gltf: &Parsed<'_>,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImportLimits,
    step: &mut dyn FnMut(u8) -> Result<(), ImportError>,
) -> Result<Model, ImportError> {
    let doc = &gltf.document;
    let json = doc.as_json();

    step(10)?;
    let mut buffers = load_buffers(gltf, resolve, limits.max_file_bytes)?;
    meshopt::decode_views(json, &mut buffers, limits)?;
    for view in doc.views() {
        view_range(&view, &buffers)?;
    }
    // Each accessor is checked once; a broken one is reported with the first primitive that
    // reads it.
    let mut first_use: Vec<Option<(usize, usize)>> = vec![None; json.accessors.len()];
    for mesh in doc.meshes() {
        for prim in mesh.primitives() {
            let targets = prim.morph_targets().flat_map(|t| {
                [t.positions(), t.normals(), t.tangents()]
                    .into_iter()
                    .flatten()
            });
            let used = prim
                .attributes()
                .map(|(_, a)| a)
                .chain(prim.indices())
                .chain(targets);
            for a in used {
                if let Some(slot @ None) = first_use.get_mut(a.index()) {
                    *slot = Some((mesh.index(), prim.index()));
                }
            }
        }
    }
    for acc in doc.accessors() {
        check_accessor(&acc, &buffers, limits.max_accessor_count).map_err(|e| {
            match first_use.get(acc.index()).copied().flatten() {
                Some((m, p)) => e.in_primitive(m, p),
                None => e,
            }
        })?;
    }

    step(25)?;
    let (materials, textures) = import_materials(doc, &buffers, resolve, limits, step)?;

    let mut budget = Budget::new(limits.max_total_vertices);
    let mut meshes = Vec::with_capacity(json.meshes.len());
    let mesh_count = json.meshes.len().max(1);
    let mut extras = ModelExtras::default();
    for (i, mesh) in doc.meshes().enumerate() {
        step(60 + (35 * i / mesh_count) as u8)?;
        let mut primitives = Vec::new();
        for prim in mesh.primitives() {
            extras.morph_targets = extras
                .morph_targets
                .saturating_add(prim.morph_targets().len() as u32);
            match import_primitive(doc, &mesh, &prim, &buffers, &materials, &mut budget)
                .map(|p| {
                    p.map(|mut p| {
                        if limits.levels_at_import {
                            let threads =
                                std::thread::available_parallelism().map_or(1, usize::from);
                            let keep_order = crate::lod::draws_blended(&p, &materials);
                            crate::lod::attach_with(&mut p, threads, keep_order);
                        }
                        p
                    })
                })
                .map_err(|e| e.in_primitive(mesh.index(), prim.index()))?
            {
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
        // Default morph weights: the file's, padded or cut to the primitives' target count.
        let targets = primitives
            .iter()
            .map(|p| p.targets.len())
            .max()
            .unwrap_or(0);
        let mut weights: Vec<f32> = mesh
            .weights()
            .unwrap_or(&[])
            .iter()
            .map(|w| if w.is_finite() { *w } else { 0.0 })
            .collect();
        weights.resize(targets, 0.0);
        meshes.push(Mesh {
            name: mesh.name().map(str::to_owned),
            primitives,
            weights,
        });
    }

    let (mut nodes, roots) = import_nodes(doc)?;
    let skins = import_skins(doc, &buffers, nodes.len())?;
    let animations = import_animations(
        doc,
        &buffers,
        &nodes,
        &meshes,
        limits.max_accessor_count.saturating_mul(4),
        &mut extras.warnings,
    )?;
    expand_instances(doc, &buffers, &mut nodes, limits.max_nodes)?;
    extras.animations = animations
        .iter()
        .map(|a| a.name.clone())
        .take(1024)
        .collect();
    extras.skins = json.skins.len() as u32;
    extras.cameras = json.cameras.len() as u32;
    let cameras = import_cameras(json, &mut extras.warnings);
    extras.lights = import_lights(doc);
    step(100)?;
    Ok(Model {
        meshes,
        materials,
        textures,
        nodes,
        roots,
        variants: doc
            .variants()
            .into_iter()
            .flatten()
            .map(|v| v.name().to_owned())
            .collect(),
        ignored_extensions: Vec::new(),
        extras,
        skins,
        animations,
        cameras,
    })
}

fn load_buffers<'p>(
    gltf: &'p Parsed<'_>,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    max_bytes: u64,
) -> Result<Vec<Buffer<'p>>, ImportError> {
    let mut buffers = Vec::with_capacity(gltf.document.as_json().buffers.len());
    // All buffers together, however many a file declares (fallback buffers are allocated; a
    // GLB chunk is borrowed, and counted once per buffer that names it).
    let mut total = 0u64;
    for b in gltf.document.buffers() {
        let fail = |problem| ImportError::Buffer {
            buffer: b.index(),
            problem,
        };
        let fallback = gltf
            .document
            .as_json()
            .buffers
            .get(b.index())
            .is_some_and(meshopt::is_fallback);
        let data = match b.source() {
            // Every view of a fallback buffer is decoded from compressed data: its own bytes
            // (a file, or none at all) are not read, and it starts as zeros of its length.
            _ if fallback => {
                over("fallback buffer size", b.length() as u64, max_bytes).map_err(fail)?;
                Buffer::Owned(vec![0; b.length()])
            }
            gltf::buffer::Source::Bin => {
                gltf.blob.as_deref().map(Buffer::Borrowed).ok_or_else(|| {
                    fail(invalid(
                        "refers to a GLB binary chunk the file does not have",
                    ))
                })?
            }
            gltf::buffer::Source::Uri(uri) => {
                Buffer::Owned(load_uri(uri, resolve, max_bytes, fail)?)
            }
        };
        total = total.saturating_add(data.len() as u64);
        over("all buffers", total, max_bytes.saturating_mul(2)).map_err(fail)?;
        if data.len() < b.length() {
            return Err(fail(invalid(format!(
                "declares {} bytes but holds {}",
                b.length(),
                data.len()
            ))));
        }
        buffers.push(data);
    }
    Ok(buffers)
}

/// The nodes and the roots of the default scene. Each node may have one parent and may not be
/// its own child, so the graph is a forest plus cycles: a walk from the parentless nodes visits
/// every tree node once, on an explicit stack (no recursion, no depth limit: work is bounded by
/// the node count), and a node the walk does not reach is on or below a cycle.
fn import_nodes(doc: &gltf::Document) -> Result<(Vec<ModelNode>, Vec<usize>), ImportError> {
    let json = doc.as_json();
    let count = json.nodes.len();
    let node_error = |node: usize, why: String| ImportError::Node {
        node,
        problem: ImportProblem::Invalid(why),
    };
    let mut nodes = Vec::with_capacity(count);
    let mut parent: Vec<Option<usize>> = vec![None; count];
    for (i, (n, jn)) in doc.nodes().zip(&json.nodes).enumerate() {
        if jn.matrix.is_some()
            && (jn.translation.is_some() || jn.rotation.is_some() || jn.scale.is_some())
        {
            return Err(node_error(i, "has both a matrix and TRS properties".into()));
        }
        let local = node_transform(&n)
            .ok_or_else(|| node_error(i, "has a non-finite or degenerate transform".into()))?;
        let children: Vec<usize> = n.children().map(|c| c.index()).collect();
        for &c in &children {
            if c == i {
                return Err(node_error(i, "lists itself as a child".into()));
            }
            match parent.get_mut(c) {
                Some(slot @ None) => *slot = Some(i),
                Some(Some(p)) => {
                    return Err(node_error(c, format!("has two parents ({p} and {i})")));
                }
                None => {
                    return Err(node_error(
                        i,
                        format!("lists child {c}, which does not exist"),
                    ));
                }
            }
        }
        nodes.push(ModelNode {
            name: n.name().map(str::to_owned),
            local,
            mesh: n.mesh().map(|m| m.index()),
            children,
            skin: jn.skin.map(|s| s.value()).filter(|&s| s < json.skins.len()),
            weights: n.weights().map(|w| {
                w.iter()
                    .map(|v| if v.is_finite() { *v } else { 0.0 })
                    .collect()
            }),
        });
    }
    let mut reached = vec![false; count];
    let mut stack: Vec<usize> = (0..count).filter(|&i| parent[i].is_none()).collect();
    while let Some(i) = stack.pop() {
        if let Some(seen) = reached.get_mut(i) {
            *seen = true;
        }
        if let Some(n) = nodes.get(i) {
            stack.extend_from_slice(&n.children);
        }
    }
    if let Some(i) = reached.iter().position(|&r| !r) {
        return Err(node_error(i, "is on or below a cycle of nodes".into()));
    }
    let is_root = |i: &usize| parent.get(*i).is_some_and(Option::is_none);
    let roots: Vec<usize> = match doc.default_scene().or_else(|| doc.scenes().next()) {
        Some(scene) => scene.nodes().map(|n| n.index()).filter(is_root).collect(),
        None => (0..count).filter(is_root).collect(),
    };
    Ok((nodes, roots))
}

/// `EXT_mesh_gpu_instancing`: a node that draws its mesh once per instance gets one child per
/// instance, holding the mesh and the instance's transform (relative to the node, as the
/// extension defines), so bounds, raycasts and overrides see every instance. The GPU mesh is
/// still uploaded once; drawing the children as one instanced draw is the renderer's business.
/// Instances count against the node limit.
fn expand_instances(
    doc: &gltf::Document,
    buffers: &[Buffer<'_>],
    nodes: &mut Vec<ModelNode>,
    max_nodes: usize,
) -> Result<(), ImportError> {
    const EXT: &str = "EXT_mesh_gpu_instancing";
    for (i, jn) in doc.as_json().nodes.iter().enumerate() {
        let Some(attributes) = jn
            .extensions
            .as_ref()
            .and_then(|e| e.others.get(EXT))
            .and_then(|e| e.get("attributes"))
            .and_then(serde_json::Value::as_object)
        else {
            continue;
        };
        let node_error = |why: String| ImportError::Node {
            node: i,
            problem: ImportProblem::Invalid(why),
        };
        let accessor = |name: &str| -> Result<Option<gltf::Accessor<'_>>, ImportError> {
            let Some(v) = attributes.get(name) else {
                return Ok(None);
            };
            v.as_u64()
                .and_then(|a| usize::try_from(a).ok())
                .and_then(|a| doc.accessors().nth(a))
                .map(Some)
                .ok_or_else(|| {
                    node_error(format!(
                        "has {EXT} {name} accessor {v}, which does not exist"
                    ))
                })
        };
        let translations = accessor("TRANSLATION")?
            .map(|a| super::accessor::read_vec::<3>(&a, buffers))
            .transpose()?;
        let rotations = accessor("ROTATION")?
            .map(|a| super::accessor::read_vec::<4>(&a, buffers))
            .transpose()?;
        let scales = accessor("SCALE")?
            .map(|a| super::accessor::read_vec::<3>(&a, buffers))
            .transpose()?;
        let lens = [&translations, &scales]
            .into_iter()
            .flatten()
            .map(Vec::len)
            .chain(rotations.iter().map(Vec::len));
        let mut count = None;
        for len in lens {
            if *count.get_or_insert(len) != len {
                return Err(node_error(format!(
                    "has {EXT} attributes of different counts"
                )));
            }
        }
        let Some(count) = count else { continue };
        let Some(mesh) = nodes.get_mut(i).and_then(|n| n.mesh.take()) else {
            continue;
        };
        limit(
            "node count with instances",
            (nodes.len() + count) as u64,
            max_nodes as u64,
        )?;
        for k in 0..count {
            let local = Transform {
                translation: translations
                    .as_ref()
                    .map_or(Vec3::ZERO, |t| Vec3::from_array(t[k])),
                rotation: rotations
                    .as_ref()
                    .map_or(Quat::IDENTITY, |r| Quat::from_array(r[k]).normalize()),
                scale: scales
                    .as_ref()
                    .map_or(Vec3::ONE, |s| Vec3::from_array(s[k])),
            };
            if !local.is_finite() {
                return Err(node_error(format!(
                    "has {EXT} instance {k} with a non-finite transform"
                )));
            }
            let child = nodes.len();
            nodes.push(ModelNode {
                name: None,
                local,
                mesh: Some(mesh),
                children: Vec::new(),
                skin: None,
                weights: None,
            });
            if let Some(n) = nodes.get_mut(i) {
                n.children.push(child);
            }
        }
    }
    Ok(())
}

/// The perspective cameras placed on nodes, with values a renderer can use (out-of-range ones
/// clamped); orthographic cameras are left out with a warning.
fn import_cameras(json: &gltf::json::Root, warnings: &mut Vec<String>) -> Vec<ModelCamera> {
    use gltf::json::validation::Checked;
    let mut out = Vec::new();
    for (node, jn) in json.nodes.iter().enumerate() {
        let Some(camera) = jn.camera.and_then(|c| json.cameras.get(c.value())) else {
            continue;
        };
        match (&camera.type_, &camera.perspective) {
            (Checked::Valid(gltf::json::camera::Type::Perspective), Some(p)) => {
                let finite = |v: f32, d: f32| if v.is_finite() { v } else { d };
                let znear = finite(p.znear, 0.01).max(1e-6);
                out.push(ModelCamera {
                    name: camera.name.clone(),
                    node,
                    yfov: finite(p.yfov, 0.8).clamp(0.01, 3.1),
                    znear,
                    zfar: p.zfar.filter(|f| f.is_finite() && *f > znear),
                    aspect_ratio: p.aspect_ratio.filter(|a| a.is_finite() && *a > 0.0),
                });
            }
            _ if warnings.len() < 32 => warnings.push(format!(
                "node {node}: orthographic camera not offered (only perspective cameras are)"
            )),
            _ => {}
        }
        if out.len() >= 256 {
            break;
        }
    }
    out
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
