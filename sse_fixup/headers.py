"""Which headers cross the proxy (RFC 9110 section 7.6.1: hop-by-hop ones do not)."""

from __future__ import annotations

from multidict import CIMultiDict

HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))


def forward_headers(headers, *, drop_encoding: bool = False, drop_auth: bool = False,
                    upstream_key: str | None = None) -> CIMultiDict:
    """A request's headers for the upstream.  ``Host`` is the upstream's own (set by the
    client library); the client's key is dropped when the proxy checked it itself."""
    listed = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    out = CIMultiDict()
    for key, value in headers.items():
        low = key.lower()
        if low in HOP_BY_HOP or low in listed:
            continue
        if drop_encoding and low == "accept-encoding":
            continue
        if drop_auth and low == "authorization":
            continue
        out.add(key, value)
    if drop_encoding:
        out["Accept-Encoding"] = "identity"   # the rules need plain bytes
    if upstream_key:
        out["Authorization"] = f"Bearer {upstream_key}"
    return out


def response_headers(headers, *, streaming: bool) -> CIMultiDict:
    out = forward_headers(headers)
    if streaming:
        out["Cache-Control"] = "no-cache"
        out["X-Accel-Buffering"] = "no"   # nginx and friends in front of us: do not buffer
    return out
