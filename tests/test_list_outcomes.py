"""How each past call list did once later batches brought outcomes for the clients it named."""

import json

import numpy as np
import pandas as pd
import pytest

from clientrisk.api.app import create_app
from clientrisk.calllist import outcomes, ranking
from clientrisk.data.clientcsv import FEATURES
from conftest import run_steps

PROBABILITIES = [0.9 - 0.03 * rank for rank in range(25)]  # 0.90, 0.87, ... 0.18


def a_ranking(id_, through_batch, clients=25, version="v0001", sha="aaa"):
    entries = [(rank + 1, f"c{rank:02d}", PROBABILITIES[rank]) for rank in range(clients)]
    return {
        "id": id_,
        "made_at": "2026-03-02T09:00:00Z",
        "model_sha256": sha,
        "model_version": version,
        "through_batch": through_batch,
        "clients": clients,
        "entries": entries,
    }


def later_rows(rows):
    """(corporation, exited, batch) rows of batches after the list."""
    return pd.DataFrame(rows, columns=["corporation", "exited", "batch"]).astype(
        {"exited": "Int8", "batch": "int64"}
    )


def chance_only(probabilities, _version):
    return ranking.expected_leavers(probabilities)


OUTCOMES = later_rows(
    [
        ("c00", 1, 4),
        ("c01", 0, 4),
        ("c02", 1, 4),
        ("c05", 0, 4),
        ("c21", 0, 4),
        ("c22", 0, 4),
        ("c01", 1, 5),  # stayed, then left: left
        ("c30", 1, 5),  # on no list
        ("c03", 1, 3),  # in the list's own batch: not an outcome since
    ]
)


def test_a_past_list_is_counted_against_the_outcomes_of_later_batches():
    (found,) = outcomes.past_lists([a_ranking(1, through_batch=3)], OUTCOMES, chance_only)
    top, whole = found["parts"]
    assert found["outcome_batches"] == [3, 4, 5][1:]
    # Top 20: c00, c01, c02 and c05 have an outcome since; c00, c01 and c02 left.
    assert (top["top"], top["with_outcome"], top["left"]) == (20, 4, 3)
    assert top["expected"] == round(0.90 + 0.87 + 0.84 + 0.75, 1)
    # Base rate: 3 of the 6 clients of the list with an outcome since left.
    assert found["base_rate"] == 0.5
    assert top["at_base_rate"] == 2.0
    assert top["estimated_share"] == round(float(np.mean(PROBABILITIES[:20])), 4)
    assert (whole["top"], whole["clients"]) == (None, 25)
    assert (whole["with_outcome"], whole["left"]) == (6, 3)
    assert whole["expected"] == round(0.90 + 0.87 + 0.84 + 0.75 + 0.27 + 0.24, 1)
    bands = {band["band"]: band for band in found["bands"]}
    assert bands["80-100 %"] == {
        "band": "80-100 %",
        "clients": 3,
        "expected_share": round((0.90 + 0.87 + 0.84) / 3, 4),
        "share_left": 1.0,
    }
    assert bands["20-40 %"]["clients"] == 2
    assert bands["20-40 %"]["share_left"] == 0.0


def test_the_sentences_say_what_the_counts_say():
    (found,) = outcomes.past_lists([a_ranking(1, through_batch=3)], OUTCOMES, chance_only)
    first, second = outcomes.sentences(found)
    assert first.startswith(
        "Of the 20 clients at the top of the list of 2 March 2026 (v0001, through batch 3),"
        " 4 have an outcome since: 3 left, 3.4 were expected"
    )
    assert "2.0 at the base rate" in first
    assert first.endswith("as expected.")
    assert second.startswith("Of all 25 clients on that list, 6 have an outcome since: 3 left")


def test_lists_of_the_same_batches_and_model_count_once_and_lists_without_outcomes_not_at_all():
    rankings = [
        a_ranking(1, 2),
        a_ranking(2, 3),
        a_ranking(3, 3),  # made again from the same batches by the same model
        a_ranking(4, 3, version="v0002", sha="bbb"),
        a_ranking(5, 5),  # nothing arrived since
    ]
    found = outcomes.past_lists(rankings, OUTCOMES, chance_only)
    assert [(f["through_batch"], f["model_version"]) for f in found] == [
        (3, "v0002"),
        (3, "v0001"),
        (2, "v0001"),
    ]
    # The list through batch 2 sees batch 3's rows too: c03 left.
    assert found[-1]["parts"][0]["left"] == 4


