"""The API description as one HTML page made here from the OpenAPI document: no script, nothing from elsewhere.

FastAPI's ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN without integrity checks, so whoever
serves (or intercepts) that CDN runs script in a page that holds the user's key. This page is plain HTML: each
route with its summary, parameters, body fields and answers; the machine-readable document stays at
``/openapi.json`` for tools (and for Swagger UI or ReDoc run elsewhere).
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_docs"]

_METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return doc.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})
    return schema


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return ""
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _fields(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    target = _resolve(doc, schema)
    required = set(target.get("required", []))
    rows = []
    for name, prop in target.get("properties", {}).items():
        default = "" if "default" not in prop else f"<code>{escape(repr(prop['default']))}</code>"
        rows.append((f"<code>{escape(name)}</code>" + (" (required)" if name in required else ""),
                     escape(_schema_name(prop)), default, escape(prop.get("description", ""))))
    return _table(("field", "type", "default", "meaning"), rows)


def _operation(doc: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> str:
    parts = [f"<h3><code>{escape(method.upper())} {escape(path)}</code></h3>"]
    if op.get("summary"):
        parts.append(f"<p><strong>{escape(op['summary'])}</strong></p>")
    for paragraph in (op.get("description") or "").split("\n\n"):
        if paragraph.strip():
            parts.append(f"<p>{escape(paragraph.strip())}</p>")
    params = [(f"<code>{escape(p['name'])}</code>", escape(p.get("in", "")), "yes" if p.get("required") else "",
               escape(_schema_name(p.get("schema", {}))), escape(p.get("description", "")))
              for p in op.get("parameters", [])]
    if params:
        parts.append("<h4>Parameters</h4>" + _table(("name", "in", "required", "type", "meaning"), params))
    for media, content in op.get("requestBody", {}).get("content", {}).items():
        schema = content.get("schema", {})
        parts.append(f"<h4>Body ({escape(media)}): {escape(_schema_name(schema))}</h4>" + _fields(doc, schema))
    answers = [(f"<code>{escape(code)}</code>", escape(r.get("description", "")),
                escape(", ".join(r.get("content", {}))))
               for code, r in op.get("responses", {}).items()]
    if answers:
        parts.append("<h4>Answers</h4>" + _table(("status", "meaning", "content"), answers))
    return "<section>" + "".join(parts) + "</section>"


def render_docs(doc: dict[str, Any]) -> str:
    """The page for an OpenAPI document (every text escaped)."""
    info = doc.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault((op.get("tags") or ["Other"])[0], []).append(_operation(doc, method, path, op))
    toc = "".join(f'<li><a href="#{escape(tag.lower().replace(" ", "-"))}">{escape(tag)}</a></li>' for tag in by_tag)
    groups = "".join(f'<h2 id="{escape(tag.lower().replace(" ", "-"))}">{escape(tag)}</h2>' + "".join(ops)
                     for tag, ops in by_tag.items())
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f'<link rel="icon" href="data:,"></head><body><h1>{title}</h1>'
            f"<p>{escape(info.get('description', ''))}</p>"
            f'<p>Machine-readable: <a href="openapi.json">openapi.json</a> (OpenAPI {escape(doc.get("openapi", ""))}). '
            f"Routes other than <code>/ping</code>, <code>/health</code> and <code>/</code> need "
            f"<code>Authorization: Bearer &lt;key&gt;</code> when the server has keys.</p>"
            f"<nav><ul>{toc}</ul></nav>{groups}</body></html>")
