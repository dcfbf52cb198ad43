import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

import training
from clientrisk.atomicfiles import sha256_file
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES
from clientrisk.history.database import open_history
from clientrisk.model import blockfit, scoring
from clientrisk.model.training import SOLVER, best_f1_threshold, fit_model, stratified_sample
from conftest import HEADER, client_rows, run_steps


def load_trained(project):
    with open(project.root / "models" / "trainedmodel.pkl", "rb") as handle:
        return pickle.load(handle)


def test_saves_model_and_metadata(project, capsys):
    run_steps(project, "ingestion", "training")
    assert "trained logistic regression" in capsys.readouterr().out
    metadata = json.loads((project.root / "models" / "trainedmodel.json").read_text())
    assert metadata["training_rows"] == 600
    assert metadata["model_sha256"] == sha256_file(project.root / "models" / "trainedmodel.pkl")
    with open_history(project.config.history_path) as history:
        batches = history.batches()
    assert metadata["training_data"] == {
        "batches": 2,
        "sha256": batchstore.fingerprint(batches),
    }
    assert metadata["through_batch"] == 2
    assert metadata["trained_by"]["run"] is None
    assert [entry["file"] for entry in metadata["training_files"]] == ["batch1.csv", "batch2.csv"]
    assert set(metadata["versions"]) >= {"python", "scikit-learn", "pandas", "numpy"}
    cv = metadata["cross_validation"]
    assert cv["folds"] == 5
    assert cv["scoring"] == "average_precision"
    assert 0 < cv["score_mean"] <= 1
    assert cv["calibrated"]
    assert 0 < cv["threshold"] < 1
    assert 0 < cv["f1_mean"] <= 1


def test_model_is_one_pipeline_that_predicts_rows_with_gaps(deployed):
    model = load_trained(deployed)
    assert [name for name, _ in model.steps] == ["impute", "features", "spline", "scale", "model"]
    rows = pd.DataFrame([[np.nan, 1200.0, 40.0], [10.0, np.nan, np.nan]], columns=list(FEATURES))
    probabilities = model.predict_proba(rows)[:, 1]
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_training_is_reproducible(deployed):
    first = sha256_file(deployed.root / "models" / "trainedmodel.pkl")
    run_steps(deployed, "training")
    assert sha256_file(deployed.root / "models" / "trainedmodel.pkl") == first


def test_settings_do_not_depend_on_the_test_data(deployed):
    first = sha256_file(deployed.root / "models" / "trainedmodel.pkl")
    client_rows(300, seed=99).to_csv(deployed.root / "testdata" / "testdata.csv", index=False)
    run_steps(deployed, "training")
    assert sha256_file(deployed.root / "models" / "trainedmodel.pkl") == first


def test_obvious_risk_order(deployed):
    """Collapsing activity and dormancy mean risk; steady activity means staying."""
    model = load_trained(deployed)
    clients = pd.DataFrame(
        {
            "lastmonth_activity": [250.0, 60.0, 0.0],
            "lastyear_activity": [3000.0, 3000.0, 3000.0],
            "number_of_employees": [40.0, 40.0, 40.0],
        }
    )
    steady, collapsing, dormant = model.predict_proba(clients)[:, 1]
    # In the data's process a month at a fifth of the usual is the strongest sign of all.
    assert steady < 0.2
    assert 0.5 < dormant < collapsing


def test_trains_on_course_format_data(course_project):
    run_steps(course_project, "ingestion", "training")
    model = load_trained(course_project)
    assert model.predict(
        pd.read_csv(course_project.input_dir / "dataset1.csv")[list(FEATURES)]
    ).size


def test_too_few_rows_to_cross_validate_still_trains(project, capsys):
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("tiny.csv", HEADER + "aaaa,10,100,5,0\nbbbb,1,150,3,1\ncccc,12,130,6,0\n")
    run_steps(project, "ingestion", "training")
    assert "no cross-validation (too few rows)" in capsys.readouterr().out


