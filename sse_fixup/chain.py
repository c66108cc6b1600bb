"""The rule chain: where an event is patched.

``Chain`` is the configured, shared part (the rules in order, and per event name the
plan derived from what they declare they touch); ``chain.open(ctx)`` gives the
per-response ``ChainStage``, which holds one object per rule for that stream.

For each event, cheapest first:

1. passed - the plan's evidence holds on the event's bytes (``rules/touch.py``): no rule
   can need it, it is not parsed and goes out as it came;
2. patched - the JSON is parsed once, every rule of the plan runs on the same dict, and
   the writer encodes it once.

A rule that raises leaves the event as it came (logged once per stream, counted).
"""

from __future__ import annotations

import logging

from .rules.base import Rule, StreamContext
from .rules.touch import Plan, plan_for
from .sse import Event

log = logging.getLogger("sse_fixup.chain")


class RuleFailed(Exception):
    pass


def _fail(ctx: StreamContext, rule: Rule, exc: Exception) -> None:
    if rule.name not in ctx.failures:
        ctx.failures[rule.name] = f"{type(exc).__name__}: {exc}"
        log.warning("rule %s failed on %s %s (event passed unchanged; logged once per stream): %s",
                    rule.name, ctx.request.endpoint, ctx.request.path, ctx.failures[rule.name])


def _types(rule: Rule):
    """The JSON types a rule may touch (None: any, or decided by the rule itself)."""
    out: set = set()
    for t in rule.touches:
        if t.types is None or isinstance(t.types, str):
            return None
        out |= t.types
    return frozenset(out)


def _makers(rules: list) -> list[tuple]:
    """For each rule (a Rule class or a stateless Rule object) the object shared by every
    response, or the class to make one per response: a rule class with no state of its own
    (no ``__init__``) is made once."""
    return [(r, None) if isinstance(r, Rule) else
            (r(), None) if r.__init__ is object.__init__ else (None, r) for r in rules]


def _objects(makers: list[tuple]) -> list[Rule]:
    return [shared if cls is None else cls() for shared, cls in makers]


class Chain:
    """An ordered list of stream rules for one endpoint (Rule classes or Rule objects)."""

    def __init__(self, endpoint: str, rules: list, *, parse_all: bool = False):
        self.endpoint = endpoint
        self.rules = list(rules)
        self.names = [r.name for r in self.rules]
        self.types = [_types(r) for r in self.rules]
        self._touches = [r.touches for r in self.rules]
        # parse_all: ignore the evidence and parse every event (the reference the fast
        # path is tested against)
        self.parse_all = parse_all
        self._plans: dict[str | None, Plan] = {}
        self._makers = _makers(self.rules)

    def plan(self, name: str | None) -> Plan:
        plan = self._plans.get(name)
        if plan is None:
            plan = plan_for(name, self._touches)
            if self.parse_all and plan.rules:
                plan = Plan(plan.rules, None)
            if len(self._plans) < 256:        # names come from upstream: keep the map bounded
                self._plans[name] = plan
        return plan

    def open(self, ctx: StreamContext) -> ChainStage:
        return ChainStage(self, _objects(self._makers), ctx)


