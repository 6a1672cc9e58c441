from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.idempotency import Decision, canonical_json, decide, fingerprint

D = Decimal


def test_canonical_json_exact_text():
    data = {"b": D("1.50"), "a": [1, "x", None, True], "c": None, "d": {"z": D("0.00"), "y": 2}}
    assert canonical_json(data) == '{"a":[1,"x",null,true],"b":1.5,"d":{"y":2,"z":0}}'


def test_fingerprint_ignores_key_order_trailing_zeros_and_nulls():
    a = {"sku": "A", "quantity_change": 5, "reason": None, "price": D("1.5")}
    b = {"price": D("1.50"), "quantity_change": 5, "sku": "A"}
    assert fingerprint("inventory.change", "t1", a) == fingerprint("inventory.change", "t1", b)
    assert len(fingerprint("inventory.change", "t1", a)) == 64


def test_fingerprint_covers_business_content():
    base = fingerprint("inventory.change", "t1", {"sku": "A", "quantity_change": 5})
    assert fingerprint("inventory.change", "t1", {"sku": "A", "quantity_change": 6}) != base
    assert fingerprint("inventory.change", "t2", {"sku": "A", "quantity_change": 5}) != base
    assert fingerprint("sale.completed", "t1", {"sku": "A", "quantity_change": 5}) != base
    # a number and the same digits as text are different content
    assert fingerprint("inventory.change", "t1", {"sku": "A", "quantity_change": "5"}) != base
    # line order is meaningful
    assert fingerprint("x", "t", {"l": [1, 2]}) != fingerprint("x", "t", {"l": [2, 1]})


def test_decide():
    fp = fingerprint("payment.received", "t1", {"payment_id": "P1", "amount": D("10.00")})
    assert decide(None, fp) is Decision.APPLY
    assert decide(fp, fp) is Decision.DUPLICATE
    other = fingerprint("payment.received", "t1", {"payment_id": "P1", "amount": D("11.00")})
    assert decide(fp, other) is Decision.CONFLICT


def test_the_canonical_text_and_fingerprint_stay_what_they_were():
    """Pinned from the first implementation: fingerprints already stored in `seen` must keep matching."""
    data = {"sale_id": "S-1", "note": 'café "x"\\', "qty": 100, "big": 10**30, "price": D("10.5000"),
            "lines": [{"sku": "A", "q": 0, "x": None}], "ok": True}
    assert canonical_json(data) == ('{"big":1000000000000000000000000000000,"lines":[{"q":0,"sku":"A"}],'
                                    '"note":"caf\\u00e9 \\"x\\"\\\\","ok":true,"price":10.5,"qty":100,"sale_id":"S-1"}')
    assert fingerprint("sale.completed", "t1", data) == \
        "e1241abb844d53b19de5917736dfdf71dd9f8d3a2cc556657577e0eb6ba12bc8"


def _reference(value):  # the canonical form as first written: one generic walk (fingerprints stored since use it)
    import json
    from collections.abc import Mapping

    from streams.core.idempotency import _number, _string
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return _number(Decimal(value))
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, float):
        return _number(Decimal(repr(value)))
    if isinstance(value, bytes):
        return json.dumps(value.hex())
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items() if v is not None)
        return "{" + ",".join(_string(k) + ":" + _reference(v) for k, v in items) + "}"
    return "[" + ",".join(_reference(v) for v in value) + "]"


_KEYS = st.one_of(st.text(max_size=4), st.sampled_from(["sku", "a", "A", "é", "\"", "\\", "10", "9"]))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**40), 10**40), st.text(max_size=6),
              st.decimals(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False),
              st.binary(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(_KEYS, inner, max_size=4),
                            st.dictionaries(st.integers(-20, 20), inner, max_size=3)),
    max_leaves=25)


@settings(max_examples=1000, deadline=None)
@given(_VALUES)
def test_the_fast_paths_give_the_canonical_form_as_first_written(value):
    """Fingerprints already stored (changelogs, the seen table) must still match: the dict and list fast paths
    give exactly the text of the generic walk, for any nesting, key kind and value kind."""
    assert canonical_json(value) == _reference(value)