def test_a_model_too_small_to_tune_flags_above_the_share_who_left(project):
    rows = client_rows(90, seed=7)
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("small.csv", rows)
    run_steps(project, "ingestion", "training")
    metadata = json.loads((project.root / "models" / "trainedmodel.json").read_text())
    cv = metadata["cross_validation"]
    assert not cv["calibrated"]
    if cv["params"]["class_weight"] is None:
        assert cv["threshold"] == pytest.approx(rows["exited"].mean(), abs=1e-6)
    else:
        assert cv["threshold"] == 0.5
    flagged = scoring.predict(load_trained(project), rows)["prediction"].mean()
    assert 0.05 < flagged < 0.6


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("aaaa,10,100,5,0\nbbbb,1,150,3,0\n", "only one class of exited"),
        ("aaaa,,100,5,0\nbbbb,,150,3,1\n", "no values at all: lastmonth_activity"),
    ],
    ids=["one class", "all missing column"],
)
def test_untrainable_data_is_a_clear_error(project, rows, message, capsys):
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("only.csv", HEADER + rows)
    run_steps(project, "ingestion")
    assert training.main(project.args()) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (project.root / "models" / "trainedmodel.pkl").exists()


def test_no_ingested_data(project, capsys):
    assert training.main(project.args()) == 1
    assert "no ingested data; run ingestion.py first" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_beats_the_course_model_on_shipped_data():
    """The shipped data's relation to exit needs the pipeline; raw logistic regression misses it."""
    from clientrisk.config import DEFAULT_CONFIG_PATH, load_config
    from clientrisk.data.clientcsv import read_labelled_csv

    config = load_config(DEFAULT_CONFIG_PATH)
    frames = [read_labelled_csv(path) for path in sorted(config.input_dir.glob("dataset*.csv"))]
    train = pd.concat(frames).drop_duplicates()
    test = read_labelled_csv(config.test_data_file)
    model, _ = fit_model(train)
    course = LogisticRegression().fit(train[list(FEATURES)].fillna(0), train["exited"])
    ours_f1 = f1_score(test["exited"], model.predict(test[list(FEATURES)]))
    course_f1 = f1_score(test["exited"], course.predict(test[list(FEATURES)].fillna(0)))
    ours_auc = roc_auc_score(test["exited"], model.predict_proba(test[list(FEATURES)])[:, 1])
    course_auc = roc_auc_score(
        test["exited"], course.predict_proba(test[list(FEATURES)].fillna(0))[:, 1]
    )
    assert ours_f1 > course_f1 + 0.2
    assert ours_auc > course_auc + 0.03
    # Probabilities mean what they say: on average as many leave as the model expects.
    probabilities = model.predict_proba(test[list(FEATURES)])[:, 1]
    assert abs(probabilities.mean() - test["exited"].mean()) < 0.03


def test_gaps_are_filled_without_inventing_a_trend():
    import numpy as np

    from clientrisk.model.features import ActivityImputer

    training_rows = pd.DataFrame(
        {
            "lastmonth_activity": [10.0, 20.0, 30.0],
            "lastyear_activity": [120.0, 600.0, 1200.0],
            "number_of_employees": [5.0, 40.0, 400.0],
        }
    )
    imputer = ActivityImputer().fit(training_rows)
    rows = pd.DataFrame(
        {
            "lastmonth_activity": [None, 4.0, 0.0, None],
            "lastyear_activity": [36.0, None, None, None],
            "number_of_employees": [3.0, None, 7.0, 9.0],
        },
        dtype="Float64",  # pandas' own missing values, as in the store
    )
    filled = imputer.transform(rows)
    np.testing.assert_allclose(
        filled,
        [
            [3.0, 36.0, 3.0, 1, 0, 0],  # an average month of its own year
            [4.0, 48.0, 40.0, 0, 1, 1],  # twelve such months; the median head count
            [0.0, 600.0, 7.0, 0, 1, 0],  # silent last month: the median year
            [50.0, 600.0, 9.0, 1, 1, 0],  # the median year, and an average month of it
        ],
    )


