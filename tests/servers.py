"""Real servers for tests, all on 127.0.0.1: moto (S3), Azurite (Azure Blob), a file + DRS server,
and a TCP proxy that drops a connection mid-upload."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server in a thread; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    wait_for_port(port)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_process(**env: str) -> Iterator[str]:
    """A moto S3 server in its own process, for settings read at import (MOTO_DISABLE_GLOBAL_CORS=1:
    then a bucket's own CORS rules decide, as on S3); yields its endpoint URL."""
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def azurite_binary() -> str:
    found = shutil.which("azurite-blob")
    local = Path(__file__).resolve().parents[1] / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if found:
        return found
    if local.exists():
        return str(local)
    raise RuntimeError("azurite-blob not found: `make test` installs it (npm install --prefix .tools azurite)")


@contextmanager
def azurite(location: Path, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Azurite's blob service as a child process; yields its connection string. With `tls` (certificate,
    key) it serves HTTPS and takes OAuth bearer tokens (checking issuer, audience and expiry, not the
    token's signature), as user-delegation keys need."""
    port = free_port()
    secure = ["--oauth", "basic", "--cert", str(tls[0]), "--key", str(tls[1])] if tls else []
    proc = subprocess.Popen([azurite_binary(), "--blobHost", HOST, "--blobPort", str(port), "--location",
                             str(location), "--skipApiVersionCheck", "--silent", "--loose", *secure],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        scheme = "https" if tls else "http"
        yield (f"DefaultEndpointsProtocol={scheme};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
               f"BlobEndpoint={scheme}://{HOST}:{port}/{AZURITE_ACCOUNT};")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1 that expires tomorrow: trust it with SSL_CERT_FILE."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TokenServer:
    """A managed-identity token endpoint on loopback (App Service's protocol: IDENTITY_ENDPOINT and
    IDENTITY_HEADER), handing out Entra ID-shaped bearer tokens for Azure Storage: what
    azure-identity's DefaultAzureCredential finds on an Azure host, here without a tenant."""

    def __init__(self) -> None:
        import base64

        def part(value: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000001/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": "11111111-1111-1111-1111-111111111111",
                  "tid": "00000000-0000-0000-0000-000000000001"}
        self.token = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
        self.header = "loopback-identity-header"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.requests += 1
                if self.headers.get("X-IDENTITY-HEADER") != server.header:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"access_token": server.token, "expires_on": str(now + 3600), "token_type": "Bearer",
                                   "resource": "https://storage.azure.com"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.endpoint = f"http://{HOST}:{self.httpd.server_address[1]}/msi/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FileServer:
    """Serves files by name (with Range), a minimal GA4GH DRS API, and injected failures.

    /files/<name>                          the bytes of a registered file
    /ga4gh/drs/v1/objects/<id>             a DrsObject whose access method points at /files/<name>
    /ga4gh/drs/v1/objects/<id>/access/<a>  the access URL, with a header the fetch must send
    `fail[path] = n` answers the next n requests for path with 503.
    `hold(name)` keeps every request for a file waiting until the returned Event is set: a test can
    act on a cluster (kill a worker, open the dashboard) while a task is surely mid-fetch.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drs: dict[str, str] = {}      # object id -> file name
        self.fail: dict[str, int] = {}
        self.drs_access: dict[str, str] = {}  # object id -> the access URL to answer with, if not its file's
        self.gates: dict[str, threading.Event] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                server.requests.append((self.command, path, dict(self.headers)))
                if path in server.gates:
                    server.gates[path].wait(timeout=300)
                if server.fail.get(path, 0) > 0:
                    server.fail[path] -= 1
                    return self._send(503, b"try again")
                parts = path.strip("/").split("/")
                if parts[0] == "files" and len(parts) == 2 and parts[1] in server.files:
                    return self._file(server.files[parts[1]])
                if parts[:4] == ["ga4gh", "drs", "v1", "objects"] and len(parts) >= 5 and parts[4] in server.drs:
                    name = server.drs[parts[4]]
                    if len(parts) == 5:
                        body = {"id": parts[4], "size": len(server.files[name]), "checksums": [],
                                "access_methods": [{"type": "https", "access_id": "a1"}]}
                        return self._send(200, json.dumps(body).encode(), "application/json")
                    if parts[5:] == ["access", "a1"]:
                        url = server.drs_access.get(parts[4], f"{server.base}/files/{name}")
                        body = {"url": url, "headers": {"Authorization": "Bearer drs-token"}}
                        return self._send(200, json.dumps(body).encode(), "application/json")
                return self._send(404, b"not found")

            do_HEAD = do_GET  # noqa: N815 - the stdlib's name; bodies are not written for HEAD

            def _file(self, data: bytes) -> None:
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start_s, _, end_s = rng[6:].partition("-")
                    start = int(start_s)
                    end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    chunk = data[start:end + 1]
                else:
                    self.send_response(200)
                    chunk = data
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(chunk)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((HOST, self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for gate in self.gates.values():
            gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def hold(self, name: str) -> threading.Event:
        gate = self.gates.setdefault(f"/files/{name}", threading.Event())
        gate.clear()
        return gate

    def gets(self, name: str) -> int:
        """How many GET requests reached /files/<name>."""
        return sum(1 for method, path, _ in self.requests if method == "GET" and path == f"/files/{name}")

    def add(self, name: str, data: bytes, drs_id: str | None = None) -> str:
        self.files[name] = data
        if drs_id:
            self.drs[drs_id] = name
        return f"{self.base}/files/{name}"


class DropProxy:
    """Forwards TCP to `target_port`, but cuts any connection whose upload passes `limit` bytes."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.target_port, self.limit = target_port, limit
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        sent = 0
        with contextlib.suppress(OSError):  # either side closing ends the relay; that is the point
            while block := src.recv(65536):
                sent += len(block)
                if upload and sent > self.limit:
                    self.dropped += 1
                    break
                dst.sendall(block)
        for sock in (src, dst):
            with contextlib.suppress(OSError):  # already closed by the other relay thread
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


def tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


class FaultProxy:
    """An HTTP proxy to `target_port` that answers chosen requests with an error instead of forwarding.

    `fail(method, path) -> bool` picks the requests; `budget` is how many it fails (None: all of them).
    `hold(method, path) -> bool` picks requests to keep waiting (whole) until `release` is set.
    Every request is recorded as (method, path, status answered).
    """

    def __init__(self, target_port: int, fail: Callable[[str, str], bool], budget: int | None = None,
                 status: int = 500, hold: Callable[[str, str], bool] | None = None) -> None:
        import http.client

        self.requests: list[tuple[str, str, int]] = []
        self.budget = budget
        self.held = threading.Event()     # set when a request `hold` picks has arrived
        self.release = threading.Event()  # held requests go on (forwarded) once this is set
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if hold is not None and hold(self.command, self.path):
                    proxy.held.set()
                    proxy.release.wait()
                if fail(self.command, self.path) and (proxy.budget is None or proxy.budget > 0):
                    if proxy.budget is not None:
                        proxy.budget -= 1
                    proxy.requests.append((self.command, self.path, status))
                    error = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>"
                             b"<Message>injected fault</Message></Error>")
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                upstream = http.client.HTTPConnection(HOST, target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect",)}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                proxy.requests.append((self.command, self.path, answer.status))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815 - the stdlib's names

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