class ChainStage:
    """The chain for one response: events in, events out (the same list when no rule
    changed any of them)."""

    __slots__ = ("chain", "rules", "ctx", "plans", "finished")

    def __init__(self, chain: Chain, rules: list[Rule], ctx: StreamContext):
        self.chain = chain
        self.rules = rules
        self.ctx = ctx
        self.plans = chain._plans
        self.finished = False

    def push(self, events: list[Event]) -> list[Event]:
        ctx = self.ctx
        plans = self.plans
        out = None
        for i, ev in enumerate(events):
            data = ev.data
            result = None
            if data is not None:
                if data == b"[DONE]":
                    ctx.done_seen = True
                    result = self._finish()         # the rules' last events go before it
                    if result:
                        result.append(ev)
                else:
                    ctx.events += 1
                    plan = plans.get(ev.event) or self.chain.plan(ev.event)
                    if not plan.passes(data, ctx):
                        result = self._patch(ev, plan)
            if result is not None:
                if out is None:
                    out = events[:i]
                out.extend(result)
            elif out is not None:
                out.append(ev)
        return events if out is None else out

    def skim(self, chunk: bytes, start: int, end: int, limit: int | None) -> int:
        """How far (a position) the plain ``data: …`` events lying in ``chunk[start:end]``
        from an event boundary on (nameless, one data line each, none over ``limit`` bytes;
        LF line ends only, which the caller checked) run with no rule able to need any of
        them.  The caller sends those bytes as they came, undecoded, and decodes the rest.

        Each event gets the question ``Plan.passes`` asks on the decoded path -
        ``occurrences`` and ``needles`` - where it lies: the occurrence-wise evidence once
        for the whole span when it holds there (else per event), the needles per event."""
        plan = self.plans.get(None) or self.chain.plan(None)
        needles: tuple | None = ()
        whole = True
        if plan.rules:
            needles = None if plan.always else plan.needles(self.ctx)
            if needles is None:
                return start
            whole = not plan.regional or plan.region_holds(chunk, start, end)
        find = chunk.find
        occurrences = plan.occurrences
        pos, n = start, 0
        while pos < end:
            stop = find(b"\n", pos, end)
            if stop < 0 or stop + 1 >= end or chunk[stop + 1] != 10 \
                    or not chunk.startswith(b"data: ", pos) or chunk.startswith(b"[DONE]", pos + 6) \
                    or limit is not None and stop + 2 - pos > limit \
                    or not whole and not occurrences(chunk, pos + 6, stop):
                break
            for needle in needles:
                if find(needle, pos + 6, stop) < 0:
                    break
            else:
                n += 1
                pos = stop + 2
                continue
            break
        self.ctx.events += n
        return pos

    def end(self) -> list[Event]:
        """At the end of the upstream stream (``ctx.fault`` set when it was cut short)."""
        return self._finish() or []

    # -- internals -------------------------------------------------------------------

    def _finish(self) -> list[Event] | None:
        if self.finished:
            return None
        self.finished = True
        ctx = self.ctx
        out: list[Event] = []
        for pos, rule in enumerate(self.rules):
            try:
                extra = rule.finish(ctx)
            except Exception as exc:  # noqa: BLE001 - a rule never breaks the stream
                _fail(ctx, rule, exc)
                continue
            for item in extra:
                if isinstance(item, Event):
                    out.append(item)
                    continue
                try:
                    done = self._run(item, range(pos + 1, len(self.rules)))
                except RuleFailed:
                    done = None
                out.extend(self._new(x) for x, _ in (done or [(item, True)]))
        return out or None

    def _patch(self, ev: Event, plan: Plan) -> list[Event] | None:
        ctx = self.ctx
        obj = ev.json
        if obj is None:
            ctx.non_json += 1
            return None
        try:
            out = self._run(obj, plan.rules)
        except RuleFailed:
            return None
        if out is None:
            return None
        events = []
        for item, changed in out:
            if item is obj:
                ev.changed = changed          # unchanged, it keeps its upstream bytes
                events.append(ev)
            else:
                events.append(self._new(item))
        ctx.patched += len(events) != 1 or events[0] is not ev or ev.changed
        return events

    def _new(self, obj: dict) -> Event:
        name = obj.get("type") if self.chain.endpoint == "responses" else None
        return Event.new(obj, name if isinstance(name, str) else None)

    def _run(self, obj: dict, positions) -> list[tuple[dict, bool]] | None:
        """Apply the rules at ``positions`` to ``obj``.  None if no rule did anything,
        else the events (dicts) to send instead, each with whether it must be encoded
        anew.  Events a rule adds go through the rules after it."""
        ctx = self.ctx
        rules = self.rules
        types = self.chain.types
        changed = False
        typ = obj.get("type")
        for pos in positions:
            want = types[pos]
            if want is not None and typ not in want:
                continue
            rule = rules[pos]
            try:
                res = rule.apply(obj, ctx)
            except Exception as exc:  # noqa: BLE001
                _fail(ctx, rule, exc)
                raise RuleFailed from exc
            if res is True:
                changed = True
                ctx.mark(rule.name)
                typ = obj.get("type")
            elif isinstance(res, list):          # the events to send instead (0..n)
                ctx.mark(rule.name)
                rest = range(pos + 1, len(rules))
                out: list[tuple[dict, bool]] = []
                for item in res:
                    sub = self._run(item, rest)
                    # the original among them is encoded anew: the rule that listed it may
                    # have changed it too
                    out.extend((x, True) for x, _ in (sub if sub is not None else [(item, True)]))
                return out
        return [(obj, True)] if changed else None


class BodyChain:
    """Rules for complete (non-stream) JSON bodies: the body is one object."""

    def __init__(self, endpoint: str, rules: list):
        self.endpoint = endpoint
        self.rules = list(rules)
        self.names = [r.name for r in self.rules]
        self._makers = _makers(self.rules)

    def apply(self, obj: dict, ctx: StreamContext) -> bool:
        """Every rule on ``obj`` in place; False (and ``obj`` unusable) if one raised."""
        changed = False
        for rule in _objects(self._makers):
            try:
                res = rule.apply(obj, ctx)
            except Exception as exc:  # noqa: BLE001
                _fail(ctx, rule, exc)
                raise RuleFailed from exc
            if res:
                changed = True
                ctx.mark(rule.name)
        return changed