def test_gaps_are_filled_from_how_the_known_columns_go_together():
    import numpy as np

    from clientrisk.model.features import ActivityImputer

    rng = np.random.default_rng(5)
    year = np.exp(rng.uniform(np.log(50), np.log(5000), 400))
    training_rows = pd.DataFrame(
        {
            "lastmonth_activity": year / 12 * np.exp(rng.normal(0, 0.1, 400)),
            "lastyear_activity": year,
            "number_of_employees": year / 10 * np.exp(rng.normal(0, 0.1, 400)),
        }
    )
    imputer = ActivityImputer().fit(training_rows)
    rows = pd.DataFrame(
        {
            "lastmonth_activity": [100.0, None, 0.0],
            "lastyear_activity": [1200.0, None, None],
            "number_of_employees": [None, 300.0, 30.0],
        },
        dtype="Float64",
    )
    filled = imputer.transform(rows)
    # A head count as large as the activity says; a year as large as the head count says (a
    # silent last month says nothing of it), and a month of that year.
    np.testing.assert_allclose(
        filled[:, :3], [[100, 1200, 120], [250, 3000, 300], [0, 300, 30]], rtol=0.15
    )
    median_fill = training_rows.median().to_numpy()
    assert abs(filled[0, 2] - 120) < abs(median_fill[2] - 120) / 3
    # A model saved before the imputer learnt how the columns go together fills as it did then.
    del imputer.log_mean_, imputer.log_covariance_
    np.testing.assert_allclose(imputer.transform(rows)[0, :3], [100, 1200, median_fill[2]])


@pytest.mark.parametrize("extrapolation", ["constant", "linear"])
def test_spline_basis_is_scikit_learns_basis_with_flags_passed_through(extrapolation):
    from sklearn.preprocessing import SplineTransformer

    from clientrisk.model.features import SplineBasis

    rng = np.random.default_rng(4)
    training_rows = np.column_stack([rng.normal(size=(500, 4)), rng.integers(0, 2, 500)])
    # New rows reach far beyond the training range on both sides.
    new_rows = np.column_stack([rng.normal(scale=4, size=(5000, 4)), rng.integers(0, 2, 5000)])
    basis = SplineBasis(columns=4, knots=5, extrapolation=extrapolation).fit(training_rows)
    ours = basis.transform(new_rows)
    reference = SplineTransformer(n_knots=5, extrapolation=extrapolation)
    reference.fit(training_rows[:, :4])
    np.testing.assert_allclose(ours[:, :-1], reference.transform(new_rows[:, :4]), atol=1e-12)
    np.testing.assert_array_equal(ours[:, -1], new_rows[:, -1])


def test_best_f1_threshold_is_the_best_cut():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 400)
    probabilities = np.round(np.clip(truth * 0.3 + rng.random(400) * 0.7, 0, 1), 2)
    threshold, f1 = best_f1_threshold(truth, probabilities)
    by_hand = {cut: f1_score(truth, probabilities >= cut) for cut in np.unique(probabilities)}
    assert f1 == pytest.approx(max(by_hand.values()))
    assert by_hand[threshold] == pytest.approx(f1)


@pytest.mark.parametrize("blockwise", [False, True])
def test_large_data_is_tuned_on_a_sample_and_fitted_on_every_row(monkeypatch, blockwise):
    # From BLOCKWISE_FROM_ROWS rows the final regression is fitted a block of rows at a time.
    monkeypatch.setattr(
        "clientrisk.model.training.BLOCKWISE_FROM_ROWS", 1000 if blockwise else 10**9
    )
    monkeypatch.setattr(blockfit, "BLOCK_ROWS", 700)
    data, held_out = client_rows(6000, seed=31), client_rows(4000, seed=32)
    sampled, summary = fit_model(data, tuning_rows=1500)
    whole, _ = fit_model(data, tuning_rows=len(data))
    assert summary["tuning_rows"] == 1500
    assert summary["calibrated"]
    # The final regression learnt from all 6,000 rows: refitting it on them changes nothing.
    regression = sampled.named_steps["model"].estimator.estimator.estimator
    design = sampled[:-1].transform(data[list(FEATURES)])
    refit = LogisticRegression(solver=SOLVER, tol=1e-10, **summary["params"])
    refit.fit(design, data["exited"])
    # Compared on the probabilities: scikit-learn's own solver stops near the optimum, not on
    # it, and a few coefficients (of rare flags) barely move the loss.
    np.testing.assert_allclose(
        regression.predict_proba(design), refit.predict_proba(design), atol=2e-3
    )
    sample_only = LogisticRegression(solver=SOLVER, **summary["params"])
    sample_only.fit(design[:1500], data["exited"][:1500])
    assert np.abs(sample_only.predict_proba(design) - refit.predict_proba(design)).max() > 0.02
    # As good as the model tuned on every row, on rows neither saw.
    truth, features = held_out["exited"], held_out[list(FEATURES)]
    auc = {
        name: roc_auc_score(truth, model.predict_proba(features)[:, 1])
        for name, model in (("sampled", sampled), ("whole", whole))
    }
    assert auc["sampled"] > auc["whole"] - 0.01
    labels, probabilities = scoring.predict_arrays(sampled, features)
    assert abs(probabilities.mean() - truth.mean()) < 0.03
    assert f1_score(truth, labels) > f1_score(truth, whole.predict(features)) - 0.03


