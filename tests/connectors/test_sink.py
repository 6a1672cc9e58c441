"""The sink against the real stack: every table filled exactly, paid state in any order, poison records
to the DLQ, two workers sharing the partitions."""

from __future__ import annotations

import struct
import threading
import time
from decimal import Decimal

from sqlalchemy import text

from stockledger.db import migrate
from tests.connectors import support
from tests.connectors.support import CREDIT_NOTES, INVOICES, JOURNAL, PAYMENTS, REFS

D = Decimal


def _shop(tenant: str) -> list[tuple[str, dict]]:
    """A paid POS sale, an on-account sale paid in part, a refund: every document type and entry."""
    paid = support.invoice(tenant, 1, lines=2, terms="PAID")
    on_account = support.invoice(tenant, 2, lines=3)
    cash = {**support.payment(tenant, "S1-1", paid, paid["total"], paid["total"]), "sale_id": "S1", "method": "CASH"}
    part = (on_account["total"] / 3).quantize(D("0.01"))
    received = support.payment(tenant, "P9", on_account, part, part)
    refund = support.credit_note(tenant, "R1", paid)
    zero = D(0)
    entries = [
        {**support.invoice_entry(paid), "lines": [
            {"account": "1000", "debit": paid["total"], "credit": zero},
            {"account": "4000", "debit": zero, "credit": paid["net_total"]},
            {"account": "2100", "debit": zero, "credit": paid["tax_total"]}]},
        support.invoice_entry(on_account),
        {"tenant_id": tenant, "entry_id": "JE-PAY-P9", "document_id": "PAY-P9", "document_type": "PAYMENT",
         "currency": "USD", "posted_at": received["received_at"], "description": None, "lines": [
             {"account": "1020", "debit": part, "credit": zero}, {"account": "1100", "debit": zero, "credit": part}]},
        {"tenant_id": tenant, "entry_id": "JE-CN-R1", "document_id": "CN-R1", "document_type": "CREDIT_NOTE",
         "currency": "USD", "posted_at": refund["issued_at"], "description": "refund R1", "lines": [
             {"account": "4010", "debit": refund["net_total"], "credit": zero},
             {"account": "2100", "debit": refund["tax_total"], "credit": zero},
             {"account": "1010", "debit": zero, "credit": refund["total"]}]},
    ]
    refs = [support.external_ref(tenant, "sale", "S1", "INV-S1"), support.external_ref(tenant, "sale", "S2", "INV-S2"),
            support.external_ref(tenant, "refund", "R1", "CN-R1"), support.external_ref(tenant, "customer", "C1", "C1")]
    return ([(INVOICES, paid), (INVOICES, on_account), (PAYMENTS, cash), (PAYMENTS, received),
             (CREDIT_NOTES, refund)] + [(JOURNAL, e) for e in entries] + [(REFS, r) for r in refs])


def test_every_table_is_filled_exactly_from_the_contract_topics(settings, codec, tenant, sink_db, group):
    url, engine = sink_db
    records = _shop(tenant)
    # The contract topics are shared: this group starts at their current end, stored the way the sink
    # stores its own offsets (and it must seek there), so it reads this test's records and not history.
    migrate.upgrade(engine)
    start = support.end_offsets(settings, list(support.LEDGER_TOPICS))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) "
                          "VALUES (:g, :t, :p, :o)"), [{"g": group, "t": t, "p": p, "o": o}
                                                       for (t, p), o in start.items()])
    support.publish(settings, codec, records + records[:3])  # a producer retry: three records twice
    with support.SinkThread(settings, url, "", group):
        support.wait_rows(engine, "external_refs", tenant, 4)
        for table, n in (("invoices", 2), ("payments", 2), ("credit_notes", 1), ("journal_entries", 4)):
            support.wait_rows(engine, table, tenant, n)
    support.assert_books_equal(engine, tenant, support.expected_books(records))
    got = support.books(engine, tenant)
    assert [(r[1], r[11], r[12]) for r in got["invoices"]] == [
        ("INV-S1", records[0][1]["total"], "PAID"),
        ("INV-S2", (records[1][1]["total"] / 3).quantize(D("0.01")), "PARTIALLY_PAID")]
    assert len(got["invoice_lines"]) == 5 and len(got["journal_lines"]) == 11
    assert support.unbalanced_entries(engine, tenant) == []
    with engine.connect() as conn:
        per_entry = conn.execute(text("""SELECT entry_id, sum(debit), sum(credit) FROM journal_lines
                                         WHERE tenant_id = :t GROUP BY entry_id ORDER BY entry_id"""),
                                 {"t": tenant}).all()
    assert [(e, d == c) for e, d, c in per_entry] == [
        ("JE-CN-R1", True), ("JE-INV-S1", True), ("JE-INV-S2", True), ("JE-PAY-P9", True)]


