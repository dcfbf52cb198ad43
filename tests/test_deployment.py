import json
import os
import shutil

import pytest

import deployment
from clientrisk.atomicfiles import sha256_file
from clientrisk.deployment import modelstore
from conftest import ALL_STEPS, client_rows, run_steps


def deploy_dir(project):
    return project.root / "production_deployment"


def live(project):
    return modelstore.current_version(deploy_dir(project))


def retrain_on_more_data(project, seed=11):
    """Land another batch and produce a different scored model, not yet deployed."""
    project.write_input(f"more{seed}.csv", client_rows(200, seed=seed))
    run_steps(project, "ingestion", "training", "scoring")


def test_deploy_writes_a_whole_version_with_manifest(project, capsys):
    run_steps(project, *ALL_STEPS)
    assert "deployed v0001" in capsys.readouterr().out
    deployed = project
    folder = deploy_dir(deployed)
    assert live(deployed) == 1
    manifest = json.loads((folder / "versions" / "v0001" / "manifest.json").read_text())
    models = deployed.root / "models"
    assert manifest["model_sha256"] == sha256_file(models / "trainedmodel.pkl")
    assert manifest["metrics"]["f1"] == float((models / "latestscore.txt").read_text())
    metadata = json.loads((models / "trainedmodel.json").read_text())
    assert manifest["training_data_sha256"] == metadata["training_data"]["sha256"]
    assert manifest["through_batch"] == 2
    assert manifest["version"] == 1
    assert manifest["deployed_at"].endswith("Z")
    # The course's paths show the live deployment.
    for name in ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"):
        assert (folder / name).read_bytes() == (folder / "versions" / "v0001" / name).read_bytes()


def test_redeploying_the_same_model_changes_nothing(deployed, capsys):
    run_steps(deployed, "deployment")
    assert "already live" in capsys.readouterr().out
    assert modelstore.list_versions(deploy_dir(deployed)) == [1]


def test_new_deployment_keeps_the_previous_and_records_history(deployed):
    retrain_on_more_data(deployed)
    assert deployment.main(deployed.args("--reason", "more data")) == 0
    assert live(deployed) == 2
    assert modelstore.list_versions(deploy_dir(deployed)) == [1, 2]
    history = modelstore.read_history(deploy_dir(deployed))
    assert [(h["action"], h["from_version"], h["to_version"]) for h in history] == [
        ("deploy", "-", "v0001"),
        ("deploy", "v0001", "v0002"),
    ]
    assert history[-1]["reason"] == "more data"


def test_rollback_makes_the_previous_version_live(deployed, capsys):
    retrain_on_more_data(deployed)
    run_steps(deployed, "deployment")
    first_model = (deploy_dir(deployed) / "versions" / "v0001" / "trainedmodel.pkl").read_bytes()
    assert deployment.main(deployed.args("--rollback")) == 0
    assert "rolled back to v0001" in capsys.readouterr().out
    assert live(deployed) == 1
    assert (deploy_dir(deployed) / "trainedmodel.pkl").read_bytes() == first_model
    history = modelstore.read_history(deploy_dir(deployed))
    assert (history[-1]["action"], history[-1]["from_version"], history[-1]["to_version"]) == (
        "rollback",
        "v0002",
        "v0001",
    )
    _, deployed = modelstore.load_deployed_model(deploy_dir(deployed))
    assert deployed.version == 1


def test_rollback_to_a_named_version(deployed):
    retrain_on_more_data(deployed, seed=11)
    run_steps(deployed, "deployment")
    retrain_on_more_data(deployed, seed=12)
    run_steps(deployed, "deployment")
    assert deployment.main(deployed.args("--rollback", "1")) == 0
    assert live(deployed) == 1
    assert deployment.main(deployed.args("--rollback", "v0003")) == 0
    assert live(deployed) == 3


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (None, "v0001 is the oldest deployment"),
        ("7", "no complete deployment v0007"),
        ("seven", "'seven' is not a version number"),
    ],
)
def test_impossible_rollback_is_a_clear_error(deployed, argument, message, capsys):
    args = ["--rollback"] if argument is None else ["--rollback", argument]
    assert deployment.main(deployed.args(*args)) == 1
    assert message in capsys.readouterr().err
    assert live(deployed) == 1


def test_rollback_with_nothing_deployed(project, capsys):
    assert deployment.main(project.args("--rollback")) == 1
    assert "nothing is deployed" in capsys.readouterr().err


