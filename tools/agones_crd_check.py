#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests (the output of `kubectl kustomize`) offline.

Run by tools/validate-deploy.sh; needs `kubernetes-validate` (PyPI) and Python 3.11+ (tomllib).

- Core kinds (ConfigMap, Secret, Service, StatefulSet, ...) are validated with kubernetes-validate
  against the Kubernetes JSON schemas it bundles, strict (unknown fields fail), at one fixed
  Kubernetes version.
- Agones kinds (Fleet, GameServer, FleetAutoscaler) are checked against the field names, enums and
  required fields of Agones' CRDs as they stand in Agones 1.40-1.56
  (install/helm/agones/templates/crds/ in googleforgames/agones) plus the rules Agones' webhook
  applies to ports and buffer policies (pkg/apis/agones/v1/gameserver.go,
  pkg/apis/autoscaling/v1/fleetautoscaler.go). A GameServer's pod template is wrapped as a Pod and
  validated with kubernetes-validate too.
- Across one render: every ConfigMap and Secret a pod refers to exists, a FleetAutoscaler names a
  Fleet that exists, farview.toml in a ConfigMap is TOML, FARVIEW_SESSIONS__API_KEYS is an array.
- Any other kind fails: nothing passes unchecked.

With --config-rs, farview.toml's keys and every FARVIEW_* variable a container gets are checked
against farview-host's settings in that file (a misspelt key stops the host at start; a misspelt
top-level variable is silently ignored).

Usage: agones_crd_check.py --kubernetes-version 1.33 [--expect Kind=N,...] [--label NAME]
       [--config-rs crates/farview-host/src/config.rs] FILE...
Exit status 0 when every document passes, 1 otherwise; every problem is printed with its path.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib

import yaml

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError:  # pragma: no cover - the shell script installs it
    sys.exit("agones_crd_check: the Python package kubernetes-validate is not installed "
             "(pip install kubernetes-validate)")

# --- a small declarative schema --------------------------------------------------------------

STR, INT, BOOL, INT_OR_STR, ANY = "string", "integer", "boolean", "int-or-string", "any"


class Obj:
    """An object with known fields; `required` must be present; unknown ones fail."""

    def __init__(self, fields: dict, required: tuple = ()):
        self.fields, self.required = fields, required


class Map:
    """An object whose keys are free and whose values follow one schema (labels, counters)."""

    def __init__(self, values):
        self.values = values


class List:
    def __init__(self, items):
        self.items = items


class Enum:
    def __init__(self, *values):
        self.values = values


class Int:
    def __init__(self, minimum=None, maximum=None):
        self.minimum, self.maximum = minimum, maximum


class Str:
    def __init__(self, pattern=None, max_len=None):
        self.pattern, self.max_len = pattern, max_len


