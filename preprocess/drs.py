"""Resolve drs://host/id to an access URL through the GA4GH DRS v1 API.

GET {scheme}://host/ga4gh/drs/v1/objects/{id}; take the first access method with an `access_url`,
or fetch one by `access_id` from .../objects/{id}/access/{access_id}. Headers the DRS server
returns with the URL (a bearer token, say) are sent with the download and never logged.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from .errors import InputError, SourceError
from .urls import redact


class DrsSettings(Protocol):
    """What a DRS resolution reads of the source settings (config.SourceSettings has them)."""

    @property
    def timeout(self) -> float: ...
    @property
    def drs_scheme(self) -> str: ...
    @property
    def drs_access_schemes(self) -> list[str]: ...


PREFERRED = ("https", "http", "s3", "gs", "az")


def resolve_drs(url: str, settings: DrsSettings) -> tuple[str, dict[str, str]]:
    """The access URL and headers for a drs:// URI; InputError when the object is unknown."""
    import requests

    parts = urlsplit(url)
    shown = redact(url)
    object_id = parts.path.lstrip("/")
    if not parts.netloc or not object_id:
        raise InputError(f"malformed DRS URI {shown!r}: expected drs://host/object-id")
    base = f"{settings.drs_scheme}://{parts.netloc}/ga4gh/drs/v1/objects/{quote(object_id, safe='')}"
    obj = _get_json(requests, base, settings, shown)
    methods = sorted(obj.get("access_methods") or [],
                     key=lambda m: PREFERRED.index(m.get("type")) if m.get("type") in PREFERRED else len(PREFERRED))
    allowed = {scheme.lower() for scheme in settings.drs_access_schemes} | {settings.drs_scheme}
    refused: list[str] = []
    for method in methods:
        access = method.get("access_url")
        if isinstance(access, dict) and access.get("url"):
            found = access
        elif method.get("access_id"):
            found = _get_json(requests, f"{base}/access/{quote(str(method['access_id']), safe='')}", settings, shown)
        else:
            continue
        target = found.get("url")
        if not isinstance(target, str) or not target:
            continue
        scheme = urlsplit(target).scheme.lower()
        if scheme not in allowed:  # a DRS answer must never make a worker read its own files
            refused.append(scheme or "a bare path")
            continue
        return target, {str(k): str(v) for k, v in dict(found.get("headers") or {}).items()}
    if refused:
        raise InputError(f"DRS object {shown} answered with access URL scheme(s) {', '.join(sorted(set(refused)))}, "
                         f"which source.drs-access-schemes does not allow ({', '.join(sorted(allowed))})")
    raise InputError(f"DRS object {shown} offers no access method this package can use")


def _get_json(requests: Any, endpoint: str, settings: DrsSettings, shown: str) -> dict[str, Any]:
    response = requests.get(endpoint, timeout=settings.timeout)
    if response.status_code == 404:
        raise InputError(f"DRS object {shown} not found")
    if response.status_code in (401, 403):
        raise SourceError(f"DRS server refused access to {shown} ({response.status_code})")
    response.raise_for_status()  # 5xx: an HTTPError with .response.status_code, retried upstream
    body = response.json()
    if not isinstance(body, dict):
        raise SourceError(f"DRS server answered {shown} with something other than a JSON object")
    return body
