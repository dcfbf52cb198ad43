"""A market that changes: does fullprocess.py keep a model that is right for the market as it is?

Part 1, the pipeline (`--batches`): a scratch project bootstraps on the shipped data (10,000
clients of the usual market), then batches of --rows rows arrive (100 and 1,000 by default): a
stable stretch, a harmless shift of the inputs (bigger clients, who leave as such clients always
did), a lasting change of how the inputs relate to leaving (--change, `relation-strong` by
default), and a return to the usual market. After each batch fullprocess.py runs (in this
process), and the live model's F1 and log loss are measured on 5,000 fresh clients of the market
of the moment, beside the best achievable: the same pipeline trained on 20,000 clients of it.

Part 2, the checks (`--checks`): how often each drift check fires on batches of 20, 100 and
1,000 rows that are unchanged or harmlessly shifted (false alarms) and on mild and strong
changes (detections), for a model trained on the shipped data, --repeats batches per cell.

Scenarios (`--scenario`): `sudden` (the phases above), `creeping` (the relation moves from the
usual market to --change a tenth of the way with each of ten batches, then stays for three),
`combined` (exits start to follow a combination of features: small clients whose activity fell),
`rate` (only the exit rate rises), `stable` (ten unchanged batches, then ten harmlessly shifted),
and `quiet-big` (large clients who use the service little leave: kept for validation only, never
looked at while choosing the system's settings).

After each batch: the outcome of the run, the live model (family, window, half-life), its F1 and
log loss against the best, the exit rate it forecasts for the market against the true rate, and
how often its expected-leavers interval holds the real count, over ROSTERS rosters of
ROSTER_ROWS clients of the market drawn from the evaluation rows.

Usage: python bench/market_simulation.py [--rows 100 1000] [--change relation-strong]
       [--scenario sudden] [--batches] [--checks] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "scripts")]

import fullprocess
import generate_data
from clientrisk.calllist import ranking
from clientrisk.config import HISTORY_CHECKS, load_config
from clientrisk.data.clientcsv import FEATURES, TARGET, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history
from clientrisk.model import scoring, training
from clientrisk.monitoring import drift, judging, recentfit

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
# Batches per phase, by batch size: (stable, harmless shift, lasting change, return).
PHASES = {100: (5, 5, 20, 20), 1000: (3, 3, 6, 6)}
EVALUATION_ROWS = 5000
BEST_TRAINING_ROWS = 20_000
ROSTERS, ROSTER_ROWS = 200, 1000
CHECK_SIZES = (20, 100, 1000)
CHECK_MARKETS = {
    "unchanged": "usual",
    "harmless: bigger": "bigger",
    "harmless: smaller": "smaller",
    "recent activity falls": "quieter",
    "mild change": "relation-mild",
    "strong change": "relation-strong",
    "other change": "engagement-led",
}


def clients(market: str, rows: int, rng: np.random.Generator):
    """Rows of a named market, with six-letter codes (apart from the shipped four-letter ones)."""
    numbers = rng.choice(26**6, size=rows, replace=False)
    digits = np.stack([(numbers // 26**power) % 26 for power in range(5, -1, -1)], axis=1)
    codes = np.array(["".join(row) for row in LETTERS[digits]])
    frame = generate_data.simulate_clients(rng, codes, market=generate_data.MARKETS[market])
    return frame


def between(first: str, last: str, share: float) -> str:
    """A market `share` of the way from `first` to `last` (every parameter), by name."""
    a, b = generate_data.MARKETS[first], generate_data.MARKETS[last]
    name = f"{last} {share:.0%}"
    generate_data.MARKETS[name] = generate_data.Market(
        *(x + share * (y - x) for x, y in zip(a, b, strict=True))
    )
    return name


def scenario_plan(scenario: str, rows: int, change: str) -> list[tuple[str, str]]:
    """(market, phase) per batch."""
    stable, shift, lasting, back = PHASES.get(rows, (3, 3, 6, 6))
    if scenario == "sudden":
        return (
            [("usual", "stable")] * stable
            + [("bigger", "shift")] * shift
            + [(change, "change")] * lasting
            + [("usual", "return")] * back
        )
    if scenario == "creeping":
        steps = 10
        creep = [(between("usual", change, (n + 1) / steps), "creeping") for n in range(steps)]
        return [("usual", "stable")] * stable + creep + [(change, "after")] * 3
    if scenario == "stable":
        return [("usual", "stable")] * 10 + [("bigger", "shift")] * 10
    if scenario == "rate":
        generate_data.MARKETS["rate"] = generate_data.Market(intercept=-1.6)
        return [("usual", "stable")] * stable + [("rate", "change")] * lasting
    market = {"combined": "combined", "quiet-big": "quiet-big"}[scenario]
    return [("usual", "stable")] * stable + [(market, "change")] * lasting


def as_features(frame):
    return frame.assign(**{name: frame[name].astype(float) for name in FEATURES})


def quality(model, evaluation) -> tuple[float, float]:
    """(F1, log loss) of `model` on `evaluation`."""
    probabilities = scoring.predict(model, evaluation)["probability"]
    return scoring.evaluate_model(model, evaluation)["f1"], log_loss(
        evaluation[TARGET], probabilities
    )


def interval_coverage(config, model, live, evaluation, rng) -> float:
    """How often the expected-leavers interval of the list holds the real count, on rosters of
    ROSTER_ROWS clients drawn from `evaluation`."""
    probabilities = scoring.predict(model, evaluation)["probability"].to_numpy()
    truth = evaluation[TARGET].to_numpy()
    with open_history(config.history_location) as history:
        calibration = judging.latest_calibration(config, history, live)
    rows = ranking.effective_training_rows(live.manifest)
    held = 0
    for _ in range(ROSTERS):
        roster = rng.choice(len(evaluation), ROSTER_ROWS, replace=False)
        interval = ranking.expected_leavers(probabilities[roster], rows, calibration)
        held += interval["low"] <= truth[roster].sum() <= interval["high"]
    return held / ROSTERS


# --- part 1: the pipeline through a changing market -------------------------------------------


def make_project(root: Path) -> Path:
    for folder in ("sourcedata", "testdata"):
        shutil.copytree(PROJECT_DIR / folder, root / folder)
    config = json.loads((PROJECT_DIR / "config.json").read_text())
    config.update(timing_repeats=1, settle_seconds=0, package_index_url="http://127.0.0.1:9/pypi")
    config["dependency_timeout_seconds"] = 1
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


def run_fullprocess(config_path: Path) -> dict:
    code = fullprocess.main(["--config", str(config_path)])
    with open_history(load_config(config_path).history_location) as history:
        run = history.latest_runs(1)[0]
    return {"code": code, "outcome": run.outcome, "reason": run.reason, "record": run.record}


def simulate(rows: int, plan, best: dict, evaluation: dict, seed: int) -> list[dict]:
    """Bootstrap, then the batches of `plan`; one line per batch."""
    rng = np.random.default_rng(seed)
    lines = []
    with tempfile.TemporaryDirectory(prefix="risk-market-") as scratch:
        config_path = make_project(Path(scratch))
        config = load_config(config_path)
        first = run_fullprocess(config_path)
        assert first["outcome"] == "bootstrapped", first
        for number, (market, phase) in enumerate(plan, start=1):
            frame = clients(market, rows, rng)
            path = config.input_dir / f"batch{number:03d}.csv"
            generate_data.write_csv(frame, path)
            started = time.perf_counter()
            result = run_fullprocess(config_path)
            seconds = time.perf_counter() - started
            model, live = modelstore.load_deployed_model(config.deploy_dir)
            f1, loss = quality(model, evaluation[market])
            forecast = scoring.predict(model, evaluation[market])["probability"].mean()
            coverage = interval_coverage(config, model, live, evaluation[market], rng)
            lines.append(
                {
                    "batch": number,
                    "phase": phase,
                    "market": market,
                    "outcome": result["outcome"],
                    "live": live.label,
                    "window": live.manifest.get("from_batch"),
                    "family": live.manifest.get("family", "logistic"),
                    "half_life": (live.manifest.get("weighting") or {}).get("half_life_rows"),
                    "f1": f1,
                    "f1_ratio": f1 / best[market][0],
                    "log_loss": loss,
                    "best_log_loss": best[market][1],
                    "rate_ratio": forecast / evaluation[market][TARGET].mean(),
                    "coverage": coverage,
                    "seconds": seconds,
                    "reason": result["reason"],
                }
            )
            print(format_line(rows, lines[-1]), flush=True)
    return lines


def format_line(rows: int, line: dict) -> str:
    return (
        f"| {rows:,} | {line['batch']} | {line['phase']} ({line['market']}) | {line['outcome']}"
        f" | {line['live']} ({line['family']}, from batch {line['window']}"
        + (f", half-life {line['half_life']:,}" if line["half_life"] else "")
        + f") | {line['f1']:.3f} |"
        f" {line['f1_ratio']:.2f} | {line['log_loss']:.3f} / {line['best_log_loss']:.3f} |"
        f" {line['rate_ratio']:.2f} | {line['coverage']:.0%} |"
    )


def summarise(rows: int, lines: list[dict]) -> None:
    """The goals: stable F1 >= 0.97 of the best; >= 0.9 within three 1,000-row batches of a new
    market, and again after the return."""
    per_phase = {}
    for line in lines:
        per_phase.setdefault(line["phase"], []).append(line)
    window = max(1, 3000 // rows)
    print(f"\nbatches of {rows:,} rows:")
    for phase, items in per_phase.items():
        ratios = [item["f1_ratio"] for item in items]
        after = ratios[window - 1 :] if len(ratios) >= window else ratios[-1:]
        retrains = sum(item["outcome"] in ("redeployed", "challenger kept out") for item in items)
        print(
            f"  {phase:<7} F1 of the best: min {min(ratios):.2f}, mean {np.mean(ratios):.2f};"
            f" from batch {min(window, len(ratios))} of the phase on: min {min(after):.2f};"
            f" retrains {retrains} of {len(items)} batches; exit rate forecast at the end"
            f" {items[-1]['rate_ratio']:.2f} of the true; interval holds the count"
            f" {np.mean([item['coverage'] for item in items]):.0%} of the time"
        )
    print("  why each retrain:")
    for line in lines:
        if line["outcome"] in ("redeployed", "challenger kept out"):
            print(f"    batch {line['batch']}: {line['reason'][:220]}")


# --- part 2: the checks ------------------------------------------------------------------------


def check_rates(repeats: int, seed: int) -> None:
    config = load_config(PROJECT_DIR / "config.json")
    shipped = [read_labelled_csv(path) for path in sorted(config.input_dir.glob("dataset*.csv"))]
    import pandas as pd

    train = pd.concat(shipped, ignore_index=True).drop_duplicates()
    test = read_labelled_csv(config.test_data_file)
    model, summary = training.fit_model(train)
    reference_rows = drift.with_trend(training.reference_sample(train))
    metrics = scoring.evaluate_model(model, test)
    # The calibrated check's reference, as the pipeline keeps it: out of fold on the training rows.
    reference = summary["check_reference"]
    test_predictions = scoring.predict(model, test)["prediction"]
    rng = np.random.default_rng(seed)
    names = [
        "calibrated",
        "recent model",
        "either (the default)",
        *HISTORY_CHECKS,
        "KS on the 3 columns",
        "KS with the trend",
    ]
    print(
        f"\n{repeats} batches per cell; model trained on the shipped data, F1 {metrics['f1']:.3f}"
    )
    print("| Batch rows | Market | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for size in CHECK_SIZES:
        chance = drift.sampling_f1(test[TARGET], test_predictions, size)
        for label, market in CHECK_MARKETS.items():
            flags = dict.fromkeys(names, 0)
            for _ in range(repeats):
                batch = as_features(clients(market, size, rng))
                predictions = scoring.predict(model, batch)
                f1 = scoring.evaluate_model(model, batch)["f1"]
                verdict = drift.model_still_right(
                    batch[TARGET], predictions["probability"], predictions["prediction"], reference
                )
                recent = recentfit.recent_model_check(
                    model, batch, predictions["probability"].to_numpy()
                )
                flags["calibrated"] += verdict["drift"]
                flags["recent model"] += recent["drift"]
                flags["either (the default)"] += verdict["drift"] or recent["drift"]
                for method in HISTORY_CHECKS:
                    flags[method] += drift.score_drift(method, f1, [metrics["f1"]], chance)["drift"]
                plain = drift.feature_drift(reference_rows, batch, FEATURES)
                flags["KS on the 3 columns"] += any(item["ks_drift"] for item in plain)
                derived = drift.feature_drift(
                    reference_rows, drift.with_trend(batch), (*FEATURES, drift.TREND)
                )
                flags["KS with the trend"] += any(item["ks_drift"] for item in derived)
            cells = " | ".join(f"{flags[name] / repeats:.0%}" for name in names)
            print(f"| {size:,} | {label} | {cells} |", flush=True)


def best_models(markets, seed: int):
    """(F1, log loss) of the best achievable model per market, and its evaluation rows."""
    best, evaluation = {}, {}
    for number, market in enumerate(markets):
        rng = np.random.default_rng(seed + 100 + number)
        evaluation[market] = as_features(clients(market, EVALUATION_ROWS, rng))
        rows = as_features(clients(market, BEST_TRAINING_ROWS, rng))
        # The best of the families, each trained on many rows of the market itself.
        best[market] = max(
            (
                quality(training.fit_model(rows, family=family)[0], evaluation[market])
                for family in ("logistic", "boosting")
            ),
        )
        print(
            f"best achievable in the {market} market: F1 {best[market][0]:.3f},"
            f" log loss {best[market][1]:.3f}",
            flush=True,
        )
    return best, evaluation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100])
    parser.add_argument("--change", default="relation-strong", choices=generate_data.MARKETS)
    parser.add_argument(
        "--scenario",
        default="sudden",
        choices=("sudden", "creeping", "combined", "rate", "stable", "quiet-big"),
    )
    parser.add_argument("--batches", action="store_true", help="part 1 only")
    parser.add_argument("--checks", action="store_true", help="part 2 only")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    both = not (args.batches or args.checks)
    os.environ["RISK_API_URL"] = "http://127.0.0.1:9"
    logging.disable(logging.WARNING)
    if args.batches or both:
        plans = {rows: scenario_plan(args.scenario, rows, args.change) for rows in args.rows}
        markets = sorted({market for plan in plans.values() for market, _ in plan})
        best, evaluation = best_models(markets, args.seed)
        columns = ("Rows", "Batch", "Phase (market)", "Outcome", "Live model", "F1", "of best")
        columns += ("Log loss / best", "Exit rate / true", "Interval holds")
        print("| " + " | ".join(columns) + " |")
        print("|" + " --- |" * len(columns))
        results = {}
        for rows in args.rows:
            results[rows] = simulate(rows, plans[rows], best, evaluation, args.seed + rows)
        for rows, lines in results.items():
            summarise(rows, lines)
    if args.checks or both:
        check_rates(args.repeats, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
