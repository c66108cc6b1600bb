"""``sse-fixup doctor``: probe a backend, validate what it sends, show what the rules fix.

A small, fixed set of probes (text stream; tool call with tool_choice required and
auto; a tool-result round trip; non-stream text and tool; include_usage; a max_tokens
cut) goes to the backend per endpoint.  Each answer's raw bytes are validated as the
backend sent them (``sse_fixup.validate``), then replayed through the configured rule
chain - the very transform the proxy runs, read boundaries and all - and validated
again.  With ``--via URL`` the "after" side is what a running proxy answers instead.
The exit status is 1 when any finding remains after the chain, 2 when no probe was
answered at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field

import orjson

from .validate import Finding, check_body, check_stream

PATHS = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
          "required": ["city"]}
TOOL_RESP = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city",
             "parameters": PARAMS}
TOOL_CHAT = {"type": "function", "function": {"name": "get_weather",
                                              "description": "Get the current weather for a city",
                                              "parameters": PARAMS}}
ASK = "What is the weather in Paris?"


@dataclass
class Probe:
    name: str
    endpoint: str
    body: dict
    what: str

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def probes(model: str, endpoints=("responses", "chat")) -> list[Probe]:
    """The fixed probe set; deterministic where the backend honours ``temperature``/``seed``."""
    out = []
    fixed = {"temperature": 0, "seed": 42}
    if "responses" in endpoints:
        tools = {"tools": [TOOL_RESP]}
        history = [{"role": "user", "content": ASK},
                   {"type": "function_call", "call_id": "call_doctor1", "name": "get_weather",
                    "arguments": '{"city":"Paris"}'},
                   {"type": "function_call_output", "call_id": "call_doctor1", "output": '{"temp_c":18}'}]
        base = {"model": model, **fixed}
        out += [
            Probe("responses.text_stream", "responses",
                  {**base, "input": "Say hello.", "stream": True, "max_output_tokens": 64}, "text, streamed"),
            Probe("responses.tool_required", "responses",
                  {**base, "input": ASK, **tools, "tool_choice": "required", "stream": True,
                   "max_output_tokens": 200}, "tool call, tool_choice required"),
            Probe("responses.tool_auto", "responses",
                  {**base, "input": ASK, **tools, "tool_choice": "auto", "stream": True,
                   "max_output_tokens": 200}, "tool call, tool_choice auto"),
            Probe("responses.tool_result", "responses",
                  {**base, "input": history, **tools, "stream": True, "max_output_tokens": 64},
                  "tool-result round trip"),
            Probe("responses.text_body", "responses",
                  {**base, "input": "Say hello.", "stream": False, "max_output_tokens": 64}, "text, not streamed"),
            Probe("responses.tool_body", "responses",
                  {**base, "input": ASK, **tools, "tool_choice": "required", "stream": False,
                   "max_output_tokens": 200}, "tool call, not streamed"),
            Probe("responses.cut", "responses",
                  {**base, "input": "Tell a long story.", "stream": True, "max_output_tokens": 16},
                  "max_output_tokens cut"),
        ]
    if "chat" in endpoints:
        tools = {"tools": [TOOL_CHAT]}
        ask = [{"role": "user", "content": ASK}]
        history = ask + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_doctor1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_doctor1", "content": '{"temp_c":18}'}]
        hello = [{"role": "user", "content": "Say hello."}]
        base = {"model": model, **fixed}
        out += [
            Probe("chat.text_stream", "chat", {**base, "messages": hello, "stream": True, "max_tokens": 64},
                  "text, streamed"),
            Probe("chat.tool_required", "chat",
                  {**base, "messages": ask, **tools, "tool_choice": "required", "stream": True, "max_tokens": 200},
                  "tool call, tool_choice required"),
            Probe("chat.tool_auto", "chat",
                  {**base, "messages": ask, **tools, "tool_choice": "auto", "stream": True, "max_tokens": 200},
                  "tool call, tool_choice auto"),
            Probe("chat.tool_result", "chat",
                  {**base, "messages": history, **tools, "stream": True, "max_tokens": 64},
                  "tool-result round trip"),
            Probe("chat.text_body", "chat", {**base, "messages": hello, "stream": False, "max_tokens": 64},
                  "text, not streamed"),
            Probe("chat.tool_body", "chat",
                  {**base, "messages": ask, **tools, "tool_choice": "required", "stream": False,
                   "max_tokens": 200}, "tool call, not streamed"),
            Probe("chat.include_usage", "chat",
                  {**base, "messages": hello, "stream": True, "stream_options": {"include_usage": True},
                   "max_tokens": 64}, "stream_options.include_usage"),
            Probe("chat.cut", "chat",
                  {**base, "messages": [{"role": "user", "content": "Tell a long story."}], "stream": True,
                   "max_tokens": 5}, "max_tokens cut"),
        ]
    return out


@dataclass
class Answer:
    status: int | None
    content_type: str
    chunks: list[bytes]
    error: str | None = None         # why there is no answer (connection refused, timeout)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def sse(self) -> bool:
        return "event-stream" in self.content_type


@dataclass
class Result:
    probe: Probe
    refused: str | None = None
    before: list[Finding] | None = None     # None: not validated (a translated backend, --via alone)
    after: list[Finding] = field(default_factory=list)
    applied: dict = field(default_factory=dict)
    answer: Answer | None = None

    def as_dict(self) -> dict:
        return {"probe": self.probe.name, "endpoint": self.probe.endpoint, "stream": self.probe.stream,
                "what": self.probe.what, "refused": self.refused,
                "before": None if self.before is None else [f.as_dict() for f in self.before],
                "after": [f.as_dict() for f in self.after], "rules_applied": self.applied}


async def send(session, url: str, path: str, data: bytes, probe: str, timeout: float) -> Answer:
    import aiohttp
    headers = {"Content-Type": "application/json", "User-Agent": "sse-fixup-doctor",
               "X-SSE-Fixup-Probe": probe}
    try:
        async with session.post(url.rstrip("/") + path, data=data, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            chunks = []
            async for chunk in resp.content.iter_any():      # the upstream's read boundaries
                chunks.append(chunk)
            return Answer(resp.status, resp.headers.get("Content-Type", ""), chunks)
    except asyncio.TimeoutError:
        return Answer(None, "", [], f"no answer within {timeout:g} s")
    except aiohttp.ClientError as exc:
        return Answer(None, "", [], f"{type(exc).__name__}: {exc}")


def refusal(answer: Answer) -> str | None:
    """Why the backend refused the probe (not a defect), or None."""
    if answer.error:
        return answer.error
    if answer.status is not None and answer.status >= 400:
        msg = answer.body[:300].decode("utf-8", "replace")
        try:
            err = orjson.loads(answer.body).get("error")
            msg = err.get("message", msg) if isinstance(err, dict) else str(err or msg)
        except (orjson.JSONDecodeError, AttributeError):
            pass
        return f"HTTP {answer.status}: {msg[:200]}"
    if not answer.sse and answer.body.strip()[:1] == b"{":
        try:
            obj = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return None
        if isinstance(obj, dict) and "error" in obj and not ({"output", "choices"} & obj.keys()):
            err = obj["error"]
            return "error body: " + str(err.get("message") if isinstance(err, dict) else err)[:200]
    return None


def validate(answer_body: bytes, sse: bool, endpoint: str, request: dict) -> list[Finding]:
    return check_stream(answer_body, endpoint, request) if sse else check_body(answer_body, endpoint, request)


def replay(route, probe: Probe, answer: Answer):
    """The client's bytes as the proxy would send them, and the rules that fired."""
    from .rules.base import RequestInfo
    info = RequestInfo(probe.endpoint, PATHS[probe.endpoint], probe.body)
    upstream = "stream" if answer.sse else "body"
    transform = route.open(info, upstream, "stream" if probe.stream else "body")
    out = [transform.feed(chunk) for chunk in answer.chunks]
    out.append(transform.close())
    return b"".join(out), dict(transform.ctx.applied)


