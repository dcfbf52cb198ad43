"""The call list: current clients only, each with reasons honest to the deployed model, and what
changed since the previous list."""

import json

import numpy as np
import pandas as pd
import pytest

from clientrisk.calllist import ranking, reasons
from clientrisk.data.clientcsv import FEATURES
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history
from clientrisk.model import training
from clientrisk.pipeline import fullprocess
from conftest import client_rows, run_steps


def roster(rows: list[tuple]) -> pd.DataFrame:
    """Current clients without an outcome: (corporation, last month, last year, employees)."""
    return pd.DataFrame(rows, columns=["corporation", *FEATURES])


def live_model(project):
    model, deployment = modelstore.load_deployed_model(project.config.deploy_dir)
    return model, deployment


def typical_of(model):
    return reasons.typical_values(model)


def typical_client(model) -> dict:
    _month, year, employees = reasons.typical_values(model)
    return {
        "lastmonth_activity": year / 12,
        "lastyear_activity": year,
        "number_of_employees": employees,
    }


def test_only_clients_still_with_us_are_ranked_on_their_latest_observation(deployed):
    history = pd.DataFrame(
        {
            "corporation": ["left", "back", "stay", "same"],
            "lastmonth_activity": [10.0, 10.0, 10.0, 10.0],
            "lastyear_activity": [120.0, 120.0, 120.0, 120.0],
            "number_of_employees": [5.0, 5.0, 5.0, 5.0],
            "exited": [0, 1, 0, 0],
        }
    )
    deployed.write_input("batch3.csv", history)
    later = pd.DataFrame(
        {
            "corporation": ["left", "back", "stay", "same", "same"],
            "lastmonth_activity": [0.0, 7.0, 3.0, 9.0, 2.0],
            "lastyear_activity": [120.0, 130.0, 140.0, 120.0, 120.0],
            "number_of_employees": [5.0, 6.0, 7.0, 5.0, 5.0],
            "exited": [1, None, None, 1, None],
        }
    )
    deployed.write_input("batch4.csv", later)
    run_steps(deployed, "ingestion")
    with_us = ranking.run(deployed.config)
    listed = pd.read_csv(deployed.root / "models" / ranking.RANKING_FILE).set_index("corporation")
    # Left in the latest batch: never on the list, even with a row without an outcome beside it.
    assert "left" not in listed.index
    assert "same" not in listed.index
    # Came back (a later row without an outcome) and stayed: ranked on the newest figures.
    assert listed.loc["back", "lastmonth_activity"] == 7
    assert listed.loc["stay", "number_of_employees"] == 7
    # The shipped-process clients who left are not on it either.
    stored = pd.read_csv(deployed.root / "ingesteddata" / "finaldata.csv")
    leavers = set(stored.loc[stored["exited"] == 1, "corporation"]) - {"back"}
    assert not leavers & set(listed.index)
    assert with_us.report["clients"] == len(listed)
    assert listed["probability"].is_monotonic_decreasing
    assert list(listed["rank"]) == list(range(1, len(listed) + 1))


def test_reasons_name_what_makes_a_client_risky_in_words_and_numbers(deployed):
    model, _ = live_model(deployed)
    typical = typical_client(model)
    year = typical["lastyear_activity"]
    clients = pd.DataFrame(
        [
            {**typical, "corporation": "calm"},
            {**typical, "corporation": "dorm", "lastmonth_activity": 0.0},
            {**typical, "corporation": "fall", "lastmonth_activity": year / 12 * 0.15},
        ]
    )
    ranked = ranking.rank_clients(model, clients)
    top = {entry["corporation"]: entry for entry in ranking.top_entries(ranked, typical_of(model))}
    ranked = ranked.set_index("corporation")
    # A typical client still gets a reason, said as what it is.
    (calm,) = top["calm"]["reasons"]
    assert calm["reason"].startswith(reasons.WEAK)
    assert ranked.loc["calm", "reason_1"] == calm["text"]
    dormant = top["dorm"]["reasons"][0]
    assert dormant["factor"] == "recent activity"
    assert dormant["reason"].startswith("no activity last month")
    assert "clients silent for a month leave more often" in dormant["reason"]
    assert ranked.loc["dorm", "reason_1"] == dormant["text"]
    assert dormant["text"].startswith(dormant["reason"] + ": risk ")
    falling = top["fall"]["reasons"][0]
    assert falling["reason"].startswith("activity last month 85% below its monthly average")
    assert "clients whose activity falls like this leave more often" in falling["reason"]
    # Riskier than the typical client, and by about what the reason says.
    assert ranked.loc["dorm", "probability"] > ranked.loc["calm", "probability"] + 0.05
    assert dormant["effect"] == pytest.approx(
        ranked.loc["dorm", "probability"] - ranked.loc["calm", "probability"], abs=0.01
    )


