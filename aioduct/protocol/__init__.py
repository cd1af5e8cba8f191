"""Sans-I/O protocol engines: bytes in, events out; no sockets, no event loop."""
