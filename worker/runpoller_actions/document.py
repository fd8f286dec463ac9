"""Document-level checks: which OpenAPI, which server, which operations.

Everything here is about the spec as a whole. A problem found here stops the conversion
(there is nothing sensible to convert), so all such problems are collected and reported
together, one message each.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runpoller_actions import pointer
from runpoller_actions.diagnostics import SpecError

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VERSION = re.compile(r"^3\.(\d+)(\.\d+)?(-.+)?$")
_VARIABLE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class SpecDocument:
    """The parts of a checked spec the converter needs."""

    root: Mapping[str, Any]
    version: str
    title: str
    server_url: str
    strict_default: bool | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawOperation:
    """One method under one path, before conversion."""

    method: str
    path: str
    node: Any
    path_item: Mapping[str, Any]
    pointer: str

    @property
    def where(self) -> str:
        """`GET /pets/{id}`: how people name an operation."""
        return f"{self.method.upper()} {self.path}"


def x_strict(node: Any) -> bool | None:
    """The `x-strict` flag of a node: True/False, or None when absent or not a boolean."""
    value = node.get("x-strict") if isinstance(node, Mapping) else None
    return value if isinstance(value, bool) else None


def server_url(servers: Any, where: str) -> str:
    """The absolute base URL from `servers[0]`, variables filled with their defaults."""
    if not isinstance(servers, list) or not servers:
        raise ValueError(
            f"no servers: {where} needs a 'servers' entry with an absolute http(s) URL, "
            "e.g. servers: [{url: 'https://api.example.com'}]"
        )
    first = servers[0]
    url = first.get("url") if isinstance(first, Mapping) else None
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: servers[0] has no 'url'")
    variables = first.get("variables")
    variables = variables if isinstance(variables, Mapping) else {}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        spec = variables.get(name)
        default = spec.get("default") if isinstance(spec, Mapping) else None
        if not isinstance(default, str | int | float) or isinstance(default, bool):
            raise ValueError(
                f"{where}: server URL '{url}' uses variable '{name}' with no default value"
            )
        return str(default)

    resolved = _VARIABLE.sub(fill, url.strip())
    parts = urlsplit(resolved)
    if not parts.scheme or not parts.netloc:
        raise ValueError(
            f"{where}: server URL '{url}' is relative; the tools need an absolute "
            "http(s) URL to call (e.g. https://api.example.com/v1)"
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{where}: server URL '{url}' must use http or https")
    return resolved.rstrip("/")


def private_host_warning(url: str) -> str | None:
    """A warning when the server is an IP literal a tool should not reach from a worker.

    LibreChat's test `maliciousSpec_metadata` points at 169.254.169.254 (the cloud metadata
    service): whoever runs the tool's calls must not follow such a spec blindly.
    """
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_link_local or address.is_loopback or address.is_private:
        kind = "link-local" if address.is_link_local else "private or loopback"
        return (
            f"server URL '{url}' is a {kind} address ({host}); an executor should refuse "
            "to call it unless that is intended"
        )
    return None


def _version(root: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    """(version, errors, warnings) for the `openapi` field."""
    if "swagger" in root:
        raise SpecError(
            [
                f"this is a Swagger {root.get('swagger')} document; only OpenAPI 3.0 and 3.1 "
                "are supported. Convert it to OpenAPI 3 first (for example with "
                "swagger2openapi, or the Swagger Editor's 'Convert to OpenAPI 3')"
            ]
        )
    raw = root.get("openapi")
    if raw is None:
        return "", ["not an OpenAPI document: there is no 'openapi' version field"], []
    version = str(raw)
    match = _VERSION.match(version)
    if match is None or int(match.group(1)) > 2:
        return version, [f"OpenAPI version '{version}' is not supported (3.0.x and 3.1.x are)"], []
    if int(match.group(1)) == 2:
        return version, [], [f"OpenAPI {version} is read as 3.1"]
    return version, [], []


def _has_operations(paths: Mapping[str, Any]) -> bool:
    return any(
        isinstance(item, Mapping) and (any(m in item for m in HTTP_METHODS) or "$ref" in item)
        for item in paths.values()
    )


def open_document(root: Mapping[str, Any]) -> SpecDocument:
    """Check the document-level rules; SpecError lists every problem found."""
    version, errors, warnings = _version(root)
    try:
        url = server_url(root.get("servers"), "the spec")
    except ValueError as exc:
        url = ""
        errors.append(str(exc))
    paths = root.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        hint = " (it only has webhooks)" if root.get("webhooks") else ""
        errors.append(f"no paths: the spec defines no operations{hint}")
    elif not _has_operations(paths):
        errors.append("no operations: no path in 'paths' has a get/put/post/delete/... entry")
    warning = private_host_warning(url) if url else None
    if warning:
        warnings.append(warning)
    strict_default = x_strict(root)
    if "x-strict" in root and strict_default is None:
        warnings.append("root 'x-strict' is not true or false; ignored")
    if errors:
        raise SpecError(errors)
    info = root.get("info")
    title = info.get("title") if isinstance(info, Mapping) else None
    return SpecDocument(
        root=root,
        version=version,
        title=title if isinstance(title, str) else "",
        server_url=url,
        strict_default=strict_default,
        warnings=tuple(warnings),
    )


def iter_operations(doc: SpecDocument) -> Iterator[RawOperation | SpecError]:
    """Every operation in document order; a SpecError for a path item that cannot be read."""
    paths = doc.root.get("paths")
    assert isinstance(paths, Mapping)
    for path, raw_item in paths.items():
        item_pointer = pointer.join("#/paths", path)
        item = raw_item
        if isinstance(item, Mapping) and "$ref" in item:
            ref = item["$ref"]
            try:
                item = pointer.resolve(doc.root, ref) if isinstance(ref, str) else None
            except LookupError:
                item = None
            if not isinstance(item, Mapping):
                yield SpecError(
                    [f"path '{path}': unresolvable $ref '{ref}' (used at {item_pointer})"]
                )
                continue
        if not isinstance(item, Mapping):
            continue
        for method, node in item.items():
            if method in HTTP_METHODS:
                yield RawOperation(
                    method=method,
                    path=str(path),
                    node=node,
                    path_item=item,
                    pointer=pointer.join(item_pointer, method),
                )
