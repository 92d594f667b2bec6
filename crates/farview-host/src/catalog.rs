//! The models a host offers: the `.gltf` and `.glb` files under its assets root, found by a
//! bounded walk (depth, entries visited, entries listed) that follows no symbolic link and enters
//! no hidden directory, so a listing cannot leave the root or run long on a huge tree.

use std::path::Path;

use farview_protocol::{MAX_MODELS_LISTED, ModelFile};

/// Directory levels searched, the root's included (files at most 7 directories below it).
const MAX_DEPTH: usize = 8;
/// Directory entries looked at, in all; past it the listing is marked truncated.
const MAX_VISITED: usize = 100_000;

/// The model files under `root`, sorted by path, and whether the listing was cut short.
pub(crate) fn list_models(root: &Path) -> (Vec<ModelFile>, bool) {
    let mut found = Vec::new();
    let mut visited = 0usize;
    let mut truncated = false;
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_VISITED {
                truncated = true;
                break;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            // `file_type` does not follow symbolic links: a link is neither a dir nor a file.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            let lower = name.to_ascii_lowercase();
            if !kind.is_file() || !(lower.ends_with(".gltf") || lower.ends_with(".glb")) {
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
            let Some(parts) = parts else { continue };
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            found.push(ModelFile {
                path: parts.join("/"),
                bytes,
            });
        }
        if truncated {
            break;
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    if found.len() > MAX_MODELS_LISTED {
        found.truncate(MAX_MODELS_LISTED);
        truncated = true;
    }
    (found, truncated)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_gltf_files_only_within_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        std::fs::write(root.join("a/b/M.glb"), b"12345").unwrap();
        std::fs::write(root.join("a/X.GLTF"), b"{}").unwrap();
        std::fs::write(root.join("a/readme.txt"), b"no").unwrap();
        std::fs::write(root.join(".hidden/H.glb"), b"no").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("O.glb"), b"no").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();

        let (models, truncated) = list_models(root);
        assert!(!truncated);
        let listed: Vec<_> = models.iter().map(|m| (m.path.as_str(), m.bytes)).collect();
        assert_eq!(listed, [("a/X.GLTF", 2), ("a/b/M.glb", 5)]);
    }

    #[test]
    fn depth_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        for i in 0..12 {
            deep.push(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("deep.glb"), b"x").unwrap();
        std::fs::write(dir.path().join("top.glb"), b"x").unwrap();
        let (models, _) = list_models(dir.path());
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].path, "top.glb");
    }
}