def test_paid_state_does_not_depend_on_the_order_payments_and_invoices_arrive_in(settings, codec, tenant, sink_db,
                                                                                 prefix, group):
    url, engine = sink_db
    a, b, c = (support.invoice(tenant, n) for n in (1, 2, 3))
    half_a, half_b = (a["total"] / 2).quantize(D("0.01")), (b["total"] / 2).quantize(D("0.01"))
    payments = [support.payment(tenant, "A2", a, a["total"] - half_a, a["total"]),  # the last one first
                support.payment(tenant, "A1", a, half_a, half_a),
                support.payment(tenant, "B1", b, half_b, half_b)]
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    with support.SinkThread(settings, url, prefix, group, batch_size=1):  # one record per transaction
        support.publish(settings, codec, [(PAYMENTS, p) for p in payments], prefix)
        support.wait_caught_up(engine, group, settings, topics)
        support.publish(settings, codec, [(INVOICES, x) for x in (a, b, c)], prefix)
        support.wait_caught_up(engine, group, settings, topics)
        paid_c = support.payment(tenant, "C1", c, c["total"], c["total"])
        support.publish(settings, codec, [(PAYMENTS, paid_c), (PAYMENTS, payments[1])], prefix)  # and a replayed one
        support.wait_caught_up(engine, group, settings, topics)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT invoice_id, paid_amount, status FROM invoices WHERE tenant_id = :t "
                                 "ORDER BY invoice_id"), {"t": tenant}).all()
    assert [tuple(r) for r in rows] == [("INV-S1", a["total"], "PAID"), ("INV-S2", half_b, "PARTIALLY_PAID"),
                                        ("INV-S3", c["total"], "PAID")]


