"""Operations: LLM metrics, /readyz, the access log, captures replayed byte for byte, and
hot reload (SIGHUP, --watch-config, --workers) under an open stream."""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sse_fixup import cli
from sse_fixup.config import Config
from sse_fixup.proxy import CAPTURE, create_app

from .captures import FakeLlama, load
from .helpers import free_port
from .upstreams import Scripted, resp_events, sse

ROOT = Path(__file__).parent.parent


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text page."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(page: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in page.items() if n == name and set(labels.items()) <= ls)


async def proxy_for(aiohttp_server, aiohttp_client, upstream_app, **cfg):
    up = await aiohttp_server(upstream_app)
    client = await aiohttp_client(create_app(Config(upstream=str(up.make_url("")).rstrip("/"), **cfg)))
    return client


async def page(client) -> dict:
    return samples(await (await client.get("/sse-fixup/metrics")).text())


def usage_of(name: str) -> dict:
    body = load(name).body
    pos = body.rfind(b'"usage":{')
    start = body.rfind(b"data: ", 0, pos) + 6
    obj = json.loads(body[start:body.find(b"\n", pos)])
    return obj.get("usage") or obj["response"]["usage"]


# -- LLM metrics ------------------------------------------------------------------------

async def test_chat_tool_call_stream_counts_tokens_finish_and_times(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app)
    name = "f_chat_stream_tool_required_include_usage"
    r = await client.post("/v1/chat/completions", json={"model": "tiny", "x_capture": name, "stream": True,
                                                        "messages": [{"role": "user", "content": "hi"}]})
    await r.read()
    u = usage_of(name)
    m = await page(client)
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="input") == u["prompt_tokens"]
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="output") == u["completion_tokens"]
    assert value(m, "sse_fixup_finish_total", endpoint="chat", model="tiny", reason="tool_calls") == 1
    for hist in ("upstream_ttfb_seconds", "ttft_seconds", "stream_duration_seconds",
                 "output_tokens_per_second"):
        assert value(m, f"sse_fixup_{hist}_count", endpoint="chat", model="tiny") == 1, hist
    assert value(m, "sse_fixup_ttft_seconds_sum") <= value(m, "sse_fixup_stream_duration_seconds_sum")


async def test_responses_stream_counts_usage_with_cached_tokens(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app)
    name = "d_resp_stream_tool_required"
    r = await client.post("/v1/responses", json={"model": "tiny", "x_capture": name, "stream": True, "input": "x"})
    await r.read()
    u = usage_of(name)
    m = await page(client)
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="input") == u["input_tokens"]
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="output") == u["output_tokens"]
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="cached") == \
        u["input_tokens_details"]["cached_tokens"]
    assert value(m, "sse_fixup_finish_total", endpoint="responses", reason="completed") == 1
    assert value(m, "sse_fixup_ttft_seconds_count", endpoint="responses") == 1


async def test_json_body_counts_usage_and_finish(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app)
    name = "e_a_chat_text"
    r = await client.post("/v1/chat/completions", json={"model": "tiny", "x_capture": name,
                                                        "messages": [{"role": "user", "content": "hi"}]})
    body = await r.json()
    m = await page(client)
    assert value(m, "sse_fixup_tokens_total", kind="output") == body["usage"]["completion_tokens"]
    assert value(m, "sse_fixup_finish_total", reason=body["choices"][0]["finish_reason"]) == 1
    assert value(m, "sse_fixup_stream_duration_seconds_count", endpoint="chat") == 1


async def test_a_cut_stream_is_counted_by_its_fault(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, Scripted([*resp_events(2), "reset"]).app)
    r = await client.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})
    await r.read()
    m = await page(client)
    assert value(m, "sse_fixup_stream_faults_total", code="upstream_disconnected") == 1
    assert value(m, "sse_fixup_finish_total", endpoint="responses", reason="failed") == 1


async def test_model_labels_are_capped(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app, metrics_max_models=1)
    for model in ("first", "second", "third"):
        r = await client.post("/v1/chat/completions", json={"model": model, "x_capture": "e_a_chat_text",
                                                            "messages": [{"role": "user", "content": "hi"}]})
        await r.read()
    m = await page(client)
    assert value(m, "sse_fixup_finish_total", model="first") == 1
    assert value(m, "sse_fixup_finish_total", model="other") == 2
    assert value(m, "sse_fixup_finish_total", model="second") == 0


# -- /readyz ----------------------------------------------------------------------------

async def test_ready_when_health_answers_below_500(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app)
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["status"] == "ready"


