"""Request bodies in and responses out: JSON, YAML and protobuf in, JSON out.

kubectl sends JSON for most commands, YAML from some clients, and protobuf for
`kubectl create <generator>` (KUBECTL-WIRE.md §2); a missing Content-Type means
JSON. Replies are always JSON, which every client accepts.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from nanokube.api import errors

PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_CT = "application/json"

PATCH_TYPES = frozenset(
    {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    }
)


def media_type(request: web.Request) -> str:
    ct = request.headers.get("Content-Type", "")
    return ct.split(";", 1)[0].strip().lower() or JSON_CT


def decode_body(raw: bytes, content_type: str) -> Any:
    """Parse a request body; malformed input is a 400 that names the problem."""
    if content_type == PROTOBUF:
        from nanokube.api import protobuf  # imported on first use: start-up stays fast

        return protobuf.decode(raw)
    if not raw.strip():
        raise errors.BadRequest("the body of the request was empty")
    if content_type in ("application/yaml", "application/apply-patch+yaml", "text/yaml"):
        return _load_yaml(raw)
    if content_type.endswith("json") or content_type == "*/*":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            if content_type == JSON_CT:
                # YAML is a superset; upstream's JSON decoder also accepts it.
                try:
                    return _load_yaml(raw)
                except errors.BadRequest:
                    pass
            raise errors.BadRequest(
                f"the body of the request was in an unknown format: {e}"
            ) from None
    raise errors.UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, {PROTOBUF}"
    )


def _load_yaml(raw: bytes) -> Any:
    import yaml  # imported on first use: start-up stays fast

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(raw, Loader=loader)
    except yaml.YAMLError as e:
        raise errors.BadRequest(f"error converting YAML to JSON: {e}".replace("\n", " ")) from None


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = None
    if warnings:
        headers = [("Warning", f'299 - "{_quote(w)}"') for w in warnings]
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type=JSON_CT, headers=_multi(headers)
    )


def _quote(text: str) -> str:
    """A warning's text as an RFC 7230 quoted-string body."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _multi(headers: list[tuple[str, str]] | None) -> CIMultiDict[str] | None:
    return CIMultiDict(headers) if headers else None


def status_response(err: errors.StatusError) -> web.Response:
    resp = json_response(err.to_status(), status=err.code)
    if err.retry_after:
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp
