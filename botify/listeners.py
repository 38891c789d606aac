"""One listening socket per gunicorn worker (``SO_REUSEPORT``), so the kernel spreads connections over workers.

gunicorn's workers normally share the arbiter's listening socket and each
accepts what it can, so a burst of connections (a client pool starting, a load
generator) can land 64/0 or 45/19 on two workers. The kernel gives each busy
worker the same CPU, so the connections of the fuller worker wait longer, in
proportion to its share, for as long as they stay open: at 64 connections that
uneven share was the p99 (docs/benchmarks.md#botify). With a socket per worker,
all bound to the same address with ``SO_REUSEPORT``, Linux picks the socket of
each new connection by a hash of its addresses: no worker takes a burst alone.

How: gunicorn's arbiter binds the address (with ``SO_REUSEPORT``) and then stops
listening on it (``shutdown`` keeps the port bound, so later workers can join);
each worker, right after the fork, listens on a socket of its own and closes the
inherited one. Only on Linux (other systems do not spread connections over such
sockets) and with more than one worker.

``SO_REUSEPORT`` would also let a second server of the same user bind the same
port and silently take part of its connections; ``check_port_free`` keeps the
plain failure ("address in use") for that case.
"""
from __future__ import annotations

import errno
import socket
import sys

SPREADS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def per_worker(workers: int) -> bool:
    return SPREADS and workers > 1


def check_port_free(host: str, port: int) -> None:
    """Raise ``OSError`` (EADDRINUSE) when something already listens on ``host:port``, as a plain bind would."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn's own bind: TIME_WAIT is no owner
        probe.bind((host, port))


def stop_listening(arbiter, worker=None) -> None:
    """gunicorn ``pre_fork`` hook (in the arbiter): the arbiter's socket keeps the port but takes no connections."""
    for listener in arbiter.LISTENERS:
        try:
            listener.sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # ENOTCONN: already stopped before an earlier fork
                raise


def listen_in_worker(arbiter, worker) -> None:
    """gunicorn ``post_fork`` hook (in the new worker): a listening socket of its own on each address."""
    inherited = worker.sockets
    own = [type(s)(s.sock.getsockname(), worker.cfg, worker.log) for s in inherited]
    for s in inherited:
        s.close()
    worker.sockets = own
    # gunicorn's gevent worker re-wraps the file descriptors; these objects must outlive that or they close them
    worker.botify_listeners = own
