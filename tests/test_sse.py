"""The SSE codec, against the WHATWG event-stream rules and the captures."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_fixup.chain import Chain
from sse_fixup.rules.base import StreamContext
from sse_fixup.transform import SSEWriter, Transform
from sse_fixup.rules.base import RequestInfo
from sse_fixup.sse import Decoder, encode, reencode

from .captures import all_names, load


def decode(*chunks):
    d = Decoder()
    events = [ev for c in chunks for ev in d.feed(c)]
    return events + d.close()


def fields(events):
    return [(e.event, e.data, e.id, e.retry) for e in events if e.data is not None]


def test_basic_fields_and_dispatch():
    evs = decode(b"event: a\ndata: 1\nid: 7\nretry: 250\n\n")
    assert fields(evs) == [("a", b"1", "7", 250)]
    assert evs[0].raw == b"event: a\ndata: 1\nid: 7\nretry: 250\n\n"


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol):
    raw = b"event: x" + eol + b"data: {}" + eol + eol
    evs = decode(raw)
    assert fields(evs) == [("x", b"{}", None, None)]
    assert evs[0].raw == raw and evs[0].terminated


def test_crlf_split_between_cr_and_lf():
    evs = decode(b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n")
    assert fields(evs) == [(None, b"1", None, None), (None, b"2", None, None)]
    assert b"".join(e.raw for e in evs) == b"data: 1\r\n\r\ndata: 2\r\n\r\n"


def test_multiline_data_and_no_space_after_colon():
    evs = decode(b"data:a\ndata:  b\ndata\n\n")
    assert evs[0].data == b"a\n b\n"


def test_comments_pass_as_events_without_data():
    evs = decode(b": ping\n\n", b"data: x\n: inside\n\n")
    assert [e.data for e in evs] == [None, b"x"]
    assert evs[0].raw == b": ping\n\n"


def test_split_inside_multibyte_utf8():
    payload = "data: {\"d\":\"héllo 発展\"}\n\n".encode()
    for cut in range(1, len(payload)):
        evs = decode(payload[:cut], payload[cut:])
        assert evs[0].data == payload[6:-2] and evs[0].json == {"d": "héllo 発展"}


def test_bom_is_skipped_for_parsing_but_kept_in_raw():
    evs = decode(b"\xef\xbb", b"\xbfdata: 1\n\n")
    assert evs[0].data == b"1" and evs[0].raw == b"\xef\xbb\xbfdata: 1\n\n"


def test_unterminated_tail_is_kept():
    evs = decode(b"data: 1\n\ndata: 2")
    assert [e.data for e in evs] == [b"1", b"2"]
    assert not evs[1].terminated and evs[1].raw == b"data: 2"


def test_id_with_nul_is_ignored_and_retry_needs_digits():
    evs = decode(b"id: a\0b\nretry: 1x\ndata: z\n\n")
    assert evs[0].id is None and evs[0].retry is None


def test_json_is_parsed_lazily_and_only_for_objects():
    assert decode(b"data: [DONE]\n\n")[0].json is None
    assert decode(b"data: [1,2]\n\n")[0].json is None
    assert decode(b"data: {nope\n\n")[0].json is None
    assert decode(b"data: {\"a\":1}\n\n")[0].json == {"a": 1}


def test_encode_and_reencode_keep_other_lines():
    assert encode(b"{}", "x") == b"event: x\ndata: {}\n\n"
    assert encode(b"a\nb") == b"data: a\ndata: b\n\n"
    ev = decode(b"event: e\r\n: note\r\ndata: 1\r\ndata: 2\r\nid: 5\r\n\r\n")[0]
    assert reencode(ev, b"{}") == b"event: e\r\n: note\r\ndata: {}\nid: 5\r\n\n"


CAPTURES = [n for n in all_names()]


@settings(max_examples=25, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", CAPTURES)
def test_any_chunking_gives_same_events_and_identity_bytes(name, data):
    body = load(name).body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    whole = decode(body)
    split = decode(*chunks)
    assert fields(split) == fields(whole)
    assert b"".join(e.raw for e in split) == body
    ctx = StreamContext(RequestInfo("responses"))
    identity = Transform(Decoder(), [Chain("responses", []).open(ctx), SSEWriter(named=True)], ctx)
    out = b"".join(identity.feed(c) for c in chunks) + identity.close()
    assert out == body
