#!/usr/bin/env python3
"""Compute explicit golden-render cameras for glTF models (stdlib only).

    python3 tools/reference/cameras.py [scenes.in.json] [out scenes.json]
    python3 tools/reference/cameras.py --animations [animations.in.json] [out animations.json]
    python3 tools/reference/cameras.py --model path/to/model.glb [--dir x,y,z]

Defaults: tools/reference/scenes.in.json -> goldens/scenes.json (still images, rest
pose), with --animations tools/reference/animations.in.json -> goldens/animations.json
(animation poses at fixed times); models relative to the corpus root (env
FARVIEW_CORPUS, default /work/shared/corpus/khronos).

Optional per-scene input fields, carried into the manifest: "draco": true
(KHR_draco_mesh_compression, rendered with &draco=1), "ktx": true
(KHR_texture_basisu, &ktx=1), "margin" (default 1.05, written out only when set).
Animation scenes also need "animation" (an index, a list of indices, or "all")
and "time" (seconds); see tools/reference/README.md.

Camera convention (shared by the Sample Viewer reference page and Farview):
  * AABB: world-space box of the default scene (gltf.scene, else 0) built from
    the POSITION accessor min/max of every primitive of every mesh node,
    8 corners transformed by the node's world matrix (full hierarchy, TRS or
    matrix). Skinned meshes use their mesh node's transform anyway; morph
    targets and animations are ignored (rest pose).
  * target = AABB centre, r = half the AABB diagonal, yfov = 45 deg,
    d = normalize(direction) (default +Z),
    dist = r / sin(yfov/2) * margin (default 1.05), eye = target + d * dist,
    znear = max(dist - 2r, dist * 0.01), zfar = dist + 2r.
  * view = lookAt(eye, target, up=+Y) (right-handed, camera looks down -Z),
    projection = OpenGL-style perspective(yfov, aspect=width/height, znear, zfar).
"""
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CORPUS = os.environ.get("FARVIEW_CORPUS", "/work/shared/corpus/khronos")
DEFAULT_IN = os.path.join(HERE, "scenes.in.json")
DEFAULT_OUT = os.path.join(REPO, "goldens", "scenes.json")
DEFAULT_ANIM_IN = os.path.join(HERE, "animations.in.json")
DEFAULT_ANIM_OUT = os.path.join(REPO, "goldens", "animations.json")
YFOV_DEG = 45.0
MARGIN = 1.05


