"""Put this folder on PYTHONPATH and every Python process started that way refuses connections to
anything but loopback (loopback_guard.py)."""

import loopback_guard

loopback_guard.install()
