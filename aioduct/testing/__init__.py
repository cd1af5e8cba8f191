"""Test servers for aioduct's own tests, demo and benchmarks.

* :mod:`aioduct.testing.nginx` runs a real nginx with the standard locations, because a
  client must be proven against a production server, not only against our own code.
* :mod:`aioduct.testing.server` runs a loopback server whose every byte a test scripts,
  for the malformed and hostile cases no real server produces on purpose.
* :mod:`aioduct.testing.origin` is a small fast synthetic site for the demo and crawls.

The client never imports this package; it needs the ``dev`` extra (trustme) and, for
nginx, the ``nginx`` binary (Debian ``nginx-light``).
"""
