"""Limits an independent probe found missing: a reload's size cap, a password on the private Redis, a managed Redis
over TLS with a password."""
import contextlib
import logging
import select
import socket
import ssl
import subprocess
import threading

import pytest
import redis
import requests

from botify.store import Store
from common.redis_server import RedisServer, redact
from tests.botify.conftest import TOKEN, TOP, USERS, live_server, make_config, next_track, v1_list, v2_list
from testkit.artifacts import write_recommendations

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_version_over_max_bytes_is_refused_unread_and_the_previous_keeps_serving(serve, world):
    # v1's two part files hold ~4.5 kB; a cap of 8 kB takes v1 and refuses a v2 with 10x the users
    base, _ = serve("Ranked", artifacts__max_bytes=8192)
    assert next_track(base, 2) == v1_list(2)[0]
    write_recommendations(world, "v2", {u: v2_list(u % USERS) for u in range(10 * USERS)}, TOP)
    resp = requests.post(f"{base}/admin/reload", json={"version": "v2"}, headers=AUTH, timeout=30)
    assert resp.status_code == 422, resp.text
    assert "more than artifacts.max_bytes=8192 bytes" in resp.json()["error"]
    assert "previous version still serving" in resp.json()["error"]
    assert requests.get(base + "/", timeout=10).json()["recommendations"] == "v1"
    assert next_track(base, 2) == v1_list(2)[1]


def test_the_private_redis_wants_its_generated_password_which_is_never_on_argv_or_logged(caplog):
    caplog.set_level(logging.DEBUG)
    server = RedisServer()
    server.start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="guess").ping()
        assert redis.Redis.from_url(server.url).ping()
        assert redis.Redis.from_url(server.unix_url).ping()
        assert len(server.password) >= 32 and server.password != RedisServer().password
        with open(f"/proc/{server.process.pid}/cmdline", "rb") as fh:
            assert server.password.encode() not in fh.read()
        assert server.password not in caplog.text
        assert redact(server.url) == f"redis://***@127.0.0.1:{server.port}/0"
        assert server.password not in redact(server.unix_url)
    finally:
        server.stop()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (what a managed Redis with a private CA presents)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@contextlib.contextmanager
def tls_terminator(target_port: int, cert, key):
    """A TLS front for a plain Redis (as managed Redis services terminate TLS): yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(tls, upstream):
        with tls, upstream:
            try:
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 5)[0]
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is tls else tls).sendall(data)
            except OSError:
                return

    def accept():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except OSError:  # ssl.SSLError too: a client that refused our certificate
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pump, args=(tls, upstream), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_managed_redis_over_tls_with_a_password(world, tmp_path, certificate):
    cert, key = certificate
    server = RedisServer()
    server.start()
    try:
        with tls_terminator(server.port, cert, key) as tls_port:
            url = f"rediss://:{server.password}@127.0.0.1:{tls_port}/0"
            config = make_config(world, url, tmp_path / "logs", "Ranked", redis__ssl_ca_certs=str(cert))
            with live_server(config) as base:  # loads v1 through TLS, then serves from it
                assert next_track(base, 4) == v1_list(4)[0]
                assert requests.get(base + "/readyz", timeout=10).status_code == 200
            # the certificate is checked: without the CA that signed it, no connection
            untrusted = make_config(world, url, tmp_path / "logs", "Ranked")
            with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
                Store.from_config(untrusted).r.ping()
            # and the password too
            wrong = make_config(world, f"rediss://:nope@127.0.0.1:{tls_port}/0", tmp_path / "logs", "Ranked",
                                redis__ssl_ca_certs=str(cert))
            with pytest.raises(redis.AuthenticationError):
                Store.from_config(wrong).r.ping()
    finally:
        server.stop()
