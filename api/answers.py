"""The pipeline's outcome (or the workers' read of it) as the HTTP answer of a sale, refund or order:
201 with the document ids, 422 with the refusal's reasons, 202 with the read's Location while the
outcome is not known yet."""

from __future__ import annotations

import json
from typing import Any

from api.idempotency import Answer
from api.outcomes import Outcome
from api.problems import PROBLEM_TYPE, TITLES
from stockledger.jsonconv import to_json

JSON = "application/json"


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = JSON) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"Content-Type": content_type, **(headers or {})})


def problem_answer(status: int, detail: str, **extra: Any) -> Answer:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail, **extra}
    return json_answer(status, body, content_type=PROBLEM_TYPE)


def sale_location(sale_id: str) -> str:
    from urllib.parse import quote

    return f"/api/v1/sales/{quote(sale_id, safe='')}"


def documents(document_ids: list[str]) -> dict:
    """The document ids of an outcome by kind (SPEC section 3: INV-, CN-, PAY-, JE- prefixes)."""
    out: dict[str, Any] = {"payment_ids": []}
    for doc in document_ids:
        if doc.startswith("JE-"):
            out["journal_entry_id"] = doc
        elif doc.startswith("INV-"):
            out["invoice_id"] = doc
        elif doc.startswith("CN-"):
            out["credit_note_id"] = doc
        elif doc.startswith("PAY-"):
            out["payment_ids"].append(doc)
    return out


def decided(ids: dict, event_id: str, outcome: str, reasons: list, credit: Any, document_ids: list[str],
            total: Any = None, currency: str | None = None) -> Answer:
    if outcome == "ACCEPTED":
        body = {**ids, "event_id": event_id, "outcome": outcome, **documents(document_ids),
                "document_ids": document_ids, "total": total, "currency": currency}
        return json_answer(201, body, {"Location": sale_location(ids["sale_id"])})
    if outcome == "HELD":  # SPEC 8: a credit hold; decided again by POST /api/v1/orders/{order_id}/release
        location = sale_location(ids["sale_id"])
        return json_answer(202, {**ids, "event_id": event_id, "outcome": outcome, "status": outcome,
                                 "reasons": reasons, "credit": credit, "total": total, "currency": currency,
                                 "location": location}, {"Location": location})
    what = next((w for k, w in (("refund_id", "refund"), ("shipment_id", "shipment"),
                                ("cancellation_id", "cancellation")) if k in ids), "sale")
    return problem_answer(422, f"the {what} was refused: " + ("; ".join(r.get("message", r.get("code", ""))
                                                                        for r in reasons)
                                                             or outcome),
                          outcome=outcome, reasons=reasons, credit=credit, event_id=event_id, **ids)


def from_outcome(ids: dict, event_id: str, outcome: Outcome) -> Answer:
    if outcome.dead_letter is not None:
        return problem_answer(422, f"the pipeline refused the event: {outcome.dead_letter}", outcome="REJECTED",
                              reasons=[{"code": "REJECTED", "message": outcome.dead_letter}], event_id=event_id,
                              **ids)
    rec = to_json(outcome.record)
    return decided(ids, event_id, rec["outcome"], rec.get("reasons") or [], rec.get("credit"),
                   rec.get("document_ids") or [], rec.get("total"), rec.get("currency"))


def pending(ids: dict, event_id: str) -> Answer:
    location = sale_location(ids["sale_id"])
    return json_answer(202, {**ids, "event_id": event_id, "status": "PENDING", "location": location},
                       {"Location": location})


def from_sale_view(answer: Answer, view: dict) -> Answer | None:
    """A stored 202 brought up to date from the workers' `/sales/{id}` read, once it is decided."""
    body = answer.json()
    ids = {k: body[k] for k in ("sale_id", "refund_id") if k in body}
    event_id = body["event_id"]
    if "refund_id" in ids:
        for refund in view.get("refunds") or []:
            if refund["refund_id"] == ids["refund_id"] and refund.get("outcome"):
                return decided(ids, event_id, refund["outcome"], [], None, refund.get("document_ids") or [])
        return None
    if view.get("event_id") != event_id or not view.get("outcome"):
        return None
    return decided(ids, event_id, view["outcome"], view.get("reasons") or [], view.get("credit"),
                   view.get("document_ids") or [], view.get("total"), view.get("currency"))


def payment_failure(ids: dict, outcome: Outcome | None) -> Answer:
    """A treasury payment failure: 200 once recorded on the sale (status PAYMENT_FAILED with the provider's
    reason), 422 when the pipeline would not record it (an unknown sale), 202 while undecided."""
    if outcome is None:
        return json_answer(202, {**ids, "status": "PENDING"})
    if outcome.dead_letter is not None:
        return problem_answer(422, f"the pipeline refused the failure: {outcome.dead_letter}", outcome="REJECTED",
                              reasons=[{"code": "REJECTED", "message": outcome.dead_letter}], **ids)
    reasons = to_json(outcome.record).get("reasons") or []
    if [r.get("code") for r in reasons] == ["PAYMENT_FAILED"]:
        return json_answer(200, {**ids, "status": "PAYMENT_FAILED", "reason": reasons[0].get("message")})
    return problem_answer(422, "the payment failure was not recorded: " + "; ".join(
        r.get("message", "") for r in reasons), outcome=to_json(outcome.record)["outcome"], reasons=reasons, **ids)


def payment(ids: dict, outcome: Outcome | None) -> Answer:
    """A treasury payment: 200 once applied (with its journal entry), 422 refused (an overpayment, an
    invoice of another customer...), 202 while the pipeline has not decided."""
    if outcome is None:
        return json_answer(202, {**ids, "status": "PENDING"})
    if outcome.dead_letter is not None:
        return problem_answer(422, f"the pipeline refused the payment: {outcome.dead_letter}", outcome="REJECTED",
                              reasons=[{"code": "REJECTED", "message": outcome.dead_letter}], **ids)
    rec = to_json(outcome.record)
    if rec["outcome"] == "ACCEPTED":
        docs = documents(rec.get("document_ids") or [])
        return json_answer(200, {**ids, "status": "ACCEPTED", "journal_entry_id": docs.get("journal_entry_id"),
                                 "amount": rec.get("total"), "currency": rec.get("currency")})
    reasons = rec.get("reasons") or []
    return problem_answer(422, "the payment was refused: " + ("; ".join(r.get("message", "") for r in reasons)
                                                              or rec["outcome"]),
                          outcome=rec["outcome"], reasons=reasons, **ids)