def test_an_effect_is_how_much_the_probability_falls_with_that_factor_typical(deployed):
    model, _ = live_model(deployed)
    _month, year, employees = reasons.typical_values(model)
    client = {"corporation": "xyzw", "lastmonth_activity": 2.0, "lastyear_activity": 90.0}
    client["number_of_employees"] = employees * 6
    _, probabilities, effects, _, _ = reasons.explain(model, pd.DataFrame([client]))
    probability = model.predict_proba(pd.DataFrame([client])[list(FEATURES)])[0, 1]
    assert probabilities[0] == pytest.approx(probability)
    by_hand = [
        {**client, "lastmonth_activity": 90.0 / 12},
        {**client, "lastyear_activity": year, "lastmonth_activity": 2.0 * year / 90.0},
        {**client, "number_of_employees": employees},
        {
            **client,
            "lastmonth_activity": year / 12,
            "lastyear_activity": year,
            "number_of_employees": employees,
        },
    ]
    expected = probability - model.predict_proba(pd.DataFrame(by_hand)[list(FEATURES)])[:, 1]
    np.testing.assert_allclose(effects[0], expected, atol=1e-9)


def test_many_clients_are_explained_a_block_at_a_time_with_the_same_result(deployed, monkeypatch):
    model, _ = live_model(deployed)
    clients = client_rows(50, seed=31).drop(columns=["exited"])
    whole = reasons.explain(model, clients)
    monkeypatch.setattr(reasons, "EXPLAIN_BLOCK_ROWS", 7)
    for at_once, in_blocks in zip(whole, reasons.explain(model, clients), strict=True):
        np.testing.assert_allclose(in_blocks, at_once)


def test_reasons_are_put_in_words_for_the_head_of_a_long_list(deployed, monkeypatch):
    model, _ = live_model(deployed)
    clients = client_rows(40, seed=32).drop(columns=["exited"])
    whole = ranking.rank_clients(model, clients)
    monkeypatch.setattr(ranking, "REASONED_CLIENTS", 5)
    monkeypatch.setattr(reasons, "EXPLAIN_BLOCK_ROWS", 3)  # predicted 12 rows at a time
    head = ranking.rank_clients(model, clients)
    pd.testing.assert_frame_equal(head.head(5), whole.head(5))
    assert (head.loc[5:, list(reasons.REASON_COLUMNS)] == "").all().all()
    # Below the head the clients are predicted once each, not explained.
    assert head.loc[5:, list(reasons.EFFECT_COLUMNS)].isna().all().all()
    explained = [*reasons.REASON_COLUMNS, *reasons.EFFECT_COLUMNS]
    pd.testing.assert_frame_equal(head.drop(columns=explained), whole.drop(columns=explained))


def test_missing_figures_are_reasons_of_their_own(deployed):
    model, _ = live_model(deployed)
    _, year, employees = reasons.typical_values(model)
    row = np.array([np.nan, np.nan, np.nan])
    assert reasons.describe(reasons.MONTH, row, reasons.typical_values(model)) == (
        "no figure for last month's activity"
    )
    assert reasons.describe(reasons.EMPLOYEES, row, np.array([1, year, employees])) == (
        "no head count on record"
    )
    row = np.array([10.0, 600.0, 3.0])
    assert reasons.describe(reasons.EMPLOYEES, row, np.array([1, 600, 40])) == (
        "small company (3 employees; typical 40)"
    )
    assert reasons.describe(reasons.YEAR, row, np.array([1, 1200, 40])) == (
        "low activity over the year (600; typical 1,200)"
    )


def test_expected_leavers_is_the_sum_of_probabilities_with_its_spread():
    leavers = ranking.expected_leavers([0.5] * 100)
    assert leavers["expected"] == 50
    assert (leavers["low"], leavers["high"]) == (40, 60)  # 50 -/+ 1.96 x 5
    assert ranking.expected_leavers([0.0, 0.0])["high"] == 0


