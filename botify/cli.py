"""``botify``: serve, reload artifacts, complete event log files.

    botify serve [--dev] [--set key=value ...]
    botify reload [--version V] [--set-version SET=V ...] [--url URL] [--token-file F]
    botify rotate-logs [--url URL] [--token-file F] [--timeout S]

The admin token comes from ``BOTIFY_ADMIN_TOKEN``, ``BOTIFY_ADMIN_TOKEN_FILE``
or ``--token-file``: never from the command line, where ``ps`` shows it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import List, Optional

from common.config import ConfigError, add_config_arguments

from botify.settings import CONFIG_NAME, DEFAULT_SET, load_settings, yaml_string

log = logging.getLogger("botify")


def _settings(args) -> dict:
    token_file = getattr(args, "token_file", None)
    if token_file:  # the file named here wins over a token from the environment or the config file
        return load_settings([*args.overrides, "admin.token=null", f"admin.token_file={yaml_string(token_file)}"],
                             name=args.config)
    return load_settings(args.overrides, name=args.config)


def _owner_only(cleanup):
    """``cleanup`` run only by the process that set it up. A gunicorn worker is forked inside run_gunicorn and
    leaves (SIGHUP, max requests, a graceful stop) by raising SystemExit through the same frames: it must not
    stop the master's private Redis, nor delete the metrics folder or ticket cache its siblings still use."""
    owner = os.getpid()

    def run(*args):
        if os.getpid() == owner:
            cleanup(*args)
    return run


def cmd_serve(args) -> int:
    from botify import metrics

    # Before anything imports prometheus_client: every worker forked later counts into this directory.
    metrics_dir = metrics.use_private_dir()
    remove_metrics_dir = _owner_only(metrics.remove_private_dir)
    try:
        return _serve(args)
    finally:
        remove_metrics_dir(metrics_dir)


def _load_and_send(config: dict, send) -> None:
    from botify.catalog import ArtifactError
    from botify.reload import load_or_keep
    from botify.store import Store

    try:
        send.send(("ok", load_or_keep(config, Store.from_config(config))))
    except ArtifactError as exc:
        send.send(("rejected", str(exc)))


def _load_in_own_process(config: dict) -> Optional[dict]:
    """The start load, in a child process: gunicorn forks the workers from this one, and an HDFS client
    (hdfs-native's runtime threads) does not survive a fork: a worker inheriting one hangs on its first read.
    The child is forked before this process ever opens storage, and answers over a pipe."""
    import multiprocessing

    from botify.catalog import ArtifactError

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_load_and_send, args=(config, send), name="botify-start-load")
    child.start()
    send.close()
    try:
        outcome, value = receive.recv()
    except EOFError:
        child.join()
        raise ArtifactError(f"the start load died (exit {child.exitcode})") from None
    finally:
        child.join()
    if outcome == "rejected":
        raise ArtifactError(value)
    return value


def _serve(args) -> int:
    from common.kerberos import KerberosError, ticket_from_env
    from common.redis_server import RedisServer, redact

    from botify.catalog import ArtifactError
    from botify.event_log_writer import complete_orphans
    from botify import metrics
    from botify.service import load_outcome, resolve_local

    config = _settings(args)
    if args.host:
        config["server"]["host"] = args.host
    if args.port is not None:
        config["server"]["port"] = args.port
    if args.workers is not None:
        config["server"]["workers"] = args.workers
    with contextlib.ExitStack() as stack:
        try:  # before the start load: it may read a Kerberos-secured HDFS
            stack.enter_context(ticket_from_env())
        except KerberosError as exc:
            log.error("cannot start: %s", exc)
            return 2
        if not config["redis"]["url"]:
            rc = config["redis"]
            server = RedisServer(maxmemory=rc["maxmemory"], maxmemory_policy=rc["maxmemory_policy"])
            server.start()
            rc["url"] = server.unix_url
            stack.callback(_owner_only(server.stop))
            server.supervise(float(rc["restart_backoff_s"]))
            log.info("no REDIS_URL: started a private redis-server at %s (maxmemory %s, %s; a generated password; "
                     "restarted if it exits)", redact(rc["url"]), rc["maxmemory"], rc["maxmemory_policy"])
        complete_orphans(resolve_local(config["event_log"]["dir"]))
        if config["artifacts"]["load_on_start"]:
            try:
                result = _load_in_own_process(config)
            except ArtifactError as exc:
                log.error("cannot start: %s", exc)
                return 2
            # a None here is a rejected version that left the one already in Redis serving
            metrics.recorder(config["metrics"]["enabled"]).reload(
                "start", "rejected" if result is None else load_outcome(result))
            if result:
                log.info("artifacts loaded: %s", json.dumps(result, sort_keys=True))
        s = config["server"]
        log.info("botify on http://%s:%s (%s, experiments %s)", s["host"], s["port"],
                 "development server" if args.dev else f"gunicorn, {s['workers']} workers",
                 ",".join(config["active_experiments"]))
        from botify.server import run_dev, run_gunicorn

        (run_dev if args.dev else run_gunicorn)(config)
    return 0