def check(value, schema, path: str, errors: list) -> None:
    """Appends one message per problem in `value` to `errors`."""
    where = path or "(top)"
    if schema == ANY:
        return
    if schema == STR or isinstance(schema, Str):
        if not isinstance(value, str):
            errors.append(f"{where}: must be a string, not {type(value).__name__} {value!r}")
            return
        if isinstance(schema, Str):
            if schema.max_len is not None and len(value) > schema.max_len:
                errors.append(f"{where}: {value!r} is longer than {schema.max_len} characters")
            if schema.pattern and not re.fullmatch(schema.pattern, value):
                errors.append(f"{where}: {value!r} does not match {schema.pattern}")
        return
    if schema == INT or isinstance(schema, Int):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{where}: must be an integer, not {type(value).__name__} {value!r}")
            return
        if isinstance(schema, Int):
            if schema.minimum is not None and value < schema.minimum:
                errors.append(f"{where}: {value} is below the minimum {schema.minimum}")
            if schema.maximum is not None and value > schema.maximum:
                errors.append(f"{where}: {value} is above the maximum {schema.maximum}")
        return
    if schema == BOOL:
        if not isinstance(value, bool):
            errors.append(f"{where}: must be true or false, not {value!r}")
        return
    if schema == INT_OR_STR:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            errors.append(f"{where}: must be an integer or a string, not {value!r}")
        return
    if isinstance(schema, Enum):
        if value not in schema.values:
            errors.append(f"{where}: {value!r} is not one of {', '.join(schema.values)}")
        return
    if isinstance(schema, List):
        if not isinstance(value, list):
            errors.append(f"{where}: must be a list, not {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check(item, schema.items, f"{path}[{i}]", errors)
        return
    if isinstance(schema, Map):
        if not isinstance(value, dict):
            errors.append(f"{where}: must be a map, not {type(value).__name__}")
            return
        for k, v in value.items():
            check(v, schema.values, f"{path}.{k}" if path else str(k), errors)
        return
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            errors.append(f"{where}: must be an object, not {type(value).__name__} {value!r}")
            return
        for k in schema.required:
            if k not in value:
                errors.append(f"{where}: required field {k!r} is missing")
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if k not in schema.fields:
                allowed = ", ".join(sorted(schema.fields))
                errors.append(f"{sub}: unknown field {k!r} (allowed here: {allowed})")
                continue
            check(v, schema.fields[k], sub, errors)
        return
    raise TypeError(f"bad schema at {where}: {schema!r}")


# --- Agones' CRDs (field names as in Agones 1.40-1.56) ----------------------------------------

STRING_MAP = Map(STR)
OBJECT_META = Obj({
    "name": STR, "generateName": STR, "namespace": STR, "labels": STRING_MAP,
    "annotations": STRING_MAP, "finalizers": List(STR), "ownerReferences": List(ANY),
    "uid": STR, "resourceVersion": STR, "generation": INT, "creationTimestamp": ANY,
    "deletionTimestamp": STR, "deletionGracePeriodSeconds": INT, "selfLink": STR,
    "managedFields": List(ANY),
})
NAMED_META = Obj(OBJECT_META.fields, required=("name",))
DNS_LABEL = Str(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", max_len=63)
PORT = Int(1, 65535)
INT32 = Int(0, 2147483648)

GAME_SERVER_PORT = Obj({
    "name": STR,
    "range": STR,
    "portPolicy": Enum("Dynamic", "Static", "Passthrough", "None"),
    "protocol": Enum("UDP", "TCP", "TCPUDP"),
    "container": STR,
    "containerPort": PORT,
    "hostPort": PORT,
})
GAME_SERVER_SPEC = Obj({
    # A PodTemplateSpec: its keys here, its contents by kubernetes-validate (as a Pod).
    "template": Obj({"metadata": ANY, "spec": ANY}, required=("spec",)),
    "container": DNS_LABEL,
    "ports": List(GAME_SERVER_PORT),
    "sdkServer": Obj({
        "logLevel": Enum("Error", "Info", "Debug", "Trace"),
        "grpcPort": PORT,
        "httpPort": PORT,
    }),
    "scheduling": Enum("Packed", "Distributed"),
    "health": Obj({
        "disabled": BOOL,
        "initialDelaySeconds": INT32,
        "periodSeconds": INT32,
        "failureThreshold": Int(1, 2147483648),
    }),
    "players": Obj({"initialCapacity": Int(0)}),
    "counters": Map(Obj({"count": Int(0), "capacity": Int(0)})),
    "lists": Map(Obj({"capacity": Int(0), "values": List(STR)})),
    "eviction": Obj({"safe": Enum("Always", "OnUpgrade", "Never")}),
    "immutableReplicas": Int(1, 1),
}, required=("template",))

FLEET = Obj({
    "apiVersion": Enum("agones.dev/v1"),
    "kind": Enum("Fleet"),
    "metadata": NAMED_META,
    "spec": Obj({
        "replicas": Int(0),
        "scheduling": Enum("Packed", "Distributed"),
        "strategy": Obj({
            "type": Enum("Recreate", "RollingUpdate"),
            "rollingUpdate": Obj({"maxSurge": INT_OR_STR, "maxUnavailable": INT_OR_STR}),
        }),
        "allocationOverflow": Obj({"labels": STRING_MAP, "annotations": STRING_MAP}),
        "priorities": List(Obj({
            "type": Enum("Counter", "List"),
            "key": STR,
            "order": Enum("Ascending", "Descending"),
        })),
        "template": Obj({"metadata": OBJECT_META, "spec": GAME_SERVER_SPEC}, required=("spec",)),
    }, required=("template",)),
    "status": ANY,
}, required=("apiVersion", "kind", "metadata", "spec"))

GAME_SERVER = Obj({
    "apiVersion": Enum("agones.dev/v1"),
    "kind": Enum("GameServer"),
    "metadata": OBJECT_META,
    "spec": GAME_SERVER_SPEC,
    "status": ANY,
}, required=("apiVersion", "kind", "metadata", "spec"))

URL_CONFIG = Obj({
    "url": STR,
    "service": Obj({"namespace": STR, "name": STR, "path": STR, "port": INT},
                   required=("namespace", "name")),
    "caBundle": STR,
})
CAPACITY_POLICY = Obj({
    "key": STR, "minCapacity": Int(0), "maxCapacity": Int(1), "bufferSize": INT_OR_STR,
}, required=("key", "bufferSize", "maxCapacity"))
POLICY_TYPES = ("Buffer", "Webhook", "Counter", "List", "Schedule", "Chain")
_POLICY_FIELDS = {
    "type": Enum(*POLICY_TYPES),
    "buffer": Obj({"bufferSize": INT_OR_STR, "minReplicas": Int(0), "maxReplicas": Int(1)},
                  required=("maxReplicas",)),
    "webhook": URL_CONFIG,
    "counter": CAPACITY_POLICY,
    "list": CAPACITY_POLICY,
}
# Inside a schedule or a chain entry a policy cannot nest another schedule or chain.
INNER_POLICY = Obj(dict(_POLICY_FIELDS, type=Enum("Buffer", "Webhook", "Counter", "List")),
                   required=("type",))
SCHEDULE = Obj({
    "between": Obj({"start": STR, "end": STR}),
    "activePeriod": Obj({"timezone": STR, "startCron": STR, "duration": STR}),
    "policy": INNER_POLICY,
}, required=("policy",))
POLICY = Obj(dict(
    _POLICY_FIELDS,
    schedule=SCHEDULE,
    chain=List(Obj(dict(_POLICY_FIELDS, id=STR, schedule=SCHEDULE,
                        type=Enum("Buffer", "Webhook", "Counter", "List", "Schedule")),
                   required=("type",))),
), required=("type",))
FLEET_AUTOSCALER = Obj({
    "apiVersion": Enum("autoscaling.agones.dev/v1"),
    "kind": Enum("FleetAutoscaler"),
    "metadata": NAMED_META,
    "spec": Obj({
        "fleetName": Str(r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?", max_len=63),
        "policy": POLICY,
        "sync": Obj({
            "type": Enum("FixedInterval"),
            "fixedInterval": Obj({"seconds": Int(1)}, required=("seconds",)),
        }, required=("type",)),
    }, required=("fleetName", "policy")),
    "status": ANY,
}, required=("apiVersion", "kind", "metadata", "spec"))


# --- rules beyond field names -----------------------------------------------------------------

def game_server_rules(spec: dict, path: str, errors: list) -> None:
    """Agones' webhook rules for a GameServer spec (gameserver.go, Validate)."""
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    containers = [c.get("name") for c in pod_spec.get("containers") or [] if isinstance(c, dict)]
    container = spec.get("container")
    if not container and len(containers) > 1:
        errors.append(f"{path}.container: required when the pod has more than one container")
    if container and container not in containers:
        errors.append(f"{path}.container: {container!r} is not a container of the pod "
                      f"({', '.join(map(str, containers)) or 'none'})")
    seen = set()
    for i, port in enumerate(spec.get("ports") or []):
        if not isinstance(port, dict):
            continue
        where = f"{path}.ports[{i}]"
        policy = port.get("portPolicy", "Dynamic")
        if policy in ("Dynamic", "Static") and not port.get("containerPort"):
            errors.append(f"{where}.containerPort: required with portPolicy {policy}")
        if policy == "Passthrough" and port.get("containerPort"):
            errors.append(f"{where}.containerPort: must not be set with portPolicy Passthrough")
        if policy == "Static" and not port.get("hostPort"):
            errors.append(f"{where}.hostPort: required with portPolicy Static")
        if port.get("hostPort") and policy in ("Dynamic", "Passthrough"):
            errors.append(f"{where}.hostPort: must not be set with portPolicy {policy}")
        if port.get("container") and port["container"] not in containers:
            errors.append(f"{where}.container: {port['container']!r} is not a container of the pod")
        name = port.get("name")
        if name in seen:
            errors.append(f"{where}.name: {name!r} is used by another port")
        seen.add(name)


def policy_rules(policy: dict, path: str, errors: list) -> None:
    """The sub-object a policy type needs, and Agones' BufferPolicy rules (fleetautoscaler.go)."""
    kind = policy.get("type")
    field = {"Buffer": "buffer", "Webhook": "webhook", "Counter": "counter", "List": "list",
             "Schedule": "schedule", "Chain": "chain"}.get(kind)
    if field and field not in policy:
        errors.append(f"{path}.{field}: required when type is {kind}")
    buf = policy.get("buffer")
    if kind != "Buffer" or not isinstance(buf, dict):
        return
    size, lo, hi = buf.get("bufferSize"), buf.get("minReplicas", 0), buf.get("maxReplicas")
    if not isinstance(lo, int) or not isinstance(hi, int):
        return
    if size is None:
        errors.append(f"{path}.buffer.bufferSize: required (an integer > 0 or a percentage)")
    elif isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            errors.append(f"{path}.buffer.bufferSize: must be > 0")
        if hi < size:
            errors.append(f"{path}.buffer.maxReplicas: must be at least bufferSize ({size})")
        if lo != 0 and lo < size:
            errors.append(f"{path}.buffer.minReplicas: must be 0 or at least bufferSize ({size})")
    elif isinstance(size, str):
        m = re.fullmatch(r"(\d+)%", size)
        if not m or not 1 <= int(m.group(1)) <= 99:
            errors.append(f"{path}.buffer.bufferSize: {size!r} must be between 1% and 99%")
        if lo < 1:
            errors.append(f"{path}.buffer.minReplicas: must be at least 1 with a percentage buffer")
    if lo > hi:
        errors.append(f"{path}.buffer.minReplicas: {lo} is above maxReplicas {hi}")


# --- kubernetes-validate ----------------------------------------------------------------------

CORE_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1",
                     "rbac.authorization.k8s.io/v1", "autoscaling/v2"}


def k8s_validate(doc: dict, version: str, prefix: str, errors: list, note: str = "") -> str | None:
    """Strict schema validation; returns the schema version used, or None after an error.
    `prefix` is where `doc` sits in the manifest ("" for a whole manifest)."""
    def at(where: str) -> str:
        return ".".join(p for p in (prefix, where) if p) or "(top)"
    try:
        return kubernetes_validate.validate(doc, version, strict=True)
    except kv_utils.ValidationError as e:
        errors.append(f"{at('.'.join(str(p) for p in e.path))}: {e.message}{note}")
    except kv_utils.SchemaNotFoundError as e:
        errors.append(f"{at('')}: {e.message}")
    except kv_utils.VersionNotSupportedError:
        errors.append(f"{at('')}: kubernetes-validate has no schemas for Kubernetes {version}")
    return None


def pod_from_template(template: dict) -> dict:
    meta = dict(template.get("metadata") or {})
    meta.setdefault("name", "pod-template")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec")}


# --- cross-references within one render -------------------------------------------------------

def pod_specs(doc: dict):
    """(path, pod spec) for every pod template in a document."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "Pod":
        yield "spec", spec
    elif kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "GameServer":
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "Fleet":
        gs = (spec.get("template") or {}).get("spec") or {}
        yield "spec.template.spec.template.spec", (gs.get("template") or {}).get("spec") or {}


def references(pod: dict):
    """(kind, name, optional, where) for each ConfigMap and Secret a pod spec names."""
    for v in pod.get("volumes") or []:
        if "configMap" in v:
            yield "ConfigMap", v["configMap"].get("name"), v["configMap"].get("optional"), \
                f"volumes[{v.get('name')}]"
        if "secret" in v:
            yield "Secret", v["secret"].get("secretName"), v["secret"].get("optional"), \
                f"volumes[{v.get('name')}]"
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        where = f"containers[{c.get('name')}]"
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                yield "ConfigMap", src["configMapRef"].get("name"), \
                    src["configMapRef"].get("optional"), where + ".envFrom"
            if "secretRef" in src:
                yield "Secret", src["secretRef"].get("name"), \
                    src["secretRef"].get("optional"), where + ".envFrom"
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"].get("name"), \
                    ref["configMapKeyRef"].get("optional"), f"{where}.env[{e.get('name')}]"
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"].get("name"), \
                    ref["secretKeyRef"].get("optional"), f"{where}.env[{e.get('name')}]"


def farview_rules(doc: dict, path: str, errors: list, keys: "HostKeys | None") -> list[str]:
    """Farview's own files inside ConfigMaps and Secrets; returns notes on what was checked."""
    notes = []
    if doc.get("kind") == "ConfigMap":
        for key, text in (doc.get("data") or {}).items():
            if key.endswith(".toml"):
                try:
                    table = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    errors.append(f"{path}.data.{key}: not valid TOML: {e}")
                    continue
                notes.append(f"{key} is TOML")
                if keys:
                    before = len(errors)
                    keys.check_table(table, "Config", "", errors)
                    if len(errors) == before:
                        notes.append(f"its keys are farview-host settings (config.rs)")
    if doc.get("kind") == "Secret":
        value = (doc.get("stringData") or {}).get("FARVIEW_SESSIONS__API_KEYS")
        if value is not None:
            # figment reads the variable as a TOML-like value: it must be an array of strings.
            try:
                keys = tomllib.loads(f"v = {value}")["v"]
                ok = isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys)
            except tomllib.TOMLDecodeError:
                ok = False
            if not ok:
                errors.append(f"{path}.stringData.FARVIEW_SESSIONS__API_KEYS: must be an array of "
                              f"strings such as '[\"key1\",\"key2\"]', not {value!r}")
            else:
                notes.append("FARVIEW_SESSIONS__API_KEYS is an array of strings")
                if any(k.lower().startswith("replace-me") for k in keys):
                    notes.append("WARNING: it still holds the placeholder key; replace it "
                                 "before applying")
    return notes


# --- farview-host's configuration keys (from config.rs) ---------------------------------------

# Variables the host reads that are not settings: the log filter (main.rs). The flags' own
# variables (`env = "FARVIEW_..."` in config.rs) are read from the file too.
OTHER_HOST_VARIABLES = {"FARVIEW_LOG"}


class HostKeys:
    """The settings farview-host accepts, read from the `pub` fields of the structs in config.rs
    (`Config` at the top, a field whose type is another struct there is a section)."""

    def __init__(self, config_rs: str):
        with open(config_rs, encoding="utf-8") as f:
            text = f.read()
        self.structs: dict[str, dict[str, str]] = {}
        for m in re.finditer(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M):
            fields = re.findall(r"^    pub (\w+): ([^\n]+),$", m.group(2), re.M)
            self.structs[m.group(1)] = dict(fields)
        self.flag_variables = set(re.findall(r'env = "(FARVIEW_\w+)"', text))
        if "Config" not in self.structs:
            raise ValueError(f"no `pub struct Config` in {config_rs}")

    def _section(self, ty: str):
        """The struct a field's type names, a map's value struct, or None for a scalar."""
        m = re.fullmatch(r"(?:std::collections::)?BTreeMap<String, (\w+)>", ty.strip())
        if m:
            return ("map", m.group(1))
        return ("struct", ty.strip()) if ty.strip() in self.structs else None

    def check_table(self, table: dict, struct: str, path: str, errors: list) -> None:
        fields = self.structs.get(struct, {})
        for key, value in table.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                errors.append(f"{where}: not a farview-host setting (the host refuses unknown keys "
                              f"at start); {struct} has: {', '.join(sorted(fields))}")
                continue
            section = self._section(fields[key])
            if section and isinstance(value, dict):
                kind, inner = section
                if kind == "map":
                    for name, sub in value.items():
                        if isinstance(sub, dict):
                            self.check_table(sub, inner, f"{where}.{name}", errors)
                else:
                    self.check_table(value, inner, where, errors)

    def check_variable(self, name: str) -> str | None:
        """None when farview-host reads `name`, else why not."""
        if name in self.flag_variables or name in OTHER_HOST_VARIABLES:
            return None
        parts = name[len("FARVIEW_"):].lower().split("__")
        struct = "Config"
        for i, part in enumerate(parts):
            fields = self.structs.get(struct, {})
            if part not in fields:
                if i == 0:
                    return ("names no setting and no flag, so the host ignores it (top-level keys: "
                            f"{', '.join(sorted(fields))})")
                return f"{part!r} is not a key of [{'.'.join(parts[:i])}] ({struct}); the host " \
                       "refuses it at start"
            section = self._section(fields[part])
            if i + 1 < len(parts):
                if not section or section[0] != "struct":
                    return f"{part!r} is not a section"
                struct = section[1]
        return None


def environment_names(doc: dict, configmaps: dict) -> list[tuple[str, str]]:
    """(where, variable) for each FARVIEW_* variable a pod's containers get, from env and from
    the ConfigMaps and Secrets their envFrom names."""
    found = []
    for where, pod in pod_specs(doc):
        for c in (pod.get("containers") or []):
            base = f"{where}.containers[{c.get('name')}]"
            for e in c.get("env") or []:
                found.append((f"{base}.env", e.get("name", "")))
            for src in c.get("envFrom") or []:
                for ref in ("configMapRef", "secretRef"):
                    if ref in src:
                        kind = "ConfigMap" if ref == "configMapRef" else "Secret"
                        name = src[ref].get("name")
                        for key in configmaps.get((kind, name), ()):
                            found.append((f"{base}.envFrom {kind} {name}",
                                          (src.get("prefix") or "") + key))
    return [(w, n) for w, n in found if n.startswith("FARVIEW_")]


# --- driver -----------------------------------------------------------------------------------

def check_documents(docs: list, version: str, label: str, keys: "HostKeys | None") -> int:
    failures = 0
    present = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs}
    data_keys = {(d.get("kind"), (d.get("metadata") or {}).get("name")):
                 list((d.get("data") or {}).keys()) + list((d.get("stringData") or {}).keys())
                 for d in docs if d.get("kind") in ("ConfigMap", "Secret")}
    for doc in docs:
        errors: list[str] = []
        kind, api = doc.get("kind"), doc.get("apiVersion")
        name = (doc.get("metadata") or {}).get("name")
        what = f"{kind}/{name}"
        how = []
        if api in CORE_API_VERSIONS:
            used = k8s_validate(doc, version, "", errors)
            if used:
                how.append(f"Kubernetes {used} schema, strict")
        elif (api, kind) == ("agones.dev/v1", "Fleet"):
            check(doc, FLEET, "", errors)
            gs = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
            game_server_rules(gs, "spec.template.spec", errors)
            how.append("Agones Fleet CRD fields")
            tmpl = gs.get("template")
            if isinstance(tmpl, dict):
                used = k8s_validate(pod_from_template(tmpl), version,
                                    "spec.template.spec.template", errors, " (validated as a Pod)")
                if used:
                    how.append(f"pod template as a Pod, Kubernetes {used} schema, strict")
        elif (api, kind) == ("agones.dev/v1", "GameServer"):
            check(doc, GAME_SERVER, "", errors)
            spec = doc.get("spec") or {}
            game_server_rules(spec, "spec", errors)
            how.append("Agones GameServer CRD fields")
            if isinstance(spec.get("template"), dict):
                used = k8s_validate(pod_from_template(spec["template"]), version,
                                    "spec.template", errors, " (validated as a Pod)")
                if used:
                    how.append(f"pod template as a Pod, Kubernetes {used} schema, strict")
        elif (api, kind) == ("autoscaling.agones.dev/v1", "FleetAutoscaler"):
            check(doc, FLEET_AUTOSCALER, "", errors)
            spec = doc.get("spec") or {}
            if isinstance(spec.get("policy"), dict):
                policy_rules(spec["policy"], "spec.policy", errors)
            fleet = spec.get("fleetName")
            if fleet and ("Fleet", fleet) not in present:
                errors.append(f"spec.fleetName: no Fleet named {fleet!r} in this render")
            how.append("Agones FleetAutoscaler CRD fields")
        else:
            errors.append(f"apiVersion {api!r} kind {kind!r}: no schema known to this checker "
                          f"(core {sorted(CORE_API_VERSIONS)}, or Agones Fleet, GameServer, "
                          f"FleetAutoscaler)")
        for where, pod in pod_specs(doc):
            refs = 0
            for ref_kind, ref_name, optional, field in references(pod):
                refs += 1
                if not optional and (ref_kind, ref_name) not in present:
                    errors.append(f"{where}.{field}: {ref_kind} {ref_name!r} is not in this render")
            if refs:
                how.append(f"{refs} ConfigMap/Secret references resolve")
        how.extend(farview_rules(doc, what, errors, keys))
        if keys:
            variables = environment_names(doc, data_keys)
            for where, name in variables:
                why = keys.check_variable(name)
                if why:
                    errors.append(f"{where}: {name} {why}")
            if variables:
                how.append(f"{len(variables)} FARVIEW_* variables are read by farview-host")
        if errors:
            failures += 1
            print(f"  FAIL {label}: {what}")
            for e in errors:
                print(f"       {e}")
        else:
            print(f"  ok   {label}: {what} ({'; '.join(how)})")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubernetes-version", required=True, help="e.g. 1.33")
    ap.add_argument("--expect", default="",
                    help="Kind=N,... : the render must hold exactly these kinds and counts")
    ap.add_argument("--label", default="", help="name printed before each resource")
    ap.add_argument("--config-rs", help="farview-host's config.rs: check farview.toml's keys and "
                    "the FARVIEW_* variables against it")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    keys = HostKeys(args.config_rs) if args.config_rs else None
    failures = 0
    for path in args.files:
        label = args.label or path
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as e:
            print(f"  FAIL {label}: cannot read {path}: {e}")
            failures += 1
            continue
        bad = [d for d in docs if not isinstance(d, dict)]
        if bad:
            print(f"  FAIL {label}: {len(bad)} document(s) are not objects")
            failures += 1
            continue
        failures += check_documents(docs, args.kubernetes_version, label, keys)
        if args.expect:
            want = {k: int(n) for k, n in (p.split("=") for p in args.expect.split(","))}
            got: dict[str, int] = {}
            for d in docs:
                got[d.get("kind")] = got.get(d.get("kind"), 0) + 1
            if got != want:
                fmt = lambda m: ", ".join(f"{k}={v}" for k, v in sorted(m.items()))  # noqa: E731
                print(f"  FAIL {label}: renders {fmt(got)}; expected {fmt(want)}")
                failures += 1
            else:
                print(f"  ok   {label}: renders exactly {args.expect}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
