"""`Accept` and `Content-Type` checks (406 and 415)."""

from __future__ import annotations

from api.problems import Problem

JSON = "application/json"
CSV = "text/csv"
PROBLEM = "application/problem+json"


def _ranges(header: str) -> list[tuple[str, str, float]]:
    out = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        media = bits[0].lower()
        q = 1.0
        for param in bits[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        typ, _, sub = media.partition("/")
        out.append((typ, sub or "*", q))
    return out


def choose(accept: str | None, offered: list[str]) -> str | None:
    """The offered media type the Accept header prefers (the first offered for ties or no header),
    None when it accepts none of them."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges = _ranges(accept)
    best, best_q = None, 0.0
    for media in offered:
        typ, sub = media.split("/")
        q, specificity = 0.0, -1
        for rt, rs, rq in ranges:
            if (rt, rs) == (typ, sub):
                spec = 2
            elif rt == typ and rs == "*":
                spec = 1
            elif rt == "*":
                spec = 0
            else:
                continue
            if spec > specificity:
                q, specificity = rq, spec
        if q > best_q:
            best, best_q = media, q
    return best


def require_accept(accept: str | None, offered: list[str]) -> str:
    chosen = choose(accept, offered)
    if chosen is None:
        raise Problem(406, f"this endpoint answers {' or '.join(offered)}", accept=accept)
    return chosen


def require_json_body(content_type: str) -> None:
    if content_type != JSON:
        raise Problem(415, f"send the body as {JSON}, not {content_type or 'nothing'}")
