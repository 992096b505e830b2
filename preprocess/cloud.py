"""What a genome browser needs from an object store that fsspec does not give: CORS rules, a one-HEAD
existence check, and read-only signed URLs (SigV4 on S3; on Azure a service SAS with the account key,
else a user-delegation SAS with Entra ID credentials).

The ArtifactStore calls these; nothing above the store branches on the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .records import Record

RULE_ID = "preprocess-genome-browser"  # S3 rules carry an ID; Azure's are recognised by their shape
METHODS = ("GET", "HEAD")
ALLOWED_HEADERS = ("Range",)
EXPOSED_HEADERS = ("Content-Range", "Content-Length", "Accept-Ranges", "ETag")
MAX_AGE = 3600


class CorsChange(Record):
    """What `cors` found and set: `rules` is the whole configuration after the change (or, for a dry
    run, the one it would write); `changed` is False when ours was already there as asked."""

    target: str
    rules: list[dict[str, Any]]
    changed: bool
    applied: bool


def check_origins(origins: Sequence[str]) -> list[str]:
    """Origins as a browser sends them (scheme://host[:port], no path), or `*` when named; else ValueError."""
    if not origins:
        raise ValueError("give at least one --allow-origin (e.g. https://igv.example.org)")
    out = []
    for origin in origins:
        if origin == "*":
            out.append(origin)
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username or "*" in origin:
            raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port] (no path), or '*' for any")
        out.append(origin.rstrip("/"))
    return sorted(set(out))


