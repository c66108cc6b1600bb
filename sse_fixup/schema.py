"""Config keys declared once: a ``Section`` of typed fields yields the validation, the
defaults, the ``sse-fixup config`` listing and the JSON Schema.

Plain stdlib on purpose: a typed-struct library (pydantic, msgspec) would be one more
dependency to install and import on the cold-start path (0.5 s budget), and would still need
glue of about this size for file:line errors from YAML and for our listing.
"""

from __future__ import annotations

import difflib
import os


class ConfigError(Exception):
    """A config problem, already phrased for the user: ``file:line: key: message``."""


class At:
    """Where a value sits (file, line, dotted key), so that every error can say so."""

    def __init__(self, source: str, line: int, key: str = ""):
        self.source, self.line, self.key = source, line, key

    def fail(self, message: str):
        where = f"{self.source}:{self.line}" if self.line else self.source
        raise ConfigError(f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}")

    def child(self, container, k) -> At:
        """The place of ``container[k]``: its own line when the YAML loader recorded one."""
        lines = getattr(container, "lines", None)
        if isinstance(container, list):
            return At(self.source, lines[k] if lines else self.line, f"{self.key}[{k}]")
        line = lines.get(k, self.line) if lines else self.line
        return At(self.source, line, f"{self.key}.{k}" if self.key else str(k))


