"""The test guard: a connection to anything but loopback fails before a packet leaves.

Installed in the pytest process by tests/conftest.py and, through sitecustomize.py in this folder
(which conftest puts on PYTHONPATH), in every Python process a test starts: Dask workers, the CLI,
the ECS agent's tasks. Some libraries reach out by themselves (distributed looks up 8.8.8.8 for its
own address; dask-cloudprovider against moto gets a fake 10.x scheduler address).
"""

import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def check(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    host = str(address[0])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    if not ip.is_loopback:
        raise ConnectionRefusedError(f"test guard: refusing a connection to {host}, which is not loopback")


def _guarded_connect(self: socket.socket, address: object) -> None:
    check(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    check(self, address)
    return _connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def uninstall() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
