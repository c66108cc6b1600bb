"""A fake local Realtime server that replays defective events, and helpers for the clients.

``DefectiveRealtime`` speaks the GA Realtime protocol the way a careless local server
does: no ``event_id`` anywhere, ``response.created`` without ``response.id``, output items
without ``id``/``type``, deltas without ``response_id``/``item_id``/``output_index``/
``content_index``, ``response.done`` without ``status`` and with bare usage, errors as a
string.  A ``response.create`` answers with a tool call while the session has tools and
the conversation no tool result, else with text.  Test hooks (client events): ``test.close``
closes with ``code``/``reason``; ``test.drop`` starts a response and drops the connection.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web


class DefectiveRealtime:
    def __init__(self):
        self.received: list[dict] = []        # client events, as they arrived
        self.raw: list[str] = []              # the same, the exact text
        self.handshakes: list[tuple[str, dict]] = []   # (path?query, headers)
        self.closed_with: list[tuple[int | None, str]] = []   # how clients closed
        self.app = web.Application()
        self.app.router.add_get("/v1/realtime", self.handle)

    async def handle(self, request: web.Request):
        self.handshakes.append((request.path_qs, dict(request.headers)))
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        tools: list = []
        items: list[dict] = []
        await ws.send_json({"type": "session.created", "session": {"type": "realtime", "model": "tiny"}})
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                self.closed_with.append((msg.data, msg.extra))
                await ws.close()
                break
            if msg.type != WSMsgType.TEXT:
                continue
            self.raw.append(msg.data)
            event = json.loads(msg.data)
            self.received.append(event)
            typ = event.get("type")
            if typ == "session.update":
                tools = event["session"].get("tools", tools)
                await ws.send_json({"type": "session.updated", "session": {"type": "realtime", "tools": tools}})
            elif typ == "conversation.item.create":
                item = event["item"]
                items.append(item)
                await ws.send_json({"type": "conversation.item.added", "item": item,
                                    "previous_item_id": event.get("previous_item_id")})
            elif typ == "response.create":
                answered = any(i.get("type") == "function_call_output" for i in items)
                metadata = (event.get("response") or {}).get("metadata")
                for out in (tool_call() if tools and not answered else text_answer()):
                    if metadata and out["type"] in ("response.created", "response.done"):
                        out["response"]["metadata"] = metadata     # as servers do: not a defect here
                    await ws.send_json(out)
            elif typ == "test.close":
                await ws.close(code=event["code"], message=event["reason"].encode())
                break
            elif typ == "test.drop":
                await ws.send_json({"type": "response.created", "response": {"status": "in_progress"}})
                await ws.send_json({"type": "response.output_item.added",
                                    "item": {"role": "assistant", "content": []}})
                await asyncio.sleep(0.05)
                request.transport.abort()
                break
            elif typ == "test.error":
                await ws.send_json({"type": "error", "error": "the model is not loaded"})
        return ws


def text_answer() -> list[dict]:
    return [
        {"type": "response.created", "response": {"status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "item": {"role": "assistant", "content": []}},
        {"type": "response.content_part.added", "part": {"type": "text", "text": ""}},
        {"type": "response.output_text.delta", "delta": "It is "},
        {"type": "response.output_text.delta", "delta": "sunny."},
        {"type": "response.output_text.done", "text": "It is sunny."},
        {"type": "response.content_part.done", "part": {"type": "text", "text": "It is sunny."}},
        {"type": "response.output_item.done", "item": {"role": "assistant", "status": "completed",
                                                       "content": [{"type": "output_text", "text": "It is sunny."}]}},
        {"type": "response.done", "response": {"output": [{"role": "assistant", "content": [
            {"type": "output_text", "text": "It is sunny."}]}], "usage": {"input_tokens": 20, "output_tokens": 4}}},
    ]


def tool_call() -> list[dict]:
    args = '{"city": "Paris"}'
    return [
        {"type": "response.created", "response": {"status": "in_progress"}},
        {"type": "response.output_item.added", "item": {"name": "get_weather", "call_id": "call_1", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "delta": args[:8]},
        {"type": "response.function_call_arguments.delta", "delta": args[8:]},
        {"type": "response.function_call_arguments.done", "arguments": args},
        {"type": "response.output_item.done", "item": {"name": "get_weather", "call_id": "call_1",
                                                       "arguments": args, "status": "completed"}},
        {"type": "response.done", "response": {"output": [{"name": "get_weather", "call_id": "call_1",
                                                           "arguments": args}]}},
    ]


def validate(event: dict):
    """The event as openai-python's ``RealtimeServerEvent`` (raises when it is not one)."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter
    return TypeAdapter(RealtimeServerEvent).validate_python(event)