def test_the_expected_leavers_interval_includes_the_models_own_error():
    """A model learnt from 10,000 rows is right on average only to within its standard error:
    on 100,000 clients that outweighs chance."""
    chance_only = ranking.expected_leavers([0.2] * 100_000)
    both = ranking.expected_leavers([0.2] * 100_000, training_rows=10_000)
    assert (chance_only["low"], chance_only["high"]) == (19752, 20248)  # 20,000 -/+ 1.96 x 126
    # sqrt(16,000 + 100,000^2 x 0.16 / 10,000) = 420: 20,000 -/+ 822.
    assert (both["low"], both["high"]) == (19177, 20823)
    assert both["includes_model_error"]
    assert not chance_only["includes_model_error"]


def test_the_interval_widens_while_a_drift_is_unresolved_and_says_so():
    """The live model forecast 20 % of the newest 1,000 clients to leave and 30 % did: the list
    made before a retrain resolves it counts that error, and says why."""
    quiet = {"rows": 1000, "expected_rate": 0.2, "observed_rate": 0.205, "batches": "7"}
    plain = ranking.expected_leavers([0.2] * 10_000, 10_000)
    within_chance = ranking.expected_leavers([0.2] * 10_000, 10_000, {**quiet, "drift": False})
    assert (within_chance["low"], within_chance["high"]) == (plain["low"], plain["high"])
    assert within_chance["widened"] is None

    drifted = {**quiet, "observed_rate": 0.3, "drift": True}
    wide = ranking.expected_leavers([0.2] * 10_000, 10_000, drifted)
    # The count may be 50 % off: 2,000 -/+ 1.96 x sqrt(1,600 + 1,600 + 1,000^2) = 1,963.
    assert (wide["low"], wide["high"]) == (36, 3964)
    assert "forecast 50 % too few leavers" in wide["widened"]
    assert "not yet resolved" in wide["widened"]

    # Off by more than chance makes, without a drift verdict: counted too.
    off = ranking.expected_leavers([0.2] * 10_000, 10_000, {**drifted, "drift": False})
    assert "more than chance" in off["widened"]


@pytest.mark.parametrize("kept", [ranking.KEEP_ENTRIES, 25])
def test_what_changed_since_the_previous_ranking(deployed, monkeypatch, kept):
    # The history keeps the first `kept` entries of a ranking; a longer list's clients are
    # found again from the batches it was made from.
    monkeypatch.setattr(ranking, "KEEP_ENTRIES", kept)
    first = ranking.run(deployed.config).report
    assert first["changes"] == {"previous": None}
    top = first["top"]
    gone, dropped = top[0]["corporation"], top[1]["corporation"]
    model, _ = live_model(deployed)
    typical = typical_client(model)
    # A roster of everyone on the first list but `gone` (who left), `dropped` now typical,
    # and a newcomer.
    listed = pd.read_csv(deployed.root / "models" / ranking.RANKING_FILE)
    stayed = listed.loc[~listed["corporation"].isin([gone, dropped])]
    update = pd.concat(
        [
            stayed[["corporation", *FEATURES]].assign(exited=None),
            pd.DataFrame(
                [
                    {**typical, "corporation": gone, "exited": 1},
                    {**typical, "corporation": dropped, "exited": None},
                    {**typical, "corporation": "newc", "lastmonth_activity": 0.0, "exited": None},
                ]
            ),
        ]
    )
    deployed.write_input("batch3.csv", update)
    run_steps(deployed, "ingestion")
    changes = ranking.run(deployed.config).report["changes"]
    assert changes["previous"]["clients"] == first["clients"]
    assert "newc" in [item["corporation"] for item in changes["new_in_top"]]
    left = {item["corporation"]: item for item in changes["left_top"]}
    assert left[gone]["now"] == "left (latest record: exited)"
    assert left[dropped]["previous_rank"] == 2
    assert left[dropped]["now"].startswith("rank ")
    assert changes["left_list"] == 1
    assert changes["joined_list"] == 1
    with open_history(deployed.config.history_path) as history:
        assert len(history.rankings(limit=1)[0]["entries"]) == min(kept, first["clients"])


