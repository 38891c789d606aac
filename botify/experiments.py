"""Which treatment a user gets in each active experiment, and which recommender serves them.

Assignment is ``common.experiments.assign`` (the course's hashing, so old and
new logs agree). The first name in ``active_experiments`` routes requests; all
active experiments are recorded on every log line. An arm is a recommender
name (``Ranked``) or a recommender over a named recommendation set
(``{recommender: Ranked, set: als}``), so one experiment can compare models.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from common.experiments import assign

from botify import recommenders
from botify.recommenders import Recommender
from botify.settings import arm


class Experiments:
    def __init__(self, config: dict):
        self.active: List[str] = list(config["active_experiments"])
        self.specs = {name: config["experiments"][name] for name in self.active}
        settings = config["recommenders"]
        primary = self.specs[self.active[0]]
        # The routing experiment's arms: treatment -> its recommender, reading its recommendation set.
        # One instance per (recommender, set), shared by the arms that name the same pair.
        instances: Dict[Tuple[str, str], Recommender] = {}
        self.arms: Dict[str, Recommender] = {}
        for treatment, spec in primary["treatments"].items():
            key = arm(spec)
            if key not in instances:
                instances[key] = recommenders.build(key[0], settings, recs_set=key[1])
            self.arms[treatment] = instances[key]

    def treatments(self, user: int) -> Dict[str, str]:
        return {name: assign(user, name, int(spec["split"])) for name, spec in self.specs.items()}

    def route(self, user: int) -> Tuple[Dict[str, str], Recommender]:
        treatments = self.treatments(user)
        return treatments, self.arms[treatments[self.active[0]]]
