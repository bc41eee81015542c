"""Following one request across deskml nodes, as data on its record (never as authority).

A router forwarding to a deskml node sends, besides `X-Deskml-Via`:

- `X-Request-Id`: its own request id. The node adopts a sane one as its record's id (observe.py), so
  both history rows carry the same `request_id` and `GET /api/history?request_id=X` finds them both.
- `X-Deskml-On-Behalf-Of`: who the router's caller was (percent-encoded). The node keeps it in the
  row's `extra.via_principal`, next to the principal that actually authenticated (the router's key),
  so it reads "alice, as claimed by key k1". Any caller can send the header, so it is never used for
  authentication, scopes, rate limits, token budgets or the `user` filter.

The router's health checks send `X-Deskml-Health-Check: 1`. The history skips such a request only
when it is a successful GET or HEAD of an endpoint that carries no data (`HEALTH_PATHS`): a client
sending the header can hide no more than having listed the models; its refused attempts (401, 403,
429) and all its other requests are recorded as ever.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from deskml.core.context import RequestRecord

ON_BEHALF_HEADER = "x-deskml-on-behalf-of"
HEALTH_CHECK_HEADER = "x-deskml-health-check"
REQUEST_ID_HEADER = "x-request-id"
# What a health check reads: the model list (the router needs it) or a bare liveness answer.
HEALTH_PATHS = frozenset({"/api/tags", "/v1/models", "/api/version", "/health"})
PRINCIPAL_LIMIT = 200  # characters, as the history's principal_id column


def encode_principal(principal_id: str) -> str:
    """A principal id as header text: user names may hold any non-space character."""
    return quote(principal_id, safe="")


def claimed_principal(value: bytes) -> str | None:
    """The principal an `X-Deskml-On-Behalf-Of` value names, or None when it is not a sane one."""
    try:
        text = unquote(value.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    if not 0 < len(text) <= PRINCIPAL_LIMIT or any(c.isspace() or not c.isprintable() for c in text):
        return None
    return text


def annotate(record: RequestRecord, headers: list[tuple[bytes, bytes]]) -> None:
    """Note on a new record what the request claims about where it comes from."""
    for key, value in headers:
        if key == ON_BEHALF_HEADER.encode():
            claimed = claimed_principal(value)
            if claimed is not None:
                record.extra["via_principal"] = claimed
        elif key == HEALTH_CHECK_HEADER.encode() and value.strip() in {b"1", b"true"}:
            record.extra["health_check"] = True


def unrecorded(record: RequestRecord) -> bool:
    """Whether the history leaves this request out: a successful health check of a data-free endpoint."""
    return (bool(record.extra.get("health_check")) and record.method in {"GET", "HEAD"}
            and record.path in HEALTH_PATHS and 0 < record.status < 400)


def upstream_headers(record: RequestRecord | None) -> dict[str, str]:
    """What a router tells a deskml node about the request it forwards."""
    if record is None:
        return {}
    headers = {REQUEST_ID_HEADER: record.request_id}
    # A request that reached this router through another one keeps the first caller it was told of.
    caller = record.extra.get("via_principal") or record.principal_id
    if caller:
        headers[ON_BEHALF_HEADER] = encode_principal(str(caller))
    return headers