def test_tampered_deployed_model_is_refused(deployed):
    model_path = deploy_dir(deployed) / "versions" / "v0001" / "trainedmodel.pkl"
    model_path.write_bytes(model_path.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(modelstore.DeploymentError, match="does not match the recorded"):
        modelstore.load_deployed_model(deploy_dir(deployed))


def test_rollback_to_a_tampered_version_is_refused(deployed, capsys):
    retrain_on_more_data(deployed)
    run_steps(deployed, "deployment")
    with (deploy_dir(deployed) / "versions" / "v0001" / "trainedmodel.pkl").open("ab") as handle:
        handle.write(b"!")
    assert deployment.main(deployed.args("--rollback")) == 1
    assert "does not match the recorded" in capsys.readouterr().err
    assert live(deployed) == 2


def test_score_of_another_model_is_refused(project, capsys):
    run_steps(project, "ingestion", "training", "scoring")
    project.write_input("more.csv", client_rows(200, seed=11))
    run_steps(project, "ingestion", "training")
    assert deployment.main(project.args()) == 1
    assert "the score is for a different model; run scoring.py first" in capsys.readouterr().err
    assert live(project) is None


def test_nothing_trained(project, capsys):
    run_steps(project, "ingestion")
    assert deployment.main(project.args()) == 1
    assert "run training.py first" in capsys.readouterr().err


def fail_when(monkeypatch, module, name, predicate):
    """Make `module.name` raise an I/O error on the calls that `predicate` picks."""
    real = getattr(module, name)

    def failing(*args, **kwargs):
        if predicate(*args):
            raise OSError(5, "Input/output error")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


CRASH_POINTS = {
    "copying a file": (shutil, "copyfile", lambda src, dst: dst.name == "scoremetrics.json"),
    "renaming the staged version": (os, "rename", lambda src, dst: True),
    "switching the live link": (os, "replace", lambda src, dst: str(dst).endswith("current")),
}


@pytest.mark.parametrize("point", CRASH_POINTS, ids=list(CRASH_POINTS))
def test_crash_before_the_switch_leaves_the_previous_one_live(deployed, monkeypatch, point):
    folder = deploy_dir(deployed)
    before = {
        name: (folder / name).read_bytes() for name in ("trainedmodel.pkl", "latestscore.txt")
    }
    retrain_on_more_data(deployed)
    with monkeypatch.context() as patch:
        fail_when(patch, *CRASH_POINTS[point])
        assert deployment.main(deployed.args()) == 1
    assert live(deployed) == 1
    assert {name: (folder / name).read_bytes() for name in before} == before
    modelstore.verify_files(modelstore.current_deployment(folder))
    assert len(modelstore.read_history(folder)) == 1
    # The next deployment cleans up what was left and completes.
    run_steps(deployed, "deployment")
    assert (
        modelstore.version_name(live(deployed)) == modelstore.read_history(folder)[-1]["to_version"]
    )
    assert not [path for path in (folder / "versions").iterdir() if ".tmp-" in path.name]
    modelstore.verify_files(modelstore.current_deployment(folder))


def test_crash_after_the_switch_leaves_the_new_one_live_and_history_is_mended(
    deployed, monkeypatch
):
    folder = deploy_dir(deployed)
    retrain_on_more_data(deployed)
    with monkeypatch.context() as patch:
        fail_when(patch, os, "replace", lambda src, dst: str(dst).endswith("deploymenthistory.txt"))
        assert deployment.main(deployed.args()) == 1
    assert live(deployed) == 2
    modelstore.verify_files(modelstore.current_deployment(folder))
    retrain_on_more_data(deployed, seed=12)
    run_steps(deployed, "deployment")
    history = modelstore.read_history(folder)
    assert [(h["action"], h["to_version"]) for h in history] == [
        ("deploy", "v0001"),
        ("recovered", "v0002"),
        ("deploy", "v0003"),
    ]


def test_a_model_replaced_between_hashing_and_copying_is_not_deployed(
    deployed, monkeypatch, capsys
):
    from clientrisk.api.app import create_app

    folder = deploy_dir(deployed)
    model_path = deployed.root / "models" / "trainedmodel.pkl"
    other_model = (folder / "trainedmodel.pkl").read_bytes()  # v0001's, not the one scored
    retrain_on_more_data(deployed)
    real_copy = modelstore._copy_checked

    def replace_then_copy(files, staging):
        # Another process swaps the model in after its checksum went into the manifest.
        swapped = model_path.with_name(".swap.pkl")
        swapped.write_bytes(other_model)
        os.replace(swapped, model_path)
        return real_copy(files, staging)

    monkeypatch.setattr(modelstore, "_copy_checked", replace_then_copy)
    capsys.readouterr()
    assert deployment.main(deployed.args()) == 1
    err = capsys.readouterr().err
    assert f"{model_path}: replaced while it was being deployed" in err
    assert "nothing was deployed" in err
    assert "Traceback" not in err
    assert live(deployed) == 1
    assert sorted(path.name for path in (folder / "versions").iterdir()) == ["v0001"]
    health = create_app(deployed.config_path, token="").test_client().get("/health")
    assert health.get_json()["model_version"] == "v0001"
    monkeypatch.undo()
    run_steps(deployed, "training", "scoring", "deployment")
    assert live(deployed) == 2
    modelstore.verify_files(modelstore.current_deployment(folder))
