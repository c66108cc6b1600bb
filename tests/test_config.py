"""Config and CLI: defaults, flags over file, errors that name file, line and key, and the
JSON Schema that editors use, derived from the same declaration as the parser."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sse_fixup.config import Config, ConfigError, json_schema, load, parse
from sse_fixup.rules import paths
from sse_fixup.rules.declarative import Spec

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "config.example.yaml"
SHIPPED = ROOT / "sse_fixup" / "config.schema.json"
REGENERATE = "python -m sse_fixup config --schema > sse_fixup/config.schema.json"


def err(text):
    with pytest.raises(ConfigError) as exc:
        parse(text, "cfg.yaml")
    return str(exc.value)


def test_defaults_without_a_file():
    cfg = load(None)
    assert (cfg.upstream, cfg.host, cfg.port, cfg.presets) == ("http://127.0.0.1:8080", "127.0.0.1", 8090, ["default"])
    names = cfg.rule_names()
    assert names.index("responses.sequence_number") == names.index("chat.envelope") - 1
    assert parse("disable: chat.done\n").rule_names() == [n for n in names if n != "chat.done"]


def test_defaults_are_the_same_in_code_file_and_schema():
    assert Config() == load(None) == parse("", "e.yaml") == parse("{}\n") == parse("# nothing\n")
    assert Config().presets is not Config().presets          # fresh lists, not a shared default
    schema, cfg = json_schema(), Config()
    for key in ("upstream", "presets", "log_level", "workers", "event_loop", "metrics"):
        assert schema["properties"][key]["default"] == getattr(cfg, key), key
    for section in ("listen", "timeouts", "limits", "auth"):
        for key, prop in schema["properties"][section]["properties"].items():
            assert prop["default"] == getattr(getattr(cfg, section), key), (section, key)


def test_example_shows_the_defaults_and_every_key():
    cfg = load(str(EXAMPLE))
    assert [s.name for s in cfg.rules] == ["example.reasoning-fold", "example.drop-timings"]
    cfg.rules = []
    assert cfg == Config()               # "as if this file held only the defaults shown here"
    text = EXAMPLE.read_text()
    for key, *_ in Config.rows():
        assert re.search(rf"\b{re.escape(key.rsplit('.', 1)[-1])}:", text), f"{key} not in {EXAMPLE.name}"


def test_keyword_construction():
    from sse_fixup.config import Auth, Limits, Timeouts
    cfg = Config(upstream="http://u:1", timeouts=Timeouts(first_byte=1), limits=Limits(max_event_bytes=4096),
                 auth=Auth(api_keys=["k"]), host="0.0.0.0")
    assert (cfg.timeouts.first_byte, cfg.timeouts.idle, cfg.limits.max_request_bytes) == (1, 600.0, 32 << 20)
    assert (cfg.auth.api_keys, cfg.host, cfg.port) == (["k"], "0.0.0.0", 8090)
    with pytest.raises(TypeError, match="hots"):
        Config(hots="x")


def test_unknown_key_with_line_and_suggestion():
    assert err("upstream: http://x:1\nlisten:\n  hots: 0.0.0.0\n") == \
        "cfg.yaml:3: listen.hots: unknown key; did you mean 'host'?"
    assert err("timeouts: {zzz: 1}\n") == ("cfg.yaml:1: timeouts.zzz: unknown key; known keys: "
                                            "connect, first_byte, idle, keepalive, shutdown_grace")
    assert err("workers: 1\nworkers: 2\n") == "cfg.yaml:2: duplicate key 'workers'"
    assert err("listen: {host: h}\n7: x\n").startswith("cfg.yaml:2: 7: unknown key; known keys: access_log, answers, auth, capture,")
    assert err("rules:\n  - {match: {endpoint: chat, where: {0: exists}}, now: a}\n") == \
        "cfg.yaml:2: rules[0].match.where.0: a field path must be a non-empty string"


def test_unknown_preset_and_rule():
    assert err("presets: [defualt]\n") == "cfg.yaml:1: presets[0]: unknown preset 'defualt'; did you mean 'default'?"
    assert "disable[0]: unknown built-in rule 'chat.done_'" in err("disable:\n  - chat.done_\n")
    assert parse("presets: chat\n").presets == ["chat"]        # one name stands for a list of one


def test_bad_values():
    assert err("upstream: localhost:8080\n").startswith("cfg.yaml:1: upstream: must be an http:// or https:// URL")
    assert err("upstream: http://h/?a=1\n") == "cfg.yaml:1: upstream: must not carry a query string or fragment"
    assert err("listen: {port: 'x'}\n") == "cfg.yaml:1: listen.port: must be a port number, got str 'x'"
    assert err("listen: {port: 70000}\n") == "cfg.yaml:1: listen.port: must be between 0 and 65535; got 70000"
    assert err("timeouts:\n  idle: -1\n").startswith("cfg.yaml:2: timeouts.idle: must be a number of seconds")
    assert err("timeouts:\n  shutdown_grace: null\n").startswith("cfg.yaml:2: timeouts.shutdown_grace: must be")
    assert err("limits: {max_event_bytes: 10}\n") == "cfg.yaml:1: limits.max_event_bytes: must be at least 1024; got 10"
    assert err("workers: 0\n") == "cfg.yaml:1: workers: must be at least 1; got 0"
    assert err("event_loop: tokio\n") == "cfg.yaml:1: event_loop: must be one of asyncio, uvloop, auto; got 'tokio'"
    assert err("metrics: 1\n") == "cfg.yaml:1: metrics: must be true or false, got int 1"
    assert err("- a\n") == "cfg.yaml:1: the config file must be a mapping of keys (upstream, listen, presets, ...)"
    assert err("a: [1,\n") .startswith("cfg.yaml:2: invalid YAML")
    cfg = parse("timeouts: {keepalive: null, connect: 3}\nlog_level: DEBUG\nupstream: http://h/base/\n")
    assert (cfg.timeouts.keepalive, cfg.timeouts.connect, cfg.log_level, cfg.upstream) == \
        (None, 3.0, "debug", "http://h/base")


def test_rule_errors_name_the_rule_and_field():
    text = "rules:\n  - name: r1\n    match: {endpoint: responses}\n    sett: {a: 1}\n"
    assert err(text) == "cfg.yaml:4: rules[0] (r1).sett: unknown key; did you mean 'set'?"
    text = "rules:\n  - name: r1\n    match: {endpoint: chats}\n    set: {a: 1}\n"
    assert err(text) == "cfg.yaml:3: rules[0] (r1).match.endpoint: must be one of responses, chat; got 'chats'"
    text = "rules:\n  - match: {endpoint: chat}\n    set:\n      'a..b': 1\n"
    assert err(text).startswith("cfg.yaml:4: rules[0].set.a..b: bad field path")
    text = "rules:\n  - match: {endpoint: chat}\n"
    assert err(text).startswith("cfg.yaml:2: rules[0]: has no action")
    assert err("rules:\n  - set: {a: 1}\n") == "cfg.yaml:2: rules[0].match: is required: a mapping with endpoint"
    assert err("rules:\n  - {match: {mode: body}, set: {a: 1}}\n") == \
        "cfg.yaml:2: rules[0].match.endpoint: is required: one of responses, chat"
    assert err("rules:\n  - {name: chat.done, match: {endpoint: chat}, now: [a]}\n") == \
        "cfg.yaml:2: rules[0].name: 'chat.done' is already taken"
    assert err("rules:\n  - {match: {endpoint: chat}, copy: {a.b: c.d}}\n").endswith(
        "rules[0].copy.a.b: both paths must end in a field of the same object (e.g. item.id: item.call_id)")
    assert err("rules:\n  - {match: {endpoint: chat, where: {a: present}}, now: a}\n").startswith(
        "cfg.yaml:2: rules[0].match.where.a: condition must be exists, missing or {equals: value}")
    assert err("rules: [5]\n") == "cfg.yaml:1: rules[0]: each rule must be a mapping with match: and actions"


def test_rules_become_specs_with_actions_in_order():
    (spec,) = parse("""
