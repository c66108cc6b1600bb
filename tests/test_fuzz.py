"""Property tests: arbitrary streams, arbitrary chunk splits - nothing escapes, drops, doubles
or reorders.  Bounded (a few hundred examples each) so that the suite stays quick."""

import logging

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_fixup.config import Config
from sse_fixup.rules.base import RequestInfo
from sse_fixup.routes import Router
from sse_fixup.sse import Decoder

from .helpers import parse, transform

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).map(str.encode)
LINE_TEXT = TEXT.map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def raw_streams(draw):
    """Anything line-shaped: fields, comments, junk, blank lines, mixed line endings."""
    out = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["data", "event", "id", "retry", "comment", "junk", "blank"]))
        eol = draw(EOL)
        if kind == "blank":
            out.append(eol)
        elif kind == "comment":
            out.append(b":" + draw(LINE_TEXT) + eol)
        elif kind == "junk":
            out.append(draw(st.binary(max_size=20)).replace(b"\r", b"").replace(b"\n", b"") + eol)
        else:
            out.append(kind.encode() + draw(st.sampled_from([b":", b": ", b""])) + draw(LINE_TEXT) + eol)
    if draw(st.booleans()):
        out.append(draw(LINE_TEXT))           # an unterminated tail
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(min(c, len(data)) for c in cuts)
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def decode(chunks):
    d = Decoder()
    return [ev for c in chunks for ev in d.feed(c)] + d.close()


@SETTINGS
@given(raw_streams(), st.lists(st.integers(0, 400), max_size=20))
def test_codec_any_stream_any_split(stream, cuts):
    whole = decode([stream])
    parts = decode(split(stream, cuts))
    assert b"".join(e.raw for e in parts) == stream            # nothing dropped or added
    assert [(e.event, e.data, e.id, e.retry) for e in parts] == \
        [(e.event, e.data, e.id, e.retry) for e in whole]


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=8)
RESPONSE_TYPES = ["response.created", "response.in_progress", "response.output_item.added",
                  "response.output_item.done", "response.content_part.added",
                  "response.output_text.delta", "response.output_text.done",
                  "response.function_call_arguments.delta", "response.function_call_arguments.done",
                  "response.completed", "response.failed", "response.reasoning_text.delta", "x.y"]
FIELDS = ["response", "item", "item_id", "output_index", "content_index", "delta", "arguments",
          "part", "sequence_number", "usage", "choices", "id", "created", "model", "call_id"]


@st.composite
def events(draw, endpoint):
    out = []
    for n in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 9)) == 0:
            out.append((n, b"data: not-json-%d\n\n" % n))
            continue
        obj = draw(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5))
        if endpoint == "chat" and draw(st.booleans()):
            obj["choices"] = draw(st.lists(st.fixed_dictionaries(
                {"index": st.integers(0, 2), "delta": JSON,
                 "finish_reason": st.sampled_from([None, "stop", "", "tool_calls"])}), max_size=2))
        typ = draw(st.sampled_from(RESPONSE_TYPES)) if endpoint == "responses" else None
        if typ:
            obj["type"] = typ
        obj["x_n"] = n
        head = b"event: " + typ.encode() + b"\n" if typ and draw(st.booleans()) else b""
        out.append((n, head + b"data: " + orjson.dumps(obj) + b"\n\n"))
    return out


class _Failures(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def check_chain(endpoint, evs, cuts, request):
    stream = b"".join(raw for _, raw in evs)
    failures = _Failures()
    logger = logging.getLogger("sse_fixup.chain")
    logger.addHandler(failures)
    try:
        out = transform(split(stream, cuts), endpoint, request)
    finally:
        logger.removeHandler(failures)
    assert failures.messages == []         # no built-in rule raises on any JSON shape
    seen = []
    for item in parse(out):
        if isinstance(item, dict) and isinstance(item.get("x_n"), int):
            seen.append(item["x_n"])
        elif isinstance(item, str) and item.startswith("not-json-"):
            seen.append(int(item[9:]))
    assert seen == [n for n, _ in evs]                        # each once, in order
    for n, raw in evs:
        if raw.startswith(b"data: not-json"):
            assert raw in out                                   # non-JSON passes byte for byte


REQUESTS = st.none() | st.fixed_dictionaries({"model": st.text(max_size=4), "tools": JSON})


@SETTINGS
@given(events("responses"), st.lists(st.integers(0, 2000), max_size=10), REQUESTS)
def test_responses_chain_any_events_any_split(evs, cuts, request):
    check_chain("responses", evs, cuts, request)


@SETTINGS
@given(events("chat"), st.lists(st.integers(0, 2000), max_size=10), REQUESTS)
def test_chat_chain_any_events_any_split(evs, cuts, request):
    check_chain("chat", evs, cuts, request)


CHUNK = (b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"t%d"}}],'
         b'"created":1,"id":"c1","model":"m","object":"chat.completion.chunk"}\n\n')


@SETTINGS
@given(st.integers(1, 60), st.lists(st.integers(0, 8000), max_size=12))
def test_untouched_chat_stream_is_byte_identical_under_any_split(n, cuts):
    """The fast path (reads whose events no rule needs go out as they came) loses and adds nothing."""
    stream = b"".join(CHUNK % i for i in range(n)) + \
        b'data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"c1",' \
        b'"model":"m","object":"chat.completion.chunk"}\n\ndata: [DONE]\n\n'
    t = Router(Config()).route("/v1/x").open(RequestInfo("chat", "/v1/x", None), "stream")
    out = b"".join(t.feed(c) for c in split(stream, cuts))
    assert out == stream
    assert t.close() == b"" and t.ctx.events == n + 1 and t.ctx.patched == 0
