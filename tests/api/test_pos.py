"""Seed 000 through a real `stockledger api`, a real worker and Kafka: POS sales and refunds answered
with the pipeline's documents, Idempotency-Key replays, conflicts and concurrency, and every refusal
(with nothing published)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from cli.testing import settle
from tests.api.support import problem, records
from tests.streams.test_sales_pipeline import catalog


def sale(sale_id: str, qty: int = 2, **extra) -> dict:
    return {"sale_id": sale_id, "currency": "KES", "payment_terms": "PAID",
            "line_items": [{"sku": "A", "quantity": qty}], **extra}


def api_fingerprint(creds, path: str, body: dict, key: str) -> str:
    """The fingerprint the API gives a POS sale with this body and key (of the event it maps to)."""
    from api import events
    from api import idempotency as idem

    return idem.fingerprint("POST", path, events.pos_sale(creds.tenant, body, idem.event_id(creds.tenant, key),
                                                          events.FIXED_AT))


@pytest.fixture
def shop(worker, publish, settings, creds):
    """Catalog A at 1000.00 (16% tax), 10 in stock, for the test's tenant."""
    publish("catalog.updates", [catalog(creds.tenant, [("A", "1000.00", 10)])])
    settle(settings)
    return creds


def test_a_sale_is_answered_with_its_documents_and_replayed_identically(api, shop, settings, worker):
    first = api.pos(shop, "sales", sale("S1", payments=[{"method": "CARD", "amount": "2320.00"}]),
                    "piti:sale:S1:completed")
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["sale_id"], body["outcome"], body["invoice_id"], body["journal_entry_id"], body["payment_ids"],
            body["total"], body["currency"]) == ("S1", "ACCEPTED", "INV-S1", "JE-INV-S1", ["PAY-S1-1"], "2320.00",
                                                 "KES")
    assert first.headers["Location"] == "/api/v1/sales/S1"
    assert "Idempotent-Replayed" not in first.headers
    again = api.pos(shop, "sales", sale("S1", payments=[{"method": "CARD", "amount": "2320.00"}]),
                    "piti:sale:S1:completed")
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (201, first.content, "true")
    published = records(settings, "sales", shop.tenant)
    assert len(published) == 1
    assert published[0]["value"]["event_id"] == body["event_id"]
    assert published[0]["value"]["event_type"] == "sale.completed"
    assert published[0]["value"]["data"]["channel"] == "POS"
    settle(settings)
    assert worker.get("/stock/A", tenant=shop.tenant).json()["on_hand"] == 8  # deducted once


def test_the_same_key_with_another_body_is_refused(api, shop, settings):
    assert api.pos(shop, "sales", sale("S2"), "k-S2").status_code == 201
    body = problem(api.pos(shop, "sales", sale("S2", qty=3), "k-S2"), 422)
    assert body["field"] == "Idempotency-Key"
    # the same key on the refunds path is another request too
    refund = {"refund_id": "R-S2", "sale_id": "S2", "lines": [{"sku": "A", "quantity": 1}], "refund_method": "CASH"}
    problem(api.pos(shop, "refunds", refund, "k-S2"), 422)
    assert records(settings, "refunds", shop.tenant) == []
    assert len(records(settings, "sales", shop.tenant)) == 1


def test_twenty_concurrent_requests_with_one_key_publish_once_and_get_one_answer(api, shop, settings):
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: api.pos(shop, "sales", sale("S3"), "k-S3"), range(20)))
    assert {(a.status_code, a.content) for a in answers} == {(201, answers[0].content)}
    assert answers[0].json()["invoice_id"] == "INV-S3"
    assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed") == "true") == 19
    assert len(records(settings, "sales", shop.tenant)) == 1