def load_gltf_json(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"glTF":
        _magic, _version, _length = struct.unpack_from("<III", data, 0)
        chunk_len, chunk_type = struct.unpack_from("<II", data, 12)
        if chunk_type != 0x4E4F534A:  # 'JSON'
            raise ValueError(f"{path}: first GLB chunk is not JSON")
        return json.loads(data[20:20 + chunk_len].decode("utf-8"))
    return json.loads(data.decode("utf-8"))


# 4x4 matrices as flat column-major lists (glTF convention): m[col*4 + row]
IDENTITY = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def mat_mul(a, b):
    out = [0.0] * 16
    for c in range(4):
        for r in range(4):
            out[c * 4 + r] = sum(a[k * 4 + r] * b[c * 4 + k] for k in range(4))
    return out


def trs_matrix(t, q, s):
    x, y, z, w = q
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    # rotation columns
    r0 = [1 - 2 * (yy + zz), 2 * (xy + wz), 2 * (xz - wy)]
    r1 = [2 * (xy - wz), 1 - 2 * (xx + zz), 2 * (yz + wx)]
    r2 = [2 * (xz + wy), 2 * (yz - wx), 1 - 2 * (xx + yy)]
    return [r0[0] * s[0], r0[1] * s[0], r0[2] * s[0], 0.0,
            r1[0] * s[1], r1[1] * s[1], r1[2] * s[1], 0.0,
            r2[0] * s[2], r2[1] * s[2], r2[2] * s[2], 0.0,
            t[0], t[1], t[2], 1.0]


def local_matrix(node):
    if "matrix" in node:
        return [float(v) for v in node["matrix"]]
    return trs_matrix(node.get("translation", [0, 0, 0]),
                      node.get("rotation", [0, 0, 0, 1]),
                      node.get("scale", [1, 1, 1]))


def transform_point(m, p):
    x, y, z = p
    w = m[3] * x + m[7] * y + m[11] * z + m[15]
    return [(m[0] * x + m[4] * y + m[8] * z + m[12]) / w,
            (m[1] * x + m[5] * y + m[9] * z + m[13]) / w,
            (m[2] * x + m[6] * y + m[10] * z + m[14]) / w]


def scene_aabb(gltf):
    """World AABB (min, max) of the default scene from POSITION accessor bounds."""
    scenes = gltf.get("scenes") or []
    if not scenes:
        raise ValueError("no scenes")
    scene_index = gltf.get("scene", 0)
    nodes = gltf.get("nodes", [])
    meshes = gltf.get("meshes", [])
    accessors = gltf.get("accessors", [])
    lo = [math.inf] * 3
    hi = [-math.inf] * 3
    stack = [(n, IDENTITY) for n in reversed(scenes[scene_index].get("nodes", []))]
    while stack:
        idx, parent = stack.pop()
        node = nodes[idx]
        world = mat_mul(parent, local_matrix(node))
        if "mesh" in node:
            for prim in meshes[node["mesh"]].get("primitives", []):
                acc_i = prim.get("attributes", {}).get("POSITION")
                if acc_i is None:
                    continue
                acc = accessors[acc_i]
                if "min" not in acc or "max" not in acc:
                    raise ValueError(f"POSITION accessor {acc_i} lacks min/max")
                if acc.get("normalized"):
                    raise ValueError(f"POSITION accessor {acc_i} is normalized (quantized); not supported")
                mn, mx = acc["min"], acc["max"]
                for cx in (mn[0], mx[0]):
                    for cy in (mn[1], mx[1]):
                        for cz in (mn[2], mx[2]):
                            p = transform_point(world, (cx, cy, cz))
                            for k in range(3):
                                lo[k] = min(lo[k], p[k])
                                hi[k] = max(hi[k], p[k])
        for child in reversed(node.get("children", [])):
            stack.append((child, world))
    if lo[0] == math.inf:
        raise ValueError("scene has no mesh with POSITION")
    return lo, hi, scene_index


def normalize(v):
    n = math.sqrt(sum(c * c for c in v))
    if n == 0:
        raise ValueError("zero direction")
    return [c / n for c in v]


def fmt(x):
    return float("%.7g" % x)


def camera_for(gltf, direction=(0.0, 0.0, 1.0), yfov_deg=YFOV_DEG, margin=MARGIN):
    lo, hi, scene_index = scene_aabb(gltf)
    target = [(a + b) / 2 for a, b in zip(lo, hi)]
    r = 0.5 * math.sqrt(sum((b - a) ** 2 for a, b in zip(lo, hi)))
    if r <= 0:
        raise ValueError("degenerate AABB")
    d = normalize(direction)
    if abs(d[1]) > 0.999:
        raise ValueError("direction parallel to +Y up vector")
    yfov = math.radians(yfov_deg)
    dist = r / math.sin(yfov / 2) * margin
    eye = [t + dc * dist for t, dc in zip(target, d)]
    znear = max(dist - 2 * r, dist * 0.01)
    zfar = dist + 2 * r
    return {
        "eye": [fmt(v) for v in eye],
        "target": [fmt(v) for v in target],
        "yfov_deg": yfov_deg,
        "znear": fmt(znear),
        "zfar": fmt(zfar),
        "aabb_min": [fmt(v) for v in lo],
        "aabb_max": [fmt(v) for v in hi],
        "scene": scene_index,
    }


def animation_selection(gltf, e):
    """Resolve an entry's "animation" (index, list of indices or "all") and check "time"."""
    anims = gltf.get("animations") or []
    a = e.get("animation")
    if a == "all":
        idx = list(range(len(anims)))
    elif isinstance(a, int) and not isinstance(a, bool):
        idx = [a]
    elif isinstance(a, list) and a and all(isinstance(i, int) and not isinstance(i, bool) for i in a):
        idx = list(a)
    else:
        raise ValueError(f"{e['name']}: \"animation\" must be an index, a non-empty list of indices or \"all\", not {a!r}")
    if not idx or any(i < 0 or i >= len(anims) for i in idx) or len(set(idx)) != len(idx):
        raise ValueError(f"{e['name']}: animation {a!r} not valid for a file with {len(anims)} animations")
    t = e.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise ValueError(f"{e['name']}: \"time\" must be a number of seconds >= 0, not {t!r}")
    accessors = gltf.get("accessors", [])
    durations = []
    for i in idx:
        # the viewer's gltfAnimation.maxTime: the largest input (time) over the animation's channels
        durations.append(max(float(accessors[anims[i]["samplers"][c["sampler"]]["input"]]["max"][0])
                             for c in anims[i]["channels"]))
    for i, d in zip(idx, durations):
        if t >= d:
            print(f"cameras.py: warning: {e['name']}: time {t} >= duration {d:.7g} of animation {i}; "
                  f"the viewer wraps it to {math.fmod(t, d):.7g}", file=sys.stderr)
    return idx, [anims[i].get("name", "") for i in idx], [fmt(d) for d in durations]


def manifest_entry(e, corpus, animation=False):
    path = os.path.join(corpus, e["model"])
    gltf = load_gltf_json(path)
    margin = e.get("margin", MARGIN)
    cam = camera_for(gltf, e.get("direction", [0, 0, 1]), margin=margin)
    scene = {"name": e["name"], "model": e["model"]}
    if animation:
        idx, names, durations = animation_selection(gltf, e)
        scene["animation"] = e["animation"]
        scene["animation_indices"] = idx
        scene["time"] = e["time"]
    scene.update({
        "eye": cam["eye"],
        "target": cam["target"],
        "yfov_deg": cam["yfov_deg"],
        "znear": cam["znear"],
        "zfar": cam["zfar"],
        "width": e.get("width", 512),
        "height": e.get("height", 512),
        "features": e.get("features", []),
    })
    for flag in ("draco", "ktx"):
        if e.get(flag):
            scene[flag] = True
    scene.update({
        "scene": cam["scene"],
        "aabb_min": cam["aabb_min"],
        "aabb_max": cam["aabb_max"],
    })
    if "margin" in e:
        scene["margin"] = margin
    if animation:
        scene["animation_names"] = names
        scene["animation_durations"] = durations
    if "license" in e:
        scene["license"] = e["license"]
    return scene


def main(argv):
    if len(argv) >= 2 and argv[1] == "--model":
        direction = (0, 0, 1)
        if len(argv) >= 5 and argv[3] == "--dir":
            direction = [float(v) for v in argv[4].split(",")]
        print(json.dumps(camera_for(load_gltf_json(argv[2]), direction), indent=2))
        return 0
    animation = len(argv) >= 2 and argv[1] == "--animations"
    if animation:
        argv = argv[:1] + argv[2:]
    src = argv[1] if len(argv) > 1 else (DEFAULT_ANIM_IN if animation else DEFAULT_IN)
    dst = argv[2] if len(argv) > 2 else (DEFAULT_ANIM_OUT if animation else DEFAULT_OUT)
    corpus = DEFAULT_CORPUS
    with open(src) as f:
        entries = json.load(f)
    names = [e["name"] for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"cameras.py: duplicate scene names in {src}: {dup}")
    out = [manifest_entry(e, corpus, animation) for e in entries]
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w") as f:
        f.write(json.dumps(out, indent=2) + "\n")
    print(f"wrote {len(out)} scenes to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