async def run_probes(cfg, upstream: str | None, via: str | None, items: list[Probe], progress,
                     timeout: float) -> list[Result]:
    import aiohttp

    from .routes import Router
    router = Router(cfg)
    results = []
    # a new connection per probe: llama-server and others close idle keep-alive connections
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for i, probe in enumerate(items):
            progress(i, len(items), probe, None)
            path = PATHS[probe.endpoint]
            route = router.route(path, probe.body.get("model"))
            res = Result(probe)
            raw = orjson.dumps(probe.body)
            translated = route.translations.get(probe.endpoint) is not None
            direct = upstream or (None if via else route.upstream)
            answer = None
            if direct:
                try:
                    data = route.request_body(raw, probe.body, probe.endpoint)
                except Exception as exc:        # noqa: BLE001 - a route that refuses the request
                    res.refused = f"the route refuses this request: {exc}"
                    results.append(res)
                    progress(i, len(items), probe, res)
                    continue
                answer = await send(session, direct, route.upstream_path(path, probe.endpoint), data,
                                    probe.name, timeout)
                res.answer = answer
                res.refused = refusal(answer)
                if res.refused is None:
                    res.before = None if translated else \
                        validate(answer.body, answer.sse, probe.endpoint, probe.body)
                    if not via:
                        out, res.applied = replay(route, probe, answer)
                        res.after = validate(out, probe.stream, probe.endpoint, probe.body)
            if via and res.refused is None:
                got = await send(session, via, path, raw, probe.name, timeout)
                why = refusal(got)
                if why is not None:
                    res.refused = f"via the proxy: {why}"
                else:
                    res.after = validate(got.body, got.sse, probe.endpoint, probe.body)
                    if answer is None:
                        res.answer = got
            results.append(res)
            progress(i, len(items), probe, res)
    return results