TOOL = {"type": "function", "name": "get_weather", "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def openai_turns(base_url: str, *, model: str = "tiny", timeout: float = 60.0) -> dict:
    """openai-python's realtime client (``client.realtime.connect``) for a tool call, then
    after the tool result a text answer.  Returns every server event's raw JSON, the call
    (item id, call_id, parsed arguments), the text, the response.done statuses and the
    validation errors (each raw event against ``RealtimeServerEvent``)."""
    import openai
    out: dict = {"events": [], "invalid": [], "call": None, "text": "", "status": []}
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)

    async def until_done(conn):
        while True:
            raw = await asyncio.wait_for(conn.recv_bytes(), timeout)
            event = json.loads(raw)
            out["events"].append(event)
            try:
                validate(event)
            except Exception as e:  # noqa: BLE001 - collected for the assertion
                out["invalid"].append(f"{event.get('type')}: {str(e).splitlines()[0]}")
            typ = event.get("type")
            if typ == "response.output_item.done" and event.get("item", {}).get("type") == "function_call":
                item = event["item"]
                out["call"] = {"item_id": item.get("id"), "call_id": item.get("call_id"),
                               "name": item.get("name"), "arguments": json.loads(item.get("arguments") or "null")}
            elif typ == "response.output_text.delta":
                out["text"] += event.get("delta", "")
            elif typ == "response.done":
                out["status"].append(event.get("response", {}).get("status"))
                return
            elif typ == "error":
                out.setdefault("errors", []).append(event)

    async with client.realtime.connect(model=model) as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "instructions": "Use the tools when asked about weather.",
                                           "tools": [TOOL], "tool_choice": "auto"})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is the weather in Paris?"}]})
        await conn.response.create(response={"tool_choice": "required"})
        await until_done(conn)
        if out["call"] is None:
            return out
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": out["call"]["call_id"],
                                                  "output": '{"weather": "sunny", "celsius": 21}'})
        await conn.response.create(response={"tool_choice": "none"})
        await until_done(conn)
    return out


async def livekit_turns(base_url: str, *, timeout: float = 60.0) -> dict:
    """LiveKit's ``RealtimeModel`` (livekit-plugins-openai) in text mode, driven without a
    room: tools and a user message through ``update_tools``/``update_chat_ctx``, then
    ``generate_reply``; the function call it parses; then the call and its output in the
    chat context and a second ``generate_reply`` for the text answer."""
    from livekit.agents import llm
    from livekit.plugins import openai as lk_openai

    @llm.function_tool
    async def get_weather(city: str) -> str:
        """Get the weather in a city

        Args:
            city: the city
        """
        return "sunny"

    out: dict = {"calls": [], "text": "", "errors": [], "metrics": []}
    model = lk_openai.realtime.RealtimeModel(model="tiny", base_url=base_url, api_key="none",
                                             modalities=["text"])
    session = model.session()
    session.on("error", lambda e: out["errors"].append(repr(e.error)))
    session.on("metrics_collected", lambda m: out["metrics"].append(m))

    async def reply() -> tuple[list, str]:
        gen = await asyncio.wait_for(session.generate_reply(), timeout)
        calls, text = [], ""

        async def messages():
            nonlocal text
            async for msg in gen.message_stream:
                async for delta in msg.text_stream:
                    text += delta

        async def functions():
            async for call in gen.function_stream:
                calls.append(call)
        await asyncio.wait_for(asyncio.gather(messages(), functions()), timeout)
        return calls, text

    try:
        await session.update_tools([get_weather])
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="system", content="Use the tools when asked about weather.")
        ctx.add_message(role="user", content="What is the weather in Paris?")
        await session.update_chat_ctx(ctx)
        session.update_options(tool_choice="required")
        calls, _ = await reply()
        out["calls"] = [{"id": c.id, "call_id": c.call_id, "name": c.name,
                         "arguments": json.loads(c.arguments)} for c in calls]
        if calls:
            ctx = session.chat_ctx.copy()
            ctx.items.append(llm.FunctionCallOutput(call_id=calls[0].call_id, name=calls[0].name,
                                                    output='{"weather": "sunny", "celsius": 21}', is_error=False))
            await session.update_chat_ctx(ctx)
            session.update_options(tool_choice="none")
            _, out["text"] = await reply()
    except Exception as e:  # noqa: BLE001 - the caller asserts on it
        out["errors"].append(f"{type(e).__name__}: {e}")
    finally:
        await session.aclose()
        await model.aclose()
    return out