def test_a_refund_gets_its_credit_note_and_an_over_refund_its_reasons(api, shop, settings):
    assert api.pos(shop, "sales", sale("S4"), "k-S4").status_code == 201
    refund = {"refund_id": "R1", "sale_id": "S4", "lines": [{"sku": "A", "quantity": 1}], "restock": True,
              "refund_method": "CASH"}
    ok = api.pos(shop, "refunds", refund, "piti:refund:R1")
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert (body["refund_id"], body["sale_id"], body["credit_note_id"], body["journal_entry_id"], body["total"]) == \
        ("R1", "S4", "CN-R1", "JE-CN-R1", "1160.00")
    over = problem(api.pos(shop, "refunds", {**refund, "refund_id": "R2", "lines": [{"sku": "A", "quantity": 5}]},
                           "piti:refund:R2"), 422)
    assert (over["outcome"], over["refund_id"]) == ("REFUSED", "R2")
    assert [(r["code"], r["sku"], r["requested"], r["available"]) for r in over["reasons"]] == [
        ("OVER_REFUND", "A", 5, 1)]
    assert len(records(settings, "refunds", shop.tenant)) == 2


def test_a_sale_the_pipeline_dead_letters_is_refused_with_its_reason(api, shop, settings):
    body = problem(api.pos(shop, "sales", sale("S5", payments=[{"method": "CASH", "amount": "1.00"}]), "k-S5"), 422)
    assert body["outcome"] == "REJECTED" and "PAYMENT_MISMATCH" in body["detail"]


def test_a_key_of_tenant_a_on_tenant_b_path_is_not_found_and_publishes_nothing(api, creds, api_engine, settings):
    from stockledger import tenants

    other = tenants.add(api_engine, settings.master_key(), creds.tenant + "-b")
    body = problem(api.pos(creds, "sales", sale("S6"), "k-S6", company=other.tenant), 404)
    assert other.tenant not in body["detail"] and creds.tenant not in body["detail"]
    problem(api.pos(creds, "sales", sale("S6"), "k-S6", company="no-such-company"), 404)
    assert records(settings, "sales", creds.tenant) == [] and records(settings, "sales", other.tenant) == []


def test_every_refusal_is_clear_and_publishes_nothing(api, creds, settings, worker):
    t = creds.tenant
    path = f"/integrations/piti/companies/{t}/sales"
    good = {"X-Integration-Key": creds.key, "Idempotency-Key": "k-bad"}
    # credentials: one answer, no hint
    missing = problem(api.post(path, sale("S7"), headers={"Idempotency-Key": "k"}), 401)
    wrong = problem(api.post(path, sale("S7"), headers={**good, "X-Integration-Key": creds.key + "x"}), 401)
    token_instead = problem(api.post(path, sale("S7"), headers={**good, "X-Integration-Key": creds.token}), 401)
    assert missing["detail"] == wrong["detail"] == token_instead["detail"]
    # Idempotency-Key
    for key in (None, "", "k" * 256):
        headers = {k: v for k, v in good.items() if k != "Idempotency-Key"}
        if key is not None:
            headers["Idempotency-Key"] = key
        assert problem(api.post(path, sale("S7"), headers=headers), 400)["field"] == "Idempotency-Key"
    # bodies
    assert "malformed JSON" in problem(api.post(path, raw=b'{"sale_id": "S7",', headers=good), 400)["detail"]
    assert "malformed JSON" in problem(api.post(path, raw=b"[" * 100_000, headers=good), 400)["detail"]
    bad = problem(api.post(path, {**sale("S7"), "line_items": [{"sku": "A", "quantity": "two"}]}, headers=good), 400)
    assert bad["field"] == "line_items[0].quantity"
    assert problem(api.post(path, {"currency": "KES"}, headers=good), 400)["field"] == "sale_id"
    assert problem(api.post(path, {**sale("S7"), "colour": "red"}, headers=good), 400)["field"] == "colour"
    assert problem(api.post(path, [sale("S7")], headers=good), 400)["field"] == "<body>"
    big = {**sale("S7"), "location_id": "x" * (1024 * 1024)}
    problem(api.post(path, big, headers=good), 413)
    problem(api.post(path, raw=b"sale_id=S7", headers={**good, "Content-Type": "application/x-www-form-urlencoded"}),
            415)
    problem(api.post(path, sale("S7"), headers={**good, "Accept": "text/csv"}), 406)
    # the key was never claimed by a refused request: it still executes (and is the only record)
    priced = {**sale("S7"), "line_items": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}]}
    assert api.pos(creds, "sales", priced, "k-bad").status_code == 201
    assert len(records(settings, "sales", t)) == 1


