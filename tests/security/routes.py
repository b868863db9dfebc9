"""Every route the project serves, found by walking the URL resolver and the API's OpenAPI
schema, so a route added later is covered by the CSRF and owner-isolation tests (or makes
them fail until someone says how it is protected)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

UNSAFE_METHODS = ("post", "put", "patch", "delete")
CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class HtmlRoute:
    route: str  # "g/<uuid:generation_id>/"
    name: str | None  # "generation_detail", namespaced as "accounts:sign_in"
    params: tuple[str, ...]

    def url(self, **values: object) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group("name")
            if name in values:
                return str(values[name])
            return {"uuid": "00000000-0000-4000-8000-000000000000", "int": "1"}.get(match.group("kind") or "", "1")

        return "/" + CONVERTER.sub(fill, self.route)


def html_routes() -> list[HtmlRoute]:
    """Every path()-style route outside /api/ (regex catch-alls are left out)."""
    found: list[HtmlRoute] = []

    def walk(patterns, prefix: str, namespace: str) -> None:  # type: ignore[no-untyped-def]
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if not isinstance(pattern.pattern, RoutePattern):
                    continue
                inner_namespace = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, prefix + str(pattern.pattern), inner_namespace)
            elif isinstance(pattern, URLPattern) and isinstance(pattern.pattern, RoutePattern):
                route = prefix + str(pattern.pattern)
                if route.startswith("api/"):
                    continue
                name = f"{namespace}{pattern.name}" if pattern.name else None
                params = tuple(match.group("name") for match in CONVERTER.finditer(route))
                found.append(HtmlRoute(route=route, name=name, params=params))

    walk(get_resolver().url_patterns, "", "")
    return found


@dataclass(frozen=True)
class ApiOperation:
    method: str  # "post"
    path: str  # "/api/generations/{generation_id}/cancel"
    authenticated: bool

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    def url(self, **values: object) -> str:
        return re.sub(r"{(\w+)}", lambda match: str(values[match.group(1)]), self.path)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def api_operations() -> list[ApiOperation]:
    from stefna.api import api

    schema = api.get_openapi_schema()
    return [
        ApiOperation(method=method, path=path, authenticated=bool(operation.get("security")))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]
