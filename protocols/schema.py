"""Declarative schema of the protocol's TOML tables: each key's type, default, range, unit and doc.

Every table is declared once, next to the code that uses it (in the manner of scikit-learn's
``_parameter_constraints`` beside an estimator's parameters): ``[protocol]`` ... ``[readout]`` in
:mod:`prclab.protocols.protocol`, ``[encoder]`` in :mod:`prclab.protocols.encoders` (derived from the
encoders' constructor keywords), ``[safety]`` and ``[safety.channels.N]`` in
:mod:`prclab.protocols.safety`, and ``[substrate.params]`` from the substrate's constructor keywords.
:meth:`Table.validate` refuses, in one line naming the file, the table and the key: unknown keys (with
the nearest valid name), wrong types, values outside the declared range or choices, NaN anywhere and
infinities except where a key declares one ("no limit").

``python -m prclab.protocols.schema`` prints the key reference in Markdown (``docs/protocol-keys.md``
is that output, and a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from prclab.errors import PrclabError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key the file must give
REQUIRED = _Required()
#: the type of a key whose value only the code that takes it checks (a model keyword defaulting to None)
ANY = object

_NUMBER_TYPES = {int: numbers.Integral, float: numbers.Real}


@dataclass(frozen=True)
class Key:
    """One key of a table.

    Attributes:
        name: the key as written in the file.
        type: ``bool``, ``int``, ``float`` (an integer is taken as a float), ``str``, ``list``, ``dict``,
            or :data:`ANY`.
        default: the value when the file omits the key, or :data:`REQUIRED`.
        doc: one line saying what it does; ``unit``: its unit (``"V"``, ``"s"``, ``"Hz"``...).
        low, high: inclusive bounds (``None``: unbounded); ``low_open`` / ``high_open`` make them strict.
        choices: the values allowed (empty: any of the type), or a function returning them when a value
            is checked (a registry that grows after import, such as the substrates).
        infinite: the one infinity the key may hold, meaning "no limit" (``math.inf`` or ``-math.inf``);
            ``None``: finite only.  NaN is never allowed.
        items: the type of a list's items.
    """

    name: str = ""
    type: type = ANY
    default: object = REQUIRED
    doc: str = ""
    unit: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], tuple] = ()
    infinite: float | None = None
    items: type | None = None

    def check(self, value, where: str, label: str):
        """``value`` typed (an int given for a float becomes a float) and in range, else a one-line
        ``PrclabError`` ``"{where}: {label} {name} ..."``."""
        at = f"{where}: {label} {self.name}"
        if self.type is ANY:
            return value
        wanted = _NUMBER_TYPES.get(self.type, self.type)
        if not isinstance(value, wanted) or isinstance(value, bool) and self.type is not bool:
            raise PrclabError(f"{at} must be {self.type.__name__}, got {value!r:.60}")
        if self.type is float:
            try:
                value = float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise PrclabError(f"{at} must be finite, got {value!r:.40}") from None
            if math.isnan(value):
                raise PrclabError(f"{at} is nan; give a number")
            if math.isinf(value):
                if value != self.infinite:
                    raise PrclabError(f"{at} must be finite, got {value}")
                return value
        elif self.type is int:
            value = int(value)
        if self.items is not None and not all(isinstance(x, self.items) for x in value):
            raise PrclabError(f"{at} must be a list of {self.items.__name__}, got {value!r:.60}")
        allowed = self.allowed()
        if allowed and value not in allowed:
            near = difflib.get_close_matches(str(value), [str(c) for c in allowed], n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            known = ", ".join(map(repr, allowed))
            raise PrclabError(f"{at} {value!r:.40} unknown; {hint}known: {known}")
        if not self._within(value):
            raise PrclabError(f"{at} must {self.range_text()}, got {value}")
        return value

    def allowed(self) -> tuple:
        """The values allowed now (empty: any of the type)."""
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def _within(self, x) -> bool:
        above = self.low is None or (self.low < x if self.low_open else self.low <= x)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def range_text(self) -> str:
        """The declared range in words: ``lie in (0, 1]``, ``be >= 0``...; empty if unbounded."""
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            return f"lie in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"be {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"be {'<' if self.high_open else '<='} {high}"
        return ""


@dataclass(frozen=True)
class Table:
    """A TOML table ``[name]``: its keys, in the order the reference lists them, and a one-line doc."""

    name: str
    keys: tuple[Key, ...]
    doc: str = ""

    def __post_init__(self):
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"[{self.name}]: keys must be named once each, got {names}")

    @property
    def label(self) -> str:
        return f"[{self.name}]"

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)

    def defaults(self) -> dict:
        """``{key: default}`` of the keys that have one (each a fresh copy: lists and dicts are new)."""
        return {k.name: _copy(k.default) for k in self.keys if k.default is not REQUIRED}

    def check(self, given, where: str, label: str | None = None) -> dict:
        """The keys ``given`` (a parsed TOML table), each typed and range-checked; no defaults added.

        Raises:
            PrclabError: ``given`` is not a table, names an unknown key (the message names the nearest
                valid one) or holds a bad value; one line ``"{where}: {label} ..."``.
        """
        label = label or self.label
        if not isinstance(given, dict):
            raise PrclabError(f"{where}: {label} must be a table, got {given!r:.40}")
        names = [k.name for k in self.keys]
        checked = {}
        for name, value in given.items():
            if name not in names:
                raise unknown(where, label, "key", name, names)
            checked[name] = self.key(name).check(value, where, label)
        return checked

    def validate(self, given, where: str, label: str | None = None) -> dict:
        """:meth:`check`, then the defaults of the keys not given; a missing required key is refused."""
        checked = self.check(given, where, label)
        for k in self.keys:
            if k.default is REQUIRED and k.name not in checked:
                raise PrclabError(f"{where}: missing required key {k.name!r} in {label or self.label}")
        return {**self.defaults(), **checked}

    def markdown(self, heading: str | None = None) -> str:
        """This table's section of the key reference: a heading (``heading`` or the table's name), its
        doc and one row per key."""
        rows = [f"## {heading or self.label}", "", *([self.doc, ""] if self.doc else []),
                "| key | type | default | unit, range | what it sets |", "| --- | --- | --- | --- | --- |"]
        for k in self.keys:
            typ = "any" if k.type is ANY else k.type.__name__
            if k.items is not None:
                typ += f" of {k.items.__name__}"
            default = "required" if k.default is REQUIRED else f"`{toml_text(k.default)}`"
            bounds = [k.unit, k.range_text().replace("lie in ", "in ").replace("be ", ""),
                      "one of " + ", ".join(f"`{toml_text(c)}`" for c in k.allowed()) if k.allowed() else "",
                      f"`{toml_text(k.infinite)}`: no limit" if k.infinite is not None else ""]
            cells = [f"`{k.name}`", typ, default, "; ".join(b for b in bounds if b), k.doc]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows) + "\n"


def unknown(where: str, label: str, what: str, name: str, known) -> PrclabError:
    """The one-line error for an unknown key or table ``name``, with the nearest of ``known``."""
    known = list(known)
    near = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return PrclabError(f"{where}: {label + ' ' if label else ''}unknown {what} {name!r:.40}; {hint}known: "
                       f"{', '.join(known)}")


def from_signature(name: str, classes, declared: dict[str, Key], first: tuple[Key, ...] = (),
                   exclude: tuple[str, ...] = (), doc: str = "") -> Table:
    """The table of the keyword parameters of ``classes``' constructors (in order, ``**kwargs`` skipped),
    after the keys ``first``: each key's default from the signature and its type from that default,
    its doc, unit and range from ``declared[keyword]``.  Keywords in ``exclude`` are left out (the
    protocol sets them from other tables).

    Raises:
        ValueError: a keyword has no declaration, or a declaration names no keyword (a programming
            error, raised at import).
    """
    keys, seen = list(first), set(exclude)
    for cls in classes:
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.name in seen or p.kind is p.VAR_KEYWORD:
                continue
            if p.name not in declared or p.default is p.empty:
                raise ValueError(f"[{name}]: {cls.__name__} keyword {p.name!r} needs a default and a "
                                 f"declaration")
            seen.add(p.name)
            keys.append(dataclasses.replace(declared[p.name], name=p.name, type=type(p.default),
                                            default=p.default))
    stray = set(declared) - seen
    if stray:
        raise ValueError(f"[{name}]: declared keys {sorted(stray)} are no constructor keyword")
    return Table(name, tuple(keys), doc)


def from_defaults(name: str, defaults: dict[str, object], doc: str = "") -> Table:
    """A table whose keys are ``defaults``' names, each typed by its default (``None``: :data:`ANY`)."""
    return Table(name, tuple(Key(k, ANY if d is None else type(d), d) for k, d in defaults.items()), doc)


