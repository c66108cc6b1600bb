"""One model name on every Responses event and body.

llama-server b11434 answers ``response.created`` with no model (the skeleton fills in the
requested one) and ``response.completed`` with its GGUF file path
(``models/tiny-qwen25-toolcall.gguf``); its JSON bodies carry the path too.  A client
that keys anything on the model (the AI SDK's response metadata, usage accounting,
caches) sees two models in one response.  These rules pin the name: the requested model
by default; ``pinned(name)`` gives the same rules for a fixed name (a route option);
leaving both out (``disable: [responses.model_name, responses.body_model_name]``) keeps
whatever the backend says.
"""

from __future__ import annotations

from .base import Rule, StreamContext
from .responses import LIFECYCLE_START, TERMINAL
from .touch import Touch


def _pin(resp, name: str | None) -> bool:
    if not isinstance(resp, dict) or name is None or resp.get("model") == name:
        return False
    resp["model"] = name
    return True


class ModelName(Rule):
    """Every response.* lifecycle event names the same model: the requested one."""

    name = "responses.model_name"
    endpoint = "responses"
    touches = (Touch(LIFECYCLE_START | TERMINAL),)
    fixes = "llama-server #12 (created: requested name, completed: GGUF path)"
    pinned: str | None = None        # a fixed name; None: the request's model

    def __init__(self):
        self.model: str | None = self.pinned

    def apply(self, obj: dict, ctx: StreamContext):
        resp = obj.get("response")
        if self.model is None:
            # no model in the request: the first name the stream gives is the one
            self.model = ctx.request.model or (resp.get("model") if isinstance(resp, dict)
                                               and isinstance(resp.get("model"), str) else None)
        return _pin(resp, self.model)


class BodyModelName(Rule):
    """A Responses JSON body names the requested model, as its stream would."""

    name = "responses.body_model_name"
    endpoint = "responses"
    mode = "body"
    fixes = "llama-server #12"
    pinned: str | None = None

    def apply(self, obj: dict, ctx: StreamContext):
        if "error" in obj and "output" not in obj:
            return False
        return _pin(obj, self.pinned or ctx.request.model)


def pinned(name: str) -> tuple[type[Rule], type[Rule]]:
    """The two rules for a route whose responses must all say ``name``."""
    return (type("PinnedModelName", (ModelName,), {"pinned": name}),
            type("PinnedBodyModelName", (BodyModelName,), {"pinned": name}))


STREAM_RULES = [ModelName]
BODY_RULES = [BodyModelName]
