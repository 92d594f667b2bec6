//! Broken inputs report the indices of the item at fault as fields of the error.

#![allow(clippy::unwrap_used, clippy::panic)]

use base64::Engine;
use serde_json::{Value, json};

use super::*;

/// A glTF with one data-URI buffer; every accessor gets its own buffer view.
#[derive(Default)]
struct Doc {
    buf: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
}

const TRI: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

impl Doc {
    fn view(&mut self, bytes: &[u8]) -> usize {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.views.push(json!({
            "buffer": 0, "byteOffset": self.buf.len(), "byteLength": bytes.len()
        }));
        self.buf.extend_from_slice(bytes);
        self.views.len() - 1
    }

    /// `count` VEC3 floats read from a view holding `v` (a count above `v.len()` reads past it).
    fn positions(&mut self, v: &[[f32; 3]], count: usize) -> usize {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5126, "count": count, "type": "VEC3",
            "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0]
        }));
        self.accessors.len() - 1
    }

    fn indices(&mut self, v: &[u16]) -> usize {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5123, "count": v.len(), "type": "SCALAR"
        }));
        self.accessors.len() - 1
    }

    /// The file: `rest` holds the other top-level members.
    fn finish(&self, rest: Value) -> Vec<u8> {
        let uri = format!(
            "data:application/octet-stream;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&self.buf)
        );
        let mut root = json!({
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": self.buf.len(), "uri": uri}],
            "bufferViews": self.views,
            "accessors": self.accessors,
        });
        if let (Some(root), Value::Object(rest)) = (root.as_object_mut(), rest) {
            root.extend(rest);
        }
        serde_json::to_vec(&root).unwrap()
    }
}

fn import(bytes: &[u8]) -> Result<Model, ImportError> {
    import_with(bytes, &ImportLimits::default())
}

fn import_with(bytes: &[u8], limits: &ImportLimits) -> Result<Model, ImportError> {
    import_gltf(
        bytes,
        &mut |uri| Err(ImportError::NotFound(uri.into())),
        limits,
    )
}

/// Mesh 0 is a good triangle; mesh 1 has one primitive made by `second`.
fn two_meshes(doc: &mut Doc, second: impl FnOnce(&mut Doc) -> Value) -> Vec<u8> {
    let good = doc.positions(&TRI, 3);
    let prim = second(doc);
    doc.finish(json!({
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": good}}]},
            {"primitives": [prim]},
        ],
        "nodes": [{"mesh": 0}, {"mesh": 1}],
    }))
}

#[test]
fn an_accessor_reading_past_its_view_names_mesh_primitive_and_accessor() {
    let mut doc = Doc::default();
    let mut bad = 0;
    let file = two_meshes(&mut doc, |d| {
        bad = d.positions(&TRI, 10);
        json!({"attributes": {"POSITION": bad}})
    });
    let err = import(&file).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
    assert!(
        matches!(
            err,
            ImportError::Accessor { mesh: Some(1), primitive: Some(0), accessor, problem: ImportProblem::Invalid(_) }
                if accessor == bad
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("(mesh 1 primitive 0)"), "{err}");
}

#[test]
fn a_missing_accessor_names_mesh_primitive_and_accessor() {
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        json!({"attributes": {"POSITION": pos, "NORMAL": 99}})
    });
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(1),
                primitive: Some(0),
                accessor: 99,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_index_past_the_vertices_names_its_accessor() {
    let mut doc = Doc::default();
    let mut idx = 0;
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        idx = d.indices(&[0, 1, 7]);
        json!({"attributes": {"POSITION": pos}, "indices": idx})
    });
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor { mesh: Some(1), primitive: Some(0), accessor, .. } if accessor == idx
        ),
        "{err:?}"
    );
}

