//! Where a file's bytes come from: paths resolved under the assets root (no `..`, no absolute
//! paths, no schemes, no symlinks out of the root), size-capped reads, and URIs (data URIs
//! decoded here, others handed to the caller's resolver after percent-decoding).

use std::path::{Component, Path, PathBuf};

use base64::Engine;

use super::error::{ImportError, ImportProblem, invalid, limit, over};

fn forbidden(path: &str, reason: &'static str) -> ImportError {
    ImportError::Forbidden {
        path: path.to_owned(),
        reason,
    }
}

/// Resolves `rel` against `base` and insists the real path stays under `root` (canonical).
pub(super) fn resolve_under(root: &Path, base: &Path, rel: &str) -> Result<PathBuf, ImportError> {
    if rel.is_empty() {
        return Err(ImportError::NotFound("(empty path)".into()));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(forbidden(rel, "contains a NUL or backslash"));
    }
    if has_scheme(rel) {
        return Err(forbidden(
            rel,
            "URI schemes other than data: are not allowed",
        ));
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::ParentDir => return Err(forbidden(rel, "'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(forbidden(rel, "absolute paths are not allowed"));
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let joined = base.join(p);
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NotFound(rel.to_owned()),
        _ => ImportError::Io {
            path: rel.to_owned(),
            source: e,
        },
    })?;
    if !real.starts_with(root) {
        return Err(forbidden(rel, "resolves outside the assets root"));
    }
    if !real.is_file() {
        return Err(ImportError::NotFound(format!("{rel} (not a file)")));
    }
    Ok(real)
}

fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Reads a file whose size (from the open handle's metadata) is within `max`. The read itself is
/// capped too, so a file that grows after the check cannot push past the limit.
pub(super) fn read_limited(path: &Path, shown: &str, max: u64) -> Result<Vec<u8>, ImportError> {
    use std::io::Read;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NotFound(shown.to_owned()),
        _ => ImportError::Io {
            path: shown.to_owned(),
            source: e,
        },
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    limit(format!("size of {shown}"), len, max)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    limit(format!("size of {shown}"), bytes.len() as u64, max)?;
    Ok(bytes)
}

fn percent_decode(s: &str) -> Result<String, ImportProblem> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let v = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("has a bad percent escape in its URI '{s}'")))?;
            out.push(v);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        invalid(format!(
            "has a URI '{s}' that is not UTF-8 after percent-decoding"
        ))
    })
}

/// The bytes a buffer or image URI names: a data URI is decoded here (its size checked against
/// `max` first), anything else is percent-decoded and handed to `resolve`. Problems with the URI
/// itself go through `item`, which names the buffer or image; the resolver's errors pass as
/// they are.
pub(super) fn load_uri(
    uri: &str,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    max: u64,
    item: impl Fn(ImportProblem) -> ImportError,
) -> Result<Vec<u8>, ImportError> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let (_, payload) = rest
            .split_once(";base64,")
            .ok_or_else(|| item(invalid("has a data URI that is not base64")))?;
        over("data URI size", payload.len() as u64 / 4 * 3, max).map_err(&item)?;
        return base64::engine::general_purpose::STANDARD
            .decode(payload.trim_end())
            .map_err(|e| item(invalid(format!("has bad base64 in its data URI: {e}"))));
    }
    resolve(&percent_decode(uri).map_err(item)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_recognised() {
        assert!(has_scheme("file:///etc/passwd"));
        assert!(has_scheme("http://x"));
        assert!(!has_scheme("Box With Spaces.bin"));
        assert!(!has_scheme("dir/file.bin"));
        assert_eq!(
            percent_decode("Box%20With%20Spaces.bin").unwrap(),
            "Box With Spaces.bin"
        );
        assert!(percent_decode("bad%2").is_err());
    }
}
