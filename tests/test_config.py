"""Config and CLI: defaults, flags over file, and errors that name file, line and key."""

import subprocess
import sys

import pytest

from sse_fixup.config import ConfigError, load, parse


def err(text):
    with pytest.raises(ConfigError) as exc:
        parse(text, "cfg.yaml")
    return str(exc.value)


def test_defaults_without_a_file():
    cfg = load(None)
    assert (cfg.upstream, cfg.host, cfg.port, cfg.presets) == ("http://127.0.0.1:8080", "127.0.0.1", 8090, ["default"])
    chains = cfg.build_chains()
    assert [r.name for r in chains[("responses", "stream")].rules][-1] == "responses.sequence_number"


def test_unknown_key_with_line_and_suggestion():
    assert err("upstream: http://x:1\nlisten:\n  hots: 0.0.0.0\n") == \
        "cfg.yaml:3: listen.hots: unknown key; did you mean 'host'?"


def test_unknown_preset_and_rule():
    assert err("presets: [defualt]\n") == "cfg.yaml:1: presets[0]: unknown preset 'defualt'; did you mean 'default'?"
    assert "disable[0]: unknown built-in rule 'chat.done_'" in err("disable:\n  - chat.done_\n")


def test_bad_values():
    assert err("upstream: localhost:8080\n").startswith("cfg.yaml:1: upstream: must be an http:// or https:// URL")
    assert err("listen: {port: 'x'}\n") == "cfg.yaml:1: listen.port: must be a port number, got str 'x'"
    assert err("timeouts:\n  idle: -1\n").startswith("cfg.yaml:2: timeouts.idle: must be a number of seconds")
    assert err("a: [1,\n") .startswith("cfg.yaml:2: invalid YAML")


def test_rule_errors_name_the_rule_and_field():
    text = "rules:\n  - name: r1\n    match: {endpoint: responses}\n    sett: {a: 1}\n"
    assert err(text) == "cfg.yaml:4: rules[0] (r1).sett: unknown key; did you mean 'set'?"
    text = "rules:\n  - name: r1\n    match: {endpoint: chats}\n    set: {a: 1}\n"
    assert err(text) == "cfg.yaml:3: rules[0] (r1).match.endpoint: must be one of responses, chat; got 'chats'"
    text = "rules:\n  - match: {endpoint: chat}\n    set:\n      'a..b': 1\n"
    assert err(text).startswith("cfg.yaml:4: rules[0].set.a..b: bad field path")
    text = "rules:\n  - match: {endpoint: chat}\n"
    assert err(text).startswith("cfg.yaml:2: rules[0]: has no action")


def test_example_config_is_valid():
    from pathlib import Path
    cfg = load(str(Path(__file__).parents[1] / "config.example.yaml"))
    assert cfg.rules and cfg.build_chains()


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


def test_cli_replay_reads_stdin():
    from .captures import FIXTURES
    body = (FIXTURES / "d_resp_stream_tool_required.body").read_bytes()
    r = cli("replay", "-", "--endpoint", "responses", stdin=body)
    assert r.returncode == 0
    assert b'"output_index":0' in r.stdout and r.stdout.count(b"event: ") == body.count(b"event: ") + 1
