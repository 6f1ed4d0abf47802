# Helpers shared by the rules: paths, wildcard constraints and stage parameters.
import json
import re
from pathlib import Path

DATASET = config["data"]["dataset"]
SUBJECTS = config["data"]["subjects"]
DATA = Path(config["data"]["root"]) / DATASET
TRUTH = DATA / "truth"
RESULTS = Path(config["results"]) / DATASET
LOGS = Path("logs") / DATASET
SYNTHETIC = config["synthesize"]["enabled"]


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),


def stage_params(section):
    """The stage's config section plus the seed, as the JSON `python -m pipeline` reads.

    Passed through `params:` so that changing a stage's parameters reruns that stage (and
    what depends on it) only. Mirrors pipeline.config.stage_params.
    """
    return json.dumps({"seed": config["seed"], **config[section]}, sort_keys=True)


def all_targets():
    """Every final output of the implemented stages."""
    targets = expand(RESULTS / "manifest" / "{subject}.json", subject=SUBJECTS)
    if SYNTHETIC:
        targets += expand(
            RESULTS / "synthetic_checks" / "{subject}.json", subject=SUBJECTS
        )
    return targets
