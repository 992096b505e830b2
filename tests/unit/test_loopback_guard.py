import socket

import pytest


def test_connections_beyond_loopback_are_refused_before_any_packet_leaves():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(ConnectionRefusedError, match="loopback"):
            sock.connect(("10.255.255.1", 9))  # what moto's fake ECS addresses look like


def test_loopback_connections_still_work():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_python_processes_a_test_starts_are_guarded_too():
    """Dask workers, the CLI and servers are child processes: the guard reaches them through PYTHONPATH."""
    import subprocess
    import sys

    code = "import socket; socket.create_connection(('10.255.255.1', 9), timeout=5)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode != 0 and "test guard: refusing a connection to 10.255.255.1" in child.stderr