def test_leavers_beyond_the_interval_are_said_and_found():
    many = later_rows([(f"c{rank:02d}", 1, 4) for rank in range(20, 25)])  # the five lowest left
    (found,) = outcomes.past_lists([a_ranking(1, 3)], many, chance_only)
    whole = found["parts"][-1]
    assert whole["left"] == 5
    assert whole["high"] < 5
    assert whole["verdict"] == "more than expected"
    assert outcomes.outside_interval(found) == [whole]


def test_a_list_longer_than_the_history_keeps_says_how_much_is_counted():
    kept = a_ranking(1, 3)
    kept["clients"] = 40_000
    (found,) = outcomes.past_lists([kept], OUTCOMES, chance_only)
    assert outcomes.sentences(found)[-1].startswith(
        "Of the first 25 of its 40,000 clients (the history keeps no more of that list)"
    )


# --- through the pipeline ------------------------------------------------------------------------


def roster(names, month=2.0):
    return pd.DataFrame(
        [(name, month, 120.0, 5.0) for name in names], columns=["corporation", *FEATURES]
    )


def test_ranking_json_says_how_the_previous_list_did_when_outcomes_arrive(deployed):
    names = [f"r{index:03d}" for index in range(60)]
    deployed.write_input("batch3.csv", roster(names))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    first = json.loads((deployed.root / "models" / "ranking.json").read_text())
    assert first["past_lists"] == []
    listed = pd.read_csv(deployed.root / "models" / "riskranking.csv")
    top = listed["corporation"].head(20).tolist()
    left, stayed = top[:7], top[7:12]
    rows = roster(left + stayed).assign(exited=[1] * 7 + [0] * 5)
    deployed.write_input("batch4.csv", rows)
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    summary = json.loads((deployed.root / "models" / "ranking.json").read_text())
    found = summary["past_lists"][0]
    assert found["through_batch"] == first["through_batch"]
    top20 = found["parts"][0]
    assert (top20["top"], top20["with_outcome"], top20["left"]) == (20, 12, 7)
    probability = dict(zip(listed["corporation"], listed["probability"], strict=True))
    assert top20["expected"] == pytest.approx(sum(probability[n] for n in left + stayed), abs=0.06)
    assert "called" in summary["calls_caveat"]


def test_the_dashboard_shows_how_the_previous_list_did_with_a_chart_and_the_caveat(deployed):
    from test_dashboard import page, section, text_of

    names = [f"r{index:03d}" for index in range(60)]
    deployed.write_input("batch3.csv", roster(names))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    assert 'id="past-lists"' not in page(deployed)
    top = pd.read_csv(deployed.root / "models" / "riskranking.csv")["corporation"].head(20)
    deployed.write_input("batch4.csv", roster(top[:10]).assign(exited=[1] * 4 + [0] * 6))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    html = section(page(deployed), "past-lists")
    words = text_of(html)
    assert "Of the 20 clients at the top of the list of" in words
    assert "10 have an outcome since: 4 left" in words
    assert "<svg" in html
    assert html.count("<rect") == 3  # the top 20, the top 50 and the whole list of 60
    assert "affected by the calls" in words
    assert "whole list" in words
    metrics = create_app(deployed.config_path).test_client().get("/metrics").get_data(as_text=True)
    assert 'risk_past_list_with_outcome{part="top_20"} 10.0' in metrics
    assert 'risk_past_list_left{part="top_20"} 4.0' in metrics
    assert 'risk_past_list_outside_interval{part="whole"}' in metrics
    run_steps(deployed, "diagnostics")
    report = json.loads((deployed.root / "models" / "diagnostics.json").read_text())
    assert report["ranking"]["past_lists"][0]["parts"][0]["left"] == 4
    served = create_app(deployed.config_path).test_client().get("/diagnostics").get_json()
    assert served["ranking"]["past_lists"][0]["parts"][0]["with_outcome"] == 10
