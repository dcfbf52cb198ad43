import errno
import json
import os
import shutil
import time

import pandas as pd
import pyarrow.csv
import pytest

import ingestion
from clientrisk.data import batchstore, exports
from clientrisk.data.clientcsv import COLUMNS
from clientrisk.errors import DataError
from clientrisk.history.database import open_history
from conftest import COURSE_FILE, HEADER, keep_writing


def final_data(project) -> pd.DataFrame:
    return pd.read_csv(project.root / "ingesteddata" / "finaldata.csv")


def current_clients(project) -> pd.DataFrame:
    return pd.read_csv(project.root / "ingesteddata" / "currentclients.csv")


def record(project):
    with open_history(project.config.history_path) as history:
        return {entry.name: entry for entry in history.input_files()}


def batches(project):
    with open_history(project.config.history_path) as history:
        return history.batches()


def test_course_format_file_is_ingested_as_is(course_project, capsys):
    assert ingestion.main(course_project.args()) == 0
    data = final_data(course_project)
    assert list(data.columns) == [*COLUMNS, "batch"]
    pd.testing.assert_frame_equal(data[list(COLUMNS)], pd.read_csv(COURSE_FILE))
    assert set(data["batch"]) == {1}
    entry = record(course_project)["dataset1.csv"]
    assert (entry.rows_accepted, entry.rows_rejected, entry.status) == (15, 0, "ingested")
    out = capsys.readouterr().out
    assert "ingested 1 new file(s) as batch 1: 15 rows with an outcome, 0 current clients" in out


def test_each_file_is_a_batch_in_arrival_order(project):
    assert ingestion.main(project.args()) == 0
    project.write_input("a_later.csv", HEADER + "newa,1,20,3,0\n")
    assert ingestion.main(project.args()) == 0
    stored = batches(project)
    assert [(batch.seq, batch.source) for batch in stored] == [
        (1, "batch1.csv"),
        (2, "batch2.csv"),
        (3, "a_later.csv"),
    ]
    assert all(len(batch.sha256) == 64 and batch.arrived_at.endswith("Z") for batch in stored)
    data = final_data(project)
    assert data["batch"].is_monotonic_increasing
    assert data.iloc[-1][["corporation", "batch"]].tolist() == ["newa", 3]
    meta = json.loads(
        (project.root / "ingesteddata" / "batches" / "000003" / "batch.json").read_text()
    )
    assert (meta["seq"], meta["source"], meta["labelled_rows"]) == (3, "a_later.csv", 1)


def test_combines_files_and_drops_exact_duplicates(project):
    batch1 = pd.read_csv(project.input_dir / "batch1.csv")
    project.write_input("overlap.csv", batch1.head(25))
    assert ingestion.main(project.args()) == 0
    data = final_data(project)
    assert len(data) == 600
    assert not data[list(COLUMNS)].duplicated().any()
    # The repeated rows stay with the batch they first came in.
    assert record(project)["overlap.csv"].rows_accepted == 25
    assert 3 not in set(data["batch"])


def test_the_record_names_hash_rows_time_and_batch(project):
    ingestion.main(project.args())
    text = project.config.ingestion_record_file.read_text()
    header = "file\tsha256\trows_accepted\trows_rejected\tingested_at\tstatus\tnote\tbatch"
    assert header in text
    entries = record(project)
    assert set(entries) == {"batch1.csv", "batch2.csv"}
    assert len(entries["batch1.csv"].sha256) == 64
    assert entries["batch1.csv"].seen_at.endswith("Z")
    assert "\nbatch1.csv\t" in text
    assert "\tingested\t\t1\n" in text


def test_missing_values_are_kept(project):
    project.write_input("gaps.csv", HEADER + "gapa,,120,3,1\ngapb,5,,,0\n")
    assert ingestion.main(project.args()) == 0
    data = final_data(project).set_index("corporation")
    assert pd.isna(data.loc["gapa", "lastmonth_activity"])
    assert pd.isna(data.loc["gapb", "number_of_employees"])
    assert record(project)["gaps.csv"].rows_rejected == 0


