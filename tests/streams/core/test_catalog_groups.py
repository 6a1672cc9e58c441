"""The whole product group in the fold (issue 20): kept exactly, versioned, emitted on catalog.groups once
per change, bounded (CATALOG_OUT_OF_RANGE at admit and in `stockledger produce`, never a crash)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main as cli
from stockledger.bounds import (
    CATALOG_OUT_OF_RANGE,
    MAX_ATTRIBUTES,
    MAX_CATEGORIES,
    MAX_DESCRIPTION_CHARS,
    MAX_MEDIA,
    MAX_TEXT_CHARS,
    MAX_URL_CHARS,
    MAX_VARIANTS,
    event_bounds,
)
from streams.admit import check
from streams.core.catalog import GroupVariant, Media, ProductGroup
from streams.core.fold import (
    DeadLetter,
    DictState,
    Emit,
    FoldConfig,
    catalog_of,
    fold_guarded,
    group_of,
    serial_fold,
)

from .foldkit import event

SEED_GROUP = {
    "product_group_id": "PG-1001", "group_name": "iPhone 15", "description": "<p>Full HTML...</p>",
    "category_hierarchy": ["Electronics", "Smartphones", "Apple"], "tax_hsn": "85171300", "is_active": True,
    "tax_rate": "18",
    "variants": [
        {"sku": "IPH15-128-BLK", "display_name": "iPhone 15 128GB Black", "price": "79900.00", "mrp": "89900.00",
         "stock_quantity": 50, "attributes": {"Color": "Black", "Storage": "128GB"},
         "media": [{"url": "https://erp-cdn.com/u/iph15-blk.jpg", "is_main": True},
                   {"url": "https://erp-cdn.com/u/iph15-blk-back.jpg", "is_main": False}]},
        {"sku": "IPH15-128-BLU", "display_name": "iPhone 15 128GB Blue", "price": "79900.00", "stock_quantity": 42,
         "attributes": {"Color": "Blue", "Storage": "128GB"}, "media": []},
    ],
}


def update(data: dict, event_id: str, ts: int = 1_000):
    return event("catalog.update", data, event_id=event_id, ts=ts)


def groups_out(outputs: list) -> list[Emit]:
    return [o for o in outputs if isinstance(o, Emit) and o.topic == "catalog.groups"]


D = Decimal


def test_the_fold_keeps_the_whole_group_and_emits_its_first_version():
    state, out = serial_fold([update(SEED_GROUP, "c1", ts=1_000)])
    expected = ProductGroup(
        "t1", "PG-1001", "iPhone 15", 1, 1_000, "c1", "<p>Full HTML...</p>", ("Electronics", "Smartphones", "Apple"),
        "85171300", True, D("18.0000"), (
            GroupVariant("IPH15-128-BLK", "iPhone 15 128GB Black", D("79900.0000"), D("89900.0000"),
                         {"Color": "Black", "Storage": "128GB"},
                         (Media("https://erp-cdn.com/u/iph15-blk.jpg", True),
                          Media("https://erp-cdn.com/u/iph15-blk-back.jpg", False))),
            GroupVariant("IPH15-128-BLU", "iPhone 15 128GB Blue", D("79900.0000"), None,
                         {"Color": "Blue", "Storage": "128GB"}, ())))
    assert group_of(state, "t1", "PG-1001") == expected
    assert groups_out(out) == [Emit("catalog.groups", "t1:PG-1001", {
        "tenant_id": "t1", "product_group_id": "PG-1001", "version": 1, "updated_at": 1_000, "event_id": "c1",
        "group_name": "iPhone 15", "description": "<p>Full HTML...</p>",
        "category_hierarchy": ["Electronics", "Smartphones", "Apple"], "tax_hsn": "85171300", "is_active": True,
        "tax_rate": D("18.0000"),
        "variants": [{"sku": "IPH15-128-BLK", "display_name": "iPhone 15 128GB Black", "price": D("79900.0000"),
                      "mrp": D("89900.0000"), "attributes": {"Color": "Black", "Storage": "128GB"},
                      "media": [{"url": "https://erp-cdn.com/u/iph15-blk.jpg", "is_main": True},
                                {"url": "https://erp-cdn.com/u/iph15-blk-back.jpg", "is_main": False}]},
                     {"sku": "IPH15-128-BLU", "display_name": "iPhone 15 128GB Blue", "price": D("79900.0000"),
                      "mrp": None, "attributes": {"Color": "Blue", "Storage": "128GB"}, "media": []}]})]
    # the per-SKU catalog and the stock are as before
    assert catalog_of(state, "t1", "IPH15-128-BLK").price == D("79900.0000")
    assert [o.key for o in out if isinstance(o, Emit) and o.topic == "stock.levels"] == [
        "t1:IPH15-128-BLK", "t1:IPH15-128-BLU"]
    assert ProductGroup.from_dict(json.loads(json.dumps(expected.to_dict()))) == expected


def test_a_new_version_only_when_the_content_changes_and_an_older_update_never_wins():
    changed = {**SEED_GROUP, "variants": [{**SEED_GROUP["variants"][0], "media": [
        {"url": "https://erp-cdn.com/u/new.jpg", "is_main": True}]}, SEED_GROUP["variants"][1]]}
    state, out = serial_fold([
        update(SEED_GROUP, "c1", ts=1_000),
        update(SEED_GROUP, "c2", ts=2_000),  # same content: no new version, nothing sent
        update(changed, "c3", ts=3_000),  # new media: version 2
        update(SEED_GROUP, "c0", ts=2_500),  # older than c3, late: does not win
        update(SEED_GROUP, "c1", ts=1_000),  # a redelivery: nothing
    ])
    assert [(o.value["version"], o.value["event_id"]) for o in groups_out(out)] == [(1, "c1"), (2, "c3")]
    g = group_of(state, "t1", "PG-1001")
    assert (g.version, g.updated_at, g.event_id) == (2, 3_000, "c3")
    assert g.variants[0].media == (Media("https://erp-cdn.com/u/new.jpg", True),)
    assert [o for o in out if isinstance(o, DeadLetter)] == []


def test_same_content_records_the_newer_timestamp_so_a_late_older_update_does_not_win():
    other = {**SEED_GROUP, "group_name": "iPhone 15 (old)"}
    state, out = serial_fold([update(SEED_GROUP, "c1", ts=1_000), update(SEED_GROUP, "c2", ts=3_000),
                              update(other, "c0", ts=2_000)])
    g = group_of(state, "t1", "PG-1001")
    assert (g.group_name, g.version, g.updated_at, g.event_id) == ("iPhone 15", 1, 3_000, "c2")
    assert len(groups_out(out)) == 1


# -- bounds ---------------------------------------------------------------------------------------------
def variant(n: int = 0, **extra) -> dict:
    return {"sku": f"S{n}", "display_name": f"S{n}", "price": D(1), **extra}


def at(**fields) -> dict:
    return {"product_group_id": "G", "group_name": "G", "variants": [variant()], **fields}


@pytest.mark.parametrize("data,field,message", [
    (at(description="x" * (MAX_DESCRIPTION_CHARS + 1)), "data.description", "20,001 characters; at most 20,000"),
    (at(category_hierarchy=["c"] * (MAX_CATEGORIES + 1)), "data.category_hierarchy", "11 categories; at most 10"),
    (at(category_hierarchy=["a", "c" * (MAX_TEXT_CHARS + 1)]), "data.category_hierarchy[1]",
     "201 characters; at most 200"),
    (at(variants=[variant(n) for n in range(MAX_VARIANTS + 1)]), "data.variants", "501 variants; at most 500"),
    (at(variants=[variant(0), variant(1, media=[{"url": "u"}] * (MAX_MEDIA + 1))]), "data.variants[1].media",
     "11 entries; at most 10"),
    (at(variants=[variant(0, media=[{"url": "u"}, {"url": "u" * (MAX_URL_CHARS + 1)}])]),
     "data.variants[0].media[1].url", "2,049 characters; at most 2,048"),
    (at(variants=[variant(0, attributes={f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 1)})]),
     "data.variants[0].attributes", "51 attributes; at most 50"),
    (at(variants=[variant(0, attributes={"Color": "v" * (MAX_TEXT_CHARS + 1)})]),
     "data.variants[0].attributes['Color']", "a name or value of more than 200 characters"),
])
def test_beyond_a_catalog_bound_is_refused_naming_the_field(data, field, message):
    beyond = event_bounds("catalog.update", data)
    assert (beyond.code, beyond.field, beyond.message) == (CATALOG_OUT_OF_RANGE, field, message)
    record = {"event_id": "e1", "event_type": "catalog.update", "tenant_id": "t1", "data": data}
    assert check(record, "catalog.updates") == (f"CATALOG_OUT_OF_RANGE: {field}: {message}", "rule")


def test_at_every_catalog_bound_the_group_is_admitted_and_kept():
    full = {"media": [{"url": "u" * MAX_URL_CHARS, "is_main": True}] * MAX_MEDIA,
            "attributes": {f"k{i}": "v" * MAX_TEXT_CHARS for i in range(MAX_ATTRIBUTES)}}
    data = at(description="d" * MAX_DESCRIPTION_CHARS, category_hierarchy=["c" * MAX_TEXT_CHARS] * MAX_CATEGORIES,
              variants=[variant(n, **(full if n % 100 == 99 else {})) for n in range(MAX_VARIANTS)])
    assert event_bounds("catalog.update", data) is None
    state, out = serial_fold([update(data, "big")])
    g = group_of(state, "t1", "G")
    assert (len(g.variants), len(g.variants[99].media), len(g.description), len(g.category_hierarchy)) == (
        500, 10, 20_000, 10)
    assert len(g.variants[499].attributes) == 50 and g.variants[0].media == ()
    assert [o for o in out if isinstance(o, DeadLetter)] == [] and len(groups_out(out)) == 1


def test_produce_refuses_beyond_a_bound_naming_file_record_and_field(tmp_path, capsys):
    path = tmp_path / "catalog.jsonl"
    good = {"event_id": "e1", "event_type": "catalog.update", "tenant_id": "t1", "timestamp": 1_000,
            "data": {"product_group_id": "G", "group_name": "G", "variants": [
                {"sku": "A", "display_name": "A", "price": 1}]}}
    bad = json.loads(json.dumps(good))
    bad["event_id"] = "e2"
    bad["data"]["variants"][0]["media"] = [{"url": f"https://cdn/{i}.jpg"} for i in range(11)]
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    assert cli.main(["produce", "catalog.updates", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: record 2: data.variants[0].media: CATALOG_OUT_OF_RANGE: 11 entries; at most 10" in err


# -- hypothesis: at the bounds and beyond, a reason or a kept group, never a crash ----------------------------
def _around(limit: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, limit - 1, limit, limit + 1, limit + 7])


@st.composite
def groups(draw) -> dict:
    n_variants = draw(st.sampled_from([1, 2, MAX_VARIANTS, MAX_VARIANTS + 1]))
    special = draw(st.integers(0, n_variants - 1))
    variants = []
    for n in range(n_variants):
        v = variant(n)
        if n == special:
            v["media"] = [{"url": "u" * draw(_around(MAX_URL_CHARS)), "is_main": i == 0}
                          for i in range(draw(_around(MAX_MEDIA)))]
            n_attributes = draw(_around(MAX_ATTRIBUTES))
            v["attributes"] = {f"k{i}": "v" * draw(_around(MAX_TEXT_CHARS)) for i in range(n_attributes)}
        variants.append(v)
    data = {"product_group_id": "G", "group_name": "G", "variants": variants,
            "category_hierarchy": [draw(st.text(max_size=3)) + "c" * draw(_around(MAX_TEXT_CHARS))
                                   for _ in range(draw(_around(MAX_CATEGORIES)))]}
    if draw(st.booleans()):
        data["description"] = draw(st.text(max_size=5)) + "d" * draw(_around(MAX_DESCRIPTION_CHARS))
    return data


def _beyond(data: dict) -> bool:
    vs = data["variants"]
    return (len(vs) > MAX_VARIANTS or len(data.get("description") or "") > MAX_DESCRIPTION_CHARS
            or len(data["category_hierarchy"]) > MAX_CATEGORIES
            or any(len(c) > MAX_TEXT_CHARS for c in data["category_hierarchy"])
            or any(len(v.get("media", ())) > MAX_MEDIA or any(len(m["url"]) > MAX_URL_CHARS for m in v.get("media", ()))
                   or len(v.get("attributes", {})) > MAX_ATTRIBUTES
                   or any(len(x) > MAX_TEXT_CHARS for kv in v.get("attributes", {}).items() for x in kv)
                   for v in vs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(groups())
def test_at_and_beyond_the_bounds_admit_refuses_with_a_reason_or_the_fold_keeps_the_group(data):
    record = {"event_id": "e1", "event_type": "catalog.update", "tenant_id": "t1", "data": data}
    verdict = check(record, "catalog.updates")
    if _beyond(data):
        assert verdict is not None and verdict[0].startswith("CATALOG_OUT_OF_RANGE: data.") and verdict[1] == "rule"
        return
    assert verdict is None
    state = DictState()
    out = fold_guarded(state, update(data, "e1"), FoldConfig())[0]
    assert [o for o in out if isinstance(o, DeadLetter)] == []
    g = group_of(state, "t1", "G")
    assert [len(v.media) for v in g.variants] == [len(v.get("media", ())) for v in data["variants"]]
    assert g.description == data.get("description") and list(g.category_hierarchy) == data["category_hierarchy"]
