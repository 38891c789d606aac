"""The remote agent against a real HTTP server on loopback (sim.standin_server, stdlib http.server in a thread)."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.redis_server import free_port
from sim.episodes import play_episodes
from sim.remote_agent import BotifyError, BotifyUnreachable, RemoteAgent
from sim.standin_server import StandInBotify
from tests.sim.conftest import make_env_from_world


def agent_for(server, n_tracks, **kwargs):
    return RemoteAgent("127.0.0.1", server.port, timeout_s=5, retries=kwargs.pop("retries", 2),
                       backoff_s=0.01, n_tracks=n_tracks, **kwargs)


def test_sessions_speak_the_course_protocol_over_one_connection(small_world):
    tracks, users = small_world
    env = make_env_from_world(small_world)
    with StandInBotify(tracks.size(), seed=1) as server:
        agent = agent_for(server, tracks.size())
        stats = play_episodes(env, agent, seed=3, episodes=range(20))
        agent.close()
    nexts = [r for r in server.requests if r[0] == "next"]
    lasts = [r for r in server.requests if r[0] == "last"]
    assert len(lasts) == 20 and len(nexts) == sum(s.steps for s in stats)
    assert server.connections == 1  # keep-alive: one connection for all requests
    # Each session: first /next carries the first track with time 0, /last closes it for the same user.
    i = 0
    for s in stats:
        session = server.requests[i : i + s.steps + 1]
        assert [kind for kind, _, _ in session] == ["next"] * s.steps + ["last"]
        assert {user for _, user, _ in session} == {s.user}
        assert session[0][2]["time"] == 0.0
        assert round(sum(body["time"] for _, _, body in session), 2) == pytest.approx(s.time)
        i += s.steps + 1


def test_recommended_tracks_are_played_next(small_world):
    """The track botify answers is the one the next request reports as played."""
    tracks, _ = small_world
    env = make_env_from_world(small_world)
    answers = []

    class Recording(RemoteAgent):
        def recommend(self, observation, reward):
            track = super().recommend(observation, reward)
            answers.append(track)
            return track

    with StandInBotify(tracks.size(), seed=2) as server:
        agent = Recording("127.0.0.1", server.port, n_tracks=tracks.size())
        play_episodes(env, agent, seed=4, episodes=range(5))
        agent.close()
    pos = 0
    for idx, (kind, _, body) in enumerate(server.requests):
        if idx and server.requests[idx - 1][0] != "last":
            assert body["track"] == answers[pos]
            pos += 1
    assert pos == len(answers) > 0


def test_reconnects_when_the_server_drops_a_keep_alive_connection(small_world):
    tracks, _ = small_world
    env = make_env_from_world(small_world)
    with StandInBotify(tracks.size(), drop_every=3) as server:
        agent = agent_for(server, tracks.size())
        stats = play_episodes(env, agent, seed=5, episodes=range(10))
        agent.close()
    assert len([r for r in server.requests if r[0] == "last"]) == 10
    assert server.connections > 1 and sum(s.steps for s in stats) > 0


def test_unreachable_botify_is_a_clear_error_after_retries(small_world):
    port = free_port()  # nothing listens here
    agent = RemoteAgent("127.0.0.1", port, timeout_s=1, retries=2, backoff_s=0.01)
    with pytest.raises(BotifyUnreachable, match=rf"127.0.0.1:{port} is unreachable.*failed 3 times"):
        agent.recommend({"user": 1, "track": 2}, 0.0)


def test_a_server_that_never_answers_times_out(small_world):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (kernel backlog) but never replies
    try:
        agent = RemoteAgent("127.0.0.1", listener.getsockname()[1], timeout_s=0.3, retries=1, backoff_s=0.01)
        with pytest.raises(BotifyUnreachable, match="timed out"):
            agent.recommend({"user": 1, "track": 2}, 0.0)
    finally:
        listener.close()


class _Fixed(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status, body = 200, b"{}"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.mark.parametrize("status,body,message", [
    (400, b'{"error": "bad track"}', "HTTP 400.*bad track"),
    (200, b"<html>", "non-JSON"),
    (200, b'{"user": 1}', "no integer 'track'"),
    (200, b'{"user": 1, "track": 999999}', "not in this world"),
])
def test_bad_answers_are_reported_not_retried(status, body, message):
    handler = type("H", (_Fixed,), {"status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        agent = RemoteAgent("127.0.0.1", server.server_address[1], retries=3, backoff_s=0.01, n_tracks=100)
        with pytest.raises(BotifyError, match=message) as info:
            agent.recommend({"user": 1, "track": 2}, 0.5)
        assert not isinstance(info.value, BotifyUnreachable)
    finally:
        server.shutdown()
        server.server_close()


def test_standin_rejects_bad_bodies_with_4xx_json():
    import http.client

    with StandInBotify(10) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/next/1", body=b'{"track": "x"}', headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 400 and "error" in json.loads(response.read())
        conn.close()


def test_first_track_time_is_what_goes_on_the_wire(small_world):
    """run_config.first_track_time = 1.0 reproduces the course's client: its first /next of a session says time 1.0,
    and the session's own time (recommended tracks only) does not change with it."""
    tracks, _ = small_world
    sent = {}
    for first in (0.0, 1.0):
        env = make_env_from_world(small_world)
        with StandInBotify(tracks.size(), seed=1) as server:
            agent = agent_for(server, tracks.size())
            stats = play_episodes(env, agent, seed=3, episodes=range(10), first_track_time=first)
            agent.close()
        firsts, i = [], 0
        for s in stats:
            firsts.append(server.requests[i][2]["time"])
            i += s.steps + 1
        sent[first] = (firsts, [s.time for s in stats])
    assert set(sent[0.0][0]) == {0.0} and set(sent[1.0][0]) == {1.0}
    assert sent[0.0][1] == sent[1.0][1]