async def test_a_backend_without_health_is_ready(aiohttp_server, aiohttp_client):
    client = await proxy_for(aiohttp_server, aiohttp_client, Scripted([b"{}"], status=404,
                                                                     content_type="application/json").app)
    assert (await client.get("/readyz")).status == 200


async def test_not_ready_while_the_model_loads(aiohttp_server, aiohttp_client):
    loading = Scripted([b'{"error":{"code":503,"message":"Loading model"}}'], status=503,
                       content_type="application/json")
    client = await proxy_for(aiohttp_server, aiohttp_client, loading.app)
    r = await client.get("/readyz")
    err = (await r.json())["error"]
    assert r.status == 503 and err["code"] == "upstream_not_ready"
    assert "answered /health with 503" in err["message"] and "Loading model" in err["message"]
    assert str(client.server.app[CAPTURE].top.upstream) in err["message"]     # names the upstream


async def test_not_ready_when_the_backend_is_down(aiohttp_client):
    dead = f"http://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(Config(upstream=dead)))
    r = await client.get("/readyz")
    assert r.status == 503
    assert dead in (await r.json())["error"]["message"] and "unreachable" in (await r.json())["error"]["message"]
    assert (await client.get("/healthz")).status == 200          # liveness is not readiness


async def test_probes_are_open_without_an_api_key(aiohttp_server, aiohttp_client):
    from sse_fixup.config import Auth
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app, auth=Auth(api_keys=["k"]))
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/v1/models")).status == 401


async def test_readiness_is_cached_briefly(aiohttp_server, aiohttp_client):
    up = FakeLlama()
    hits = []
    up.app.middlewares.append(_count(hits))
    client = await proxy_for(aiohttp_server, aiohttp_client, up.app)
    for _ in range(5):
        assert (await client.get("/readyz")).status == 200
    assert hits.count("/health") == 1


def _count(hits):
    from aiohttp import web

    @web.middleware
    async def mw(request, handler):
        hits.append(request.path)
        return await handler(request)
    return mw


# -- the access log ---------------------------------------------------------------------

async def test_access_log_json_line_has_the_fields_and_no_body_or_key(aiohttp_server, aiohttp_client, caplog):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app, access_log="json")
    with caplog.at_level(logging.INFO, logger="sse_fixup.access"):
        r = await client.post("/v1/responses", headers={"Authorization": "Bearer sekrit-key"},
                              json={"model": "tiny", "x_capture": "d_resp_stream_tool_required",
                                    "stream": True, "input": "the weather in Paris please"})
        sent = await r.read()
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "sse_fixup.access"]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert (rec["method"], rec["path"], rec["status"], rec["model"], rec["stream"]) == \
        ("POST", "/v1/responses", 200, "tiny", True)
    assert rec["bytes"] == len(sent) and rec["events"] > 0 and rec["patched"] > 0
    assert rec["rules"]["responses.sequence_number"] > 0 and rec["fault"] is None
    assert 0 <= rec["ttfb"] <= rec["ttft"] <= rec["duration"]
    assert "sekrit" not in lines[0] and "Paris" not in lines[0]


async def test_access_log_plain_and_off(aiohttp_server, aiohttp_client, caplog):
    for mode, expect in (("plain", 1), ("off", 0)):
        caplog.clear()
        client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app, access_log=mode)
        with caplog.at_level(logging.INFO, logger="sse_fixup.access"):
            await (await client.get("/v1/models")).read()
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "sse_fixup.access"]
        assert len(lines) == expect, mode
        if expect:
            assert " GET /v1/models 200 " in lines[0] and lines[0].endswith(tuple("0123456789"))


# -- captures ---------------------------------------------------------------------------

async def captured(client, tmp_path) -> list[Path]:
    await asyncio.gather(*client.server.app[CAPTURE].pending)
    return sorted(p for p in (tmp_path / "caps").iterdir() if p.is_dir()) if (tmp_path / "caps").exists() else []


def replay_check(capture_dir: Path, *extra) -> int:
    return cli.main(["replay", str(capture_dir), "--check", *extra])


@pytest.mark.parametrize("name,path", [("d_resp_stream_tool_required", "/v1/responses"),
                                       ("b_chat_stream_tool_required", "/v1/chat/completions"),
                                       ("e_d_resp_tool_required", "/v1/responses")])