def did_you_mean(word, known, listed="known") -> str:
    hint = difflib.get_close_matches(str(word), list(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f"; {listed}: {', '.join(known)}"


class Field:
    what = "a value"        # completes "must be ...", and is the type column of the listing
    json: dict = {}         # JSON Schema of a valid value, before description/default/null
    section: type[Section] | None = None    # nested keys, for the listing

    def __init__(self, default=None, doc="", *, required=False, nullable=False, what=None):
        self.default, self.doc, self.required, self.nullable = default, doc, required, nullable
        self.what = what or self.what

    def fresh(self):
        return list(self.default) if isinstance(self.default, list) else self.default

    def check(self, value, at: At):
        return value

    def wrong(self, value, at: At):
        at.fail(f"must be {self.what}, got {type(value).__name__} {value!r}")

    def schema(self) -> dict:
        return dict(self.json)

    def described(self) -> dict:
        s = self.schema()
        if self.nullable:
            s = {**s, "type": [s["type"], "null"]} if "type" in s else {"anyOf": [s, {"type": "null"}]}
        if self.doc:
            s["description"] = self.doc
        if self.default is not None or self.nullable:
            s["default"] = self.default
        return s


class Bool(Field):
    what, json = "true or false", {"type": "boolean"}

    def check(self, value, at):
        return value if isinstance(value, bool) else self.wrong(value, at)


class String(Field):
    what, json = "a non-empty string", {"type": "string", "minLength": 1}

    def check(self, value, at):
        return value if isinstance(value, str) and value else self.wrong(value, at)


class Choice(Field):
    """One of a few strings; ``noun`` makes it a name from a known set, with a "did you mean"."""

    def __init__(self, choices, default=None, doc="", *, noun=None, fold_case=False, **kw):
        what = f"a {noun} name" if noun else "one of " + ", ".join(choices)
        super().__init__(default, doc, what=what, **kw)
        self.choices, self.noun, self.fold_case = list(choices), noun, fold_case
        self.json = {"enum": self.choices}

    def check(self, value, at):
        value = value.lower() if self.fold_case and isinstance(value, str) else value
        if not isinstance(value, str) or value not in self.choices:
            at.fail(f"unknown {self.noun} {value!r}{did_you_mean(value, self.choices)}" if self.noun
                    else f"must be {self.what}; got {value!r}")
        return value


class Int(Field):
    def __init__(self, default, doc, *, low, high=None, what="an integer"):
        super().__init__(default, doc, what=what)
        self.low, self.high = low, high
        self.json = {"type": "integer", "minimum": low, **({"maximum": high} if high is not None else {})}

    def check(self, value, at):
        if not isinstance(value, int) or isinstance(value, bool):
            self.wrong(value, at)
        if self.high is not None and not self.low <= value <= self.high:
            at.fail(f"must be between {self.low} and {self.high}; got {value}")
        if value < self.low:
            at.fail(f"must be at least {self.low}; got {value}")
        return value


class Seconds(Field):
    """A duration.  One that can be switched off is off with null, so 0 is refused there."""

    def __init__(self, default, doc, *, nullable=True):
        super().__init__(default, doc, nullable=nullable,
                         what="a number of seconds " + ("> 0, or null for none" if nullable else ">= 0"))
        self.json = {"type": "number", ("exclusiveMinimum" if nullable else "minimum"): 0}

    def check(self, value, at):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value < 0 or value == 0 and self.nullable:
            at.fail(f"must be {self.what}; got {value!r}")
        return float(value)


class Secret(Field):
    """A key given literally or as {env: NAME}, so that secrets can stay out of the file."""

    what = "a non-empty string or {env: VARIABLE_NAME}"
    json = {"anyOf": [String.json, {"type": "object", "properties": {"env": String.json},
                                    "required": ["env"], "additionalProperties": False}]}

    def check(self, value, at):
        if isinstance(value, dict) and list(value) == ["env"] and isinstance(value["env"], str):
            if not os.environ.get(value["env"]):
                at.fail(f"environment variable {value['env']} is not set or empty")
            return os.environ[value["env"]]
        return value if isinstance(value, str) and value else at.fail(f"must be {self.what}")


class ListOf(Field):
    """A list of ``item``; with ``one=True`` a single string stands for a one-item list."""

    def __init__(self, item: Field, default, doc, *, one=False, **kw):
        super().__init__(default, doc, **kw)
        self.item, self.one, self.section = item, one, item.section

    def check(self, value, at):
        value = [value] if self.one and isinstance(value, str) else value
        if not isinstance(value, list):
            self.wrong(value, at)
        return [self.item.check(v, at.child(value, i)) for i, v in enumerate(value)]

    def schema(self):
        many = {"type": "array", "items": self.item.schema()}
        return {"anyOf": [{**self.item.schema(), "type": "string"}, many]} if self.one else many


class Nested(Field):
    def __init__(self, section: type[Section], doc, **kw):
        needs = [k for k, f in section.fields.items() if f.required]
        super().__init__(None, doc, what="a mapping" + (f" with {', '.join(needs)}" if needs else ""), **kw)
        self.section = section

    def fresh(self):
        return self.section()

    def check(self, value, at):
        return self.section.from_yaml(value, at) if isinstance(value, dict) else self.wrong(value, at)

    def schema(self):
        return self.section.schema()


class Section:
    """Keys as class attributes (``port = Int(8090, "listen port", low=0)``); instances hold
    the values, the defaults first (fresh lists each time)."""

    fields: dict[str, Field] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        fields = {k: f for base in cls.__bases__ for k, f in getattr(base, "fields", {}).items()}
        for name, value in list(vars(cls).items()):
            if isinstance(value, Field):
                fields[name] = value
                delattr(cls, name)           # instances hold the value; no stale Field on the class
        cls.fields = fields

    def __init__(self, **values):
        self.given = {k for k in values if k in self.fields}    # what was set, not defaulted
        for name, f in self.fields.items():
            setattr(self, name, values.pop(name) if name in values else f.fresh())
        for name, value in values.items():   # a property (Config.host) may be given too
            if not isinstance(getattr(type(self), name, None), property):
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
            setattr(self, name, value)

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, k) == getattr(other, k) for k in self.fields)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.fields)})"

    @classmethod
    def from_yaml(cls, data: dict, at: At):
        for key in data:
            if key not in cls.fields:
                at.child(data, key).fail(f"unknown key{did_you_mean(key, sorted(cls.fields), 'known keys')}")
        obj = cls()
        obj.given = set(data)
        for name, f in cls.fields.items():
            if name in data:
                value = data[name]
                setattr(obj, name, None if value is None and f.nullable else f.check(value, at.child(data, name)))
            elif f.required:
                at.child(data, name).fail(f"is required: {f.what}")
        return obj

    @classmethod
    def schema(cls) -> dict:
        needs = [k for k, f in cls.fields.items() if f.required]
        return {"type": "object", "properties": {k: f.described() for k, f in cls.fields.items()},
                "additionalProperties": False, **({"required": needs} if needs else {})}

    @classmethod
    def rows(cls, prefix: str = ""):
        """(dotted key, type, default, doc) for every key, nested sections included."""
        for name, f in cls.fields.items():
            yield prefix + name, f.what, f.default, f.doc
            if f.section:
                yield from f.section.rows(prefix + name + ("[]." if isinstance(f, ListOf) else "."))
