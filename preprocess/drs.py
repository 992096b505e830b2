"""Resolve drs://host/id to an access URL through the GA4GH DRS v1 API.

GET {scheme}://host/ga4gh/drs/v1/objects/{id}; take the first access method with an `access_url`,
or fetch one by `access_id` from .../objects/{id}/access/{access_id}. Headers the DRS server
returns with the URL (a bearer token, say) are sent with the download and never logged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from .config import SourceSettings
from .errors import InputError, SourceError

PREFERRED = ("https", "http", "s3", "gs", "az")


def resolve_drs(url: str, settings: SourceSettings) -> tuple[str, dict[str, str]]:
    """The access URL and headers for a drs:// URI; InputError when the object is unknown."""
    import requests

    parts = urlsplit(url)
    object_id = parts.path.lstrip("/")
    if not parts.netloc or not object_id:
        raise InputError(f"malformed DRS URI {url!r}: expected drs://host/object-id")
    base = f"{settings.drs_scheme}://{parts.netloc}/ga4gh/drs/v1/objects/{quote(object_id, safe='')}"
    obj = _get_json(requests, base, settings, url)
    methods = sorted(obj.get("access_methods") or [],
                     key=lambda m: PREFERRED.index(m.get("type")) if m.get("type") in PREFERRED else len(PREFERRED))
    for method in methods:
        access = method.get("access_url")
        if isinstance(access, dict) and access.get("url"):
            return access["url"], dict(access.get("headers") or {})
        if method.get("access_id"):
            found = _get_json(requests, f"{base}/access/{quote(str(method['access_id']), safe='')}", settings, url)
            if found.get("url"):
                return found["url"], dict(found.get("headers") or {})
    raise InputError(f"DRS object {url} offers no access method this package can use")


def _get_json(requests: Any, endpoint: str, settings: SourceSettings, shown: str) -> dict[str, Any]:
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