async def test_capture_then_replay_reproduces_the_sent_bytes(aiohttp_server, aiohttp_client, tmp_path,
                                                             name, path, capsys):
    from sse_fixup.config import Capture
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app,
                             capture=Capture(dir=str(tmp_path / "caps"), on="always"))
    body = {"model": "tiny", "x_capture": name, "stream": name[1] != "_", "input": "x",
            "messages": [{"role": "user", "content": "x"}]}
    r = await client.post(path, json=body, headers={"Authorization": "Bearer sekrit"})
    sent = await r.read()
    [cap] = await captured(client, tmp_path)
    assert (cap / "sent.bin").read_bytes() == sent
    assert (cap / "upstream.bin").read_bytes() == load(name).body
    request = json.loads((cap / "request.json").read_text())
    assert "authorization" not in {k.lower() for k in request["headers"]} and "sekrit" not in str(request)
    meta = json.loads((cap / "capture.json").read_text())
    assert sum(meta["reads"]) == len(load(name).body) and meta["minted"], meta   # ids were minted
    assert replay_check(cap) == 0, capsys.readouterr().err
    # the check can fail: one byte off in what was sent
    (cap / "sent.bin").write_bytes(sent.replace(b"tool", b"toot", 1))
    assert replay_check(cap) == 1
    assert "differs" in capsys.readouterr().err


async def test_capture_on_fault_keeps_only_the_cut_stream(aiohttp_server, aiohttp_client, tmp_path):
    from sse_fixup.config import Capture
    script = {"ok": [*resp_events(2), sse({"type": "response.completed", "response": {
                  "id": "resp_x", "status": "completed", "output": []}}, "response.completed"), "eof"],
              "cut": [*resp_events(2), "reset"]}
    client = await proxy_for(aiohttp_server, aiohttp_client, Scripted(script).app,
                             capture=Capture(dir=str(tmp_path / "caps"), on="fault"))
    for model in ("ok", "cut"):
        await (await client.post("/v1/responses", json={"model": model, "input": "x", "stream": True})).read()
    [cap] = await captured(client, tmp_path)
    meta = json.loads((cap / "capture.json").read_text())
    assert meta["fault"]["code"] == "upstream_disconnected" and meta["model"] == "cut"
    assert replay_check(cap) == 0
    m = await page(client)
    assert value(m, "sse_fixup_captures_total", trigger="fault") == 1


async def test_capture_total_cap_skips_and_counts(aiohttp_server, aiohttp_client, tmp_path):
    from sse_fixup.config import Capture
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app,
                             capture=Capture(dir=str(tmp_path / "caps"), on="always", max_total_bytes=1024))
    await (await client.post("/v1/responses", json={"model": "t", "x_capture": "d_resp_stream_tool_required",
                                                   "stream": True, "input": "x"})).read()
    assert await captured(client, tmp_path) == []
    assert value(await page(client), "sse_fixup_captures_skipped_total", reason="total_cap") == 1


# -- hot reload ---------------------------------------------------------------------------

class Serve:
    """The real CLI in a subprocess, so that signals and the file watcher are real."""

    def __init__(self, config: Path, *args: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sse_fixup", "serve", "--config", str(config), "--port", str(self.port),
             "--access-log", "off", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self):
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(self.stop())

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode()


async def reloads(url: str) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/sse-fixup/metrics") as r:
            m = samples(await r.text())
    return {res: value(m, "sse_fixup_config_reloads_total", result=res) for res in ("ok", "rejected")}


async def wait_for(pred, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = await pred()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


def config_text(upstream: str, presets: str) -> str:
    return f"upstream: {upstream}\npresets: {presets}\n"


async def post_stream(url: str, name: str) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/responses", json={"model": "t", "x_capture": name, "stream": True,
                                                       "input": "x"}) as r:
            return await r.read()


async def test_sighup_reload_under_an_open_stream_and_a_rejected_bad_config(aiohttp_server, tmp_path):
    slow = FakeLlama(delay=0.05)
    up = await aiohttp_server(slow.app)
    upstream = str(up.make_url("")).rstrip("/")
    name = "d_resp_stream_tool_required"
    raw = load(name).body
    cfg = tmp_path / "sse-fixup.yaml"
    cfg.write_text(config_text(upstream, "[default]"))
    srv = Serve(cfg)
    try:
        await srv.ready()
        before = await post_stream(srv.url, name)
        assert before != raw and b'"sequence_number"' in before       # the default presets patch
        # a stream opens under the default presets; mid-stream the config turns them off
        open_stream = asyncio.ensure_future(post_stream(srv.url, name))
        await asyncio.sleep(0.3)
        cfg.write_text(config_text(upstream, "[]"))
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _ok(srv.url, 1))
        assert not open_stream.done()
        assert _same_but_ids(await open_stream, before)            # finished with the chain it began with
        assert await post_stream(srv.url, name) == raw              # new requests: no rules
        # a broken file: rejected with file:line, the running config stays
        cfg.write_text(config_text(upstream, "[defualt]"))
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _rejected(srv.url, 1))
        assert await post_stream(srv.url, name) == raw
    finally:
        err = srv.stop()
    assert f"config reload rejected, the running config stays: {cfg}:2: presets[0]: unknown preset 'defualt'" in err


