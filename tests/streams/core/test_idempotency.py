from decimal import Decimal

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