def toml_text(value) -> str:
    """``value`` as a TOML file would write it (``true``, ``"text"``, ``inf``, ``[]``); None: unset."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(toml_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _number_text(x) -> str:
    """A bound as written: whole numbers in full (``4294967295``), others short (``0.025``, ``1.85``)."""
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _copy(value):
    return type(value)(value) if isinstance(value, (list, dict)) else value


def reference() -> str:
    """The protocol key reference (Markdown): every table of
    :data:`prclab.protocols.protocol.TABLES`, then ``[substrate.params]`` of every registered substrate."""
    from prclab.protocols.protocol import TABLES, substrate_params_table
    from prclab.reservoir.registry import SUBSTRATES

    head = ("# Protocol keys\n\n"
            "Generated from the schema declared beside the code (`python -m prclab.protocols.schema`); "
            "do not edit by hand: a test compares this file with the output.  Unknown tables and keys, "
            "wrong types, NaN, infinities (except where a key says `inf`: no limit) and values outside "
            "a key's range are refused at load, naming the file, the table and the key.\n")
    sections = [t.markdown() for t in TABLES] + [substrate_params_table(name).markdown(
        f'[substrate.params] for name = "{name}"') for name in SUBSTRATES]
    return "\n".join([head, *sections])


if __name__ == "__main__":
    print(reference(), end="")