# -- the report ---------------------------------------------------------------------------

class Paint:
    def __init__(self, on: bool):
        self.on = on

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text


def kinds(findings) -> set:
    return {f.kind for f in findings or ()}


def summary(results: list[Result]) -> dict:
    answered = [r for r in results if r.refused is None]
    before = set().union(*(kinds(r.before) for r in answered)) if answered else set()
    after = set().union(*(kinds(r.after) for r in answered)) if answered else set()
    return {"probes": len(results), "answered": len(answered), "refused": len(results) - len(answered),
            "defects": len(before), "fixed": len(before - after), "remaining": len(after),
            "defect_kinds": sorted(before), "remaining_kinds": sorted(after),
            "introduced_kinds": sorted(after - before)}


def suggestion(cfg, results: list[Result]) -> str:
    """A config snippet: rules to keep or enable, and declarative rules for gaps no
    built-in rule fills."""
    from .rules import BUILTIN
    from .routes import Router
    router = Router(cfg)
    in_chain, fired, needed, gaps = set(), set(), set(), {}
    for r in results:
        if r.refused is not None:
            continue
        route = router.route(PATHS[r.probe.endpoint], r.probe.body.get("model"))
        for mode in ("stream", "body"):
            in_chain.update(route.chains[(r.probe.endpoint, mode)].names)
        fired.update(r.applied)
        for f in r.after:
            if f.rule:
                needed.add(f.rule)
            elif f.problem.startswith("missing") and f.position is not None:
                gaps.setdefault((r.probe.endpoint, f.event, f.field), f)
    lines = ["# suggested by sse-fixup doctor"]
    enable = sorted(n for n in needed if n in BUILTIN and n not in in_chain)
    if enable:
        lines += ["# enable (take them out of disable:, or add a preset that has them):",
                  f"#   {', '.join(enable)}"]
    keep = sorted(fired & in_chain)
    if keep:
        lines += [f"# these built-in rules fixed this backend's output: {', '.join(keep)}"]
    idle = sorted(n for n in in_chain - fired if n in BUILTIN and BUILTIN[n].endpoint in ("responses", "chat"))
    if idle:
        lines += ["# never fired on these probes (they guard against faults; disable only if you must):",
                  f"#   {', '.join(idle)}"]
    lines.append("presets: [default]" if not enable else "presets: [default]   # and no disable: for the above")
    rules = []
    for (endpoint, event, path), f in sorted(gaps.items()):
        if "[" in path or event in ("stream", "event", "chunk"):
            continue         # positional gaps or stream-level ones: no declarative default fits
        name = f"doctor.default-{event.replace('.', '-')}-{path.replace('.', '-')}"
        mode = ", mode: body" if event == "body" else ""
        ev = "" if event == "body" else f", event: {event}"
        rules += [f"  - name: {name}",
                  f"    # {f.describe()}",
                  f"    match: {{endpoint: {endpoint}{mode}{ev}, where: {{{path}: missing}}}}",
                  f"    default: {{{path}: null}}   # put the value your clients need here",
                  "    stage: after"]
    if rules:
        lines += ["rules:"] + rules
    return "\n".join(lines)


def text_report(results: list[Result], summ: dict, snippet: str, paint: Paint) -> str:
    out = []
    for r in results:
        head = f"{r.probe.name}  ({r.probe.what})"
        if r.refused is not None:
            out.append(f"{paint(head, '1')}\n  refused by the backend: {r.refused}  (not a defect)")
            continue
        b = "n/a" if r.before is None else str(len(r.before))
        out.append(f"{paint(head, '1')}\n  findings: {b} before -> {len(r.after)} after")
        if r.before:
            by = {}
            for f in r.before:
                by.setdefault(f.kind, []).append(f)
            for kind, fs in sorted(by.items()):
                fixed = kind not in kinds(r.after)
                mark = paint("fixed", "32") if fixed else paint("REMAINS", "31")
                f = fs[0]
                others = sorted({g.field for g in fs} - {f.field})
                more = f" (also {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
                out.append(f"    before {mark:>7} {kind:<9} x{len(fs):<3} {f.where()}: {f.field} {f.problem}"
                           f"{more}  -> {f.rule or 'no rule'}")
        shown = {}
        for f in r.after:           # one line per kind: the first, with how many there are
            shown.setdefault(f.kind, []).append(f)
        for kind, fs in sorted(shown.items()):
            count = f" (x{len(fs)})" if len(fs) > 1 else ""
            out.append("    " + paint("after  ", "31") + fs[0].describe() + count)
    out.append("")
    width = max(len(r.probe.name) for r in results) if results else 10
    out.append(paint(f"{'probe':<{width}}  {'before':>6}  {'after':>5}  remaining", "1"))
    for r in results:
        if r.refused is not None:
            out.append(f"{r.probe.name:<{width}}  {'-':>6}  {'-':>5}  refused")
            continue
        b = "n/a" if r.before is None else len(r.before)
        rem = ", ".join(sorted(kinds(r.after))) or "-"
        out.append(f"{r.probe.name:<{width}}  {b:>6}  {len(r.after):>5}  {rem}")
    out.append("")
    line = (f"{summ['defects']} defects, {summ['fixed']} fixed by the config, {summ['remaining']} remaining"
            + (f" ({', '.join(summ['remaining_kinds'])})" if summ["remaining"] else "")
            + (f"; {summ['refused']} probes refused" if summ["refused"] else ""))
    out.append(paint(line, "31" if summ["remaining"] else "32"))
    out += ["", snippet]
    return "\n".join(out)