def test_an_archived_file_keeps_its_rows(project, tmp_path):
    """Moving an ingested file out of the input folder, as teams do, loses nothing."""
    assert ingestion.main(project.args()) == 0
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(project.input_dir / "batch1.csv", archive / "batch1.csv")
    (project.input_dir / "batch2.csv").unlink()
    project.write_input("batch3.csv", HEADER + "newa,1,20,3,0\nnewb,2,30,4,1\n")
    assert ingestion.main(project.args()) == 0
    data = final_data(project)
    assert len(data) == 602
    assert set(data["batch"]) == {1, 2, 3}


def test_a_changed_file_is_a_new_batch_and_the_old_rows_stay(project):
    ingestion.main(project.args())
    old_rows = pd.read_csv(project.input_dir / "batch2.csv")
    project.write_input("batch2.csv", HEADER + "newa,1,20,3,0\nnewb,2,30,4,1\n")
    assert ingestion.main(project.args()) == 0
    stored = batches(project)
    assert [batch.source for batch in stored] == ["batch1.csv", "batch2.csv", "batch2.csv"]
    assert stored[1].sha256 != stored[2].sha256
    data = final_data(project)
    assert len(data) == 602
    assert set(old_rows["corporation"]) <= set(data["corporation"])


def test_an_unreadable_or_emptied_input_file_loses_nothing(project, monkeypatch):
    ingestion.main(project.args())
    before = final_data(project)
    project.write_input("batch1.csv", "")
    real = batchstore.read_input_bytes

    def denied(path):
        if path.name == "batch2.csv":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(batchstore, "read_input_bytes", denied)
    assert ingestion.main(project.args()) == 0
    pd.testing.assert_frame_equal(final_data(project), before)


def test_rows_without_an_outcome_are_current_clients(project):
    project.write_input(
        "roster.csv",
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees\nrosa,4,60,2\n",
    )
    project.write_input("mixed.csv", HEADER + "mixa,1,20,3,\nmixb,2,30,4,1\n")
    assert ingestion.main(project.args()) == 0
    data = final_data(project)
    assert "rosa" not in set(data["corporation"])
    assert "mixa" not in set(data["corporation"])
    assert "mixb" in set(data["corporation"])
    current = current_clients(project)
    assert list(current.columns) == ["corporation", *COLUMNS[1:4], "batch"]
    assert set(current["corporation"]) == {"rosa", "mixa"}
    roster = next(batch for batch in batches(project) if batch.source == "roster.csv")
    assert (roster.labelled_rows, roster.current_rows) == (0, 1)


def test_a_file_still_being_written_is_left_for_the_next_run(project, capsys):
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "settle_seconds": 0.5}))
    old = time.time() - 120
    for path in project.input_dir.iterdir():
        os.utime(path, (old, old))
    project.write_input("fresh.csv", HEADER + "frsh,1,20,3,0\n")
    started = time.monotonic()
    with keep_writing(project.input_dir / "fresh.csv"):
        assert ingestion.main(project.args()) == 0
    assert time.monotonic() - started < 3  # waited for it a while, not for ever
    err = capsys.readouterr().err
    assert "fresh.csv: still being written; waiting" in err
    assert "fresh.csv: still being written (changed 0 s ago); left for the next run" in err
    assert "fresh.csv" not in record(project)
    os.utime(project.input_dir / "fresh.csv", (old, old))
    assert ingestion.main(project.args()) == 0
    assert "frsh" in set(final_data(project)["corporation"])


