//! Which image a texture samples. `KHR_texture_basisu` (KTX2) and `EXT_texture_webp` name their
//! own image in the texture's extensions; when both are present the KTX2 one wins (the format
//! the asset pipeline made for GPUs), then WebP, then the core `source`, which the two
//! extensions make optional. The `gltf` crate requires the core `source`, so a texture without
//! one gets the extension's before the typed parse.

use gltf::json;
use serde_json::Value;

/// Texture extensions that carry an image of their own, in order of preference.
const IMAGE_EXTENSIONS: [&str; 2] = ["KHR_texture_basisu", "EXT_texture_webp"];

/// The image an extension of `extensions` names, by preference; `None` when none does (or the
/// value is not an index).
fn extension_source(extensions: Option<&serde_json::Map<String, Value>>) -> Option<u64> {
    let extensions = extensions?;
    IMAGE_EXTENSIONS.iter().find_map(|name| {
        extensions
            .get(*name)
            .and_then(|e| e.get("source"))
            .and_then(Value::as_u64)
    })
}

/// Gives each texture without a core `source` its extension's image, in the untyped JSON.
/// Textures with neither keep failing the typed parse, with its message.
pub(super) fn fill_missing_sources(root: &mut Value) {
    let Some(textures) = root.get_mut("textures").and_then(Value::as_array_mut) else {
        return;
    };
    for texture in textures.iter_mut().filter_map(Value::as_object_mut) {
        if texture.contains_key("source") {
            continue;
        }
        let source = extension_source(texture.get("extensions").and_then(Value::as_object));
        if let Some(source) = source {
            texture.insert("source".into(), source.into());
        }
    }
}

/// The image `texture` samples: its extensions' (when they name one), else the core `source`.
pub(super) fn image_of(texture: &json::Texture) -> usize {
    texture
        .extensions
        .as_ref()
        .and_then(|e| extension_source(Some(&e.others)))
        .and_then(|i| usize::try_from(i).ok())
        .unwrap_or_else(|| texture.source.value())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ktx2_image_wins_then_webp_then_the_core_source() {
        let mut root: Value = serde_json::from_str(
            r#"{"textures":[
                {"extensions":{"EXT_texture_webp":{"source":2},"KHR_texture_basisu":{"source":1}}},
                {"source":0,"extensions":{"EXT_texture_webp":{"source":2}}},
                {"source":0},
                {"extensions":{"OTHER":{"source":3}}}
            ]}"#,
        )
        .unwrap();
        fill_missing_sources(&mut root);
        assert_eq!(root["textures"][0]["source"], 1);
        assert_eq!(root["textures"][1]["source"], 0, "a core source is kept");
        assert!(root["textures"][3].get("source").is_none());
        let typed: Vec<json::Texture> = serde_json::from_value(Value::Array(
            root["textures"].as_array().unwrap()[..3].to_vec(),
        ))
        .unwrap();
        let images: Vec<usize> = typed.iter().map(image_of).collect();
        assert_eq!(images, [1, 2, 0]);
    }
}
