"""Which treatment a user gets in each active experiment, and which recommender serves them.

Assignment is ``common.experiments.assign`` (the course's hashing, so old and
new logs agree). The first name in ``active_experiments`` routes requests; all
active experiments are recorded on every log line.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from common.experiments import assign

from botify import recommenders
from botify.recommenders import Recommender


class Experiments:
    def __init__(self, config: dict):
        self.active: List[str] = list(config["active_experiments"])
        self.specs = {name: config["experiments"][name] for name in self.active}
        settings = config["recommenders"]
        # One instance per recommender name, shared by every arm that uses it.
        self.instances: Dict[str, Recommender] = {}
        for spec in self.specs.values():
            for rec_name in spec["treatments"].values():
                if rec_name not in self.instances:
                    self.instances[rec_name] = recommenders.build(rec_name, settings)

    def treatments(self, user: int) -> Dict[str, str]:
        return {name: assign(user, name, int(spec["split"])) for name, spec in self.specs.items()}

    def route(self, user: int) -> Tuple[Dict[str, str], Recommender]:
        treatments = self.treatments(user)
        primary = self.active[0]
        rec_name = self.specs[primary]["treatments"][treatments[primary]]
        return treatments, self.instances[rec_name]
