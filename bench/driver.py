"""Benchmark driver: direct vs byte-copy proxy vs nginx vs sse-fixup, in one run, one table.

The upstream (bench/upstream.py) and the load generator (bench/load.py) run pinned to
one core, the proxy under test to the other (``--proxy-core``).  Each scenario runs
every target, the order alternating between scenarios; the table gives each figure and
its ratio to direct and to nginx; the results go to ``--out`` (JSON) as well.

Scenarios (issue #5):
  a  100 streams x 2000 events at max rate, chat and responses
  b  250 and 500 streams x 200 events, 20 ms apart (model-like)
  c  1,000 open streams, 100 ms apart (memory per stream)
  d  500 streams opened at once (time to first byte)
  e  cold start: process start to the first streamed reply (sse-fixup and the byte-copy proxy)

    python bench/driver.py                    # everything, ~4 minutes
    python bench/driver.py --scenarios a,d --targets nginx,sse-fixup
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from procstat import rss_bytes, tree  # noqa: E402

PY = sys.executable
TARGETS = ["direct", "bytecopy", "nginx", "sse-fixup"]

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {port}")


def pinned(core: int | None):
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})


def ensure_nginx() -> str | None:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path:
        return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("installing nginx from Debian ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx"],
                       env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["nginx", "-s", "stop"], stderr=subprocess.DEVNULL, check=False)
        return shutil.which("nginx") or "/usr/sbin/nginx"
    return None


class Target:
    """A proxy under test (or none: direct), started fresh for each scenario."""

    def __init__(self, name: str, upstream_port: int, core: int | None, extra: list[str]):
        self.name = name
        self.upstream_port = upstream_port
        self.core = core
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.port = upstream_port
        self.tmp: str | None = None

    def start(self) -> float:
        """-> seconds until it accepted connections."""
        if self.name == "direct":
            return 0.0
        self.port = free_port()
        up = f"http://127.0.0.1:{self.upstream_port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.name == "bytecopy":
            cmd = [PY, str(HERE / "byte_proxy.py"), "--port", str(self.port), "--upstream", up]
        elif self.name == "nginx":
            self.tmp = tempfile.mkdtemp(prefix="bench-nginx-")
            conf = Path(self.tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=self.tmp, upstream=self.upstream_port, port=self.port))
            cmd = [ensure_nginx(), "-c", str(conf), "-p", self.tmp, "-g", "daemon off;"]
        else:                  # sse-fixup, or sse-fixup-asyncio / sse-fixup-uvloop: that loop
            loop = ["--loop", self.name.rsplit("-", 1)[1]] if self.name.count("-") == 2 else []
            cmd = [PY, "-m", "sse_fixup", "--upstream", up, "--port", str(self.port),
                   "--log-level", "warning", *loop, *self.extra]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, preexec_fn=pinned(self.core),
                                     stdout=subprocess.DEVNULL)
        wait_port(self.port)
        return time.monotonic() - t0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def rss_mib(self) -> float | None:
        return rss_bytes(tree(self.pid)) / 2**20 if self.pid else None

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def load(target: Target, core: int | None, **kw) -> dict:
    cmd = [PY, str(HERE / "load.py"), "--url", f"http://127.0.0.1:{target.port}", "--json"]
    for key, value in kw.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    if target.pid:
        cmd += ["--pid", str(target.pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=pinned(core), timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def scenario_runs(name: str):
    """-> [(label, load kwargs, what to sample)]"""
    if name == "a":
        return [("a chat max-rate 100x2000", dict(endpoint="chat", streams=100, events=2000), None),
                ("a responses max-rate 100x2000", dict(endpoint="responses", streams=100, events=2000), None)]
    if name == "b":
        return [(f"b chat {c}x200 @20ms", dict(endpoint="chat", streams=c, events=200, interval_ms=20,
                                              ramp=0.02), None) for c in (250, 500)]
    if name == "c":
        return [("c chat 1000 open @100ms", dict(endpoint="chat", streams=1000, events=60,
                                                 interval_ms=100, ramp=0.5, sample_every=5), "rss")]
    if name == "d":
        return [("d chat 500 opened at once", dict(endpoint="chat", streams=500, events=20,
                                                   interval_ms=20), None)]
    return []


def cold_start(target: Target, core: int | None) -> dict:
    """Process start to the first byte of a streamed reply."""
    import urllib.request
    t0 = time.monotonic()
    listen = target.start()
    body = json.dumps({"model": "m", "stream": True, "messages": [], "bench": {"events": 1}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{target.port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read(1)
        first = time.monotonic() - t0
    idle = target.rss_mib()
    target.stop()
    return {"cold_start_s": first, "listening_s": listen, "idle_rss_mib": idle}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="a,b,c,d,e")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--sse-fixup-args", default="", help="extra flags for sse-fixup, e.g. '--workers 2'")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = p.parse_args()
    ncores = os.cpu_count() or 1
    pcore = args.proxy_core if ncores > 1 else None
    lcore = args.load_core if ncores > 1 else None
    targets = args.targets.split(",")
    if "nginx" in targets and ensure_nginx() is None:
        print("nginx unavailable (not installed, no apt-get/root): skipped")
        targets.remove("nginx")
    up_port = free_port()
    upstream = subprocess.Popen([PY, str(HERE / "upstream.py"), "--port", str(up_port)],
                                preexec_fn=pinned(lcore))
    results: list[dict] = []
    try:
        wait_port(up_port)
        flip = False
        for scen in args.scenarios.split(","):
            if scen == "e":
                for name in [t for t in targets if t == "bytecopy" or t.startswith("sse-fixup")]:
                    t = Target(name, up_port, pcore, args.sse_fixup_args.split())
                    r = cold_start(t, pcore)
                    results.append({"scenario": "e cold start to first reply", "target": name, **r})
                    print(f"{'e cold start':<32} {name:<10} {r}", flush=True)
                continue
            for label, kw, sample in scenario_runs(scen):
                order = targets[::-1] if flip else targets
                flip = not flip
                for name in order:
                    t = Target(name, up_port, pcore, args.sse_fixup_args.split())
                    t.start()
                    time.sleep(0.3)
                    idle = t.rss_mib()
                    try:
                        r = load(t, lcore, **kw)
                    finally:
                        t.stop()
                    r.update({"scenario": label, "target": name, "idle_rss_mib": idle})
                    if sample == "rss" and idle is not None and r.get("proxy_peak_rss_mib"):
                        r["kib_per_stream"] = (r["proxy_peak_rss_mib"] - idle) * 1024 / kw["streams"]
                    results.append(r)
                    print(f"{label:<32} {name:<10} ev/s={r['events_per_s']:>9.0f} "
                          f"err={r['errors']} lat p50/p99={_f(r['lat_p50_ms'])}/{_f(r['lat_p99_ms'])} ms "
                          f"ttfb p99={_f(r['ttfb_p99_ms'])} ms cpu/ev={_f(r.get('proxy_cpu_us_per_event'))} µs",
                          flush=True)
    finally:
        upstream.terminate()
        upstream.wait(10)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {ncores} cores, {platform.processor() or _cpu_model()}",
            "python": platform.python_version(), "sse_fixup_args": args.sse_fixup_args}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print()
    print(table(results, meta))


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _f(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(results: list[dict], meta: dict) -> str:
    """Markdown: one row per scenario and target, with ratios against direct and nginx."""
    lines = [f"{meta['date']} · {meta['machine']} · Python {meta['python']}", "",
             "| scenario | target | events/s | ×direct | ×nginx | errors | added lat p50 / p99 ms "
             "| TTFB p50 / p99 ms | CPU µs/event | RSS MiB idle / peak | KiB/stream |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["scenario"], r["target"]): r for r in results}
    for r in results:
        if r["scenario"].startswith("e "):
            continue
        d = by.get((r["scenario"], "direct"))
        n = by.get((r["scenario"], "nginx"))
        ratio = lambda base: _f(r["events_per_s"] / base["events_per_s"], 2) if base and base["events_per_s"] else "-"  # noqa: E731
        lat = "-"
        if d and r["target"] != "direct" and r["lat_p50_ms"] is not None and d["lat_p50_ms"] is not None:
            lat = f"{r['lat_p50_ms'] - d['lat_p50_ms']:+.2f} / {r['lat_p99_ms'] - d['lat_p99_ms']:+.2f}"
        lines.append(f"| {r['scenario']} | {r['target']} | {r['events_per_s']:.0f} | {ratio(d)} | "
                     f"{ratio(n)} | {r['errors']} | {lat} | {_f(r['ttfb_p50_ms'])} / {_f(r['ttfb_p99_ms'])} | "
                     f"{_f(r.get('proxy_cpu_us_per_event'), 2)} | {_f(r.get('idle_rss_mib'))} / "
                     f"{_f(r.get('proxy_peak_rss_mib'))} | {_f(r.get('kib_per_stream'))} |")
    cold = [r for r in results if r["scenario"].startswith("e ")]
    if cold:
        lines += ["", "| cold start | process start → listening | → first streamed byte | idle RSS MiB |",
                  "|---|---|---|---|"]
        for r in cold:
            lines.append(f"| {r['target']} | {r['listening_s']:.3f} s | {r['cold_start_s']:.3f} s | "
                         f"{_f(r['idle_rss_mib'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
