"""Make `old_layout_model.pkl`: a model pickled by the version whose modules stood at the top level.

Models deployed before the package existed refer to their classes by the old module names
(`features.ActivityImputer`, `project.client_features`, ...). The test that loads this file
checks that such a model still loads and predicts what it predicted when it was made
(`old_layout_predictions.csv`). The model is trained on 800 seeded clients from the shipped
generator, by the code of COMMIT, checked out in a temporary git worktree.

Usage (from the project folder, in its environment):
    python tests/data/make_old_layout_model.py [--commit COMMIT]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
PROJECT_DIR = DATA_DIR.parent.parent
# The last commit with every module at the top level.
COMMIT = "6f5240a"

TRAIN = """
import pickle, sys
import numpy as np
import generate_data
import training
from clientdata import FEATURES

rng = np.random.default_rng(7)
rows = generate_data.simulate_clients(rng, generate_data.client_codes(rng, 800), False)
model, _ = training.fit_model(rows)
out = sys.argv[1]
with open(out + "/old_layout_model.pkl", "wb") as handle:
    pickle.dump(model, handle)
probe = rows.head(40).copy()
probe.loc[probe.index[:3], "lastmonth_activity"] = np.nan  # the gap fill is exercised too
probe["probability"] = model.predict_proba(probe[list(FEATURES)])[:, 1]
probe["prediction"] = model.predict(probe[list(FEATURES)])
probe.to_csv(out + "/old_layout_predictions.csv", index=False)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=COMMIT, help=f"version to pickle with ({COMMIT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.commit],
            cwd=PROJECT_DIR,
            check=True,
        )
        try:
            subprocess.run(
                [sys.executable, "-c", TRAIN, str(DATA_DIR)],
                cwd=tree,
                env={"PYTHONPATH": f"{tree}:{tree / 'scripts'}", "PATH": "/usr/bin:/bin"},
                check=True,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=PROJECT_DIR)
    print(f"wrote {DATA_DIR / 'old_layout_model.pkl'} and old_layout_predictions.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