def test_poison_records_go_to_the_dlq_with_the_reason_and_the_rest_is_written(settings, codec, tenant, sink_db,
                                                                             prefix, group):
    url, engine = sink_db
    good = [(INVOICES, support.invoice(tenant, n)) for n in range(40)]
    good += [(JOURNAL, support.invoice_entry(r)) for _, r in good]
    unbalanced = support.invoice_entry(support.invoice(tenant, 900))
    unbalanced["entry_id"] = "JE-UNBALANCED"
    unbalanced["lines"][1]["credit"] += D("0.0001")
    bad_total = support.invoice(tenant, 901)
    bad_total["total"] += D("1")
    producer_bytes = [
        (INVOICES, b"not avro at all", "decode", "not Confluent wire format: magic byte 110"),
        (INVOICES, struct.pack(">bI", 0, 987_654_321) + b"\x00", "decode", "unknown schema id 987654321"),
        (JOURNAL, codec.encode(JOURNAL, unbalanced), "rule", f"JE-UNBALANCED of tenant {tenant} does not balance"),
        (INVOICES, codec.encode(INVOICES, bad_total), "rule", "invoices_total_is_net_plus_tax"),
        (INVOICES, codec.encode(REFS, support.external_ref(tenant, "sale", "S1", "INV-S1")), "validate",
         "field 'invoice_id' missing: not a ledger.invoices record"),
    ]
    producer = support.Producer(support.producer_config(settings))
    for i, (contract, rec) in enumerate(good):  # poison in the middle of the good records, one batch
        support.produce(producer, prefix + contract, codec.encode(contract, rec),
                        support.key_of(contract, rec).encode())
        if i % 16 == 5 and i // 16 < len(producer_bytes):
            contract_p, value, _, _ = producer_bytes[i // 16]
            support.produce(producer, prefix + contract_p, value, f"{tenant}:poison-{i // 16}".encode())
    for contract_p, value, _, _ in producer_bytes[len(good) // 16 + 1:]:
        support.produce(producer, prefix + contract_p, value, f"{tenant}:poison-late".encode())
    assert producer.flush(30) == 0

    topics = [prefix + t for t in support.LEDGER_TOPICS]
    with support.SinkThread(settings, url, prefix, group, batch_size=5000, batch_ms=1000) as st:
        support.wait_caught_up(engine, group, settings, topics)
    assert st.sink.stats.dead_letters == len(producer_bytes)
    support.assert_books_equal(engine, tenant, support.expected_books(good))

    letters = []
    for contract in (INVOICES, JOURNAL):
        for msg in support.read_topic(settings, prefix + contract + ".dlq"):
            letters.append((msg, codec.decode(msg.value())))
    assert len(letters) == len(producer_bytes)
    by_value = {dl["value"]: (msg, dl) for msg, dl in letters}
    for contract, value, stage, reason in producer_bytes:
        msg, dl = by_value[value]
        assert dl["topic"] == prefix + contract and dl["stage"] == stage and reason in dl["error"], dl
        assert msg.key() == dl["key"] and dl["key"].startswith(f"{tenant}:poison".encode())
        original = [m for m in support.read_topic(settings, prefix + contract)
                    if m.partition() == dl["partition"] and m.offset() == dl["offset"]]
        assert [m.value() for m in original] == [value]  # where it was, byte for byte


def test_two_workers_share_the_partitions_without_duplicates_or_gaps(settings, codec, tenant, sink_db, prefix,
                                                                     group, tmp_path):
    """Two workers at once; mid-stream one leaves and a third joins (two rebalances under load)."""
    url, engine = sink_db
    records = support.ledger_mix(tenant, 4000)  # 13,000 records
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    assigned = "assigned " + prefix
    a = support.spawn_sink(url, prefix, group, tmp_path / "a.log", "--batch-size", "500")
    support.wait_log(a, assigned)
    b = support.spawn_sink(url, prefix, group, tmp_path / "b.log", "--batch-size", "500")
    support.wait_log(b, assigned)
    support.wait_log(a, assigned, 2)  # a gave half of its partitions to b
    publisher = threading.Thread(target=lambda: [  # about 5 s of traffic
        (support.publish(settings, codec, records[i:i + 1300], prefix), time.sleep(0.2))
        for i in range(0, len(records), 1300)])
    publisher.start()
    time.sleep(1.5)
    stats = [support.stop_sink(b)]  # leaves the group: a takes everything
    c = support.spawn_sink(url, prefix, group, tmp_path / "c.log", "--batch-size", "500")  # and shares it again
    publisher.join()
    try:
        support.wait_caught_up(engine, group, settings, topics, timeout=120, procs=[a, c])
        support.wait_log(c, assigned)
    finally:
        stats += [support.stop_sink(p) for p in (a, c)]
    counts = [support.stats_of(s)["records"] for s in stats]
    assert all(n > 0 for n in counts), stats  # all three wrote
    assert sum(counts) == len(records)  # every record committed exactly once: no duplicate, no gap
    support.assert_books_equal(engine, tenant, support.expected_books(records))
    assert support.unbalanced_entries(engine, tenant) == []
    assert support.stored_offsets(engine, group) == support.end_offsets(settings, topics)
