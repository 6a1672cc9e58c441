"""The API's body parser and id check, property-based: whatever bytes arrive, parse_json returns
numbers within 30 digits or raises a 400 Problem naming the field, in memory proportional to the
input; ids that could read as a path are refused, every other id travels quoted and comes back whole."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import quote, unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import MAX_DIGITS, parse_json
from api.problems import Problem
from stockledger.security import id_refusal

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.decimals(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
literals = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999", "-1e-999999", "9" * 31, "0." + "1" * 31,
                            "1" * 5000, "1E30", "123456789012345678901234567890", "1e29", "0.5", "-0"])


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        yield value


@settings(max_examples=300, deadline=None)
@given(value=json_values, literal=literals, where=st.sampled_from(["a", "b"]))
def test_parse_json_bounds_every_number_or_names_the_field(value, literal, where):
    doc = json.dumps({"a": value}, default=str)
    raw = (doc[:-1] + f', "{where}x": [{literal}]}}').encode()
    try:
        body = parse_json(raw)
    except Problem as problem:
        assert problem.status == 400
        assert problem.extra["field"].startswith(("a", "bx", "ax", "<body>")), problem.extra
        return
    for n in _numbers(body):
        assert len(str(abs(n)).replace(".", "").lstrip("0")) <= 2 * MAX_DIGITS


@given(raw=st.binary(max_size=200))
def test_parse_json_of_any_bytes_is_a_body_or_a_400(raw):
    try:
        parse_json(raw)
    except Problem as problem:
        assert problem.status == 400


@given(ident=st.text(max_size=40))
def test_an_id_is_refused_or_comes_back_whole_through_a_quoted_path(ident):
    why = id_refusal(ident)
    if why is None:
        assert "/" not in ident and "?" not in ident and "#" not in ident and "%" not in ident
        assert ".." not in ident and ident not in ("", ".")
        assert unquote(quote(ident, safe="")) == ident and "/" not in quote(ident, safe="")
    else:
        assert why.startswith("must not")