def save(results: list[Result], where: str) -> None:
    """Each probe as a capture ``sse-fixup replay`` reads: the upstream's bytes and the request."""
    os.makedirs(where, exist_ok=True)
    for r in results:
        if r.answer is None:
            continue
        base = os.path.join(where, r.probe.name)
        with open(base + ".body", "wb") as fh:
            fh.write(r.answer.body)
        with open(base + ".request.json", "wb") as fh:
            fh.write(orjson.dumps(r.probe.body, option=orjson.OPT_INDENT_2))
        with open(base + ".chunks.jsonl", "w") as fh:
            fh.writelines(json.dumps({"len": len(c)}) + "\n" for c in r.answer.chunks)
        with open(base + ".headers.txt", "w") as fh:
            fh.write(f"HTTP/1.1 {r.answer.status}\nContent-Type: {r.answer.content_type}\n")


# -- the command ----------------------------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="probe a backend and report what strict clients would trip over",
                       description="Send a fixed set of probes to a backend, validate its answers as "
                       "strict clients would, replay them through the configured rules and validate again.")
    p.add_argument("--upstream", metavar="URL", help="the backend (default: the config's upstream)")
    p.add_argument("--model", metavar="M", default="tiny", help="model name the probes ask for (default tiny)")
    p.add_argument("--endpoints", metavar="LIST", default="responses,chat",
                   help="comma-separated: responses, chat (default both)")
    p.add_argument("--config", metavar="FILE", help="YAML config whose rule chain is replayed")
    p.add_argument("--save", metavar="DIR", help="write each probe's answer as a capture for sse-fixup replay")
    p.add_argument("--via", metavar="URL", help="probe through this running proxy instead of replaying in-process")
    p.add_argument("--json", action="store_true", help="one JSON report on stdout, no progress")
    p.add_argument("--timeout", metavar="S", type=float, default=120.0, help="per probe (default 120)")


def run(args) -> int:
    from .config import ConfigError, check_upstream, load

    cfg = load(args.config)
    endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    bad = [e for e in endpoints if e not in PATHS]
    if bad or not endpoints:
        raise ConfigError(f"--endpoints: {', '.join(bad) or 'empty'}: choose from responses, chat")

    def flag(name):
        def fail(msg):
            raise ConfigError(f"{name}: {msg}")
        return fail
    upstream = check_upstream(args.upstream, flag("--upstream")) if args.upstream else None
    via = check_upstream(args.via, flag("--via")) if args.via else None
    tty = sys.stderr.isatty() and not args.json

    def progress(i, n, probe, res):
        if not tty:
            return
        if res is None:
            sys.stderr.write(f"\r\033[K[{i + 1}/{n}] {probe.name} ...")
        else:
            state = "refused" if res.refused else f"{len(res.before or ())} -> {len(res.after)} findings"
            sys.stderr.write(f"\r\033[K[{i + 1}/{n}] {probe.name}: {state}\n")
        sys.stderr.flush()

    t0 = time.monotonic()
    results = asyncio.run(run_probes(cfg, upstream, via, probes(args.model, endpoints), progress,
                                     args.timeout))
    summ = summary(results)
    snippet = suggestion(cfg, results)
    if args.save:
        save(results, args.save)
    if args.json:
        print(json.dumps({"summary": summ, "probes": [r.as_dict() for r in results],
                          "suggested_config": snippet, "seconds": round(time.monotonic() - t0, 2)}, indent=2))
    else:
        print(text_report(results, summ, snippet, Paint(sys.stdout.isatty())))
    if not summ["answered"]:
        print("sse-fixup doctor: no probe was answered by the backend", file=sys.stderr)
        return 2
    return 1 if summ["remaining"] else 0
