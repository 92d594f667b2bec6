#!/usr/bin/env bash
# Render Farview's golden images with the Khronos glTF Sample Viewer (headless Chromium, SwiftShader).
#
#   tools/reference/render-goldens.sh [NAME ...]      # all scenes of goldens/scenes.json, or only NAMEs
#   tools/reference/render-goldens.sh --animations [NAME ...]
#                                                     # goldens/animations.json -> goldens/png/anim/
#
# Env: FORCE=1 re-render existing PNGs; CORPUS (default /work/shared/corpus/khronos);
#      REF_CACHE (default $HOME/.cache/farview-reference); REF_PORT (default 8765);
#      SCENES (default goldens/scenes.json, with --animations goldens/animations.json);
#      OUT_DIR (default goldens/png, with --animations goldens/png/anim); CHROMIUM (default /usr/bin/chromium).
# Scene fields turned into page options: "draco": true -> &draco=1, "ktx": true -> &ktx=1,
#   "animation_indices": [i, ...] + "time": T -> &anim=i,...&time=T (absent: rest pose).
# Slow (80-120 s a model, IBL prefiltering on the CPU); renders strictly one model at a time.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CORPUS=${CORPUS:-/work/shared/corpus/khronos}
REF_CACHE=${REF_CACHE:-$HOME/.cache/farview-reference}
REF_PORT=${REF_PORT:-8765}
if [ "${1:-}" = "--animations" ]; then
  shift
  SCENES=${SCENES:-$REPO/goldens/animations.json}
  OUT_DIR=${OUT_DIR:-$REPO/goldens/png/anim}
fi
SCENES=${SCENES:-$REPO/goldens/scenes.json}
OUT_DIR=${OUT_DIR:-$REPO/goldens/png}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM REF_PORT

die() { echo "render-goldens: $*" >&2; exit 1; }

# --- prerequisites -----------------------------------------------------------
[ -x "$CHROMIUM" ] || command -v "$CHROMIUM" >/dev/null 2>&1 \
  || die "chromium not found at $CHROMIUM (Debian: apt-get install chromium; or set CHROMIUM=...)"
command -v node >/dev/null 2>&1 || die "node not found (Debian: apt-get install nodejs)"
command -v npm >/dev/null 2>&1 || die "npm not found (Debian: apt-get install npm)"
command -v python3 >/dev/null 2>&1 || die "python3 not found (Debian: apt-get install python3)"
[ -d "$CORPUS" ] || die "corpus not found: $CORPUS (set CORPUS=...)"
[ -f "$SCENES" ] || die "scene manifest not found: $SCENES (generate it: python3 tools/reference/cameras.py)"

# --- viewer kit in the cache dir ---------------------------------------------
VIEWER="$REF_CACHE/viewer"
mkdir -p "$VIEWER"
if [ ! -f "$VIEWER/node_modules/@khronosgroup/gltf-viewer/package.json" ] \
   || [ ! -d "$VIEWER/node_modules/puppeteer-core" ] || [ ! -d "$VIEWER/node_modules/draco3d" ] \
   || ! grep -q '"version": "1.1.0"' "$VIEWER/node_modules/@khronosgroup/gltf-viewer/package.json"; then
  echo "render-goldens: installing the Sample Viewer kit into $VIEWER"
  (cd "$VIEWER" && npm install --no-audit --no-fund @khronosgroup/gltf-viewer@1.1.0 draco3d@1.5.9 puppeteer-core@23) \
    || die "npm install failed (needs the npm registry)"
fi
cp "$HERE/render.html" "$HERE/shot.mjs" "$HERE/neutral_sky.hdr" "$VIEWER/"
ln -sfn "$CORPUS" "$VIEWER/khronos"

# --- loopback http server ----------------------------------------------------
SERVER_PID=
cleanup() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT INT TERM
if python3 - "$REF_PORT" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
then die "port $REF_PORT on 127.0.0.1 is already in use (set REF_PORT=...)"; fi
python3 -m http.server "$REF_PORT" --bind 127.0.0.1 --directory "$REF_CACHE" >"$REF_CACHE/http.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$REF_PORT/viewer/render.html" 2>/dev/null && break
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$REF_PORT/viewer/render.html', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

# --- render --------------------------------------------------------------------
mkdir -p "$OUT_DIR"
# one line per scene: name \t model \t extra-query \t width
mapfile -t JOBS < <(python3 - "$SCENES" "$@" <<'PY'
import json, sys
scenes = json.load(open(sys.argv[1]))
want = sys.argv[2:]
names = {s["name"] for s in scenes}
for w in want:
    if w not in names:
        sys.exit(f"render-goldens: no scene named {w!r} in {sys.argv[1]}")
for s in scenes:
    if want and s["name"] not in want:
        continue
    if s.get("width", 512) != s.get("height", 512):
        sys.exit(f"render-goldens: {s['name']}: only square images are supported by shot.mjs")
    f = lambda v: ",".join(repr(float(x)) for x in v)
    q = "&eye=%s&target=%s&yfov=%r&znear=%r&zfar=%r" % (f(s["eye"]), f(s["target"]),
        float(s["yfov_deg"]), float(s["znear"]), float(s["zfar"]))
    for flag in ("draco", "ktx"):
        if s.get(flag):
            q += "&%s=1" % flag
    if "animation_indices" in s or "time" in s:
        idx = s.get("animation_indices")
        if not idx or "time" not in s:
            sys.exit(f"render-goldens: {s['name']}: an animation scene needs animation_indices and time "
                     f"(regenerate the manifest: python3 tools/reference/cameras.py --animations)")
        q += "&anim=%s&time=%r" % (",".join(str(int(i)) for i in idx), float(s["time"]))
    print("\t".join([s["name"], s["model"], q, str(s.get("width", 512))]))
PY
)
[ "${#JOBS[@]}" -gt 0 ] || die "nothing to render"

FAILED=()
T_ALL=$(date +%s)
for job in "${JOBS[@]}"; do
  IFS=$'\t' read -r name model query size <<<"$job"
  out="$OUT_DIR/$name.png"
  if [ -f "$out" ] && [ "${FORCE:-0}" != "1" ]; then
    echo "== $name: exists, skipped (FORCE=1 to re-render)"
    continue
  fi
  [ -f "$CORPUS/$model" ] || { echo "== $name: MISSING model $CORPUS/$model"; FAILED+=("$name"); continue; }
  echo "== $name: $model"
  t0=$(date +%s)
  tmp="$OUT_DIR/.$name.tmp.png"
  if (cd "$VIEWER" && node shot.mjs "/viewer/khronos/$model" "$tmp" "$query" "$size"); then
    mv -f "$tmp" "$out"
    echo "== $name: ok in $(( $(date +%s) - t0 )) s"
  else
    rm -f "$tmp"
    echo "== $name: FAILED after $(( $(date +%s) - t0 )) s"
    FAILED+=("$name")
  fi
done
echo "== done in $(( $(date +%s) - T_ALL )) s; ${#FAILED[@]} failed${FAILED:+: ${FAILED[*]}}"
[ "${#FAILED[@]}" -eq 0 ]
