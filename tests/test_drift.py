"""The statistics behind the drift checks and the challenger comparison, checked on numbers whose
truth is known."""

import math

import numpy as np
import pandas as pd
import pytest

import generate_data
from clientrisk.data.clientcsv import FEATURES, TARGET
from clientrisk.model import scoring
from clientrisk.monitoring import drift


def test_log_loss_excess_by_hand():
    labels, probabilities = [1, 0], [0.8, 0.4]
    loss = -(math.log(0.8) + math.log(0.6)) / 2
    entropy = -(
        0.8 * math.log(0.8) + 0.2 * math.log(0.2) + 0.4 * math.log(0.4) + 0.6 * math.log(0.6)
    )
    excess, variance = drift.log_loss_excess(labels, probabilities)
    assert excess == pytest.approx(loss - entropy / 2)
    expected = (0.16 * math.log(4) ** 2 + 0.24 * math.log(0.4 / 0.6) ** 2) / 4
    assert variance == pytest.approx(expected)


def batch_from(probabilities, rng, relation_broken=False):
    p = np.asarray(probabilities)
    source = rng.permutation(p) if relation_broken else p
    return (rng.random(len(p)) < source).astype(int)


REFERENCE = {"excess": 0.0, "variance": 0.0, "rows": 2000, "dataset": "test"}


def flags(batches: int, rows: int, seed: int, relation_broken: bool = False) -> int:
    """How many of `batches` batches the calibrated check calls drifted."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(batches):
        p = rng.uniform(0.02, 0.7, rows)
        labels = batch_from(p, rng, relation_broken)
        flagged += drift.model_still_right(labels, p, (p > 0.3).astype(int), REFERENCE)["drift"]
    return flagged


@pytest.mark.parametrize("rows", [100, 1000])
def test_a_model_that_is_right_is_rarely_called_drifted(rows):
    assert flags(100, rows, seed=1) <= 10  # 5 % expected


@pytest.mark.parametrize("rows", [100, 1000])
def test_a_model_whose_relation_broke_is_called_drifted(rows):
    assert flags(50, rows, seed=2, relation_broken=True) >= (30 if rows == 100 else 48)


def test_the_verdict_names_what_was_expected():
    p = np.full(200, 0.2)
    verdict = drift.model_still_right(
        np.zeros(200, dtype=int), p, np.ones(200, dtype=int), REFERENCE
    )
    assert verdict["drift"]
    assert verdict["score"] == 0.0
    assert verdict["expected_f1"] == pytest.approx(1 / 3, abs=0.05)
    assert "where the model expects" in verdict["basis"]


def test_large_batches_are_simulated_like_small_ones():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.6, drift.EXACT_SIMULATION_ROWS)
    flagged = p > 0.3
    f1, excess = drift.simulate_batch(p, flagged, simulations=400)
    f1_wide, excess_wide = drift.simulate_batch(np.tile(p, 2), np.tile(flagged, 2), simulations=400)
    assert f1_wide.mean() == pytest.approx(f1.mean(), abs=0.01)
    assert f1_wide.std() == pytest.approx(f1.std() / math.sqrt(2), rel=0.25)
    assert excess.mean() == pytest.approx(0, abs=0.002)
    assert excess_wide.std() == pytest.approx(excess.std() / math.sqrt(2), rel=0.25)
    assert excess.std() == pytest.approx(math.sqrt(drift.log_loss_excess(p, p)[1]), rel=0.15)


@pytest.mark.parametrize(
    ("challenger", "verdict"),
    [("same", "too close to call"), ("sharper", "better"), ("inverted", "worse")],
)
def test_paired_log_loss_tells_better_worse_and_too_close(challenger, verdict):
    rng = np.random.default_rng(4)
    truth = rng.uniform(0.05, 0.8, 400)
    labels = (rng.random(400) < truth).astype(int)
    champion = np.clip(truth * 0.5 + 0.2, 0.01, 0.99)
    candidates = {"same": champion, "sharper": truth, "inverted": 1 - truth}
    result = drift.paired_log_loss(labels, candidates[challenger], champion)
    assert result["verdict"] == verdict
    assert result["rows"] == 400
    low, high = result["interval_95"]
    assert low <= result["difference"] <= high


def test_the_trend_is_what_the_model_derives():
    frame = pd.DataFrame({"lastmonth_activity": [0, 10, 120], "lastyear_activity": [120, 120, 120]})
    trend = drift.with_trend(frame)[drift.TREND]
    assert math.isnan(trend[0])  # dormant: no trend
    assert trend[1] == pytest.approx(math.log1p(10) - math.log1p(10))
    assert trend[2] > 2


def test_the_trend_catches_a_fall_in_recent_activity_the_raw_columns_miss():
    rng = np.random.default_rng(5)
    codes = generate_data.client_codes(rng, 3000)
    reference = drift.with_trend(generate_data.simulate_clients(rng, codes))
    quieter = generate_data.MARKETS["quieter"]
    raw = derived = 0
    for _ in range(40):
        batch = generate_data.simulate_clients(
            rng, generate_data.client_codes(rng, 100), market=quieter
        )
        batch = drift.with_trend(batch.astype(dict.fromkeys(FEATURES, float)))
        raw += any(item["ks_drift"] for item in drift.feature_drift(reference, batch, FEATURES))
        features = (*FEATURES, drift.TREND)
        derived += any(item["ks_drift"] for item in drift.feature_drift(reference, batch, features))
    assert derived >= 2 * max(raw, 5)


@pytest.mark.parametrize(("market", "drifts"), [("bigger", False), ("relation-strong", True)])
def test_the_deployed_model_on_a_harmless_shift_and_on_a_real_change(deployed, market, drifts):
    """A model trained on the test project's usual clients, judged on 1,000 new ones."""
    from clientrisk.deployment import modelstore

    model, deployment = modelstore.load_deployed_model(deployed.config.deploy_dir)
    metrics = deployment.manifest["metrics"]
    reference = {
        "excess": metrics["log_loss_excess"],
        "variance": metrics["log_loss_excess_variance"],
        "rows": metrics["rows"],
        "dataset": "testdata.csv",
    }
    rng = np.random.default_rng(6)
    codes = generate_data.client_codes(rng, 1000)
    batch = generate_data.simulate_clients(rng, codes, market=generate_data.MARKETS[market])
    batch = batch.astype(dict.fromkeys(FEATURES, float))
    predictions = scoring.predict(model, batch)
    verdict = drift.model_still_right(
        batch[TARGET], predictions["probability"], predictions["prediction"], reference
    )
    assert verdict["drift"] == drifts