def test_the_stratified_sample_keeps_each_outcome_in_its_share():
    target = np.r_[np.zeros(7001, dtype=int), np.ones(2999, dtype=int)]
    np.random.default_rng(3).shuffle(target)
    sample = stratified_sample(target, 1000, seed=0)
    assert len(sample) == len(np.unique(sample)) == 1000
    assert (np.diff(sample) > 0).all()
    assert np.bincount(target[sample]).tolist() == [700, 300]
    assert (sample == stratified_sample(target, 1000, seed=0)).all()  # seeded


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_the_blockwise_fit_finds_scikit_learns_optimum(monkeypatch, class_weight):
    rng = np.random.default_rng(7)
    design = rng.normal(size=(3000, 6)).astype(np.float32)
    target = (rng.random(3000) < 1 / (1 + np.exp(-(design @ rng.normal(size=6) - 1.2)))).astype(int)
    exact = LogisticRegression(C=0.3, class_weight=class_weight, tol=1e-12, max_iter=1000)
    exact.fit(design.astype(float), target)
    monkeypatch.setattr(blockfit, "BLOCK_ROWS", 450)  # several blocks, the last one short
    fitted = blockfit.fit_logistic(design, target, C=0.3, class_weight=class_weight)
    np.testing.assert_allclose(fitted.coef_, exact.coef_, atol=1e-6)
    np.testing.assert_allclose(fitted.intercept_, exact.intercept_, atol=1e-6)
    restored = pickle.loads(pickle.dumps(fitted))
    probabilities = exact.predict_proba(design)
    np.testing.assert_allclose(restored.predict_proba(design), probabilities, atol=1e-6)


def test_a_sample_too_small_for_the_rarer_outcome_tunes_on_every_row():
    data = client_rows(3000, seed=33)
    leavers = data.index[data["exited"] == 1]
    rare = data.drop(index=leavers[40:]).reset_index(drop=True)  # 40 leavers in 2,4xx rows
    model, summary = fit_model(rare, tuning_rows=500)
    assert "tuning_rows" not in summary
    assert summary["calibrated"]
    assert model.predict_proba(rare[list(FEATURES)]).shape == (len(rare), 2)


@pytest.mark.parametrize("tuning_rows", [20_000, 2_000])  # calibrated out of fold; on a sample
def test_a_model_weighed_by_age_forecasts_the_exit_rate_of_the_market_it_weighs_most(tuning_rows):
    """Old rows of a market where few left, weighed almost to nothing, and new rows of one where
    many leave: the probabilities, their calibration and threshold follow the new market."""
    import generate_data

    rng = np.random.default_rng(41)
    old = generate_data.simulate_clients(
        rng, generate_data.client_codes(rng, 4000), market=generate_data.Market()
    )
    many_leave = generate_data.Market(intercept=-1.0)
    new = generate_data.simulate_clients(
        rng, generate_data.client_codes(rng, 2000), market=many_leave
    )
    fresh = generate_data.simulate_clients(
        rng, generate_data.client_codes(rng, 5000), market=many_leave
    )
    data = pd.concat([old, new], ignore_index=True)
    weights = np.r_[np.full(len(old), 0.001), np.ones(len(new))]
    model, summary = fit_model(data, tuning_rows, weights=weights)
    forecast = scoring.predict(model, fresh)["probability"].mean()
    assert old["exited"].mean() < 0.7 * fresh["exited"].mean()  # the markets differ
    assert forecast == pytest.approx(fresh["exited"].mean(), rel=0.1)
    assert "weighed by age" in summary["check_reference"]["dataset"]


def test_the_best_threshold_counts_each_row_with_its_weight():
    truth = np.array([1, 0, 1, 0])
    probabilities = np.array([0.9, 0.8, 0.7, 0.1])
    assert best_f1_threshold(truth, probabilities) == pytest.approx((0.7, 0.8))
    # The second leaver hardly counts: flagging the first alone is best.
    weights = np.array([1.0, 1.0, 0.01, 1.0])
    threshold, f1 = best_f1_threshold(truth, probabilities, weights)
    assert threshold == 0.9
    assert f1 == pytest.approx(2 / 2.01)