@pytest.mark.parametrize("copied_before", [0.0, 0.8])
def test_a_file_copied_in_just_before_the_run_is_waited_for(project, capsys, copied_before):
    """As the course's steps run: copy the files in, then ingest at once."""
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "settle_seconds": 1}))
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("copied.csv", HEADER + "copd,1,20,3,0\n")
    just_before = time.time() - copied_before
    os.utime(project.input_dir / "copied.csv", (just_before, just_before))
    started = time.monotonic()
    assert ingestion.main(project.args()) == 0
    assert time.monotonic() - started >= 1 - copied_before - 0.05
    assert "copied.csv: still being written; waiting" in capsys.readouterr().err
    assert set(final_data(project)["corporation"]) == {"copd"}


def test_nothing_usable_exits_nonzero_and_writes_no_data(project, capsys):
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("junk.csv", "just,some\ntext,here\n")
    assert ingestion.main(project.args()) == 1
    assert "no usable rows" in capsys.readouterr().err
    assert not (project.root / "ingesteddata" / "finaldata.csv").exists()


def test_empty_input_folder_exits_nonzero(project, capsys):
    for path in project.input_dir.iterdir():
        path.unlink()
    assert ingestion.main(project.args()) == 1
    assert "no CSV files to ingest" in capsys.readouterr().err


def test_reingesting_an_unchanged_folder_changes_nothing(project, capsys):
    ingestion.main(project.args())
    folder = project.root / "ingesteddata"
    before = {name: (folder / name).read_bytes() for name in ("finaldata.csv", "ingestedfiles.txt")}
    assert ingestion.main(project.args()) == 0
    assert "no new file to ingest" in capsys.readouterr().out
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert len(batches(project)) == 2


def test_a_renamed_copy_is_not_counted_twice(project):
    ingestion.main(project.args())
    rows = len(final_data(project))
    shutil.copy(project.input_dir / "batch1.csv", project.input_dir / "batch1_copy.csv")
    assert ingestion.main(project.args()) == 0
    entry = record(project)["batch1_copy.csv"]
    assert (entry.status, entry.rows_accepted, entry.batch) == ("duplicate", 0, None)
    assert "batch1.csv" in entry.note
    assert len(final_data(project)) == rows
    assert len(batches(project)) == 2


def test_a_failed_export_is_made_by_the_next_run(project, monkeypatch):
    assert ingestion.main(project.args()) == 0
    final_path = project.root / "ingesteddata" / "finaldata.csv"
    before = final_path.read_bytes()
    project.write_input("more.csv", HEADER + "mora,1,20,3,0\n")

    def write_half_then_die(table, sink, *args, **kwargs):
        sink.write(b"half a row,")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pyarrow.csv, "write_csv", write_half_then_die)
        assert ingestion.main(project.args()) == 1
    assert final_path.read_bytes() == before
    assert not [path for path in final_path.parent.iterdir() if ".tmp-" in path.name]
    # The batch itself was stored; the next run brings the exports up to date.
    assert ingestion.main(project.args()) == 0
    assert final_data(project)["corporation"].iloc[-1] == "mora"


def test_a_full_disk_names_the_file_being_written(project, monkeypatch, capsys):
    assert ingestion.main(project.args()) == 0
    project.write_input("more.csv", HEADER + "mora,1,20,3,0\n")

    def disk_full(table, sink, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pyarrow.csv, "write_csv", disk_full)
    assert ingestion.main(project.args()) == 1
    final_path = project.root / "ingesteddata" / "finaldata.csv"
    assert f"No space left on device: '{final_path}'" in capsys.readouterr().err