async def _ok(url, n):
    return (await reloads(url))["ok"] >= n


async def _rejected(url, n):
    return (await reloads(url))["rejected"] >= n


def _same_but_ids(a: bytes, b: bytes) -> bool:
    """Two patched streams of one capture: equal but for the ids and times minted."""
    import re
    norm = [re.sub(rb'"(id|item_id|response_id|created_at|completed_at)":("[^"]*"|\d+)', b"", x) for x in (a, b)]
    return norm[0] == norm[1]


async def test_watch_config_reloads_on_file_change(aiohttp_server, tmp_path):
    up = await aiohttp_server(FakeLlama().app)
    upstream = str(up.make_url("")).rstrip("/")
    name = "d_resp_stream_tool_required"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(upstream, "[default]"))
    srv = Serve(cfg, "--watch-config")
    try:
        await srv.ready()
        assert await post_stream(srv.url, name) != load(name).body
        cfg.write_text(config_text(upstream, "[]") + "# changed\n")
        await wait_for(lambda: _ok(srv.url, 1))
        assert await post_stream(srv.url, name) == load(name).body
    finally:
        srv.stop()


async def test_every_worker_reloads(aiohttp_server, tmp_path):
    up = await aiohttp_server(FakeLlama().app)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(str(up.make_url("")).rstrip("/"), "[default]"))
    srv = Serve(cfg, "--workers", "2")
    try:
        await srv.ready()
        await asyncio.sleep(0.5)               # both workers listening
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _ok(srv.url, 2))        # the metric is summed over the workers
    finally:
        srv.stop()


async def test_restart_only_keys_are_kept_and_said(aiohttp_server, tmp_path):
    up = await aiohttp_server(FakeLlama().app)
    upstream = str(up.make_url("")).rstrip("/")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(upstream, "[default]"))
    srv = Serve(cfg)
    try:
        await srv.ready()
        cfg.write_text(config_text(upstream, "[default]") + "workers: 3\n")
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _ok(srv.url, 1))
    finally:
        err = srv.stop()
    assert "workers changed but need a restart" in err
    assert os.path.exists(cfg)


# -- the real llama-server ---------------------------------------------------------------


@pytest.mark.llama
async def test_metrics_of_a_real_tool_call_stream(llama, aiohttp_client):
    from .helpers import TOOL_CHAT
    client = await aiohttp_client(create_app(Config(upstream=llama)))
    r = await client.post("/v1/chat/completions", json={
        "model": "tiny", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [TOOL_CHAT], "tool_choice": "required"})
    sent = await r.read()
    usage = json.loads([line for line in sent.split(b"\n") if b'"usage":{' in line][-1][6:])["usage"]
    m = await page(client)
    assert value(m, "sse_fixup_finish_total", endpoint="chat", model="tiny", reason="tool_calls") == 1
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="input") == usage["prompt_tokens"] > 0
    assert value(m, "sse_fixup_tokens_total", model="tiny", kind="output") == usage["completion_tokens"] > 0
    assert value(m, "sse_fixup_ttft_seconds_count", endpoint="chat", model="tiny") == 1
    assert value(m, "sse_fixup_output_tokens_per_second_count", endpoint="chat", model="tiny") == 1
    assert 0 < value(m, "sse_fixup_ttft_seconds_sum") <= value(m, "sse_fixup_stream_duration_seconds_sum")


@pytest.mark.parametrize("output,finish", [("ndjson", "tool_calls"), ("ui-message-stream", "tool-calls")])
async def test_dialect_streams_have_their_first_token_and_finish(aiohttp_server, aiohttp_client, output, finish):
    client = await proxy_for(aiohttp_server, aiohttp_client, FakeLlama().app)
    r = await client.post("/v1/chat/completions", headers={"X-SSE-Fixup-Output": output}, json={
        "model": "tiny", "x_capture": "f_chat_stream_tool_required_include_usage", "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    await r.read()
    m = await page(client)
    assert value(m, "sse_fixup_ttft_seconds_count", endpoint="chat", model="tiny") == 1
    assert value(m, "sse_fixup_finish_total", endpoint="chat", reason=finish) == 1