# -- CORS ----------------------------------------------------------------------------------------------
def s3_cors(fs: Any, bucket: str, origins: list[str], dry_run: bool) -> CorsChange:
    """Our rule (by its ID) on the bucket's CORS configuration, set to `origins`; other rules kept."""
    try:
        current = fs.call_s3("get_bucket_cors", Bucket=bucket).get("CORSRules", [])
    except OSError as exc:  # s3fs wraps botocore's ClientError; a bucket without rules answers this code
        if "(NoSuchCORSConfiguration)" not in str(exc):
            raise
        current = []
    ours = {"ID": RULE_ID, "AllowedOrigins": origins, "AllowedMethods": list(METHODS),
            "AllowedHeaders": list(ALLOWED_HEADERS), "ExposeHeaders": list(EXPOSED_HEADERS),
            "MaxAgeSeconds": MAX_AGE}
    others = [rule for rule in current if rule.get("ID") != RULE_ID]
    mine = [rule for rule in current if rule.get("ID") == RULE_ID]
    rules = others + [ours]
    changed = mine != [ours] or not _same_s3(mine[0], ours)
    if changed and not dry_run:
        fs.call_s3("put_bucket_cors", Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    return CorsChange(target=f"s3://{bucket}", rules=rules, changed=changed, applied=changed and not dry_run)


def _same_s3(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(sorted(map(str, a.get(k, []))) == sorted(map(str, b[k])) if isinstance(b[k], list)
               else a.get(k) == b[k] for k in b)


def azure_cors(fs: Any, origins: list[str], dry_run: bool) -> CorsChange:
    """Our rule on the account's blob service: one whose methods, allowed and exposed headers are ours
    is replaced; every other rule is kept, in order."""
    from azure.storage.blob import CorsRule
    from fsspec.asyn import sync

    service = fs.service_client
    current = sync(fs.loop, service.get_service_properties)["cors"] or []
    ours = CorsRule(list(origins), list(METHODS), allowed_headers=list(ALLOWED_HEADERS),
                    exposed_headers=list(EXPOSED_HEADERS), max_age_in_seconds=MAX_AGE)
    others = [rule for rule in current if not _ours_azure(rule)]
    mine = [rule for rule in current if _ours_azure(rule)]
    changed = len(mine) != 1 or _words(mine[0].allowed_origins) != _words(ours.allowed_origins) \
        or mine[0].max_age_in_seconds != MAX_AGE
    rules = others + [ours]
    if changed and not dry_run:
        sync(fs.loop, service.set_service_properties, cors=rules)
    return CorsChange(target=f"{service.url.rstrip('/')} (blob service)", rules=[_azure_dict(r) for r in rules],
                      changed=changed, applied=changed and not dry_run)


def _words(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return sorted(item.strip().lower() for item in items if item.strip())


def _ours_azure(rule: Any) -> bool:
    return (_words(rule.allowed_methods) == _words(list(METHODS))
            and _words(rule.allowed_headers) == _words(list(ALLOWED_HEADERS))
            and _words(rule.exposed_headers) == _words(list(EXPOSED_HEADERS)))


def _azure_dict(rule: Any) -> dict[str, Any]:
    def items(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    return {"AllowedOrigins": items(rule.allowed_origins), "AllowedMethods": items(rule.allowed_methods),
            "AllowedHeaders": items(rule.allowed_headers), "ExposeHeaders": items(rule.exposed_headers),
            "MaxAgeSeconds": rule.max_age_in_seconds}


# -- existence and signing -------------------------------------------------------------------------------
def head(fs: Any, protocol: str, path: str) -> int:
    """The size of the object at `path`, from one HEAD request; FileNotFoundError when it is absent.
    (fsspec's info() lists the prefix too when the HEAD finds nothing, to answer for a "folder".)"""
    bucket, _, key = path.partition("/")
    if protocol in ("s3", "s3a"):
        try:
            return int(fs.call_s3("head_object", Bucket=bucket, Key=key)["ContentLength"])
        except OSError as exc:  # s3fs turns a 404 into FileNotFoundError; a HEAD's 404 has no error code
            if isinstance(exc, FileNotFoundError) or "(404)" in str(exc):
                raise FileNotFoundError(path) from None
            raise
    if protocol in ("az", "abfs", "abfss"):
        from azure.core.exceptions import ResourceNotFoundError
        from fsspec.asyn import sync

        blob = fs.service_client.get_blob_client(bucket, key)
        try:
            return int(sync(fs.loop, blob.get_blob_properties).size)
        except ResourceNotFoundError:
            raise FileNotFoundError(path) from None
    return int(fs.size(path))


def sign_s3(fs: Any, path: str, expires: int) -> str:
    """A presigned GET with Signature Version 4 in every region (botocore presigns SigV2 where S3 still
    takes it unless told otherwise; the store's client is configured with s3v4, see ArtifactStore)."""
    return str(fs.sign(path, expiration=int(expires)))


def sign_azure(fs: Any, path: str, expires: int, delegation: bool = False) -> str:
    """A read-only SAS for one blob: a service SAS signed with the account key, or (with `delegation`,
    or when the credentials hold no key, as with Entra ID) a user-delegation SAS."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    from fsspec.asyn import sync

    container, _, blob = path.partition("/")
    account, key = _azure_account(fs)
    now = datetime.now(UTC)
    expiry = now + timedelta(seconds=int(expires))
    permission = BlobSasPermissions(read=True)
    if key and not delegation:
        token = generate_blob_sas(account, container, blob, account_key=key, permission=permission, expiry=expiry)
    else:
        start = now - timedelta(minutes=5)  # clocks differ a little; the key's own window allows it
        try:
            user_key = sync(fs.loop, fs.service_client.get_user_delegation_key, start, expiry)
        except Exception as exc:  # noqa: BLE001 - azure-core's HttpResponseError, whose text is pages long
            code = getattr(exc, "error_code", None) or type(exc).__name__
            code = getattr(code, "value", code)  # azure-core's StorageErrorCode enum: its wire name
            raise PermissionError(f"no user-delegation key for {path} ({code}): a user-delegation SAS needs "
                                  "Entra ID credentials (a token, not an account key or SAS) with the "
                                  "'generate user delegation key' permission on the account") from None
        token = generate_blob_sas(account, container, blob, user_delegation_key=user_key, permission=permission,
                                  expiry=expiry, start=start)
    url = fs.service_client.get_blob_client(container, blob).url
    return f"{url}?{token}"


def _azure_account(fs: Any) -> tuple[str, str | None]:
    """The account name and key the filesystem was given (a connection string or its options)."""
    if getattr(fs, "connection_string", None):
        from azure.core.utils import parse_connection_string

        args = parse_connection_string(fs.connection_string)  # keys lower-cased
        return str(args.get("accountname") or fs.service_client.account_name), args.get("accountkey")
    return str(fs.account_name or fs.service_client.account_name), fs.account_key