def test_a_roster_alone_remakes_the_call_list_and_the_report(diagnosed):
    before = pd.read_csv(diagnosed.root / "models" / ranking.RANKING_FILE)
    pdf = diagnosed.root / "models" / "summary_report.pdf"
    pdf_before = pdf.read_bytes()
    newcomers = client_rows(30, seed=77).drop(columns=["exited"])
    newcomers["corporation"] = [f"new{index:02d}" for index in range(30)]
    diagnosed.write_input("roster.csv", newcomers)
    record = fullprocess.run(diagnosed.config)
    assert record["outcome"] == "nothing to judge"
    # The diagnostics (which rank the clients) are made again: they describe the stored data.
    assert {"diagnostics", "reporting"} <= set(record["steps"])
    after = pd.read_csv(diagnosed.root / "models" / ranking.RANKING_FILE)
    # The roster is the list of current clients.
    assert set(after["corporation"]) == set(newcomers["corporation"])
    assert pdf.read_bytes() != pdf_before
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["ranking"]["clients"] == len(after)
    assert report["ranking"]["changes"]["joined_list"] == 30
    assert report["ranking"]["changes"]["left_list"] == len(before)
    assert fullprocess.run(diagnosed.config)["outcome"] == "no new data"


def test_no_current_client_at_all_is_an_empty_list(deployed):
    model, _ = live_model(deployed)
    nobody = pd.DataFrame({"corporation": pd.Series(dtype=str)}).assign(
        **{name: pd.Series(dtype=float) for name in FEATURES}
    )
    ranked = ranking.rank_clients(model, nobody)
    assert len(ranked) == 0
    assert ranking.top_entries(ranked, reasons.typical_values(model)) == []
    assert ranking.expected_leavers(ranked["probability"])["expected"] == 0


@pytest.mark.parametrize("calls", [0, 3, 10_000])
def test_the_first_calls_per_week_clients_are_marked_as_this_weeks_calls(deployed, calls):
    config = deployed.config._replace(
        settings={**deployed.config.settings, "calls_per_week": calls}
    )
    summary = ranking.run(config).report
    listed = pd.read_csv(deployed.root / "models" / ranking.RANKING_FILE, keep_default_na=False)
    marked = listed[ranking.CALL_COLUMN] == "yes"
    assert list(marked) == [rank <= calls for rank in listed["rank"]]
    assert set(listed.loc[~marked, ranking.CALL_COLUMN]) <= {""}
    assert summary["calls_this_week"] == min(calls, len(listed))
    assert [entry[ranking.CALL_COLUMN] for entry in summary["top"]] == list(
        marked.head(len(summary["top"]))
    )


def test_no_call_is_marked_by_default(deployed):
    assert deployed.config.settings["calls_per_week"] == 0
    ranking.run(deployed.config)
    listed = pd.read_csv(deployed.root / "models" / ranking.RANKING_FILE, keep_default_na=False)
    assert (listed[ranking.CALL_COLUMN] == "").all()


# --- who is current ------------------------------------------------------------------------------


def listed_clients(project) -> pd.DataFrame:
    ranking.run(project.config)
    path = project.root / "models" / ranking.RANKING_FILE
    return pd.read_csv(path, keep_default_na=False).set_index("corporation")


def labelled(rows: list[tuple]) -> pd.DataFrame:
    """Rows with an outcome: (corporation, last month, last year, employees, exited)."""
    return pd.DataFrame(rows, columns=["corporation", *FEATURES, "exited"])


def test_a_labelled_batch_after_a_roster_adds_none_of_its_stayers(deployed):
    deployed.write_input(
        "batch3.csv",
        roster(
            [("rost", 10.0, 120.0, 5.0), ("goes", 10.0, 120.0, 5.0), ("upd8", 10.0, 120.0, 5.0)]
        ),
    )
    deployed.write_input(
        "batch4.csv",
        labelled(
            [
                ("goes", 10.0, 120.0, 5.0, 1),  # left after the roster
                ("upd8", 3.0, 150.0, 9.0, 0),  # stayed, with newer figures
                ("nwst", 10.0, 120.0, 5.0, 0),  # a stayer on no roster
            ]
        ),
    )
    run_steps(deployed, "ingestion")
    listed = listed_clients(deployed)
    assert sorted(listed.index) == ["rost", "upd8"]
    assert listed.loc["upd8", "number_of_employees"] == 9


def test_a_client_who_left_is_not_listed_again_unless_a_later_roster_lists_it(deployed):
    deployed.write_input("batch3.csv", labelled([("back", 10.0, 120.0, 5.0, 1)]))
    deployed.write_input("batch4.csv", labelled([("back", 12.0, 120.0, 5.0, 0)]))
    run_steps(deployed, "ingestion")
    # No roster: a later recorded stay does not undo the exit.
    assert "back" not in listed_clients(deployed).index
    deployed.write_input("batch5.csv", roster([("back", 14.0, 120.0, 5.0)]))
    run_steps(deployed, "ingestion")
    listed = listed_clients(deployed)
    assert list(listed.index) == ["back"]
    assert listed.loc["back", "lastmonth_activity"] == 14


