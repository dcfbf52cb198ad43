"""How each call list did once its outcomes arrived, beside what it said before they did.

A scratch project bootstraps on the shipped data; then, week by week, a roster of --rows current
clients of the market of the moment arrives without outcomes (fullprocess.py runs and makes the
list), and their outcomes, drawn from the true market, are released as a labelled batch (it runs
again: it judges, may retrain, and works out how the list did). For each list: the share who left
among its top 20, 50 and 100 (all of them have an outcome once released) beside the share its
probabilities estimated when it was made and beside the base rate; and whether the count of
leavers of the whole list fell inside the interval of expected leavers the list gave when it was
made (`ranking.json`) and the one it is judged by afterwards (`past_lists`).

Scenarios (`--scenario`, several at once): `stable` (the usual market), `sudden` (three usual
weeks, then the relation of inputs to leaving changes for good), `creeping` (it moves a fifth of
the way each week), `rate` (only the exit rate rises), `quiet-big` (large clients who use the
service little leave: kept for validation only, never looked at while choosing the settings).

Usage: python bench/list_outcomes.py [--scenario stable sudden creeping rate quiet-big]
       [--rows 2000] [--weeks 8] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "scripts"), str(PROJECT_DIR / "bench")]

from market_simulation import between, clients, make_project, run_fullprocess

import generate_data
from clientrisk.config import load_config
from clientrisk.data.clientcsv import FEATURES, TARGET

TOPS = (20, 50, 100)


def plan(scenario: str, weeks: int) -> list[str]:
    """The market of each week."""
    if scenario == "stable":
        return ["usual"] * weeks
    if scenario == "creeping":
        return [between("usual", "relation-strong", min(1, (n + 1) / 5)) for n in range(weeks)]
    if scenario == "rate":
        generate_data.MARKETS["rate"] = generate_data.Market(intercept=-1.6)
    changed = {"sudden": "relation-strong", "rate": "rate", "quiet-big": "quiet-big"}[scenario]
    return ["usual"] * 3 + [changed] * (weeks - 3)


def simulate(scenario: str, rows: int, weeks: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    found = []
    with tempfile.TemporaryDirectory(prefix="risk-lists-") as scratch:
        config_path = make_project(Path(scratch))
        config = load_config(config_path)
        assert run_fullprocess(config_path)["outcome"] == "bootstrapped"
        for week, market in enumerate(plan(scenario, weeks), start=1):
            frame = clients(market, rows, rng)
            roster_path = config.input_dir / f"roster{week:02d}.csv"
            generate_data.write_csv(frame, roster_path, columns=["corporation", *FEATURES])
            run_fullprocess(config_path)
            made = json.loads((config.model_dir / "ranking.json").read_text())
            generate_data.write_csv(frame, config.input_dir / f"outcomes{week:02d}.csv")
            run = run_fullprocess(config_path)
            judged = json.loads((config.model_dir / "ranking.json").read_text())
            past = next(
                item
                for item in judged["past_lists"]
                if item["through_batch"] == made["through_batch"]
                and item["model_version"] == made["model_version"]
            )
            parts = {part["top"]: part for part in past["parts"]}
            whole = parts[None]
            said = made["expected_leavers"]
            line = {
                "scenario": scenario,
                "week": week,
                "market": market,
                "model": made["model_version"],
                "base_rate": past["base_rate"],
                "true_rate": float(frame[TARGET].mean()),
                "left": whole["left"],
                "said": (said["low"], said["expected"], said["high"]),
                "said_holds": said["low"] <= whole["left"] <= said["high"],
                "judged_holds": whole["verdict"] == "as expected",
                "parts_out": [
                    top for top, part in parts.items() if top and part["verdict"] != "as expected"
                ],
                "then": run["outcome"],
            }
            for top in TOPS:
                line[f"top_{top}"] = (parts[top]["share_left"], parts[top]["estimated_share"])
            found.append(line)
            print(format_line(line), flush=True)
    return found


def format_line(line: dict) -> str:
    tops = "  ".join(
        f"top {top} {line[f'top_{top}'][0]:.2f} (est {line[f'top_{top}'][1]:.2f})" for top in TOPS
    )
    low, expected, high = line["said"]
    return (
        f"{line['scenario']:<9} week {line['week']:>2} {line['market'][:22]:<22} {line['model']}"
        f"  {tops}  base {line['base_rate']:.2f}  left {line['left']:>4} of"
        f" {expected:>6.1f} ({low}-{high}) {'in' if line['said_holds'] else 'OUT'}"
        f" | judged {'in' if line['judged_holds'] else 'OUT'}"
        + (f", top {'/'.join(map(str, line['parts_out']))} OUT" if line["parts_out"] else "")
        + f"  then {line['then']}"
    )


def summarise(lines: list[dict]) -> None:
    print(
        "\nscenario   lists  top20 real/est  top50 real/est  top100 real/est  base  "
        "interval held (when made / as judged)"
    )
    for scenario in dict.fromkeys(line["scenario"] for line in lines):
        mine = [line for line in lines if line["scenario"] == scenario]
        cells = []
        for top in TOPS:
            real = np.mean([line[f"top_{top}"][0] for line in mine])
            estimate = np.mean([line[f"top_{top}"][1] for line in mine])
            cells.append(f"{real:.2f}/{estimate:.2f}")
        base = np.mean([line["base_rate"] for line in mine])
        said = sum(line["said_holds"] for line in mine)
        judged = sum(line["judged_holds"] for line in mine)
        tops_out = sum(bool(line["parts_out"]) for line in mine)
        print(
            f"{scenario:<10} {len(mine):>5}  {cells[0]:>14}  {cells[1]:>14}  {cells[2]:>15}"
            f"  {base:.2f}  {said}/{len(mine)} / {judged}/{len(mine)}"
            f"  (a top part outside: {tops_out})"
        )
    said = sum(line["said_holds"] for line in lines)
    judged = sum(line["judged_holds"] for line in lines)
    print(
        f"all        {len(lines):>5}  interval held {said}/{len(lines)} when made,"
        f" {judged}/{len(lines)} as judged"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        nargs="+",
        default=["stable", "sudden", "creeping", "rate", "quiet-big"],
        choices=["stable", "sudden", "creeping", "rate", "quiet-big"],
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    lines = []
    for offset, scenario in enumerate(args.scenario):
        lines += simulate(scenario, args.rows, args.weeks, args.seed + offset)
    summarise(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