def test_an_answer_not_in_time_is_202_and_a_replay_brings_the_outcome(strict_api, shop, settings):
    first = strict_api.pos(shop, "sales", sale("S8"), "k-S8")
    assert first.status_code == 202, first.text
    assert first.headers["Location"] == "/api/v1/sales/S8"
    assert first.json()["status"] == "PENDING"
    settle(settings)
    read = strict_api.read(shop, first.headers["Location"])
    assert read.status_code == 200 and read.json()["document_ids"] == ["INV-S8", "PAY-S8-1", "JE-INV-S8"]
    replay = strict_api.pos(shop, "sales", sale("S8"), "k-S8")
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert replay.json()["invoice_id"] == "INV-S8"
    assert len(records(settings, "sales", shop.tenant)) == 1


def test_the_rate_limit_answers_429_with_retry_after_and_stores_nothing(strict_api, creds, settings):
    import time

    answers = [strict_api.pos(creds, "sales", sale(f"S9-{n}"), f"k-S9-{n}") for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    limited = strict_api.pos(creds, "sales", sale("S9-3"), "k-S9-3")
    problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    time.sleep(int(limited.headers["Retry-After"]))
    again = strict_api.pos(creds, "sales", sale("S9-3"), "k-S9-3")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert len(records(settings, "sales", creds.tenant)) == 4


def test_a_duplicate_of_a_request_still_running_elsewhere_gets_409_then_its_answer(strict_api, creds, api_engine,
                                                                                   settings):
    from datetime import timedelta

    from api import idempotency as idem

    body, path = sale("S10"), f"/integrations/piti/companies/{creds.tenant}/sales"
    # another API process has claimed the key and is still publishing
    assert idem.claim(api_engine, creds.tenant, idem.IDEMPOTENCY, "k-S10", api_fingerprint(creds, path, body, "k-S10"),
                      timedelta(days=7))[0] is True
    busy = strict_api.pos(creds, "sales", body, "k-S10")
    problem(busy, 409)
    assert busy.headers["Retry-After"] == "1"
    problem(strict_api.pos(creds, "sales", sale("S10", qty=5), "k-S10"), 422)  # another body: refused at once
    assert records(settings, "sales", creds.tenant) == []
    from api.answers import pending

    answer = pending({"sale_id": "S10"}, idem.event_id(creds.tenant, "k-S10"))
    idem.store(api_engine, creds.tenant, idem.IDEMPOTENCY, "k-S10", answer)  # ... and has answered
    replay = strict_api.pos(creds, "sales", body, "k-S10")
    assert (replay.status_code, replay.content, replay.headers["Idempotent-Replayed"]) == (202, answer.body, "true")


def test_a_request_abandoned_by_a_dead_process_is_taken_over_with_the_same_record(strict_api, creds, api_engine,
                                                                                 settings):
    from datetime import timedelta

    from sqlalchemy import text

    from api import idempotency as idem
    from stockledger.jsonconv import format_timestamp

    body, path = sale("S11"), f"/integrations/piti/companies/{creds.tenant}/sales"
    _, first = idem.claim(api_engine, creds.tenant, idem.IDEMPOTENCY, "k-S11",
                          api_fingerprint(creds, path, body, "k-S11"), timedelta(days=7))
    with api_engine.begin() as conn:  # its process died 61 s ago, past the lease
        conn.execute(text("UPDATE api_requests SET claimed_at = now() - interval '61 seconds' "
                          "WHERE tenant_id = :t AND request_key = 'k-S11'"), {"t": creds.tenant})
    taken = strict_api.pos(creds, "sales", body, "k-S11")
    assert taken.status_code == 202 and "Idempotent-Replayed" not in taken.headers
    [published] = records(settings, "sales", creds.tenant)
    assert published["value"]["timestamp"] == format_timestamp(first["event_time"])
    assert published["value"]["event_id"] == idem.event_id(creds.tenant, "k-S11")
