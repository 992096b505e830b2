"""ArtifactStore: content-addressed artifacts on any fsspec filesystem, committed manifest-last.

Layout: <root>/<layout>/<key[:2]>/<key>/<artifact names…> and manifest.json, written last.
A key's artifacts are visible only through its manifest; bytes without one are debris for `gc`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigError, StoreError
from .keys import LAYOUT, is_key
from .model import Artifact, Manifest
from .urls import Url, scrub

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """The store at `url` (a local path, file://, s3://, az://, abfs://, gs://, memory://).

    `url` is kept redacted (no userinfo, no query string): it appears in messages and reports; the
    storage options go to fsspec and are not kept here.
    """

    def __init__(self, url: str | Url, storage_options: Mapping[str, Any] | None = None,
                 verify: str = "sha256") -> None:
        import fsspec

        self.verify = verify  # "sha256": re-read uploads and compare; "size": compare sizes only
        shown = Url(url)
        url = shown.reveal()
        scheme = url.split("://", 1)[0] if "://" in url else "file"
        self.protocol = scheme
        try:
            if scheme == "file":
                path = url[len("file://"):] if url.startswith("file://") else url
                root = os.path.abspath(os.path.expanduser(path))
                self.fs = fsspec.filesystem("file")
            else:
                self.fs, root = fsspec.url_to_fs(url, **_with_sigv4(scheme, storage_options or {}))
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
                return
            top = self.root.split("/", 1)[0]
            try:
                self.fs.info(top)  # not exists(): that answers False for a bad option or refused credential
            except FileNotFoundError:
                raise ConfigError(f"store {self.url}: bucket or container {top!r} does not exist") from None
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure here is a configuration problem
            raise ConfigError(f"store {self.url}: cannot be reached: {type(exc).__name__}: {scrub(str(exc))}") from None

    def lookup(self, key: str) -> Manifest | None:
        """The committed manifest of `key`, or None when nothing is committed there."""
        path = self.path(key, MANIFEST)
        # s3fs asks for the size (a HEAD) before a whole-object read, to split large ones; a manifest
        # is small: one GET.
        single = {"max_concurrency": 1} if self.protocol in ("s3", "s3a") else {}
        try:
            data = self.fs.cat_file(path, **single)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"reading {self.uri(key, MANIFEST)}: {type(exc).__name__}: {exc}") from exc
        try:
            manifest = Manifest.model_validate_json(data)
        except ValueError as exc:
            raise StoreError(f"{self.uri(key, MANIFEST)} is not a valid manifest: {exc}") from None
        if manifest.key != key:  # a copied or forged manifest must not make one key serve another's bytes
            raise StoreError(f"{self.uri(key, MANIFEST)} claims key {manifest.key[:80]!r}, not the key of its folder")
        return manifest

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
        if self.local or len(unique) < 2:
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

    # -- writing ------------------------------------------------------------------------------------
    def commit(self, manifest: Manifest, files: Mapping[str, Path], move: bool = False) -> Manifest:
        """Upload every artifact whole, verify it, then write the manifest; return the one committed.

        `files` maps artifact name to the local file; `move`: they are a build's scratch, which a local
        store on the same filesystem takes by renaming rather than copying. When another writer committed the same key
        first, its manifest stands: builds are deterministic, so its artifacts are our bytes. If they
        are not (workers with other tool versions, say), our upload may have replaced its bytes; the
        key is then un-committed (manifest removed, to be rebuilt) rather than left inconsistent.
        """
        for art in manifest.artifacts:
            self._put(files[art.name], self.path(manifest.key, art.name), move)
            self._verify(manifest.key, art)
        if self.local and manifest.artifacts:  # the artifacts' names are on disk before the manifest's
            _fsync(os.path.dirname(self.path(manifest.key, MANIFEST)))
        body = manifest.model_dump_json(indent=2).encode()
        target = self.path(manifest.key, MANIFEST)
        try:
            self._create(target, body)
        except FileExistsError:
            existing = self.lookup(manifest.key)
            if existing is None:
                raise StoreError(f"{self.uri(manifest.key, MANIFEST)} vanished while committing") from None
            ours = {art.name: art.sha256 for art in manifest.artifacts}
            if all(ours.get(art.name) == art.sha256 for art in existing.artifacts):
                return existing
            return self._reconcile(existing)
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

    def _put(self, local: Path, target: str, move: bool = False) -> None:
        try:
            if self.local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
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

    def _verify(self, key: str, art: Artifact, sha256: bool = False) -> None:
        """Stored size (and, on object stores or when asked, sha256) equal the artifact's."""
        path = self.path(key, art.name)
        try:
            size = self.fs.size(path)
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

    def _create(self, target: str, body: bytes) -> None:
        """Write `target` only if it does not exist; raise FileExistsError when it does."""
        if self.local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as stream:
                stream.write(body)
                stream.flush()
                os.fsync(stream.fileno())
            try:
                os.link(tmp, target)  # atomic, and fails when a manifest is already there
            finally:
                os.unlink(tmp)
            _fsync(os.path.dirname(target))
            return
        self.fs.pipe_file(target, body, mode="create")
