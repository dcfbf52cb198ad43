"""How each past call list did once later batches brought outcomes for the clients it named."""

import json
from html import unescape

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


# --- did the calls help? -------------------------------------------------------------------------


def write_contacts(folder, text):
    folder.mkdir(exist_ok=True)
    (folder / "contacts.csv").write_text(text)


def test_a_contacts_file_with_bad_rows_names_each_and_uses_the_rest(tmp_path):
    from datetime import date

    from clientrisk.data.contacts import read_contacts

    write_contacts(
        tmp_path / "contacts",
        "corporation,date,manager\n"
        "c00,2026-03-03,ann\n"
        ",2026-03-03,ann\n"
        "c01,3 March,bob\n"
        "c02,2099-01-01,bob\n"
        "c03\n"
        "\n"
        "c04,2026-03-04,cy\n",
    )
    (tmp_path / "contacts" / "other.csv").write_text("client,when\nc05,2026-03-01\n")
    found = read_contacts(tmp_path / "contacts", today=date(2026, 3, 10))
    assert (found.files, found.rows) == (1, 2)
    assert sorted(found.days) == ["c00", "c04"]
    path = tmp_path / "contacts" / "contacts.csv"
    assert found.problems[0].startswith(str(tmp_path / "contacts" / "contacts.csv"))
    assert f"{path} line 3: no corporation" in found.problems
    assert f"{path} line 4: date '3 March' is not a day as YYYY-MM-DD" in found.problems
    assert f"{path} line 5: date 2099-01-01 lies in the future" in found.problems
    assert any(problem.startswith(f"{path} line 6: 1 fields") for problem in found.problems)
    other = tmp_path / "contacts" / "other.csv"
    assert any(p.startswith(f"{other}: no column 'corporation', 'date'") for p in found.problems)
    assert found.contacted_since(["c00", "c04", "c09"], date(2026, 3, 4)) == [False, True, False]


def test_contacted_clients_are_compared_with_others_of_similar_risk_counted_by_hand():
    probabilities = np.array([0.9, 0.9, 0.85, 0.85, 0.05, 0.05])
    left = np.array([True, False, True, True, False, True])
    called = np.array([True, True, False, False, True, False])
    found = outcomes._compare(probabilities, left, called, np.ones(6, dtype=bool))
    # Band 80-100 %: called 1 of 2 left, others 2 of 2; band 0-10 %: called 0 of 1, others 1 of 1.
    # Weighed by the called clients of each band (2 and 1 of 3).
    assert found["matched"] == 3
    assert found["called_rate"] == round(2 / 3 * 0.5 + 1 / 3 * 0, 4)
    assert found["similar_rate"] == 1.0
    assert found["difference"] == round(1 / 3 - 1, 4)
    assert found["low"] < found["difference"] < found["high"]


class FakeContacts:
    def __init__(self, clients):
        self.clients = set(clients)

    def contacted_since(self, clients, _since):
        return [client in self.clients for client in clients]


def test_calls_that_keep_clients_show_up_against_similar_clients_not_called():
    rng = np.random.default_rng(4)
    clients = 4000
    entries = [
        (rank + 1, f"k{rank:04d}", p) for rank, p in enumerate(np.sort(rng.random(clients))[::-1])
    ]
    listed = {**a_ranking(1, 3), "entries": entries, "clients": clients}
    probabilities = np.array([entry[2] for entry in entries])
    called = rng.random(clients) < 0.5
    # A call halves the risk of leaving.
    left = rng.random(clients) < np.where(called, probabilities / 2, probabilities)
    rows = later_rows([(entry[1], int(gone), 4) for entry, gone in zip(entries, left, strict=True)])
    contacts = FakeContacts(entry[1] for entry, yes in zip(entries, called, strict=True) if yes)
    (found,) = outcomes.past_lists([listed], rows, chance_only, contacts=contacts)
    calls = found["calls"]
    assert not calls["experiment"]
    assert calls["high"] < 0  # fewer left among those called, beyond chance
    assert calls["similar_rate"] == pytest.approx(2 * calls["called_rate"], rel=0.2)
    assert "not an experiment" in outcomes.calls_sentence(calls)