@pytest.mark.parametrize(
    ("market", "drifts"),
    [("usual", False), ("bigger", False), ("relation-mild", True), ("combined", True)],
)
def test_a_model_fitted_on_the_new_rows_finds_what_the_deployed_one_cannot_see(
    deployed, market, drifts
):
    """Unchanged or harmlessly shifted rows: the deployed model's own log-odds say all there is.
    A moved relation, or exits that follow small size and falling activity together: a small
    model fitted on the rows themselves predicts them better, out of fold."""
    from clientrisk.deployment import modelstore
    from clientrisk.monitoring import recentfit

    model, _ = modelstore.load_deployed_model(deployed.config.deploy_dir)
    rng = np.random.default_rng(8)
    codes = generate_data.client_codes(rng, 2000)
    batch = generate_data.simulate_clients(rng, codes, market=generate_data.MARKETS[market])
    verdict = recentfit.recent_model_check(model, batch.astype(dict.fromkeys(FEATURES, float)))
    assert verdict["available"]
    assert verdict["drift"] == drifts, verdict["basis"]


def test_the_recent_model_check_needs_rows_of_both_outcomes(deployed):
    from clientrisk.deployment import modelstore
    from clientrisk.monitoring import recentfit

    model, _ = modelstore.load_deployed_model(deployed.config.deploy_dir)
    rng = np.random.default_rng(9)
    batch = generate_data.simulate_clients(rng, generate_data.client_codes(rng, 200))
    batch[TARGET] = 0
    batch.loc[batch.index[:3], TARGET] = 1
    verdict = recentfit.recent_model_check(model, batch.astype(dict.fromkeys(FEATURES, float)))
    assert verdict == {
        "available": False,
        "drift": False,
        "basis": "too few rows of an outcome (3) to fit a model on them",
    }


@pytest.mark.parametrize("seed", [0, 2])
def test_a_retrain_after_a_change_of_the_exit_rate_alone_learns_from_the_new_rows(seed):
    """3,000 rows of the usual market and 700 newer ones where more leave for the same figures:
    every window with the old rows predicts each new row about as well by log loss but forecasts
    too few leavers, so the retrain learns from the new rows alone."""
    from clientrisk.monitoring import retraining

    rng = np.random.default_rng(seed)

    def rows(count, market, batch):
        frame = generate_data.simulate_clients(
            rng, generate_data.client_codes(rng, count), market=market
        )
        return frame.assign(batch=batch)

    more_leave = generate_data.Market(intercept=-1.6)
    data = pd.concat(
        [rows(3000, generate_data.Market(), 1), rows(700, more_leave, 2)], ignore_index=True
    )
    recipe, summary, _ = retraining.choose_window(data, data[data.batch == 2], [1, 2], 1.0, 20000)
    assert recipe["from_batch"] == 2
    assert recipe["half_life_rows"] is None
    assert "from batch 1" in summary["count_off"]


def test_a_forecast_count_within_chance():
    from clientrisk.monitoring.retraining import count_within_chance

    probabilities = np.full(1000, 0.2)  # 200 expected, chance spread 12.6
    assert count_within_chance(np.r_[np.ones(220), np.zeros(780)], probabilities)
    assert not count_within_chance(np.r_[np.ones(230), np.zeros(770)], probabilities)
