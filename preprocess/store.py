"""ArtifactStore: content-addressed artifacts on any fsspec filesystem, committed manifest-last.

Layout: <root>/<layout>/<key[:2]>/<key>/<artifact names…> and manifest.json, written last.
A key's artifacts are visible only through its manifest; bytes without one are debris for `gc`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigError, SignatureError, StoreError, scrub
from .keys import LAYOUT, is_key
from .model import Artifact, Manifest, ValidationError
from .signing import public_key, sign, signature_name, verifies
from .urls import Url

MANIFEST = "manifest.json"
CHUNK = 8 * 2**20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_INSTALL_HINT = {"s3": "s3fs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "gs": "gcsfs", "gcs": "gcsfs"}


def _refuse_dot_segments(shown: Url, root: str) -> None:
    """An object-store prefix with `.` or `..` segments (or their %-encoded forms) is refused: stores
    and tools disagree on whether they climb, so the store would not be where it says."""
    from urllib.parse import unquote

    segments = unquote(unquote(root)).replace("\\", "/").split("/")
    if any(segment in (".", "..") for segment in segments):
        raise ConfigError(f"store {shown}: '.' and '..' are not allowed in an object store's prefix")


def _fsync(path: str) -> None:
    """Flush a file's (or a folder's entries') writes to disk, so a crash cannot keep a name without its bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _renamed(source: Path, target: str) -> bool:
    """Move `source` to `target` when both are on one filesystem (no copy); False when they are not."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


class Conflict(Exception):
    """A conditional write (`put_if` with a tag) found the object changed or gone since it was read."""


@dataclass(frozen=True)
class Versioned:
    """An object's bytes, the tag a conditional write names it by (its ETag on S3 and Azure, the
    sha256 of its bytes locally), and when the store last wrote it (the store's own clock)."""

    data: bytes
    tag: str
    modified: datetime


def _with_sigv4(scheme: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """S3 options with Signature Version 4 for every request and presigned URL: botocore otherwise
    presigns with SigV2 in regions that still take it (us-east-1), which KMS-encrypted objects refuse."""
    if scheme not in ("s3", "s3a"):
        return dict(options)
    config = {**dict(options.get("config_kwargs") or {}), "signature_version": "s3v4"}
    return {**options, "config_kwargs": config}


class StoredFile(NamedTuple):
    """One file a listing returned: its fsspec path, size, and last modification (None: not known)."""

    path: str
    size: int
    modified: datetime | None


def modified_time(info: Mapping[str, Any]) -> datetime | None:
    """The modification time in a listing or info entry, whichever name its backend gives it."""
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


class ArtifactStore:
    """The store at `url` (a local path, file://, s3://, az://, abfs://, gs://, memory://).

    `url` is kept redacted (no userinfo, no query string): it appears in messages and reports; the
    storage options go to fsspec and are not kept here.
    """

    def __init__(self, url: str | Url, storage_options: Mapping[str, Any] | None = None,
                 verify: str = "sha256", signing_key: str | None = None, verify_key: str | None = None) -> None:
        self.verify = verify  # "sha256": re-read uploads and compare; "size": compare sizes only
        self.signing_key = signing_key  # the PATH of an Ed25519 private key PEM: each manifest is signed
        self.verifier = public_key(verify_key) if verify_key else None  # each manifest read is checked
        shown = Url(url)
        url = shown.reveal()
        scheme = url.split("://", 1)[0] if "://" in url else "file"
        self.protocol = scheme
        try:
            if scheme == "file":
                path = url[len("file://"):] if url.startswith("file://") else url
                root = os.path.abspath(os.path.expanduser(path))
                self._fs: Any = None  # fsspec's, made when first needed: a build and a lookup need none
            else:
                import fsspec

                self._fs, root = fsspec.url_to_fs(url, **_with_sigv4(scheme, storage_options or {}))
        except ImportError as exc:
            package = _INSTALL_HINT.get(scheme, scheme)
            raise ConfigError(f"store {shown}: install {package} to use {scheme}:// stores ({exc})") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"store {shown}: {scrub(str(exc))}") from None
        if scheme != "file":
            _refuse_dot_segments(shown, root)
        self.root = root.rstrip("/")
        self.url = str(shown)
        self.option_names = sorted(storage_options or {})  # for run records: which options, never their values
        self.local = scheme == "file"

    @property
    def fs(self) -> Any:
        """The store's fsspec filesystem. A local store opens it when a call first needs it: the
        lookups and commits of a build go through the os module, and importing fsspec costs 50 ms."""
        if self._fs is None:
            import fsspec

            self._fs = fsspec.filesystem("file")
        return self._fs

    def _read_small(self, path: str) -> bytes:
        """A whole small file (a manifest, a signature): one GET on an object store; FileNotFoundError
        when it is not there."""
        if self.local:
            with open(path, "rb") as stream:
                return stream.read()
        # s3fs asks for the size (a HEAD) before a whole-object read, to split large ones: one GET instead
        single = {"max_concurrency": 1} if self.protocol in ("s3", "s3a") else {}
        return bytes(self.fs.cat_file(path, **single))

    # -- naming -------------------------------------------------------------------------------------
    def key_dir(self, key: str) -> str:
        if not is_key(key):
            raise StoreError(f"not a derivation key: {key!r}")
        return f"{self.root}/{LAYOUT}/{key[:2]}/{key}"

    def path(self, key: str, name: str) -> str:
        if not _NAME.match(name) or ".." in name:
            raise StoreError(f"refusing artifact name {name!r}: only letters, digits, '.', '_' and '-'")
        return f"{self.key_dir(key)}/{name}"

    def uri(self, key: str, name: str) -> str:
        """An absolute URI any tool can open: a path for a local store, scheme://… otherwise."""
        path = self.path(key, name)
        if self.local:
            return path
        return f"{self.protocol}://{path.lstrip('/')}"  # the scheme the user gave (az://, not abfs://)

    # -- reading ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Fail early with a ConfigError when the store cannot be used (no bucket, not writable)."""
        try:
            if self.local:
                os.makedirs(self.root, exist_ok=True)
                if not os.access(self.root, os.W_OK):
                    raise ConfigError(f"store {self.url}: {self.root} is not writable")
                if self.signing_key:
                    sign(self.signing_key, b"")  # a bad key fails here, not at the first commit
                return
            if self.signing_key:
                sign(self.signing_key, b"")  # a bad key fails here, not at the first commit
            top = self.root.split("/", 1)[0]
            try:
                self.fs.info(top)  # not exists(): that answers False for a bad option or refused credential
            except FileNotFoundError:
                raise ConfigError(f"store {self.url}: bucket or container {top!r} does not exist") from None
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure here is a configuration problem
            raise ConfigError(f"store {self.url}: cannot be reached: {type(exc).__name__}: {scrub(str(exc))}") from None

    def create_bucket(self) -> bool:
        """Create the bucket or container the store lives in (a local store: its folder) when it does
        not exist; True when this call created it. Credentials that may not create one: ConfigError."""
        top = self.root if self.local else self.root.split("/", 1)[0]
        try:
            self.fs.info(top)
            return False
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - check() names the real problem (refused credential, no route)
            return False
        try:
            self.fs.mkdir(top)
            self.fs.invalidate_cache()
        except Exception as exc:  # noqa: BLE001 - any backend failure here is a configuration problem
            raise ConfigError(f"store {self.url}: cannot create bucket or container {top!r}: "
                              f"{type(exc).__name__}: {scrub(str(exc))}") from None
        return True

    def lookup(self, key: str) -> Manifest | None:
        """The committed manifest of `key`, or None when nothing is committed there; with a verify
        key, a StoreError when its signature is missing or does not verify."""
        found = self.lookup_signed(key)
        return None if found is None else found[0]

    def lookup_signed(self, key: str) -> tuple[Manifest, bytes, bytes | None] | None:
        """lookup(), with the manifest's bytes and its signature (None when it has none)."""
        path = self.path(key, MANIFEST)
        try:
            data = self._read_small(path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"reading {self.uri(key, MANIFEST)}: {type(exc).__name__}: {exc}") from exc
        signature = self._signature(key, data)
        try:
            manifest = Manifest.from_json(data)
        except ValidationError as exc:  # its reasons only: the file may be anything, a secret included
            raise StoreError(f"{self.uri(key, MANIFEST)} is not a valid manifest: {exc}") from None
        if manifest.key != key:  # a copied or forged manifest must not make one key serve another's bytes
            raise StoreError(f"{self.uri(key, MANIFEST)} claims key {manifest.key[:80]!r}, not the key of its folder")
        return manifest, data, signature

    def _signature(self, key: str, body: bytes) -> bytes | None:
        """The signature beside these manifest bytes (None when there is none); with a verify key,
        a StoreError naming the manifest when it is missing or does not verify."""
        name = signature_name(body)
        try:
            signature = self._read_small(self.path(key, name))
        except FileNotFoundError:
            signature = None
        except Exception as exc:
            raise StoreError(f"reading {self.uri(key, name)}: {type(exc).__name__}: {exc}") from exc
        if self.verifier is None:
            return signature
        if signature is None:
            raise SignatureError(f"{self.uri(key, MANIFEST)} has no signature ({name} is missing: unsigned, or the "
                             "manifest was changed after signing) and store.verify-key is set")
        if not verifies(self.verifier, body, signature):
            raise SignatureError(f"{self.uri(key, MANIFEST)}: its signature {name} does not verify with "
                             "store.verify-key (the manifest was changed, or signed with another key)")
        return signature

    def lookup_many(self, keys: Iterable[str]) -> dict[str, Manifest | None | StoreError]:
        """lookup() for many keys, concurrently on object stores, so a cached catalogue of thousands
        of files costs a few round trips' time rather than one per file. A key whose manifest cannot
        be read maps to its StoreError, so one bad key does not stop the others."""
        def one(key: str) -> Manifest | None | StoreError:
            try:
                return self.lookup(key)
            except StoreError as exc:
                return exc

        unique = list(dict.fromkeys(keys))
        if not self.over_network or len(unique) < 2:
            return {key: one(key) for key in unique}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(32, len(unique))) as pool:
            return dict(zip(unique, pool.map(one, unique), strict=True))

    def artifact_uris(self, manifest: Manifest) -> dict[str, str]:
        return {art.kind: self.uri(manifest.key, art.name) for art in manifest.artifacts}

    def location(self, path: str) -> str:
        """A path of this store's filesystem as the user names it: a local path, else scheme://…"""
        return path if self.local else f"{self.protocol}://{path.lstrip('/')}"

    def list_files(self, prefix: str) -> list[StoredFile]:
        """Every file under `prefix` with its size and age: one request per thousand names on S3."""
        if self.local:
            out = []
            for folder, _, names in os.walk(prefix):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        stat = os.stat(path)
                    except FileNotFoundError:
                        continue
                    out.append(StoredFile(path, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
            return out
        if self.protocol in ("s3", "s3a"):
            bucket, _, key_prefix = prefix.partition("/")
            out, token = [], None
            while True:
                page = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key_prefix,
                                       **({"ContinuationToken": token} if token else {}))
                out.extend(StoredFile(f"{bucket}/{obj['Key']}", int(obj["Size"]), modified_time(obj))
                           for obj in page.get("Contents", []))
                if not page.get("IsTruncated"):
                    return out
                token = page["NextContinuationToken"]
        self.fs.invalidate_cache(prefix.rstrip("/"))
        try:
            found = self.fs.find(prefix.rstrip("/"), detail=True)
        except FileNotFoundError:
            return []
        return [StoredFile(path, int(info.get("size") or 0), modified_time(info)) for path, info in found.items()
                if info.get("type") != "directory"]

    def key_folders(self) -> dict[str, dict[str, StoredFile]]:
        """Key -> name -> file, for every key folder of the layout (committed or not), from one listing;
        temp files of a commit in progress are left out."""
        base = f"{self.root}/{LAYOUT}/"
        if self.local and not os.path.isdir(base):
            return {}
        found: dict[str, dict[str, StoredFile]] = {}
        for entry in self.list_files(base):
            parts = entry.path.rsplit("/", 2)
            if len(parts) == 3 and is_key(parts[1]) and not parts[2].startswith(".") and not parts[2].endswith(".tmp"):
                found.setdefault(parts[1], {})[parts[2]] = entry
        return found

    def keys(self) -> Iterator[str]:
        """Every key with a committed manifest."""
        base = f"{self.root}/{LAYOUT}"
        for path in self.fs.glob(f"{base}/*/*/{MANIFEST}"):
            key = path.rstrip("/").split("/")[-2]
            if is_key(key):
                yield key

    def sign(self, uri: str, expires: int = 3600, delegation: bool = False) -> str:
        """A URL a browser (IGV, Gosling) can GET by range without credentials: presigned S3 (SigV4),
        Azure SAS (`delegation`: a user-delegation SAS even when an account key is configured).

        Only what exists is signed: one HEAD first, and a StoreError naming the object when it is
        absent. A local path is returned as a file:// URL: there is nothing to sign.
        """
        from . import cloud

        if self.local:
            path = os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri)
            if not os.path.isfile(path):
                raise StoreError(f"{path}: no such file")
            return "file://" + path
        path = self.fs._strip_protocol(uri)
        if not path.startswith(self.root + "/"):
            raise StoreError(f"{uri} is not in the store {self.url}")
        shown = f"{self.protocol}://{path}"
        try:
            cloud.head(self.fs, self.protocol, path)
        except FileNotFoundError:
            raise StoreError(f"{shown}: no such object in the store (nothing signed)") from None
        except Exception as exc:
            raise StoreError(f"{shown}: cannot be checked: {type(exc).__name__}: {scrub(str(exc))}") from None
        try:
            if self.protocol in ("s3", "s3a"):
                return cloud.sign_s3(self.fs, path, expires)
            if self.protocol in ("az", "abfs", "abfss"):
                return cloud.sign_azure(self.fs, path, expires, delegation)
            return str(self.fs.sign(path, expiration=int(expires)))
        except NotImplementedError:
            raise StoreError(f"{self.protocol}:// stores cannot sign URLs") from None
        except Exception as exc:
            raise StoreError(f"signing {shown}: {type(exc).__name__}: {scrub(str(exc))}") from None

    def set_cors(self, origins: list[str], dry_run: bool = False) -> Any:
        """Set (or with `dry_run` show) the CORS rule a genome-browser page on `origins` needs: on the
        S3 bucket, or on the Azure account's blob service. Returns a cloud.CorsChange."""
        from . import cloud

        try:
            if self.protocol in ("s3", "s3a"):
                return cloud.s3_cors(self.fs, self.root.split("/", 1)[0], origins, dry_run)
            if self.protocol in ("az", "abfs", "abfss"):
                return cloud.azure_cors(self.fs, origins, dry_run)
        except Exception as exc:
            raise StoreError(f"CORS rules of {self.url}: {type(exc).__name__}: {scrub(str(exc))}") from None
        raise ConfigError(f"store {self.url}: CORS rules apply to s3:// and az:// stores only")

    def read_range(self, key: str, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an artifact, as a genome browser reads BAM or BGZF by range."""
        return bytes(self.fs.cat_file(self.path(key, name), start=start, end=end))

    # -- the engine's own files (run records, leases, split parts), read and listed by path --------------
    @property
    def over_network(self) -> bool:
        """True for an object store, where each read or write is a request: callers send many at once
        and favour fewer bytes over less CPU. False for a local disk."""
        return not self.local

    def exists(self, path: str) -> bool:
        """Whether a file of this store is there."""
        return bool(self.fs.exists(path))

    def read_bytes(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """A file's bytes (or bytes [start, end)); FileNotFoundError when it is not there."""
        return bytes(self.fs.cat_file(path, start=start, end=end))

    def read_uri(self, uri: str) -> bytes:
        """A file's bytes by its URI as the user names it (scheme://bucket/…), on this store's filesystem:
        a reference beside the store's artifacts, say."""
        return self.read_bytes(self.fs._strip_protocol(uri))

    def read_json(self, path: str) -> Any:
        """A small JSON file's content; FileNotFoundError when absent, ValueError when not JSON."""
        return json.loads(self.read_bytes(path))

    def read_many(self, paths: list[str]) -> dict[str, Any]:
        """Path -> bytes for many small files in few round trips; an unreadable one maps to its exception."""
        return dict(self.fs.cat(paths, on_error="return")) if paths else {}

    def names_in(self, folder: str) -> list[str]:
        """The names in `folder`, listed afresh (no cached listing); [] when it does not exist."""
        try:
            if self.local:
                return os.listdir(folder)
            self.fs.invalidate_cache(folder)
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def download(self, path: str, target: Path) -> str:
        """Copy a stored file to the local `target`; return its sha256."""
        digest = hashlib.sha256()
        with self.fs.open(path, "rb", block_size=CHUNK) as stream, open(target, "wb") as out:
            while block := stream.read(CHUNK):
                digest.update(block)
                out.write(block)
        return digest.hexdigest()

    def local_copy(self, path: str, target: Path) -> Path:
        """A stored file as a local file: its own path in a local store, else downloaded to `target`."""
        if self.local:
            return Path(path)
        self.fs.get_file(path, str(target))
        return target

    def stored_sha256(self, path: str, size: int) -> str:
        """sha256 of a stored file whose size a listing gave: ranged reads on object stores, so no
        request asks for the size again."""
        if self.local:
            with open(path, "rb") as stream:
                return hashlib.file_digest(stream, "sha256").hexdigest()
        digest = hashlib.sha256()
        for start in range(0, size, CHUNK):
            digest.update(self.read_bytes(path, start=start, end=min(start + CHUNK, size)))
        return digest.hexdigest()

    def list_keys(self, keys: list[str], by: str = "keys") -> dict[str, dict[str, int]]:
        """Name -> size of the files under each key folder that exists: one listing per key folder
        (`by="keys"`) or per `<layout>/<xx>/` shard the keys fall in (`by="shards"`), paginated, and
        concurrently on object stores. The one key lister: reindex, status and gc plan from it."""
        base = f"{self.root}/{LAYOUT}"
        if by == "keys":
            prefixes = [f"{base}/{key[:2]}/{key}/" for key in keys]
        else:
            prefixes = sorted({f"{base}/{key[:2]}/" for key in keys})
        if self.local or len(prefixes) < 2:
            listed = [self.list_files(p) for p in prefixes]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(32, len(prefixes))) as pool:
                listed = list(pool.map(self.list_files, prefixes))
        wanted = set(keys)
        found: dict[str, dict[str, int]] = {}
        for entries in listed:
            for entry in entries:
                parts = entry.path.rsplit("/", 2)
                if len(parts) == 3 and parts[1] in wanted:
                    found.setdefault(parts[1], {})[parts[2]] = entry.size
        return found

    # -- removing -------------------------------------------------------------------------------------
    def remove(self, paths: str | list[str], recursive: bool = False, prune: bool = False) -> None:
        """Remove files (a folder's whole content with `recursive`); with `prune`, a local store also
        removes the folders this left empty (object stores have no empty folders to leave behind)."""
        if isinstance(paths, str):
            self.fs.rm(paths, recursive=recursive) if recursive else self.fs.rm_file(paths)
        elif paths:
            self.fs.rm(paths, recursive=recursive)
        if prune and self.local:
            for folder in sorted({p.rsplit("/", 1)[0] for p in ([paths] if isinstance(paths, str) else paths)}):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)

    def uncommit(self, key: str) -> None:
        """Remove the manifest of `key`: its artifacts are no longer visible (FileNotFoundError when none)."""
        self.fs.rm_file(self.path(key, MANIFEST))

    def remove_key(self, key: str) -> None:
        """Un-commit first (never a manifest without its bytes), then remove the rest of the folder."""
        self.uncommit(key)
        rest = [entry.path for entry in self.list_files(self.key_dir(key) + "/")]
        if rest:
            self.fs.rm(rest)
        if self.local:
            with contextlib.suppress(OSError):
                os.rmdir(self.key_dir(key))

    def stale_uploads(self, cutoff: datetime) -> list[tuple[str, str]]:
        """(object key, upload id) of the unfinished S3 multipart uploads under the layout started before
        `cutoff`; [] on stores that have none."""
        if self.protocol not in ("s3", "s3a"):
            return []
        bucket, _, prefix = self.root.partition("/")
        found = self.fs.call_s3("list_multipart_uploads", Bucket=bucket,
                                Prefix=f"{prefix}/{LAYOUT}/" if prefix else f"{LAYOUT}/")
        return [(upload["Key"], upload["UploadId"]) for upload in found.get("Uploads", [])
                if _modified({"LastModified": upload["Initiated"]}) < cutoff]

    def upload_uri(self, object_key: str) -> str:
        """An unfinished upload named as the user names the store (scheme://bucket/key)."""
        return self.location(f"{self.root.partition('/')[0]}/{object_key}")

    def abort_uploads(self, uploads: list[tuple[str, str]]) -> None:
        """Abort the multipart uploads stale_uploads() returned."""
        bucket = self.root.partition("/")[0]
        for key, upload_id in uploads:
            self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

    # -- writing ------------------------------------------------------------------------------------
    def make_folders(self, target: str) -> None:
        """Create the folders of `target`, a path in a local store, refusing (StoreError) to write through a
        symlink in the store's own folders: one to a folder elsewhere would put artifacts outside the store.
        Checked before the folders are made (makedirs follows links) and again after. The root may be a
        link: the user named it. Reading through such a link is allowed (the README says so)."""
        self._refuse_links(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._refuse_links(target)

    def _refuse_links(self, target: str) -> None:
        current = self.root
        for part in os.path.relpath(target, self.root).split(os.sep):
            current = os.path.join(current, part)
            if os.path.islink(current):
                raise StoreError(f"refusing to write through {current}: it is a symlink inside the store "
                                 f"{self.url}, whose own folders must be real folders")

    def commit(self, manifest: Manifest, files: Mapping[str, Path], move: bool = False, *,
               body: bytes | None = None, signature: bytes | None = None) -> Manifest:
        """Upload every artifact whole, verify it, then write the manifest; return the one committed.

        With a signing key its signature is written first, beside it; `body` and `signature` (a
        mirror's copy) commit those exact manifest bytes, signed again only when this store has a key.

        `files` maps artifact name to the local file; `move`: they are a build's scratch, which a local
        store on the same filesystem takes by renaming rather than copying. When another writer committed the same key
        first, its manifest stands: builds are deterministic, so its artifacts are our bytes. If they
        are not (workers with other tool versions, say), our upload may have replaced its bytes; the
        key is then un-committed (manifest removed, to be rebuilt) rather than left inconsistent.
        """
        for art in manifest.artifacts:
            self.put(files[art.name], self.path(manifest.key, art.name), move)
            self._verify(manifest.key, art)
        if self.local and manifest.artifacts:  # the artifacts' names are on disk before the manifest's
            _fsync(os.path.dirname(self.path(manifest.key, MANIFEST)))
        body = body if body is not None else manifest.to_json().encode()
        target = self.path(manifest.key, MANIFEST)
        if self.signing_key:
            signature = sign(self.signing_key, body)
        if signature is not None:
            self.write_atomic(self.path(manifest.key, signature_name(body)), signature)
        try:
            self.create(target, body)
        except FileExistsError:
            existing = self.lookup(manifest.key)
            if existing is None:
                raise StoreError(f"{self.uri(manifest.key, MANIFEST)} vanished while committing") from None
            ours = {art.name: art.sha256 for art in manifest.artifacts}
            if all(ours.get(art.name) == art.sha256 for art in existing.artifacts):
                return existing
            return self._reconcile(existing)
        except StoreError:
            raise
        except Exception as exc:  # a refused or failed manifest write: nothing was committed
            raise StoreError(f"writing {self.uri(manifest.key, MANIFEST)}: {type(exc).__name__}: "
                             f"{scrub(str(exc))}") from exc
        return manifest

    def _reconcile(self, existing: Manifest) -> Manifest:
        """Two builds of one key gave different bytes: keep the commit only if its bytes survived."""
        try:
            for art in existing.artifacts:
                self._verify(existing.key, art, sha256=True)
        except StoreError:
            self.fs.rm_file(self.path(existing.key, MANIFEST))
            raise StoreError(f"two builds of key {existing.key} produced different bytes (nondeterministic tools, "
                             "or workers with different tool versions); the key was un-committed and will be "
                             "rebuilt") from None
        raise StoreError(f"this build of key {existing.key} differs from the committed one (nondeterministic "
                         "tools, or workers with different tool versions); the committed artifacts stand")

    def put(self, local: Path, target: str, move: bool = False) -> None:
        """Upload a local file whole to `target` (a temp name and a rename locally: never half there);
        `move`: the file is scratch, which a local store on the same filesystem takes by renaming."""
        try:
            if self.local:
                self.make_folders(target)
                tmp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
                try:
                    if not (move and _renamed(local, tmp)):
                        self.fs.put_file(str(local), tmp)
                    _fsync(tmp)  # the bytes are on disk before the name, and both before the manifest
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                return
            stream = self.fs.open(target, "wb")
            try:
                with open(local, "rb") as source:
                    while block := source.read(CHUNK):
                        stream.write(block)
                stream.close()
            except BaseException:
                # fsspec's close() would commit the partial object: abort instead, and never close.
                stream.discard()
                stream.closed = True
                raise
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"uploading {target}: {type(exc).__name__}: {exc}") from exc

    def write_atomic(self, target: str, data: bytes) -> None:
        """Write a few bytes whole, replacing what is there (a signature): a temp name, fsync and a rename
        locally, one PUT elsewhere. The one atomic small write; create() and put_if() are the exclusive ones."""
        try:
            if self.local:
                self.make_folders(target)
                tmp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(tmp, target)
            else:
                self.fs.pipe_file(target, data)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"writing {target}: {type(exc).__name__}: {scrub(str(exc))}") from exc

    def _verify(self, key: str, art: Artifact, sha256: bool = False) -> None:
        """Stored size (and, on object stores or when asked, sha256) equal the artifact's."""
        path = self.path(key, art.name)
        try:
            size = os.path.getsize(path) if self.local else self.fs.size(path)
            if size != art.size:
                raise StoreError(f"{self.uri(key, art.name)}: stored size {size} != {art.size}")
            if sha256 or (not self.local and self.verify == "sha256"):
                digest = hashlib.sha256()
                with self.fs.open(path, "rb", block_size=CHUNK) as stream:
                    while block := stream.read(CHUNK):
                        digest.update(block)
                if digest.hexdigest() != art.sha256:
                    raise StoreError(f"{self.uri(key, art.name)}: stored sha256 differs from the build's")
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"verifying {self.uri(key, art.name)}: {type(exc).__name__}: {exc}") from exc

    # -- exclusive and conditional writes (run records, leases, manifests) -------------------------------
    def create(self, target: str, body: bytes) -> None:
        """Write `target` only if it does not exist; raise FileExistsError when it does.

        An exclusive link locally, a PUT with If-None-Match on S3, a create without overwrite on Azure.
        """
        self._put_if(target, body, None)

    def put_if(self, target: str, body: bytes, tag: str | None) -> str:
        """Create `target` (tag None: FileExistsError when it exists) or replace it only while it is
        still the version named `tag` (Conflict when it changed or is gone); return the new tag.

        An If-Match PUT on S3, an ETag condition on Azure; locally a compare and rename under an
        flock on the folder's `.lock` (every conditional replace of that folder takes it).
        """
        return self._put_if(target, body, tag)

    def read_versioned(self, path: str) -> Versioned:
        """The object at `path` with its tag and the store's time of its last write (FileNotFoundError)."""
        if self.local:
            with open(path, "rb") as stream:
                data = stream.read()
                modified = os.fstat(stream.fileno()).st_mtime
            return Versioned(data, hashlib.sha256(data).hexdigest(), datetime.fromtimestamp(modified, UTC))
        self._forget(path)
        info = self.fs.info(path)  # the tag and time first: a later write makes a put_if with them fail
        data = bytes(self.fs.cat_file(path))
        tag = info.get("ETag") or info.get("etag")
        if tag is None:  # memory:// and other filesystems without ETags: the bytes are the version
            tag = hashlib.sha256(data).hexdigest()
        return Versioned(data, str(tag), _modified(info))

    def clock(self, folder: str) -> datetime:
        """The store's current time, read from the timestamp of a probe object it writes in `folder`
        (removed again): lease expiry is judged by the store's clock alone, never a host's."""
        probe = f"{folder}/.clock-{uuid.uuid4().hex}"
        if self.local:
            self.make_folders(probe)
        self.fs.pipe_file(probe, b"")
        try:
            if not self.local:
                self._forget(probe)
            return _modified(self.fs.info(probe))
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(probe)

    def _forget(self, path: str) -> None:
        """Drop what fsspec cached of `path` and its folder's listing: these reads must ask the store."""
        self.fs.invalidate_cache(path)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])

    @property
    def clock_resolution(self) -> timedelta:
        """How coarse the store's timestamps are: S3 and Azure give whole seconds over HEAD."""
        return timedelta(0) if self.local else timedelta(seconds=1)

    def _put_if(self, target: str, body: bytes, tag: str | None) -> str:
        if self.local:
            return self._put_if_local(target, body, tag)
        if tag is None:
            out = self.fs.pipe_file(target, body, mode="create")
        elif self.protocol in ("s3", "s3a"):
            try:
                out = self.fs.pipe_file(target, body, IfMatch=tag)
            except FileNotFoundError:
                raise Conflict(target) from None
            except OSError as exc:
                if exc.errno == errno.EINVAL or "PreconditionFailed" in str(exc) or "412" in str(exc):
                    raise Conflict(target) from None
                raise
        elif self.protocol in ("az", "abfs", "abfss"):
            from azure.core import MatchConditions
            from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

            try:
                out = self.fs.pipe_file(target, body, overwrite=True, etag=tag,
                                        match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                raise Conflict(target) from None
        else:  # memory:// and the like: one process only, compare then write
            try:
                current = self.read_versioned(target)
            except FileNotFoundError:
                raise Conflict(target) from None
            if current.tag != tag:
                raise Conflict(target)
            self.fs.pipe_file(target, body)
            return hashlib.sha256(body).hexdigest()
        found = (out.get("ETag") or out.get("etag")) if isinstance(out, Mapping) else None
        if found is None:
            return self.read_versioned(target).tag
        return str(found)

    def _put_if_local(self, target: str, body: bytes, tag: str | None) -> str:
        folder = os.path.dirname(target)
        self.make_folders(target)  # never through a symlink in the store's own folders
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as stream:
            stream.write(body)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            if tag is None:
                os.link(tmp, target)  # atomic, and fails when the name is already there
            else:
                with _folder_lock(folder):
                    try:
                        with open(target, "rb") as stream:
                            current = hashlib.sha256(stream.read()).hexdigest()
                    except FileNotFoundError:
                        raise Conflict(target) from None
                    if current != tag:
                        raise Conflict(target)
                    os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync(folder)
        return hashlib.sha256(body).hexdigest()


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """An exclusive flock on `folder`/.lock: local conditional replaces of one folder, one at a time."""
    import fcntl

    fd = os.open(f"{folder}/.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _modified(info: Mapping[str, Any]) -> datetime:
    """The time a store's listing or HEAD says an object was last written (now, where none is kept)."""
    return modified_time(info) or datetime.now(UTC)