def test_without_a_roster_the_stayers_who_never_left_are_listed(deployed):
    stored = pd.read_csv(deployed.root / "ingesteddata" / "finaldata.csv")
    left = set(stored.loc[stored["exited"] == 1, "corporation"])
    stayed = set(stored.loc[stored["exited"] == 0, "corporation"]) - left
    assert set(listed_clients(deployed).index) == stayed
    summary = json.loads((deployed.root / "models" / ranking.RANKING_SUMMARY_FILE).read_text())
    assert summary["current_rule"].startswith("no roster has been sent")


# --- the order, and clients outside what the model learnt from -----------------------------------


def test_clients_are_ordered_by_their_unrounded_risk_never_by_name(deployed):
    model, _ = live_model(deployed)
    base = client_rows(20, seed=41).drop(columns=["exited"])
    # Twins whose risks differ by far less than a millionth; the riskier is named last.
    twins = base.assign(number_of_employees=base["number_of_employees"] * (1 + 1e-9))
    pairs = pd.concat([base, twins], ignore_index=True)
    risks = model.predict_proba(pairs[list(FEATURES)])[:, 1]
    riskier_second = risks[20:] > risks[:20]
    names = [f"a{index:03d}" for index in range(20)], [f"b{index:03d}" for index in range(20)]
    first, second = [list(names[0]), list(names[1])]
    for index, later in enumerate(riskier_second):
        if not later:  # the riskier twin gets the name sorted last
            first[index], second[index] = second[index], first[index]
    pairs["corporation"] = first + second
    ranked = ranking.rank_clients(model, pairs)
    assert (np.diff(ranked[ranking.EXACT_COLUMN].to_numpy()) <= 0).all()
    order = list(ranked["corporation"])
    for index in range(20):
        if risks[index] != risks[20 + index]:
            riskier = pairs["corporation"][20 + index if riskier_second[index] else index]
            other = pairs["corporation"][index if riskier_second[index] else 20 + index]
            assert order.index(riskier) < order.index(other)


def test_a_client_far_outside_the_training_range_is_marked_not_extrapolated(deployed):
    far = [
        ("fall", 1.0, 5000.0, 20.0),  # last month a tiny fraction of its year
        ("huge", 2e6 / 12, 2e6, 20.0),  # more active than any training client, month and year
        ("deep", 4e7 / 12, 4e7, 20.0),  # further still
        ("calm", 400.0, 5000.0, 20.0),
    ]
    deployed.write_input("roster.csv", roster(far))
    run_steps(deployed, "ingestion")
    listed = listed_clients(deployed)
    assert listed.loc["fall", "outside_range"] == "last month against the year"
    both = "lastmonth_activity, lastyear_activity"
    assert listed.loc["huge", "outside_range"] == listed.loc["deep", "outside_range"] == both
    assert listed.loc["calm", "outside_range"] == ""
    # Beyond the range the risk stays where the data ends: no slope carried on.
    model, _ = live_model(deployed)
    exact = ranking.rank_clients(model, roster(far)).set_index("corporation")[ranking.EXACT_COLUMN]
    assert exact["huge"] == exact["deep"]
    summary = json.loads((deployed.root / "models" / ranking.RANKING_SUMMARY_FILE).read_text())
    assert summary["outside_range"] == 3
    notes = {entry["corporation"]: entry["note"] for entry in summary["top"]}
    assert notes["fall"].startswith("outside the range the model has seen: treat the risk")
    assert notes["calm"] == ""


# --- reasons for every listed client -------------------------------------------------------------


def test_every_listed_client_has_a_reason_with_the_risk_in_points(deployed):
    listed = listed_clients(deployed)
    assert (listed["reason_1"] != "").all()
    assert listed["reason_1"].str.contains(r": risk [<> 0-9.]+ % → [<> 0-9.]+ % if ").all()
    assert not listed["reason_1"].str.contains(r"\(\+0\.").any()


