"""``realtime: emulate``: the proxy is a Realtime server (text mode) over the route's chat
completions, for backends with no Realtime endpoint (llama-server and most local ones).

One ``Session`` per WebSocket keeps the session settings and the conversation (an
ordered list of items).  Client events:

    session.update                 -> session.updated (instructions, tools, tool_choice,
                                      output_modalities, max_output_tokens, temperature)
    conversation.item.create       -> conversation.item.added + .done (beta: .created)
    conversation.item.delete       -> conversation.item.deleted
    conversation.item.truncate     -> conversation.item.truncated (text is kept: no audio)
    conversation.item.retrieve     -> conversation.item.retrieved
    response.create                -> one streaming chat completion (``respond.py``)
    response.cancel                -> the upstream request is cancelled at once,
                                      response.done with status cancelled
    input_audio_buffer.clear       -> input_audio_buffer.cleared
    audio in or out, anything else -> an ``error`` event naming what is not supported

A client event that is refused gets an ``error`` whose ``error.event_id`` is the client's
``event_id`` (LiveKit settles the matching future with it); the session stays open.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson
from aiohttp import web

from ..convert import TranslationError
from ..rules.base import Fault, RequestInfo, StreamContext, mint_id
from ..sse import Decoder
from . import events as ev
from .forward import upstream_headers
from .meter import Meter
from .respond import Mapper, chat_body

log = logging.getLogger("sse_fixup.realtime")

SETTINGS = ("instructions", "tools", "tool_choice", "max_output_tokens", "temperature")


class Refused(Exception):
    """A client event the emulation cannot serve: becomes an ``error`` event."""

    def __init__(self, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def _text_only(modalities, param: str) -> None:
    if modalities is None:
        return
    if not isinstance(modalities, list) or any(m != "text" for m in modalities):
        raise Refused(f"{param} {modalities!r}: this Realtime session is emulated over chat "
                      "completions and is text only (audio output is not supported)",
                      "unsupported_modality", param)


def _check_item(item) -> dict:
    if not isinstance(item, dict):
        raise Refused("conversation.item.create needs an item (an object)", "invalid_item", "item")
    typ = item.get("type")
    if typ == "message":
        if item.get("role") not in ("user", "assistant", "system"):
            raise Refused(f"item.role {item.get('role')!r}: user, assistant or system", "invalid_item", "item.role")
        for i, part in enumerate(item.get("content") or ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_audio", "audio", "output_audio"):
                raise Refused(f"item.content[{i}] is {kind}: this Realtime session is emulated over chat "
                              "completions and is text only (audio input is not supported)",
                              "unsupported_modality", f"item.content[{i}].type")
            if kind not in ("input_text", "text", "output_text", "input_image"):
                raise Refused(f"item.content[{i}].type {kind!r} is not supported", "invalid_item",
                              f"item.content[{i}].type")
    elif typ == "function_call":
        if not isinstance(item.get("name"), str):
            raise Refused("a function_call item needs its name", "invalid_item", "item.name")
    elif typ == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise Refused("a function_call_output item needs its call_id", "invalid_item", "item.call_id")
    else:
        raise Refused(f"item.type {typ!r}: message, function_call or function_call_output",
                      "invalid_item", "item.type")
    out = orjson.loads(orjson.dumps(item))
    out.setdefault("id", mint_id("item_"))
    out["object"] = "realtime.item"
    out["status"] = "completed"
    if typ == "function_call":
        out.setdefault("call_id", mint_id("call_"))
        out.setdefault("arguments", "")
    return out


def _settings(given: dict, into: dict, where: str) -> None:
    """The settings a session.update or response.create gives, checked, into ``into``."""
    _text_only(given.get("output_modalities"), f"{where}.output_modalities")
    _text_only(given.get("modalities"), f"{where}.modalities")
    if "tools" in given and not isinstance(given["tools"], list):
        raise Refused(f"{where}.tools must be a list of tools", "invalid_value", f"{where}.tools")
    choice = given.get("tool_choice", "auto")
    if not (choice in ("auto", "none", "required") or isinstance(choice, dict) and choice.get("type") == "function"):
        raise Refused(f"{where}.tool_choice {choice!r}: auto, none, required or a function",
                      "invalid_value", f"{where}.tool_choice")
    for key in SETTINGS:
        if key in given:
            into[key] = given[key]
    if "max_response_output_tokens" in given:           # the beta name
        into["max_output_tokens"] = given["max_response_output_tokens"]


class Session:
    def __init__(self, request: web.Request, route, ws: web.WebSocketResponse, meter: Meter):
        from ..proxy import CONFIG, SESSION
        self.request = request
        self.route = route
        self.ws = ws
        self.meter = meter
        self.cfg = request.app[CONFIG]
        self.http = request.app[SESSION]
        self.names = ev.Names(ev.beta_requested(request.headers))
        self.model = request.rel_url.query.get("model")
        self.id = mint_id("sess_")
        self.conversation_id = mint_id("conv_")
        self.settings: dict = {"instructions": "", "tools": [], "tool_choice": "auto",
                               "max_output_tokens": "inf", "temperature": None}
        self.items: list[dict] = []
        self.task: asyncio.Task | None = None
        self.cancelled = False
        self.current_id: str | None = None
        self.lock = asyncio.Lock()

    # -- out ---------------------------------------------------------------------------

    async def send(self, obj: dict) -> None:
        self.meter.server_event(obj)
        async with self.lock:
            if not self.ws.closed:
                try:
                    await self.ws.send_str(ev.dumps(obj))
                except (ConnectionError, RuntimeError):
                    pass                  # the client is gone; run() ends the session

    def session_object(self) -> dict:
        s = self.settings
        obj = {"id": self.id, "object": "realtime.session", "model": self.model,
               "instructions": s["instructions"], "tools": s["tools"], "tool_choice": s["tool_choice"],
               self.names.modalities: ["text"], self.names.max_tokens: s["max_output_tokens"]}
        if self.names.beta:
            obj["temperature"] = s["temperature"] if s["temperature"] is not None else 0.8
        else:
            obj["type"] = "realtime"
        return obj

    # -- in ----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.send(ev.event("session.created", session=self.session_object()))
        idle = self.cfg.timeouts.idle
        try:
            while True:
                try:
                    msg = await self.ws.receive(timeout=idle)
                except TimeoutError:
                    if self.task is not None and not self.task.done():
                        continue          # a response is running: not idle
                    await self.ws.close(code=1001, message=b"sse-fixup: no client event for timeouts.idle")
                    return
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self.handle(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await self.send(ev.error("binary messages are not Realtime events: send JSON text",
                                             code="invalid_event"))
                else:
                    if msg.type == aiohttp.WSMsgType.CLOSE:
                        await self.ws.close(code=ev.close_code(msg.data), message=(msg.extra or "").encode())
                    return
        finally:
            if self.task is not None and not self.task.done():
                self.task.cancel()                # the client left: the upstream request too
                await asyncio.gather(self.task, return_exceptions=True)

    async def handle(self, text: str) -> None:
        self.meter.client_event(text)
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            await self.send(ev.error(f"the message is not JSON ({exc})", code="invalid_json"))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send(ev.error("a client event is a JSON object with a type", code="invalid_event"))
            return
        typ = event["type"]
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = HANDLERS.get(typ)
        try:
            if handler is None:
                raise Refused(f"unknown or unsupported client event type {typ!r}", "unknown_event", "type")
            await handler(self, event)
        except Refused as exc:
            await self.send(ev.error(exc.message, code=exc.code, param=exc.param, event_id=event_id))

    async def session_update(self, event: dict) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise Refused("session.update needs a session (an object)", "invalid_session", "session")
        settings = dict(self.settings)
        _settings(session, settings, "session")
        self.settings = settings
        await self.send(ev.event("session.updated", session=self.session_object()))

    def _position(self, item_id: str) -> int:
        for i, item in enumerate(self.items):
            if item["id"] == item_id:
                return i
        raise Refused(f"no item with id {item_id!r} in the conversation", "item_not_found", "item_id")

    async def item_create(self, event: dict) -> None:
        item = _check_item(event.get("item"))
        if any(i["id"] == item["id"] for i in self.items):
            raise Refused(f"an item with id {item['id']!r} is already in the conversation",
                          "item_create_duplicate_item_id", "item.id")
        prev = event.get("previous_item_id")
        if prev == "root":
            pos = 0
        elif isinstance(prev, str):
            pos = self._position(prev) + 1
        else:
            pos = len(self.items)
        previous = self.items[pos - 1]["id"] if pos > 0 else None
        self.items.insert(pos, item)
        await self.send(ev.event(self.names.item_added, previous_item_id=previous, item=item))
        if self.names.item_done:
            await self.send(ev.event(self.names.item_done, previous_item_id=previous, item=item))

    async def item_delete(self, event: dict) -> None:
        item_id = event.get("item_id")
        del self.items[self._position(item_id)]
        await self.send(ev.event("conversation.item.deleted", item_id=item_id))

    async def item_truncate(self, event: dict) -> None:
        item_id = event.get("item_id")
        item = self.items[self._position(item_id)]
        if item.get("type") != "message" or item.get("role") != "assistant":
            raise Refused("only assistant messages can be truncated", "invalid_item", "item_id")
        await self.send(ev.event("conversation.item.truncated", item_id=item_id,
                                 content_index=event.get("content_index", 0),
                                 audio_end_ms=event.get("audio_end_ms", 0)))

    async def item_retrieve(self, event: dict) -> None:
        item = self.items[self._position(event.get("item_id"))]
        await self.send(ev.event("conversation.item.retrieved", item=item))

    async def audio_refused(self, event: dict) -> None:
        raise Refused(f"{event['type']}: this Realtime session is emulated over chat completions and "
                      "is text only (audio input is not supported)", "unsupported_modality", "type")

    async def audio_clear(self, event: dict) -> None:
        await self.send(ev.event("input_audio_buffer.cleared"))

    async def response_create(self, event: dict) -> None:
        if self.task is not None and not self.task.done():
            raise Refused("a response is in progress: wait for its response.done, or cancel it",
                          "conversation_already_has_active_response")
        params = event.get("response") if isinstance(event.get("response"), dict) else {}
        settings = dict(self.settings)
        _settings(params, settings, "response")
        in_band = params.get("conversation", "auto") != "none"
        items = self.items
        if isinstance(params.get("input"), list):           # the response's own input
            items = []
            for ref in params["input"]:
                if isinstance(ref, dict) and ref.get("type") == "item_reference":
                    items.append(self.items[self._position(ref.get("id"))])
                else:
                    items.append(_check_item(ref))
        response = {"id": mint_id("resp_"), "object": "realtime.response", "status": "in_progress",
                    "status_details": None, "output": [], "usage": None,
                    "conversation_id": self.conversation_id if in_band else None,
                    "metadata": params.get("metadata"), self.names.modalities: ["text"],
                    "max_output_tokens": settings["max_output_tokens"]}
        self.cancelled = False
        self.task = asyncio.create_task(self.respond(response, settings, list(items), in_band))
        self.task.add_done_callback(_log_failure)

    async def response_cancel(self, event: dict) -> None:
        wanted = event.get("response_id")
        if self.task is None or self.task.done() or wanted and wanted != self.current_id:
            raise Refused("Cancellation failed: no active response found", "response_cancel_not_active")
        self.cancelled = True
        self.task.cancel()

    # -- one response ------------------------------------------------------------------

    async def respond(self, response: dict, settings: dict, items: list[dict], in_band: bool) -> None:
        self.current_id = response["id"]
        await self.send(ev.event("response.created", response=dict(response, output=[])))
        mapper = Mapper(self.names, response, self.items if in_band else None,
                        self.items[-1]["id"] if in_band and self.items else None)
        try:
            fault = await self._stream(mapper, settings, items)
        except asyncio.CancelledError:
            if not self.cancelled:
                raise                              # the connection is closing
            asyncio.current_task().uncancel()
            for obj in mapper.end("cancelled", {"type": "cancelled", "reason": "client_cancelled"}):
                await self.send(obj)
            return
        if fault is not None:
            self.meter.metrics.stream_faults.labels(fault.code).inc()
            await self.send(ev.error(fault.message, code=fault.code, etype="server_error"))
            details = {"type": "failed", "error": {"type": "server_error", "code": fault.code,
                                                   "message": f"sse-fixup: {fault.message}"}}
            for obj in mapper.end("failed", details):
                await self.send(obj)
            return
        for obj in mapper.end():
            await self.send(obj)

    async def _stream(self, mapper: Mapper, settings: dict, items: list[dict]) -> Fault | None:
        """The chat completion, each chunk mapped and sent as it comes; the fault, if any."""
        route, cfg = self.route, self.cfg
        body = chat_body(settings, items, self.model)
        path = "/v1/chat/completions"
        try:
            data = route.request_body(orjson.dumps(body), body, "chat")
        except TranslationError as exc:            # the route's backend API cannot take it
            return Fault(exc.code or "invalid_request", exc.message)
        info = RequestInfo("chat", path, orjson.loads(data))
        ctx = StreamContext(info)
        tr = route.translations.get("chat")
        stages = ([tr.stream_stage(ctx)] if tr is not None else []) + [route.chains[("chat", "stream")].open(ctx)]
        decoder = Decoder(route.max_event)
        headers = upstream_headers(self.request, cfg)
        for name in ("OpenAI-Beta", "Accept-Encoding", "Content-Type"):
            headers.popall(name, None)
        headers["Content-Type"] = "application/json"
        headers["Accept-Encoding"] = "identity"
        url = route.upstream + route.upstream_path(path, "chat")
        fault = None
        try:
            async with asyncio.timeout(cfg.timeouts.first_byte):
                resp = await self.http.post(url, data=data, headers=headers)
            async with resp:
                if resp.status != 200:
                    text = (await resp.read())[:500].decode(errors="replace")
                    return Fault("upstream_error", f"the upstream's chat completions answered HTTP "
                                 f"{resp.status}: {text}")
                while True:
                    async with asyncio.timeout(cfg.timeouts.idle):
                        chunk = await resp.content.readany()
                    if not chunk:
                        break
                    if await self._events(mapper, stages, decoder.feed(chunk)):
                        return None
        except TimeoutError:
            fault = Fault("upstream_idle_timeout", "the upstream sent nothing for timeouts.idle")
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:
            return Fault("upstream_unreachable", f"upstream {route.upstream} unreachable ({exc})")
        except (aiohttp.ClientError, OSError) as exc:
            fault = Fault("upstream_disconnected", f"the upstream's chat stream broke ({exc})")
        except ValueError as exc:                   # an event over limits.max_event_bytes
            fault = Fault("event_too_large", str(exc))
        ctx.fault = fault
        await self._events(mapper, stages, decoder.close(), end=True)
        if fault is None and mapper.error is not None and not mapper.finish:
            err = mapper.error
            fault = Fault(str(err.get("code") or "upstream_error"), str(err.get("message") or "upstream error"))
        return fault

    async def _events(self, mapper, stages, events, end=False) -> bool:
        """Through the chat stages, mapped, sent; True once the chat stream said [DONE]."""
        done = False
        for stage in stages:
            events = stage.push(events)
            if end:
                events = events + stage.end()
        for e in events:
            if e.data == b"[DONE]":
                done = True
                continue
            obj = e.json
            if obj is not None:
                for out in mapper.chunk(obj):
                    await self.send(out)
        return done


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("realtime emulation: a response failed", exc_info=task.exception())


HANDLERS = {
    "session.update": Session.session_update,
    "conversation.item.create": Session.item_create,
    "conversation.item.delete": Session.item_delete,
    "conversation.item.truncate": Session.item_truncate,
    "conversation.item.retrieve": Session.item_retrieve,
    "response.create": Session.response_create,
    "response.cancel": Session.response_cancel,
    "input_audio_buffer.append": Session.audio_refused,
    "input_audio_buffer.commit": Session.audio_refused,
    "input_audio_buffer.clear": Session.audio_clear,
}


async def serve(request: web.Request, route) -> web.WebSocketResponse:
    from ..proxy import CONFIG, METRICS
    cfg = request.app[CONFIG]
    ws = web.WebSocketResponse(autoclose=False, max_msg_size=cfg.limits.max_event_bytes)
    await ws.prepare(request)
    metrics = request.app[METRICS]
    metrics.realtime_connections.labels("emulate").inc()
    session = Session(request, route, ws, Meter(metrics, "emulate", request.rel_url.query.get("model")))
    try:
        await session.run()
    finally:
        if not ws.closed:
            await ws.close()
    return ws
