"""What a rule may touch, declared once; the chain derives from it whether to parse an event.

A rule lists ``Touch`` entries: the event types it may touch, and the byte evidence that
an event of those types cannot need it ("unless ...").  For each event the chain asks
the declarations of the rules that cover the event's name; when every piece of evidence
holds on the event's own ``data`` bytes, no rule is called and the event's upstream bytes
go out as they came.  The decision is per event, from that event's bytes and the facts
of the stream so far, so it cannot depend on how the upstream split its reads.

Evidence must be sound: where it holds, the rule would neither change the event nor learn
anything from it that it needs later (``tests/test_invariance.py`` checks the chain with
every declaration against the chain that parses every event).  Needles name JSON keys
with their colon (``"index":``), which a string value cannot contain unescaped.
"""

from __future__ import annotations

import fnmatch


class Evidence:
    """A test on an event's ``data`` bytes; True: the rule cannot need this event."""

    __slots__ = ()

    def describe(self) -> str:
        raise NotImplementedError


class Lacks(Evidence):
    """The event holds none of these byte strings."""

    __slots__ = ("needles",)

    def __init__(self, *needles: bytes):
        self.needles = needles

    def describe(self) -> str:
        return "it lacks " + " and ".join(n.decode() for n in self.needles)


class NullOnly(Evidence):
    """Each of these keys, where present, is null (``"key":null`` or ``"key": null``)."""

    __slots__ = ("keys", "triples")

    def __init__(self, *keys: str):
        self.keys = keys
        self.triples = tuple((b'"%s":' % k.encode(), b'"%s":null' % k.encode(),
                              b'"%s": null' % k.encode()) for k in keys)

    def describe(self) -> str:
        return "its " + ", ".join(self.keys) + " are null or absent"


class Preceded(Evidence):
    """Each occurrence of ``needle`` comes right after ``prefix`` (e.g. every choice's
    ``"delta":`` right after ``"index":0,``: that choice has its index)."""

    __slots__ = ("needle", "pair")

    def __init__(self, needle: bytes, prefix: bytes):
        self.needle = needle
        self.pair = (needle, prefix + needle)

    def describe(self) -> str:
        return f"each {self.pair[0].decode()} follows {self.pair[1][:-len(self.pair[0])].decode()}"


class Known(Evidence):
    """Evidence from the stream so far: ``needles(ctx)`` gives byte strings the event must
    all hold (None: nothing known yet, so the event must be parsed)."""

    __slots__ = ("needles", "doc")

    def __init__(self, needles, doc: str):
        self.needles = needles
        self.doc = doc

    def describe(self) -> str:
        return self.doc


class Touch:
    """The rule may touch events whose type (SSE event name, or JSON ``type``) is in
    ``types`` - ``None``: any event; a glob string: names it matches; ``None`` inside
    the set: events with no name - unless every piece of ``evidence`` holds."""

    __slots__ = ("types", "evidence")

    def __init__(self, types=None, *evidence: Evidence):
        self.types = types
        self.evidence = evidence

    def covers(self, name: str | None) -> bool:
        types = self.types
        if types is None or name is None:
            return True          # an unnamed event may be anything: the JSON type decides
        if isinstance(types, str):
            return fnmatch.fnmatchcase(name, types)
        return name in types

    def describe(self) -> str:
        if self.types is None:
            what = "any event"
        elif isinstance(self.types, str):
            what = f"events matching {self.types}"
        else:
            what = ", ".join(sorted(t or "(unnamed)" for t in self.types)) or "no event"
        if self.evidence:
            what += " unless " + "; ".join(e.describe() for e in self.evidence)
        return what


class Plan:
    """For one event name: the rules that may touch it (chain positions) and the evidence
    that, when it all holds, lets the event pass unparsed.

    ``Lacks``, ``NullOnly`` and ``Preceded`` speak of every occurrence of a needle: when
    they hold over the bytes of a whole read they hold for each event in it (an event's
    data is part of those bytes, and no needle can straddle two events), so for a read of
    many events they are checked once (``region_holds``).  ``Known`` speaks of one event as
    a whole: always per event.  ``occurrences`` takes ``(buf, start, end)`` so that a
    read's events can be looked at where they lie, without slicing (``ChainStage.skim``).
    """

    __slots__ = ("rules", "always", "lacks", "nulls", "preceded", "known", "regional")

    def __init__(self, rules: tuple, evidence: list[Evidence] | None):
        self.rules = rules
        self.always = evidence is None           # a rule without evidence: always parse
        # the evidence of all the rules, each check once (it is all one conjunction)
        lacks, nulls, preceded, known = [], [], [], []
        for ev in evidence or ():
            if isinstance(ev, Lacks):
                lacks.extend(n for n in ev.needles if n not in lacks)
            elif isinstance(ev, NullOnly):
                nulls.extend(t for t in ev.triples if t not in nulls)
            elif isinstance(ev, Preceded):
                if ev.pair not in preceded:
                    preceded.append(ev.pair)
            elif isinstance(ev, Known):
                if ev.needles not in known:
                    known.append(ev.needles)
        self.lacks, self.known = tuple(lacks), tuple(known)
        self.nulls, self.preceded = tuple(nulls), tuple(preceded)
        self.regional = bool(lacks or nulls or preceded)

    def region_holds(self, buf: bytes, start: int = 0, end: int | None = None) -> bool:
        """The occurrence-wise evidence over a run of whole events."""
        return self.occurrences(buf, start, len(buf) if end is None else end)

    def passes(self, data: bytes, ctx) -> bool:
        """True when no rule of the plan can need the event whose data this is."""
        if not self.rules:
            return True
        if self.always or not self.occurrences(data, 0, len(data)):
            return False
        needles = self.needles(ctx)
        if needles is None:
            return False
        for n in needles:
            if n not in data:
                return False
        return True

    def needles(self, ctx) -> tuple | None:
        """What each event must hold (what ``Known`` gives now); None: nothing is known
        yet, so every event must be parsed."""
        out: tuple = ()
        for known in self.known:
            got = known(ctx)
            if got is None:
                return None
            out += got
        return out

    def occurrences(self, buf: bytes, start: int, end: int) -> bool:
        for n in self.lacks:
            if buf.find(n, start, end) >= 0:
                return False
        for key, null, spaced in self.nulls:
            c = buf.count(key, start, end)
            if c and c != buf.count(null, start, end) and \
                    c != buf.count(null, start, end) + buf.count(spaced, start, end):
                return False
        for needle, preceded in self.preceded:
            c = buf.count(needle, start, end)
            if c and c != buf.count(preceded, start, end):
                return False
        return True


def plan_for(name: str | None, touches: list[tuple]) -> Plan:
    """``touches``: for each rule of the chain, its Touch entries.  The rules whose entries
    cover ``name``, and the evidence of those entries."""
    rules = []
    evidence: list[Evidence] | None = []
    for pos, entries in enumerate(touches):
        hit = [t for t in entries if t.covers(name)]
        if not hit:
            continue
        rules.append(pos)
        for t in hit:
            if not t.evidence:
                evidence = None
            elif evidence is not None:
                evidence.extend(t.evidence)
    return Plan(tuple(rules), evidence)