def test_a_size_reason_says_why_and_what_the_risk_would_be(deployed):
    model, _ = live_model(deployed)
    typical = typical_client(model)
    big = {
        **typical,
        "corporation": "bigc",
        "number_of_employees": typical["number_of_employees"] * 8,
    }
    ranked = ranking.rank_clients(model, pd.DataFrame([big]))
    (entry,) = ranking.top_entries(ranked, typical_of(model))
    size = next(item for item in entry["reasons"] if item["factor"] == "company size")
    employees = reasons._number(typical["number_of_employees"])
    assert size["reason"].startswith("large company (")
    assert "companies this large leave more often" in size["reason"]
    assert f"typical {employees})" in size["reason"]
    assert size["text"].endswith("if it were of typical size")
    now, without = reasons.percents(entry["probability"], size["risk_if_typical"])
    assert f"risk {now} → {without}" in size["text"]


@pytest.mark.parametrize(
    ("risk", "other", "shown"),
    [
        (0.31, 0.12, ("31 %", "12 %")),
        (0.0067, 0.0061, ("0.7 %", "0.6 %")),
        (0.9996, 0.35, ("> 99 %", "35 %")),
        (0.00003, 0.0001, ("< 0.01 %", "0.01 %")),
    ],
)
def test_risks_are_shown_in_percent_as_finely_as_it_takes_to_tell_them_apart(risk, other, shown):
    assert reasons.percents(risk, other) == shown


@pytest.mark.parametrize("family", list(training.FAMILIES))
def test_every_model_family_ranks_marks_and_explains_without_extrapolating(family):
    model, _ = training.fit_model(client_rows(600, seed=43), family=family)
    far = [
        ("huge", 2e6 / 12, 2e6, 20.0),
        ("deep", 4e7 / 12, 4e7, 20.0),
        ("calm", 40.0, 500.0, 20.0),
    ]
    clients = pd.concat([roster(far), client_rows(30, seed=44).drop(columns=["exited"])])
    ranked = ranking.rank_clients(model, clients).set_index("corporation")
    assert (ranked["reason_1"] != "").all()
    assert ranked.loc["huge", ranking.EXACT_COLUMN] == ranked.loc["deep", ranking.EXACT_COLUMN]
    assert "lastyear_activity" in ranked.loc["huge", ranking.OUTSIDE_COLUMN]
    assert ranked.loc["calm", ranking.OUTSIDE_COLUMN] == ""


@pytest.mark.parametrize(
    ("effects", "first"),
    [
        ([0.30, 0.02, 0.00, 0.40], "activity last month 90% below its monthly average (5 vs 50)"),
        ([0.001, 0.002, 0.00, 0.20], "its figures together (last month 5, the year 600,"),
        ([0.001, 0.004, 0.00, 0.002], reasons.WEAK + "low activity over the year (600;"),
    ],
)
def test_a_client_without_a_strong_factor_gets_its_figures_together_or_its_largest(effects, first):
    typical = np.array([100.0, 1200.0, 40.0])
    (found,) = reasons.reasons(
        np.array([effects]), np.array([[5.0, 600.0, 40.0]]), typical, np.array([0.5])
    )
    assert found[0]["reason"].startswith(first)
    assert found[0]["text"].startswith(found[0]["reason"] + ": risk ")


def test_before_outcomes_the_lists_performance_is_estimated_from_its_probabilities():
    """Ten clients at 0.9 flagged, ninety at 0.1 not: 9 true and 1 false alarm expected among the
    flags, 9 leavers missed, so precision 0.9, recall 0.5, F1 2 x 9 / (18 + 1 + 9)."""
    ranked = pd.DataFrame(
        {
            ranking.EXACT_COLUMN: [0.9] * 10 + [0.1] * 90,
            "probability": [0.9] * 10 + [0.1] * 90,
            "predicted_exit": [1] * 10 + [0] * 90,
        }
    )
    estimate = ranking.estimated_performance(ranked)
    assert estimate["top_20"] == pytest.approx(0.5)
    assert estimate["top_100"] == pytest.approx(0.18)
    assert "top_50" in estimate
    assert (estimate["precision"], estimate["recall"]) == pytest.approx((0.9, 0.5))
    assert estimate["f1"] == pytest.approx(18 / 28, abs=1e-4)
    assert "blind to a change" in estimate["caveat"]


def test_the_dashboard_and_ranking_json_give_the_estimate(diagnosed):
    summary = ranking.run(diagnosed.config).report
    estimate = summary["estimated"]
    assert 0 < estimate["top_100"] <= estimate["top_20"] <= 1
    from clientrisk.api.app import create_app

    html = create_app(diagnosed.config_path, token="").test_client().get("/").get_data(True)
    assert "Before outcomes arrive, the model&#39;s own probabilities say" in html or (
        "Before outcomes arrive, the model's own probabilities say" in html
    )
