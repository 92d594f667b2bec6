#!/usr/bin/env bash
# Renders the Kubernetes manifests in deploy/ (the plain-cluster base and the Agones overlay) and
# validates them offline:
#   - core kinds with kubernetes-validate (PyPI; it bundles the Kubernetes JSON schemas), strict:
#     unknown fields fail;
#   - Agones' Fleet and FleetAutoscaler against the fields of Agones' CRDs (1.40-1.56), their pod
#     template as a Pod with kubernetes-validate (tools/agones_crd_check.py);
#   - references between them (ConfigMaps, Secrets, fleetName), and that each render holds
#     exactly the kinds it should (the overlay: no StatefulSet, no Service);
#   - farview.toml's keys and every FARVIEW_* variable against the host's settings in
#     crates/farview-host/src/config.rs.
# Usage: tools/validate-deploy.sh [DEPLOY_DIR]   (default: deploy/ in this repository)
# FARVIEW_K8S_VERSION picks the Kubernetes schema version (default 1.33, the API version of the
# pinned Agones 1.56, which supports Kubernetes 1.32-1.34). Exits non-zero on any problem.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
deploy="$(cd "${1:-$root/deploy}" && pwd)"
k8s_version="${FARVIEW_K8S_VERSION:-1.33}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/farview/validate-deploy-venv"

fail() { echo "validate-deploy: $*" >&2; exit 1; }

command -v kubectl >/dev/null 2>&1 \
  || fail "kubectl not found: install Debian's kubernetes-client package (apt-get install kubernetes-client), or the kubectl package these project machines come with; kubectl 1.27 or newer is needed"
# kubectl embeds kustomize; `labels:` and inline `$patch: delete` patches need a modern one.
# (Debian bookworm's kubernetes-client is kubectl 1.20 with kustomize v2: too old.)
kustomize_version="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}\([0-9][0-9.]*\).*/\1/p')"
case "$kustomize_version" in
  [5-9].* | [1-9][0-9].*) ;;
  *) fail "kubectl's kustomize is ${kustomize_version:-unknown} ($(command -v kubectl)); these manifests need kustomize v5, i.e. kubectl 1.27 or newer (Debian bookworm's kubernetes-client package is 1.20: too old)" ;;
esac

# A Python 3.11+ (tomllib) that imports kubernetes_validate: the system's, else a venv of our own.
python=""
for candidate in "$venv/bin/python" python3; do
  if command -v "$candidate" >/dev/null 2>&1 \
    && "$candidate" -c 'import sys, kubernetes_validate, yaml; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  command -v python3 >/dev/null 2>&1 || fail "python3 not found: install Debian's python3 and python3-venv packages"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); 3.11 or newer is needed (tomllib)"
  echo "validate-deploy: installing kubernetes-validate (PyPI) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >/dev/null 2>&1 \
    || fail "cannot create a virtual environment at $venv: install Debian's python3-venv package"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.33,<2' \
    || fail "pip could not install kubernetes-validate (PyPI) into $venv"
  python="$venv/bin/python"
fi
kv_version="$("$python" -c 'import kubernetes_validate.version as v; print(v.__version__)')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

kubectl_version="$(kubectl version --client 2>/dev/null | tr '\n' ' ' | sed -E 's/Client Version: ([^ ]+) +Kustomize Version: ([^ ]+).*/kubectl \1 (kustomize \2)/')"
echo "validate-deploy: $kubectl_version, kubernetes-validate $kv_version, Kubernetes schemas $k8s_version"

status=0
# name | directory under DEPLOY_DIR | the kinds it must render, exactly
while IFS='|' read -r name dir expect; do
  echo "== $name: kubectl kustomize $deploy/$dir"
  if ! kubectl kustomize "$deploy/$dir" >"$work/$name.yaml" 2>"$work/$name.err"; then
    sed 's/^/  /' "$work/$name.err"
    echo "  FAIL $name: kubectl kustomize failed"
    status=1
    continue
  fi
  echo "  rendered $(grep -c '^kind:' "$work/$name.yaml") resources"
  "$python" "$root/tools/agones_crd_check.py" --kubernetes-version "$k8s_version" \
    --expect "$expect" --label "$name" --config-rs "$root/crates/farview-host/src/config.rs" \
    "$work/$name.yaml" || status=1
done <<'LIST'
base|base|ConfigMap=2,Secret=1,Service=3,StatefulSet=1
agones|overlays/agones|ConfigMap=2,Fleet=1,FleetAutoscaler=1,Secret=1
LIST

if [ "$status" -ne 0 ]; then
  echo "validate-deploy: FAILED (see FAIL lines above)"
  exit 1
fi
echo "validate-deploy: all manifests valid"
