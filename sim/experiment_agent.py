"""botify's experiment, played in process: each user answered by their arm's recommender, every request logged.

What botify does per request, without HTTP or Redis: the user's treatment in
every active experiment by the course's hashing (``common.experiments``), the
recommender named by the first experiment's arm, and one event-log line per
``next`` and per ``last`` (``common.event_line``, botify's own format). The
catalog-level recommenders are botify's rules (``common.recommender_rules``) over
the simulator's in-memory view (``sim.policies``); recommenders that need
botify's per-user state (``Ranked``, ``Indexed``) are not played here.

The agent keeps the session's events; the caller stamps and collects them
(``sim.simulate_logs``), so time stamps follow the episode number and do not
depend on which process played the episode.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from common.experiments import assign
from sim.policies import Agent, RandomAgent, StickyArtistAgent, TopPopAgent

# botify's recommender names (conf/botify.yml) -> the agent playing the same rule in process.
PLAYABLE = ("Random", "TopPop", "StickyArtist")

# (message, track reported, its time, recommendation or None)
Request = Tuple[str, int, float, Optional[int]]


def _policy(name: str, top_tracks: Optional[List[int]], top_k: int) -> Agent:
    if name == "Random":
        return RandomAgent()
    if name == "TopPop":
        # No list means what it means in botify: TopPop falls back to Random.
        return TopPopAgent(top_tracks, top_k)
    if name == "StickyArtist":
        return StickyArtistAgent()
    raise ValueError(f"recommender {name!r} needs botify's per-user state and cannot be played in process "
                     f"(playable: {', '.join(PLAYABLE)})")


class ExperimentAgent(Agent):
    name = "experiment"

    def __init__(self, experiments: Dict[str, dict], active: Sequence[str], top_tracks: Optional[List[int]],
                 top_k: int):
        """``experiments``: botify.yml's ``experiments``; ``active``: the active names, the first one routes."""
        if not active:
            raise ValueError("no active experiment")
        missing = [name for name in active if name not in experiments]
        if missing:
            raise ValueError(f"experiments not defined in botify's configuration: {', '.join(missing)}")
        self.splits = {name: int(experiments[name]["split"]) for name in active}
        self.primary = active[0]
        # One agent per recommender name, shared by the arms that use it, as in botify.
        by_name = {name: _policy(name, top_tracks, top_k) for name in set(experiments[self.primary]["treatments"].values())}
        self.arms = {arm: by_name[name] for arm, name in experiments[self.primary]["treatments"].items()}
        self._treatments: Dict[int, Dict[str, str]] = {}
        self.requests: List[Request] = []

    def treatments(self, user: int) -> Dict[str, str]:
        found = self._treatments.get(user)
        if found is None:
            found = self._treatments[user] = {name: assign(user, name, split) for name, split in self.splits.items()}
        return found

    def start(self, env, rng) -> None:
        super().start(env, rng)
        self.user = env.session.user.user
        arm = self.treatments(self.user)[self.primary]
        if arm not in self.arms:
            raise ValueError(f"experiment {self.primary} assigns arm {arm} but names no recommender for it")
        self.arm = self.arms[arm]
        self.arm.start(env, rng)
        self.requests = []

    def recommend(self, observation, reward) -> int:
        track = self.arm.recommend(observation, reward)
        self.requests.append(("next", observation["track"], reward, track))
        return track

    def finish(self, observation, reward) -> None:
        self.requests.append(("last", observation["track"], reward, None))
