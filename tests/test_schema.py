"""The protocol schema, walked key by key (issue 11): every key of every table, misspelt or mistyped, is
refused at load with the file, the table and the key; so are NaN, infinities where a key declares none,
numbers outside a key's range and values outside its choices.  The shipped examples still load, and the
key reference in docs/ is the schema's own output."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

import prclab.protocols
from prclab.errors import PrclabError
from prclab.protocols.encoders import MFCCEncoder, SequenceEncoder
from prclab.protocols.protocol import TABLES, load_protocol, parse_protocol, substrate_params_table
from prclab.protocols.schema import ANY, reference, toml_text
from prclab.reservoir.registry import SUBSTRATES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = sorted((Path(prclab.protocols.__file__).parent / "examples").glob("*.toml"))
DEMO = Path(prclab.protocols.__file__).parent / "examples" / "spoken_digits_demo.toml"
#: the demo protocol without its inline [substrate] params, so [substrate.params] can be written as a table
BASE = re.sub(r"^params = .*\n", "", DEMO.read_text(), flags=re.M)
FILE = Path("lab/p.toml")


def _set(text: str, table: str, line: str) -> str:
    """``text`` with ``line`` (``key = value``) in ``[table]``: replacing that key's line, or first in
    the table, or in a new table at the end."""
    key = line.split("=")[0].strip()
    header = re.search(rf"^\[{re.escape(table)}\]\n", text, re.M)
    if header is None:
        return f"{text}\n[{table}]\n{line}\n"
    end = re.search(r"^\[", text[header.end():], re.M)
    stop = header.end() + (end.start() if end else len(text) - header.end())
    body = text[header.end():stop]
    body, n = re.subn(rf"^{re.escape(key)} *=.*$", line, body, count=1, flags=re.M)
    return text[:header.end()] + (body if n else f"{line}\n{body}") + text[stop:]


def _cases():
    """(table as written, key, base text, the table as messages name it) for every key of every table;
    ``[safety.channels.N]`` is written for channel 0, ``[substrate.params]`` once per substrate."""
    for table in TABLES:
        name = table.name.replace(".N", ".0")
        for key in table.keys:
            yield pytest.param(name, key, BASE, f"[{name}]", id=f"{name}.{key.name}")
    for model in SUBSTRATES:
        base = _set(_set(BASE, "substrate", f'name = "{model}"'), "device", f'spec = "sim:{model}"')
        for key in substrate_params_table(model).keys:
            yield pytest.param("substrate.params", key, base, f"[substrate.params] (name = {model!r})",
                               id=f"substrate.params.{key.name}[{model}]")


CASES = list(_cases())


def _where(keep) -> list:
    """The cases whose key ``keep(key)`` holds."""
    return [c for c in CASES if keep(c.values[1])]


def _refused(text: str) -> str:
    with pytest.raises(PrclabError) as info:
        parse_protocol(text, FILE)
    message = str(info.value)
    assert "\n" not in message
    return message


def _misspelt(name: str, known) -> str:
    """``name`` with one letter dropped, from the middle outwards, that names no other key."""
    middle = len(name) // 2
    for i in sorted(range(len(name)), key=lambda i: abs(i - middle)):
        candidate = name[:i] + name[i + 1:]
        if candidate and candidate not in known:
            return candidate
    raise AssertionError(name)


WRONG = {float: '"fast"', int: '"many"', bool: '"yes"', str: "3", list: "3", dict: "3"}


def test_the_walk_covers_every_table():
    walked = {c.values[0] for c in CASES}
    assert walked == {t.name.replace(".N", ".0") for t in TABLES} | {"substrate.params"}
    assert len(CASES) > 100


@pytest.mark.parametrize("table, key, base, label", CASES)
def test_a_misspelt_key_is_refused_with_file_table_key_and_the_nearest_name(table, key, base, label):
    known = [c.values[1].name for c in CASES if c.values[0] == table and c.values[2] == base]
    bad = _misspelt(key.name, known)
    message = _refused(_set(base, table, f"{bad} = 1"))
    assert message.startswith(f"{FILE}: {label} unknown key {bad!r}; did you mean {key.name!r}?")


@pytest.mark.parametrize("table, key, base, label", _where(lambda k: k.type is not ANY))
def test_a_mistyped_value_is_refused_with_file_table_and_key(table, key, base, label):
    message = _refused(_set(base, table, f"{key.name} = {WRONG[key.type]}"))
    assert message.startswith(f"{FILE}: {label} {key.name} must be {key.type.__name__}, got")
    if key.type is int:  # a number with a fraction is no integer either
        assert "must be int" in _refused(_set(base, table, f"{key.name} = 1.5"))


@pytest.mark.parametrize("table, key, base, label", _where(lambda k: k.type is float))
def test_nan_never_and_infinity_only_where_declared(table, key, base, label):
    assert _refused(_set(base, table, f"{key.name} = nan")).startswith(f"{FILE}: {label} {key.name} is nan")
    for text, value in (("inf", math.inf), ("-inf", -math.inf)):
        line = _set(base, table, f"{key.name} = {text}")
        if key.infinite == value:
            assert parse_protocol(line, FILE)[table.split(".")[0]] is not None
        else:
            assert f"{label} {key.name} must be finite, got {text}" in _refused(line)


def test_an_integer_too_large_for_a_float_is_refused_in_one_line():
    assert "[timing] rest_s must be finite" in _refused(_set(BASE, "timing", "rest_s = " + "9" * 400))


@pytest.mark.parametrize("table, key, base, label", _where(lambda k: k.low is not None or k.high is not None))
def test_numbers_outside_the_declared_range_are_refused(table, key, base, label):
    outside = []
    if key.low is not None:
        outside.append(key.low if key.low_open else key.low - 1)
    if key.high is not None:
        outside.append(key.high if key.high_open else key.high + 1)
    for value in outside:
        message = _refused(_set(base, table, f"{key.name} = {toml_text(key.type(value))}"))
        assert message.startswith(f"{FILE}: {label} {key.name} must {key.range_text()}, got")


@pytest.mark.parametrize("table, key, base, label", _where(lambda k: k.allowed()))
def test_a_value_outside_the_choices_is_refused_with_the_nearest(table, key, base, label):
    choice = next(c for c in key.allowed() if len(c) > 2)
    bad = choice[:-1]
    message = _refused(_set(base, table, f"{key.name} = {toml_text(bad)}"))
    assert message.startswith(f"{FILE}: {label} {key.name} {bad!r} unknown; did you mean {choice!r}?")


def test_an_unknown_table_is_refused_with_the_nearest():
    message = _refused(BASE + "\n[timng]\nrest_s = 1.0\n")
    assert message.startswith(f"{FILE}: unknown table '[timng]'; did you mean '[timing]'?")


def test_a_sim_spec_naming_no_substrate_is_refused_at_load():
    assert "[device] spec 'sim:granite'" in _refused(_set(BASE.replace('name = "potato"\n', ""), "device",
                                                           'spec = "sim:granite"'))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_shipped_examples_load_with_what_they_say(path):
    protocol = load_protocol(path)
    raw = tomllib.loads(path.read_text())
    for table, given in raw.items():
        for key, value in given.items():
            assert protocol[table][key] == value, (table, key)
    assert protocol.encoder_extra == {k: v for k, v in raw.get("encoder", {}).items() if k != "kind"}


def test_the_encoders_check_their_keywords_with_the_same_table():
    with pytest.raises(PrclabError, match=r"\[encoder\] amplitude must lie in \(0, 1\], got 2"):
        SequenceEncoder(2, amplitude=2.0)
    with pytest.raises(PrclabError, match=r"\[encoder\] multiplex must be bool"):
        SequenceEncoder(2, multiplex="yes")
    with pytest.raises(PrclabError, match=r"\[encoder\] hop_s is nan"):
        MFCCEncoder(hop_s=math.nan)
    with pytest.raises(PrclabError, match="at least one sample"):
        MFCCEncoder(rate_hz=100.0, hop_s=0.001)


def test_the_key_reference_is_the_schemas_output():
    docs = Path(__file__).parents[1] / "docs" / "protocol-keys.md"
    assert docs.read_text() == reference(), "regenerate: python -m prclab.protocols.schema > " + str(docs)
