"""`stockledger webhook add|list|remove|failures|stats` against the real stack's PostgreSQL and a running notifier."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from connectors import migrate
from stockledger import cli
from stockledger.security import unseal, verify
from stockledger.testing import wait_for
from tests.connectors import support
from tests.connectors.notify_support import NotifierThread, Receiver, deliveries, level, notify_settings, publish_levels


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_webhook_commands(sink_db, settings, codec, tenant, capsys):
    url, engine = sink_db
    db = ["--database-url", url]
    prefix = support.new_prefix()
    topic = prefix + "stock.levels"
    support.create_topics(settings, [topic])
    try:
        with Receiver(respond=lambda n, body: 400 if b'"sku":"BAD"' in body else 200) as rx:
            code, _, err = _run(capsys, "webhook", "add", tenant, rx.url, *db)  # migrates a fresh database itself
            assert code == 2  # the receiver is on loopback: refused unless the operator allows it
            assert err == (f"127.0.0.1 is loopback: a webhook may only go to public addresses unless "
                           f"--allow-private-url\n")
            code, out, _ = _run(capsys, "webhook", "add", tenant, rx.url, "--allow-private-url", *db)
            assert code == 0
            sub_id = out.split()[1].rstrip(":")
            secret = out.splitlines()[1].split(": ", 1)[1]
            assert secret.startswith("whsec_")
            with engine.connect() as conn:  # sealed at rest, bound to the tenant
                sealed = conn.execute(text("SELECT secret_sealed FROM webhook_subscriptions")).scalar_one()
            assert secret.encode() not in bytes(sealed) and unseal(settings.master_key(), tenant, sealed) == secret

            code, out, _ = _run(capsys, "webhook", "list", tenant, "--json", *db)
            assert code == 0 and [json.loads(x)["subscription_id"] for x in out.splitlines()] == [sub_id]
            assert "whsec_" not in out
            assert _run(capsys, "webhook", "add", tenant, "ftp://x", *db)[0] == 2
            assert _run(capsys, "webhook", "add", tenant, rx.url, "--events", "stock.moved", "--allow-private-url",
                        *db)[0] == 2
            code, _, err = _run(capsys, "webhook", "add", tenant, rx.url, "--secret-from-tenant", "--allow-private-url",
                                *db)
            assert code == 2 and "has no webhook secret" in err  # not a tenant of the API's registry yet
            code, out, _ = _run(capsys, "tenant", "add", tenant, "--json", *db)
            assert code == 0
            tenant_secret = json.loads(out)["webhook_secret"]
            code, _, err = _run(capsys, "webhook", "add", tenant, rx.url + "/s", "--secret", tenant_secret,
                                "--allow-private-url", *db)
            assert code == 2 and err.startswith("this secret is the tenant's inbound webhook secret")
            code, out, err = _run(capsys, "webhook", "add", tenant, rx.url + "/t", "--secret-from-tenant",
                                  "--allow-private-url", *db)
            assert code == 0 and "whsec_" not in out
            assert err == ("warning: deliveries signed with the tenant's inbound secret are also valid inbound ERP "
                           "webhooks for this tenant\n")
            from connectors.notify import subscriptions
            assert subscriptions.TENANT_SECRETS(engine, settings.master_key(), tenant) == [tenant_secret]
            tenant_sub = out.split()[1].rstrip(":")
            assert _run(capsys, "webhook", "remove", tenant_sub, *db)[0] == 0

            with NotifierThread(notify_settings(settings, url), prefix, f"test-notify-{uuid.uuid4().hex[:8]}") as nt:
                publish_levels(settings, codec, topic, [level(tenant, "GOOD", 5, 1), level(tenant, "BAD", 1, 1)])
                wait_for(lambda: len(rx.requests) == 2 and all(d["pending_offset"] is None
                                                               for d in deliveries(engine, tenant).values()),
                         30, "both answered")
                wait_for(lambda: nt.metric("stockledger_webhook_failures_total", tenant=tenant) == 1, 10, "metrics")
                code, out, _ = _run(capsys, "webhook", "stats", tenant, "--metrics-url", nt.metrics_url, "--json", *db)
                assert code == 0
                stats = json.loads(out)
                assert stats["deliveries"] == 1 and stats["failures"]["client_error"] == 1
                assert stats["pending"] == 0 and stats["retries_pending"] == 0 and stats["latency_count"] == 1
                assert stats["breakers"] == {rx.url: "closed"}
                assert 0 < stats["latency_seconds"]["p50"] <= stats["latency_seconds"]["p99"]
                code, out, _ = _run(capsys, "webhook", "stats", tenant, "--metrics-url", nt.metrics_url, *db)
                assert code == 0 and "1 delivered" in out and "p95" in out and "p99" in out
            good = next(r for r in rx.requests if r.sku == "GOOD")
            assert verify([secret], good.body, good.headers["X-ERP-Signature"], good.headers["X-ERP-Timestamp"])

        code, out, _ = _run(capsys, "webhook", "failures", tenant, *db)
        assert code == 0 and len(out.splitlines()) == 1
        assert "data_error" in out and " 400 " in out and "BAD" in out and sub_id in out
        code, out, _ = _run(capsys, "webhook", "failures", tenant, "--json", *db)
        assert json.loads(json.loads(out)["body"])["data"] == {"sku": "BAD", "location_id": "WH-MAIN",
                                                              "new_quantity": 1, "reason": "ADJUSTMENT"}

        assert _run(capsys, "webhook", "remove", sub_id, *db)[0] == 0
        assert _run(capsys, "webhook", "list", tenant, *db)[1] == ""
        assert _run(capsys, "webhook", "remove", sub_id, *db)[0] == 2
        assert deliveries(engine, tenant) == {}  # its state went with it; the failure stays listed
        assert "BAD" in _run(capsys, "webhook", "failures", tenant, *db)[1]
    finally:
        support.delete_topics(settings, [topic])
    assert migrate.current(engine) == migrate.head()