rules:
  - name: all
    match: {endpoint: responses, mode: body, event: "x.*", where: {a: exists, b.c: {equals: 1}}}
    stage: after
    from_request: {m: model}
    now: t
    counter: {n: items}
    delete: [d, "e[0]"]
    rename: {r.a: r.b}
    copy: {item.id: item.call_id}
    default: {f: $now}
    set: {"s[*].x": 1}
""").rules
    p = paths.parse
    assert spec == Spec(
        name="all", endpoint="responses", mode="body", event="x.*", stage="after",
        where=[(p("a"), "exists", None), (p("b.c"), "equals", 1)],
        actions=[("set", p("s[*].x"), 1), ("default", p("f"), "$now"), ("copy", p("item.id"), p("item.call_id")),
                 ("rename", p("r.a"), p("r.b")), ("delete", p("d"), None), ("delete", p("e[0]"), None),
                 ("counter", p("n"), "items"), ("now", p("t"), None), ("from_request", p("m"), "model")])
    (spec,) = parse("rules:\n  - {match: {endpoint: chat}, delete: x}\n").rules
    assert (spec.name, spec.mode, spec.stage, spec.event, spec.where) == ("custom.0", "stream", "before", None, [])


# -- the JSON Schema ----------------------------------------------------------------------

def validators():
    """2020-12 as declared, and draft-07: what yaml-language-server implements; the schema
    keeps to the keywords both know."""
    import jsonschema                    # the test extra; the package itself never imports it
    schema = json.loads(SHIPPED.read_text())
    out = []
    for cls in (jsonschema.Draft202012Validator, jsonschema.Draft7Validator):
        cls.check_schema(schema)
        out.append(cls(schema))
    return out


def schema_errors(text):
    # the proxy's reader: keys read as YAML 1.2 does (editors too), so a bare `on:` is a name
    from sse_fixup.config import _read_yaml
    return {v.__class__.__name__: [e.message for e in v.iter_errors(_read_yaml(text, "t"))] for v in validators()}


def test_shipped_schema_is_the_generated_one():
    assert json.loads(SHIPPED.read_text()) == json_schema(), f"regenerate it: {REGENERATE}"


def test_example_config_is_valid_for_schema_and_parser():
    assert EXAMPLE.read_text().startswith("# yaml-language-server: $schema=./sse_fixup/config.schema.json\n")
    assert schema_errors(EXAMPLE.read_text()) == {"Draft202012Validator": [], "Draft7Validator": []}
    assert load(str(EXAMPLE)).rules


BAD = [
    ("listen:\n  hots: 0.0.0.0\n", "listen.hots: unknown key"),
    ("prests: [default]\n", "prests: unknown key"),
    ("workers: two\n", "workers: must be a number of processes"),
    ("workers: 0\n", "workers: must be at least 1"),
    ("listen: {port: 70000}\n", "must be between 0 and 65535"),
    ("limits: {max_request_bytes: 1000}\n", "must be at least 1024"),
    ("listen: {host: ''}\n", "listen.host: must be a host name"),
    ("timeouts: {idle: 0}\n", "timeouts.idle: must be a number of seconds"),
    ("presets: [defualt]\n", "unknown preset 'defualt'"),
    ("disable: nope\n", "unknown built-in rule 'nope'"),
    ("upstream: http://h/#x\n", "must not carry a query string or fragment"),
    ("auth: {upstream_key: {env: 5}}\n", "auth.upstream_key: must be a non-empty string or {env"),
    ("auth: {api_keys: [{env: A, x: 1}]}\n", "auth.api_keys[0]: must be"),
    ("log_bodies: 'no'\n", "log_bodies: must be true or false"),
    ("rules:\n  - {match: {endpoint: chat}}\n", "has no action"),
    ("rules:\n  - {match: {endpoint: chats}, set: {a: 1}}\n", "must be one of responses, chat"),
    ("rules:\n  - {match: {endpoint: chat, mode: sse}, set: {a: 1}}\n", "must be one of stream, body"),
    ("rules:\n  - {match: {endpoint: chat}, set: {}}\n", "must be a mapping of field path"),
    ("rules:\n  - {match: {endpoint: chat}, counter: {a: 1}}\n", "must be a counter name"),
    ("rules:\n  - {set: {a: 1}}\n", "rules[0].match: is required"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_schema_and_parser_reject_the_same_mistakes(text, message):
    assert message in err(text)
    assert all(schema_errors(text).values()), "a schema accepted it"


GOOD = [
    "presets: chat\ndisable: [chat.done]\n",
    "timeouts: {keepalive: null, shutdown_grace: 0}\nlisten: {port: 0}\n",
    "auth: {api_keys: [k1, {env: HOME}], upstream_key: null, forward_key: true}\n",
    "rules:\n  - {match: {endpoint: chat, where: {a: {equals: null}, 'b[*].c': missing}}, now: t}\n",
    "rules:\n  - {match: {endpoint: responses, event: null}, rename: {a.b: a.c}, stage: after}\n",
]


@pytest.mark.parametrize("text", GOOD)
def test_schema_and_parser_accept_the_same_configs(text, monkeypatch):
    monkeypatch.setenv("HOME", "/h")
    parse(text)
    assert schema_errors(text) == {"Draft202012Validator": [], "Draft7Validator": []}


def test_importing_the_config_stays_light():
    code = "import sys, sse_fixup.config; print(sorted({'yaml', 'jsonschema'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout.decode().strip()
    assert out == "[]"


# -- the command line ---------------------------------------------------------------------

def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "sse_fixup", *args], capture_output=True,
                          input=stdin, timeout=60)


def test_cli_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("upstream: http://127.0.0.1:8080\nprests: [default]\n")
    r = cli("serve", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.decode().strip() == f"sse-fixup: config error: {bad}:2: prests: unknown key; did you mean 'presets'?"
    r = cli("--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and b"Traceback" not in r.stderr and b"cannot read config file" in r.stderr


def test_cli_rules_lists_every_rule_and_preset():
    from sse_fixup.presets import PRESETS
    from sse_fixup.rules import BUILTIN
    out = cli("rules").stdout.decode()
    for name in [*PRESETS, *BUILTIN]:
        assert f"  {name} " in out


def test_cli_rules_shows_a_configs_effective_routes(tmp_path):
    cfg = tmp_path / "routes.yaml"
    cfg.write_text("upstream: http://a:1\nroutes:\n  - match: {model: 'qwen*'}\n    upstream: http://b:2\n"
                   "    drop_reasoning: true\n    presets: [chat]\n")
    out = cli("rules", "--config", str(cfg)).stdout.decode()
    assert "1. model=qwen* -> http://b:2 (presets: chat; drop_reasoning)" in out
    assert "2. everything else -> http://a:1 (presets: default)" in out
    first, second = out.split("Presets")[0].split("2. everything else")
    assert "chat.drop_reasoning" in first and "chat.drop_reasoning" not in second
    assert "responses stream rules: responses.drop_reasoning" in first


def test_cli_config_lists_every_key_and_prints_the_schema():
    out = cli("config").stdout.decode()
    for key, *_ in Config.rows():
        assert f"  {key} " in out
    assert "  timeouts.keepalive " in out and 'default "http://127.0.0.1:8080"' in out
    assert json.loads(cli("config", "--schema").stdout) == json_schema()


def test_cli_replay_reads_stdin():
    from .captures import FIXTURES
    body = (FIXTURES / "d_resp_stream_tool_required.body").read_bytes()
    r = cli("replay", "-", "--endpoint", "responses", stdin=body)
    assert r.returncode == 0
    assert b'"output_index":0' in r.stdout and r.stdout.count(b"event: ") == body.count(b"event: ") + 1