def test_a_control_group_is_held_back_at_random_the_same_clients_on_every_list(deployed):
    config = json.loads(deployed.config_path.read_text())
    deployed.config_path.write_text(
        json.dumps({**config, "hold_back_share": 0.2, "calls_per_week": 30})
    )
    names = [f"h{index:04d}" for index in range(2000)]
    deployed.write_input("batch3.csv", roster(names))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    listed = pd.read_csv(deployed.root / "models" / "riskranking.csv", keep_default_na=False)
    held = set(listed.loc[listed["hold_back"] == "hold back", "corporation"])
    assert 0.17 < len(held) / len(listed) < 0.23
    calls = listed[listed["call_this_week"] == "yes"]
    assert len(calls) == 30
    assert not set(calls["corporation"]) & held
    assert calls["rank"].max() > 30  # the calls pass over who is held back
    # A later list holds back the same clients.
    deployed.write_input("batch4.csv", roster(names[:1000], month=5.0))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    again = pd.read_csv(deployed.root / "models" / "riskranking.csv", keep_default_na=False)
    assert set(again.loc[again["hold_back"] == "hold back", "corporation"]) == held & set(
        names[:1000]
    )
    summary = json.loads((deployed.root / "models" / "ranking.json").read_text())
    assert summary["hold_back_share"] == 0.2


def test_with_a_control_group_how_the_calls_did_is_an_experiment():
    rng = np.random.default_rng(5)
    clients = 4000
    entries = [
        (rank + 1, f"e{rank:04d}", p) for rank, p in enumerate(np.sort(rng.random(clients))[::-1])
    ]
    listed = {**a_ranking(1, 3), "entries": entries, "clients": clients, "hold_back_share": 0.3}
    names = [entry[1] for entry in entries]
    held = ranking.held_back(names, 0.3)
    probabilities = np.array([entry[2] for entry in entries])
    left = rng.random(clients) < np.where(held, probabilities, probabilities * 0.6)
    rows = later_rows([(name, int(gone), 4) for name, gone in zip(names, left, strict=True)])
    (found,) = outcomes.past_lists([listed], rows, chance_only, held_back=ranking.held_back)
    calls = found["calls"]
    assert calls["experiment"]
    assert calls["not_called"] == int(held.sum())
    assert calls["high"] < 0
    assert "An experiment" in outcomes.calls_sentence(calls)


def test_a_contacts_folder_feeds_the_comparison_and_its_bad_rows_are_shown(deployed):
    from datetime import UTC, datetime

    from test_dashboard import page, section, text_of

    config = json.loads(deployed.config_path.read_text())
    deployed.config_path.write_text(json.dumps({**config, "contacts_folder_path": "contacts"}))
    names = [f"r{index:03d}" for index in range(200)]
    deployed.write_input("batch3.csv", roster(names))
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    listed = pd.read_csv(deployed.root / "models" / "riskranking.csv")["corporation"].tolist()
    today = datetime.now(UTC).date().isoformat()
    called = listed[:40:2]
    write_contacts(
        deployed.root / "contacts",
        "corporation,date\n" + "".join(f"{name},{today}\n" for name in called) + "x,someday\n",
    )
    gone = [name for name in listed[:40] if name not in called]  # who was not called left
    rows = roster(listed[:40]).assign(exited=[int(name in gone) for name in listed[:40]])
    deployed.write_input("batch4.csv", rows)
    run_steps(deployed, "ingestion")
    ranking.run(deployed.config)
    summary = json.loads((deployed.root / "models" / "ranking.json").read_text())
    assert summary["contacts"]["rows"] == 20
    assert summary["contacts"]["problem_count"] == 1
    calls = summary["past_lists"][0]["calls"]
    assert (calls["called"], calls["called_left"]) == (20, 0)
    assert calls["reach"] == 39  # down to the lowest-ranked client contacted
    html = page(deployed)
    assert "line 22: date 'someday' is not a day" in unescape(text_of(section(html, "calls")))
    words = text_of(section(html, "past-lists"))
    assert "Did the calls help?" in words
    assert "not an experiment" in words
