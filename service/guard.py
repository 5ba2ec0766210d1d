"""What every request passes before the service reads it (an ASGI middleware).

- The API routes take JSON only (415 otherwise; a request with no body at all stands for
  ``{}``) and bodies of at most ``max_body_bytes`` (413 above it, counted as the body streams
  in, so a client that sends no length or a false one is cut off at the limit too).
- A body must be one JSON object whose keys are the route's fields: an unknown field, such
  as the typo ``sed`` for ``seed``, is a 400 that names it and lists the allowed ones.
- Every response says ``X-Content-Type-Options: nosniff``; the explorer's pages also carry a
  Content-Security-Policy that allows only the service's own scripts, styles and API, and
  the ``blob:`` images the page makes from its answers.

The OpenAPI document (``GET /docs.json``) is amended to say all of this: each request body
forbids other properties, a field that may be null says so (BentoML drops the ``null`` branch of
an optional field), the model's own rules are stated (its labels, code names and ranges, and
the combinations it refuses), and 413 and 415 are listed beside BentoML's own error answers.

Errors have the service's one shape, the one its OpenAPI schema declares:
``{"error": "<one line naming what is wrong>"}``. BentoML's own 4xx answers (a list holding one
such object, or a pydantic report with a ``detail`` list) are rewritten into it.
"""
from __future__ import annotations

import json

EXPLORER_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                "connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class RequestGuard:
    def __init__(self, app, fields: dict[str, set[str]], nullable: dict[str, set[str]] | None = None,
                 schemas: dict[str, dict] | None = None, max_body_bytes: int = 16_384,
                 explorer_path: str = "/explorer", docs_path: str = "/docs.json"):
        """``schemas[route]``: ``properties`` (field -> schema keywords to add) and ``forbidden``
        (body schemas a request must not match), for the rules of the model being served."""
        self.app, self.fields, self.max_body_bytes = app, fields, max_body_bytes
        self.nullable, self.schemas = nullable or {}, schemas or {}
        self.explorer_path, self.docs_path = explorer_path, docs_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        send = self._with_headers(send, scope["path"].startswith(self.explorer_path))
        if path == self.docs_path and scope["method"] == "GET":
            return await self.app(scope, receive, _rewrite_json(send, lambda status: status == 200, self.document))
        if path not in self.fields or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        no_body = media_type == "" and headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
        if no_body:  # `curl -X POST .../info`: no body is the empty object, sent on as JSON
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                          if k.lower() not in (b"content-type", b"content-length")]
                     + [(b"content-type", b"application/json"), (b"content-length", b"2")]}
        elif media_type != "application/json":
            return await _error(send, 415, f"Content-Type must be application/json, got {media_type or 'none'}")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _error(send, 413, f"body of {declared} bytes exceeds the limit of {self.max_body_bytes}")
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await _error(send, 413, f"body exceeds the limit of {self.max_body_bytes} bytes")
        send = _one_error_shape(send)
        if no_body:
            body = bytearray(b"{}")
        problem = self._check_fields(path, bytes(body))
        if problem:
            return await _error(send, 400, problem)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    def _check_fields(self, path: str, body: bytes) -> str | None:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            return f"body is not valid JSON ({exc})"
        if not isinstance(data, dict):
            return f"body must be a JSON object, got {type(data).__name__}"
        allowed = self.fields[path]
        unknown = sorted(set(data) - allowed)
        if unknown:
            return (f"{unknown[0]}: unknown field for {path}; allowed fields: "
                    f"{', '.join(sorted(allowed)) or 'none'}")
        return None

    def document(self, spec: dict) -> dict:
        """The OpenAPI document, amended to describe what this guard enforces."""
        for route, names in self.fields.items():
            post = (spec.get("paths") or {}).get(route, {}).get("post")
            if not post:
                continue
            for media in (post.get("requestBody") or {}).get("content", {}).values():
                schema = media.setdefault("schema", {})
                schema["additionalProperties"] = False
                properties = schema.get("properties", {})
                amend = self.schemas.get(route, {})
                for name, keywords in amend.get("properties", {}).items():
                    if name in properties:
                        properties[name].update(keywords)
                for name in self.nullable.get(route, ()):
                    if name in properties:
                        properties[name]["nullable"] = True
                        if "enum" in properties[name]:  # OpenAPI 3.0: an enum must list null itself
                            properties[name]["enum"] = [*properties[name]["enum"], None]
                if amend.get("forbidden"):
                    schema["allOf"] = [{"not": body} for body in amend["forbidden"]]
            responses = post.setdefault("responses", {})
            error = (responses.get("400") or {}).get("content") or {
                "application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
            responses["413"] = {"description": f"Body over {self.max_body_bytes} bytes", "content": error}
            responses["415"] = {"description": "Body not sent as application/json", "content": error}
        return spec

    def _with_headers(self, send, explorer: bool):
        async def sending(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options", b"content-security-policy")]
                headers.append((b"x-content-type-options", b"nosniff"))
                if explorer:
                    headers.append((b"content-security-policy", EXPLORER_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)
        return sending


def error_line(payload) -> str:
    """Any of BentoML's error bodies -> one line that names the fields at fault."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]
    if not isinstance(payload, dict):
        return str(payload)
    details = payload.get("detail")
    if isinstance(details, list) and details:
        parts = []
        for item in details:
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",)) if isinstance(item, dict) else ""
            message = item.get("msg", item) if isinstance(item, dict) else item
            parts.append(f"{where}: {message}" if where else str(message))
        return "; ".join(parts)
    return str(payload.get("error", payload))


def _one_error_line(payload) -> dict:
    return {"error": error_line(payload)}


def _one_error_shape(send):
    """Send a 4xx JSON answer as {"error": line}."""
    return _rewrite_json(send, lambda status: 400 <= status < 500, _one_error_line)


def _rewrite_json(send, matches, rewrite):
    """Hold a JSON answer whose status ``matches`` until its body is complete, then send
    ``rewrite(parsed body)`` instead."""
    held: dict = {}

    async def sending(message):
        if message["type"] == "http.response.start" and matches(message["status"]):
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                held.update(start=message, body=b"")
                return
        if message["type"] == "http.response.body" and held:
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            try:
                body = json.dumps(rewrite(json.loads(held["body"]))).encode()
            except ValueError:
                body = json.dumps(rewrite(held["body"].decode(errors="replace"))).encode()
            headers = [(k, v) for k, v in held["start"].get("headers", []) if k.lower() != b"content-length"]
            await send({**held["start"], "headers": headers + [(b"content-length", str(len(body)).encode())]})
            held.clear()
            return await send({"type": "http.response.body", "body": body})
        await send(message)
    return sending


async def _error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
