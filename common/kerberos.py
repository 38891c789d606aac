"""A Kerberos ticket kept fresh from a keytab, for the processes that reach HDFS through hdfs-native.

hdfs-native authenticates with the ticket in the credentials cache (``KRB5CCNAME``) through the system's
GSSAPI; it never reads a keytab. botify runs for months and a ticket lives hours, so with
``BOTIFY_KERBEROS_PRINCIPAL`` and ``BOTIFY_KERBEROS_KEYTAB`` set, botify and ``botify-upload`` log in with
``kinit -kt`` into a cache of their own and log in again every ``BOTIFY_KERBEROS_RELOGIN_S`` seconds
(default 3600: well inside any realm's ticket lifetime; set it below yours). Spark jobs log in themselves
(``spark.kerberos.principal`` / ``spark.kerberos.keytab``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Mapping, Optional

log = logging.getLogger(__name__)

PRINCIPAL, KEYTAB, RELOGIN_S = "BOTIFY_KERBEROS_PRINCIPAL", "BOTIFY_KERBEROS_KEYTAB", "BOTIFY_KERBEROS_RELOGIN_S"
RETRY_S = 10.0


class KerberosError(RuntimeError):
    """No ticket could be had from the keytab."""


class TicketKeeper:
    """``kinit -kt KEYTAB PRINCIPAL`` into ``cache`` now, then every ``relogin_s`` seconds until stopped."""

    def __init__(self, principal: str, keytab: str, cache: Path, relogin_s: float = 3600.0):
        if not shutil.which("kinit"):
            raise KerberosError("kinit not found: install MIT Kerberos' clients (Debian: krb5-user)")
        if not os.path.isfile(keytab):
            raise KerberosError(f"{KEYTAB}={keytab}: no such file")
        if relogin_s <= 0:
            raise KerberosError(f"{RELOGIN_S} must be positive, not {relogin_s}")
        self.principal, self.keytab, self.cache, self.relogin_s = principal, keytab, cache, relogin_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kerberos-relogin", daemon=True)

    @property
    def ccname(self) -> str:
        return f"FILE:{self.cache}"

    def login(self) -> None:
        done = subprocess.run(["kinit", "-kt", self.keytab, self.principal], env={**os.environ, "KRB5CCNAME": self.ccname},
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise KerberosError(f"kinit -kt {self.keytab} {self.principal}: {done.stderr.strip() or done.returncode}")

    def start(self) -> "TicketKeeper":
        self.login()
        log.info("kerberos: logged in as %s from %s; again every %.0fs", self.principal, self.keytab, self.relogin_s)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        wait = self.relogin_s
        while not self._stop.wait(wait):
            try:
                self.login()
                wait = self.relogin_s
            except (KerberosError, OSError, subprocess.SubprocessError) as exc:
                # The old ticket may still be good for a while: keep trying, loudly.
                log.error("kerberos: login again failed (retrying in %.0fs): %s", RETRY_S, exc)
                wait = RETRY_S


@contextlib.contextmanager
def ticket_from_env(environ: Optional[Mapping[str, str]] = None) -> Iterator[Optional[TicketKeeper]]:
    """With the principal and keytab set in the environment: a kept ticket whose cache this process (and every
    child it starts after) uses; else nothing, and the caller's own ``KRB5CCNAME`` or ``kinit`` applies."""
    environ = os.environ if environ is None else environ
    principal, keytab = environ.get(PRINCIPAL), environ.get(KEYTAB)
    if not principal and not keytab:
        yield None
        return
    if not (principal and keytab):
        raise KerberosError(f"set both {PRINCIPAL} and {KEYTAB}, or neither")
    try:
        relogin_s = float(environ.get(RELOGIN_S, "3600"))
    except ValueError:
        raise KerberosError(f"{RELOGIN_S} must be a number of seconds, not {environ.get(RELOGIN_S)!r}") from None
    folder = tempfile.mkdtemp(prefix="botify-krb5-")
    owner = os.getpid()
    keeper = TicketKeeper(principal, keytab, Path(folder) / "ccache", relogin_s)
    previous = os.environ.get("KRB5CCNAME")
    os.environ["KRB5CCNAME"] = keeper.ccname
    try:
        yield keeper.start()
    finally:
        # A process forked inside (a gunicorn worker) leaves through here too: the cache is its parent's.
        if os.getpid() == owner:
            keeper.stop()
            shutil.rmtree(folder, ignore_errors=True)
            if previous is None:
                os.environ.pop("KRB5CCNAME", None)
            else:
                os.environ["KRB5CCNAME"] = previous