def compiled_in_full(project) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The exports as a compile of every batch makes them (the stamp removed first)."""
    (project.root / "ingesteddata" / exports.EXPORTS_STAMP_FILE).unlink()
    assert ingestion.main(project.args()) == 0
    return final_data(project), current_clients(project)


def test_a_new_batch_is_appended_to_the_exports_as_a_full_compile_would_list_it(
    project, monkeypatch
):
    assert ingestion.main(project.args()) == 0
    earlier = final_data(project).iloc[0]
    known = f"{earlier['corporation']},{earlier['lastmonth_activity']:g},"
    known += f"{earlier['lastyear_activity']:g},{earlier['number_of_employees']:g},"
    project.write_input(
        "later.csv",
        HEADER
        + f"{known}{earlier['exited']}\n"  # a row stored before: counted once
        + f"{known}{1 - earlier['exited']}\n"  # the same client, another outcome: new
        + "newb,1,,3,0\nnewb,1,,3,0\n"  # repeated within the batch, with a gap
        + "newc,5,60,7,\nnewc,5,60,7,\nnewd,2.5,30,1,\n",  # current clients
    )
    path = project.root / "ingesteddata" / "finaldata.csv"
    rows_before = len(final_data(project))
    first_line = path.read_bytes().splitlines()[1]
    with monkeypatch.context() as patched:
        patched.setattr(exports, "_compile_exports", None)  # appending only
        assert ingestion.main(project.args()) == 0
    appended, current = final_data(project), current_clients(project)
    assert len(appended) == rows_before + 2
    assert path.read_bytes().splitlines()[1] == first_line
    full, full_current = compiled_in_full(project)
    pd.testing.assert_frame_equal(appended, full)
    pd.testing.assert_frame_equal(current, full_current)
    assert current["corporation"].tolist()[-2:] == ["newc", "newd"]


def test_exports_changed_by_hand_are_compiled_again(project):
    assert ingestion.main(project.args()) == 0
    path = project.root / "ingesteddata" / "finaldata.csv"
    path.write_text(path.read_text().splitlines()[0] + "\nedited,1,2,3,0\n")
    project.write_input("later.csv", HEADER + "newb,1,20,3,0\n")
    assert ingestion.main(project.args()) == 0
    data = final_data(project)
    assert "edited" not in set(data["corporation"])
    pd.testing.assert_frame_equal(data, compiled_in_full(project)[0])


def test_verbose_logs_what_was_read_and_written(project, capsys):
    assert ingestion.main(project.args("-v")) == 0
    err = capsys.readouterr().err
    assert "DEBUG" in err
    assert "batch1.csv: batch 1, 300 rows" in err
    assert "finaldata.csv: 600 rows with an outcome" in err


def test_the_history_of_outcomes_is_read_once_per_process_while_the_batches_stay(
    project, monkeypatch
):
    assert ingestion.main(project.args()) == 0
    ingested = project.root / "ingesteddata"
    seqs = [batch.seq for batch in batches(project)]
    first = batchstore.labelled_history(ingested, seqs)
    first.loc[0, "lastmonth_activity"] = -1.0  # the caller's copy: the kept one is untouched
    real_read = batchstore.read_rows
    monkeypatch.setattr(batchstore, "read_rows", None)  # asked again: not read again
    again = batchstore.labelled_history(ingested, seqs)
    assert again.loc[0, "lastmonth_activity"] != -1.0
    monkeypatch.setattr(batchstore, "read_rows", real_read)
    stored = ingested / "batches" / "000001" / batchstore.OUTCOMES_FILE
    stored.write_bytes(stored.read_bytes() + b"tampered")
    with pytest.raises(DataError, match="changed after it was stored"):
        batchstore.labelled_history(ingested, seqs)


def as_stored_in_parquet(folder):
    """Rewrite a batch folder as versions before Arrow IPC files stored it."""
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    from clientrisk.atomicfiles import sha256_file

    meta = json.loads((folder / batchstore.BATCH_META_FILE).read_text())
    files = {}
    for name, older in batchstore.PARQUET_FILES.items():
        pq.write_table(feather.read_table(folder / name), folder / older, compression="lz4")
        (folder / name).unlink()
        files[older] = sha256_file(folder / older)
    meta["files"] = files
    (folder / batchstore.BATCH_META_FILE).write_text(json.dumps(meta))


def test_batches_stored_in_parquet_by_earlier_versions_are_read_as_they_are(project):
    assert ingestion.main(project.args()) == 0
    folder = project.root / "ingesteddata" / "batches" / "000001"
    assert {path.name for path in folder.iterdir()} == {
        "outcomes.arrow",
        "current.arrow",
        "batch.json",
    }
    before, before_current = compiled_in_full(project)
    as_stored_in_parquet(folder)
    after, after_current = compiled_in_full(project)
    pd.testing.assert_frame_equal(after, before)
    pd.testing.assert_frame_equal(after_current, before_current)
    # A new batch beside the old ones is stored as Arrow IPC; both kinds are read together.
    project.write_input("later.csv", HEADER + "newb,1,20,3,0\n")
    assert ingestion.main(project.args()) == 0
    seqs = [batch.seq for batch in batches(project)]
    rows = batchstore.labelled_history(project.root / "ingesteddata", seqs)
    assert rows["corporation"].tolist() == [*before["corporation"], "newb"]
    # A Parquet file changed after it was stored is found out as before.
    stored = folder / "outcomes.parquet"
    stored.write_bytes(stored.read_bytes() + b"tampered")
    with pytest.raises(DataError, match=r"outcomes\.parquet: changed after it was stored"):
        batchstore.labelled_history(project.root / "ingesteddata", seqs)


def test_a_file_dated_in_the_future_is_read_once_it_stops_changing(project, capsys):
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "settle_seconds": 1}))
    old = time.time() - 120
    for path in project.input_dir.iterdir():
        os.utime(path, (old, old))
    ahead = time.time() + 3600  # written before the clock was set back an hour
    project.write_input("ahead.csv", HEADER + "ahed,1,20,3,0\n")
    os.utime(project.input_dir / "ahead.csv", (ahead, ahead))
    assert ingestion.main(project.args()) == 0
    assert "ahead.csv: dated 3600 s in the future (a clock set back?)" in capsys.readouterr().err
    assert "ahead.csv" not in record(project)
    time.sleep(1.2)
    assert ingestion.main(project.args()) == 0
    assert "ahed" in set(final_data(project)["corporation"])
    # Read once, and settled for good: later runs neither wait for it nor read it again.
    assert ingestion.main(project.args()) == 0
    assert "ahead.csv" not in capsys.readouterr().err


def test_a_file_dated_in_the_future_that_changes_waits_again(project, capsys):
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "settle_seconds": 1}))
    old = time.time() - 120
    for path in project.input_dir.iterdir():
        os.utime(path, (old, old))
    ahead = time.time() + 3600
    project.write_input("ahead.csv", HEADER + "ahed,1,20,3,0\n")
    os.utime(project.input_dir / "ahead.csv", (ahead, ahead))
    assert ingestion.main(project.args()) == 0
    time.sleep(1.2)
    project.write_input("ahead.csv", HEADER + "ahed,1,20,3,0\nmore,2,30,4,1\n")
    os.utime(project.input_dir / "ahead.csv", (ahead + 5, ahead + 5))
    capsys.readouterr()
    assert ingestion.main(project.args()) == 0
    assert "ahead.csv: dated 360" in capsys.readouterr().err
    assert "ahead.csv" not in record(project)


def test_a_csv_of_rows_joined_from_an_empty_frame_is_written_as_they_are(tmp_path):
    """pandas hands pyarrow a text column joined from an empty part in two chunks, one empty;
    pyarrow's CSV writer then wrote raw buffer bytes (NULs) in place of the cells."""
    from clientrisk.atomicfiles import write_csv

    empty = pd.DataFrame({"rank": pd.Series([], dtype="int64"), "name": pd.Series([], dtype="str")})
    frame = pd.concat([empty, pd.DataFrame({"rank": [1], "name": ["back"]})], ignore_index=True)
    write_csv(frame, tmp_path / "list.csv")
    assert (tmp_path / "list.csv").read_bytes() == b"rank,name\n1,back\n"