#[test]
fn primitive_problems_and_limits_name_the_primitive() {
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |_| json!({"attributes": {}}));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 1,
                primitive: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // Mesh 0 takes 3 of the 5 vertices, mesh 1's 3 go over.
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        json!({"attributes": {"POSITION": pos, "NORMAL": pos}})
    });
    let limits = ImportLimits {
        max_total_vertices: 5,
        ..ImportLimits::default()
    };
    let err = import_with(&file, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 1,
                primitive: 0,
                problem: ImportProblem::Limit {
                    what: "total vertices",
                    actual: 6,
                    limit: 5
                },
            }
        ),
        "{err:?}"
    );
    // An accessor over the count limit is a limit error naming it.
    let limits = ImportLimits {
        max_accessor_count: 2,
        ..ImportLimits::default()
    };
    let err = import_with(&file, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(0),
                primitive: Some(0),
                accessor: 0,
                problem: ImportProblem::Limit { what: "count", .. },
            }
        ),
        "{err:?}"
    );
}

#[test]
fn views_and_buffers_are_named() {
    let mut doc = Doc::default();
    let pos = doc.positions(&TRI, 3);
    doc.views
        .push(json!({"buffer": 0, "byteOffset": 4, "byteLength": 4096}));
    let file = doc.finish(json!({"meshes": [{"primitives": [{"attributes": {"POSITION": pos}}]}]}));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::BufferView {
                view: 1,
                buffer: 0,
                ..
            }
        ),
        "{err:?}"
    );
    let mut doc = Doc::default();
    doc.positions(&TRI, 3);
    let mut file: Value = serde_json::from_slice(&doc.finish(json!({}))).unwrap();
    file["buffers"][0]["byteLength"] = json!(1000);
    let err = import(&serde_json::to_vec(&file).unwrap()).unwrap_err();
    assert!(
        matches!(err, ImportError::Buffer { buffer: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn materials_textures_and_images_are_named() {
    let base =
        |texture: usize| json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": texture}}});
    // Material 1 refers to texture 5 of 1.
    let file = Doc::default().finish(json!({
        "materials": [{}, base(5)],
        "textures": [{"source": 0}],
        "images": [{"uri": "a.png"}],
    }));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Material {
                material: 1,
                texture: Some(5),
                ..
            }
        ),
        "{err:?}"
    );
    // Texture 1 (used by material 0) has no image 3.
    let file = Doc::default().finish(json!({
        "materials": [base(1)],
        "textures": [{"source": 0}, {"source": 3}],
        "images": [{"uri": "a.png"}],
    }));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Image {
                image: 3,
                texture: Some(1),
                material: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    // Image 1, declared PNG, holds junk: named with the texture and material that use it.
    let junk = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"not an image")
    );
    let file = Doc::default().finish(json!({
        "materials": [{}, base(0)],
        "textures": [{"source": 1}],
        "images": [{"uri": "unused.png"}, {"uri": junk}],
    }));
    let err = import(&file).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed);
    assert!(
        matches!(
            err,
            ImportError::Image {
                image: 1,
                texture: Some(0),
                material: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn node_problems_name_the_node() {
    let nodes = |nodes: Value| Doc::default().finish(json!({ "nodes": nodes }));
    let cases = [
        (json!([{}, {"children": [2]}, {}, {"children": [2]}]), 2),
        (json!([{}, {"children": [9]}]), 1),
        (json!([{}, {"children": [1]}]), 1),
        (json!([{}, {"children": [2]}, {"children": [1]}]), 1),
        (json!([{}, {}, {"mesh": 4}]), 2),
        (
            json!([{}, {"matrix": [1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1], "scale": [1,1,1]}]),
            1,
        ),
        (json!([{"rotation": [0, 0, 0, 0]}]), 0),
    ];
    for (nodes_json, expect) in cases {
        let err = import(&nodes(nodes_json.clone())).unwrap_err();
        assert!(
            matches!(err, ImportError::Node { node, .. } if node == expect),
            "{nodes_json}: {err:?}"
        );
        assert_eq!(err.kind(), ImportErrorKind::Malformed);
    }
}

#[test]
fn json_nesting_ignores_brackets_in_strings() {
    assert_eq!(json_depth(br#"{"a":[1,{"b":"]]]]{{"}]}"#), 3);
}
