"""``sse-fixup`` command line: serve (default), replay, rules, config, doctor."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_UPSTREAM, ConfigError, check_upstream, load

USAGE_EXIT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sse-fixup",
        description="A streaming reverse proxy that fixes OpenAI-compatible SSE for strict clients.")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the proxy (the default command)")
    serve.add_argument("--config", metavar="FILE", help="YAML config (see config.example.yaml)")
    serve.add_argument("--upstream", metavar="URL",
                       help=f"backend base URL (default {DEFAULT_UPSTREAM}); may carry a base path")
    serve.add_argument("--host", metavar="H", help=f"listen address (default {DEFAULT_HOST})")
    serve.add_argument("--port", metavar="P", type=int, help=f"listen port (default {DEFAULT_PORT})")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--workers", metavar="N", type=int,
                       help="processes sharing the port (default 1; each uses one core)")
    serve.add_argument("--loop", choices=("asyncio", "uvloop", "auto"),
                       help="event loop (default asyncio; auto: uvloop when installed)")
    serve.add_argument("--access-log", choices=("plain", "json", "off"),
                       help="one line per request on stderr (default: the config's access_log, plain)")
    serve.add_argument("--watch-config", action="store_true",
                       help="reload the config when the file changes (SIGHUP always reloads)")
    replay = sub.add_parser("replay", help="print what the proxy would send for a captured body")
    replay.add_argument("file", metavar="FILE",
                        help="captured SSE stream or JSON body (- for stdin), or a capture directory")
    replay.add_argument("--endpoint", choices=("responses", "chat"),
                        help="the endpoint the body came from (a capture directory says it itself)")
    replay.add_argument("--config", metavar="FILE")
    replay.add_argument("--request", metavar="FILE",
                        help="the request's JSON body (or a raw .request.http): model, tools")
    replay.add_argument("--check", action="store_true",
                        help="capture directory: compare with what the proxy sent; exit 1 on a difference")
    rules = sub.add_parser("rules", help="list built-in rules and presets (and a config's routes)")
    rules.add_argument("--config", metavar="FILE", help="also show this config's effective routes")
    config = sub.add_parser("config", help="list every config key: type, default, meaning")
    config.add_argument("--schema", action="store_true",
                        help="print the config file's JSON Schema instead (sse_fixup/config.schema.json)")
    from . import doctor
    doctor.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")
    args = _parser().parse_args(argv)
    try:
        if args.command == "rules":
            return cmd_rules(args)
        if args.command == "config":
            return cmd_config(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "doctor":
            from . import doctor
            return doctor.run(args)
        return cmd_serve(args)
    except ConfigError as exc:
        print(f"sse-fixup: config error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:          # replay | head
        sys.stderr.close()
        return 0


def cmd_serve(args) -> int:
    def prepare(cfg):
        """The flags and environment over the file: at start and again at each reload."""
        if args.upstream:
            cfg.upstream = check_upstream(args.upstream, _flag_error("--upstream"))
        if args.host:
            cfg.host = args.host
        if args.port is not None:
            cfg.port = args.port
        if args.log_level:
            cfg.log_level = args.log_level
        if args.loop:
            cfg.event_loop = args.loop
        if args.access_log:
            cfg.access_log = args.access_log
        env_keys = os.environ.get("SSE_FIXUP_API_KEYS", "")
        cfg.auth.api_keys += [k.strip() for k in env_keys.split(",") if k.strip()]
        return cfg

    cfg = prepare(load(args.config))
    if args.watch_config and not args.config:
        raise ConfigError("--watch-config: needs --config FILE")
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from . import access
    access.setup(cfg.access_log)
    workers = args.workers if args.workers is not None else cfg.workers
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    tmp = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: it picks its value store at import time
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="sse-fixup-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tmp.name
    from .server import run

    try:
        return run(cfg, workers, announce=lambda msg: print(msg, flush=True),
                   reload={"path": args.config, "prepare": prepare, "watch": args.watch_config})
    except OSError as exc:          # port taken, address not available
        print(f"sse-fixup: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()


def _flag_error(flag: str):
    def fail(msg: str):
        raise ConfigError(f"{flag}: {msg}")
    return fail


def cmd_rules(args=None) -> int:
    from .presets import PRESETS
    from .rules import BUILTIN

    if args is not None and args.config:
        from .routes import Router
        cfg = load(args.config)
        print(f"Routes of {args.config} (first match wins):")
        for i, route in enumerate(Router(cfg).routes):
            print(f"  {i + 1}. {route.describe()}")
            for endpoint in ("responses", "chat"):
                names = route.chains[(endpoint, "stream")].names
                print(f"       {endpoint} stream rules: {', '.join(names) or 'none'}")
        print()

    print("Presets (config key: presets):")
    for name, (desc, _) in PRESETS.items():
        print(f"  {name:<12} {desc}")
    print("\nBuilt-in rules (in preset order; config key: disable):")
    for name, cls in BUILTIN.items():
        print(f"  {name:<32} {cls.summary()}  [{cls.mode}; fixes {cls.fixes}]")
        if cls.mode == "stream":
            touches = "; ".join(t.describe() for t in cls.touches) or "no event (adds events at the end)"
            print(f"  {'':<32}   touches {touches}")
    return 0


def cmd_config(args) -> int:
    import json

    from .config import Config, json_schema

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    print("Config keys (YAML; config.example.yaml shows each, --schema prints the JSON Schema):")
    for key, what, default, doc in Config.rows():
        shown = "" if default is None else f"; default {json.dumps(default)}"
        print(f"  {key:<24} {doc}  [{what}{shown}]")
    return 0


def cmd_replay(args) -> int:
    import orjson

    from .routes import Router
    from .rules.base import RequestInfo

    cfg = load(args.config)
    if os.path.isdir(args.file):
        return _replay_capture(args, cfg)
    if args.endpoint is None:
        raise ConfigError("replay: --endpoint is required for a captured body (not for a capture directory)")
    data = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    body = None
    if args.request:
        raw = _read(args.request)
        raw = raw.split(b"\r\n\r\n", 1)[-1] if raw.startswith((b"POST", b"GET")) else raw
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{args.request}: --request must hold a JSON body") from None
    path = f"/v1/{'responses' if args.endpoint == 'responses' else 'chat/completions'}"
    info = RequestInfo(args.endpoint, path, body)
    stripped = data.strip()
    mode = "body" if stripped.startswith(b"{") and _is_json(stripped) else "stream"
    # the same transform the proxy runs for one response
    transform = Router(cfg).route(path, info.model).open(info, mode)
    out = sys.stdout.buffer
    out.write(transform.feed(data))
    out.write(transform.close())
    out.flush()
    return 0


def _replay_capture(args, cfg) -> int:
    """A capture directory (capture.py), read by read, with the ids and clock it recorded."""
    from . import capture
    from .routes import Router, endpoint_of
    from .rules.base import MINTING, Fault, Minting, RequestInfo

    try:
        cap = capture.load(args.file)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{args.file}: not a readable capture directory: {exc}") from None
    meta, req = cap["meta"], cap["request"]
    path = req["path"]
    body = req["body"] if isinstance(req["body"], dict) else None
    endpoint = meta.get("endpoint") or endpoint_of(path)
    info = RequestInfo(endpoint, path, body)
    MINTING.set(Minting(meta.get("minted") or []))
    transform = Router(cfg).route(path, info.model).open(info, meta["upstream"], meta["client"])
    pieces = [transform.feed(chunk) for chunk in cap["reads"]]
    fault = meta.get("fault")
    pieces.append(transform.close(Fault(fault["code"], fault["message"]) if fault else None))
    out = b"".join(pieces)
    if not args.check:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
        return 0
    if meta.get("truncated"):
        print(f"{args.file}: the capture was cut at capture.max_stream_bytes: it cannot be "
              "compared whole", file=sys.stderr)
        return 1
    if out == cap["sent"]:
        print(f"{args.file}: replay matches what the proxy sent ({len(out)} bytes)")
        return 0
    at = next((i for i, (a, b) in enumerate(zip(out, cap["sent"])) if a != b), min(len(out), len(cap["sent"])))
    print(f"{args.file}: replay differs from what the proxy sent at byte {at} "
          f"(replay {len(out)} bytes, sent {len(cap['sent'])}); was the config the same? "
          f"(captured with {meta.get('config') or 'the defaults'})", file=sys.stderr)
    return 1


def _is_json(data: bytes) -> bool:
    import orjson
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