def _admin_post(url: str, path: str, token: Optional[str], body: dict, timeout: float) -> int:
    import requests

    if not token:
        print("error: no admin token (set BOTIFY_ADMIN_TOKEN, BOTIFY_ADMIN_TOKEN_FILE or --token-file)",
              file=sys.stderr)
        return 2
    try:
        resp = requests.post(url.rstrip("/") + path, json=body, timeout=timeout,
                             headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        print(f"error: cannot reach botify at {url}: {exc}", file=sys.stderr)
        return 1
    try:
        payload = resp.json()
    except ValueError:
        payload = {"error": resp.text}
    print(json.dumps(payload, indent=2, sort_keys=True), file=sys.stdout if resp.ok else sys.stderr)
    return 0 if resp.ok else 1


def _server_url(config: dict) -> str:
    return f"http://{config['server']['host']}:{config['server']['port']}"


def _set_versions(pairs: List[str]) -> dict:
    """``["als=V", ...]`` -> ``{"als": "V"}``."""
    versions = {}
    for pair in pairs:
        name, sep, version = pair.partition("=")
        if not sep or not name or not version:
            raise ConfigError(f"--set-version takes SET=VERSION, got {pair!r}")
        versions[name] = version
    return versions


def cmd_reload(args) -> int:
    config = _settings(args)
    token = config["admin"]["token"]
    sets = _set_versions(args.set_version)
    if args.url or not config["redis"]["url"]:
        body = {"version": args.version} if args.version else {}
        if sets:
            body["sets"] = sets
        if args.force:
            body["force"] = True
        return _admin_post(args.url or _server_url(config), "/admin/reload", token, body, args.timeout)
    # A shared Redis (REDIS_URL): load straight into it; every worker sees the switch.
    from botify.catalog import ArtifactError
    from botify.reload import reload_artifacts
    from botify.store import ReloadBusy, Store

    try:
        versions = {**sets, DEFAULT_SET: args.version} if args.version else sets
        result = reload_artifacts(config, Store.from_config(config), versions, wait_s=args.timeout, force=args.force)
    except (ArtifactError, ReloadBusy) as exc:
        print(f"error: reload rejected, previous version still serving: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"status": "reloaded", **result}, indent=2, sort_keys=True))
    return 0


def cmd_hold(args) -> int:
    from botify import rollback
    from botify.reload import storage

    marker = rollback.hold(_settings(args), storage(), args.version, args.reason)
    print(json.dumps({"status": "held", **marker}, indent=2, sort_keys=True))
    return 0


def cmd_release(args) -> int:
    from botify import rollback
    from botify.reload import storage

    lifted = rollback.release(_settings(args), storage())
    print(json.dumps({"status": "released" if lifted else "was not held", "hold": lifted}, indent=2, sort_keys=True))
    return 0


def cmd_rollback(args) -> int:
    from botify import rollback
    from botify.catalog import ArtifactError
    from botify.reload import storage

    config = _settings(args)
    try:
        done = rollback.rollback(config, storage(), args.to, args.reason)
    except ArtifactError as exc:
        print(f"error: rollback refused, nothing changed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"status": "rolled back on storage", **done}, indent=2, sort_keys=True))
    # The running botify switches now; one that is down serves the version when it starts (LATEST names it).
    return _admin_post(args.url or _server_url(config), "/admin/reload", config["admin"]["token"],
                       {"version": args.to}, args.timeout)


def cmd_rotate(args) -> int:
    config = _settings(args)
    if args.url:
        return _admin_post(args.url, "/admin/rotate-logs", config["admin"]["token"], {}, args.timeout + 5)
    from botify.event_log_writer import request_rotation
    from botify.service import resolve_local

    directory = resolve_local(config["event_log"]["dir"])
    try:
        completed = request_rotation(directory, timeout_s=args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"status": "rotated", "directory": directory, "completed": completed}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: "--token T" must not pass as "--token-file T" (and echo the token in the error)
    parser = argparse.ArgumentParser(prog="botify", description="the botify recommendation service", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", allow_abbrev=False, help="run botify (gunicorn; a private redis-server when REDIS_URL is unset)")
    add_config_arguments(serve, CONFIG_NAME)
    serve.add_argument("--host", help="bind address (server.host)")
    serve.add_argument("--port", type=int, help="port (server.port)")
    serve.add_argument("--workers", type=int, help="gunicorn workers (server.workers)")
    serve.add_argument("--dev", action="store_true", help="Flask's single-threaded development server instead")
    serve.set_defaults(func=cmd_serve)

    reload = sub.add_parser("reload", allow_abbrev=False, help="load artifacts (LATEST or --version) and switch to them")
    add_config_arguments(reload, CONFIG_NAME)
    reload.add_argument("--version", help="recommendations version directory (default: artifacts.version)")
    reload.add_argument("--set-version", action="append", default=[], metavar="SET=VERSION",
                        help="pin a named recommendation set (artifacts.sets) to a version (repeatable)")
    reload.add_argument("--url", help="ask this running botify (POST /admin/reload) instead of writing Redis")
    reload.add_argument("--token-file", help="read the admin token from this file (default: BOTIFY_ADMIN_TOKEN, "
                                             "BOTIFY_ADMIN_TOKEN_FILE, admin.token)")
    reload.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
    reload.add_argument("--force", action="store_true",
                        help="accept a version under artifacts.min_rows / min_user_coverage (integrity still checked)")
    reload.set_defaults(func=cmd_reload)

    held = sub.add_parser("hold", allow_abbrev=False,
                          help="stop jobs moving LATEST and the nightly reloading (a marker on storage)")
    add_config_arguments(held, CONFIG_NAME)
    held.add_argument("--version", help="the version held (default: the one LATEST names)")
    held.add_argument("--reason", default="held by an operator", help="why, for whoever reads the marker")
    held.set_defaults(func=cmd_hold)

    released = sub.add_parser("release", allow_abbrev=False, help="lift the hold: the next night publishes again")
    add_config_arguments(released, CONFIG_NAME)
    released.set_defaults(func=cmd_release)

    back = sub.add_parser("rollback", allow_abbrev=False,
                          help="serve an earlier version: LATEST moved to it, held, the current one rejected, reloaded")
    add_config_arguments(back, CONFIG_NAME)
    back.add_argument("--to", required=True, help="the recommendations version to serve")
    back.add_argument("--reason", default="", help="why, recorded in REJECTED and the hold")
    back.add_argument("--url", help="the running botify to reload (default: server.host and server.port)")
    back.add_argument("--token-file", help="read the admin token from this file (default: BOTIFY_ADMIN_TOKEN, "
                                           "BOTIFY_ADMIN_TOKEN_FILE, admin.token)")
    back.add_argument("--timeout", type=float, default=600, help="seconds to wait for the reload (default 600)")
    back.set_defaults(func=cmd_rollback)

    rotate = sub.add_parser("rotate-logs", allow_abbrev=False, help="complete every open event log file now (all workers)")
    add_config_arguments(rotate, CONFIG_NAME)
    rotate.add_argument("--url", help="ask this running botify (POST /admin/rotate-logs) instead of the local dir")
    rotate.add_argument("--token-file", help="read the admin token from this file (default: BOTIFY_ADMIN_TOKEN, "
                                             "BOTIFY_ADMIN_TOKEN_FILE, admin.token)")
    rotate.add_argument("--timeout", type=float, default=10, help="seconds to wait for the workers (default 10)")
    rotate.set_defaults(func=cmd_rotate)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
