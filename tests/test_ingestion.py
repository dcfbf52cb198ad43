import shutil

import pandas as pd
import pytest

import ingestion
from conftest import COURSE_FILE, HEADER
from project import COLUMNS, read_ingestion_record


def final_data(project) -> pd.DataFrame:
    return pd.read_csv(project.root / "ingesteddata" / "finaldata.csv")


def record(project):
    return {
        entry.file: entry for entry in read_ingestion_record(project.config.ingestion_record_file)
    }


def test_course_format_file_is_ingested_as_is(course_project, capsys):
    assert ingestion.main(course_project.args()) == 0
    data = final_data(course_project)
    assert list(data.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(data, pd.read_csv(COURSE_FILE))
    entry = record(course_project)["dataset1.csv"]
    assert (entry.rows_accepted, entry.rows_rejected, entry.status) == (15, 0, "ingested")
    assert "ingested 1 of 1 files: 15 rows" in capsys.readouterr().out


def test_combines_files_and_drops_exact_duplicates(project):
    batch1 = pd.read_csv(project.input_dir / "batch1.csv")
    project.write_input("overlap.csv", batch1.head(25))
    assert ingestion.main(project.args()) == 0
    data = final_data(project)
    assert len(data) == 600
    assert not data.duplicated().any()
    assert record(project)["overlap.csv"].rows_accepted == 25


def test_record_names_hash_rows_and_time(project):
    ingestion.main(project.args())
    text = project.config.ingestion_record_file.read_text()
    assert "file\tsha256\trows_accepted\trows_rejected\tingested_at\tstatus\tnote" in text
    entries = record(project)
    assert set(entries) == {"batch1.csv", "batch2.csv"}
    assert len(entries["batch1.csv"].sha256) == 64
    assert entries["batch1.csv"].ingested_at.endswith("Z")


def test_missing_values_are_kept(project):
    project.write_input("gaps.csv", HEADER + "gapa,,120,3,1\ngapb,5,,,0\n")
    assert ingestion.main(project.args()) == 0
    data = final_data(project).set_index("corporation")
    assert pd.isna(data.loc["gapa", "lastmonth_activity"])
    assert pd.isna(data.loc["gapb", "number_of_employees"])
    assert record(project)["gaps.csv"].rows_rejected == 0


BAD_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20, "not a UTF-8 text file"),
    "empty": (b"", "file is empty"),
    "header only": (HEADER.encode(), "no data rows"),
    "missing column": (
        b"corporation,lastmonth_activity,lastyear_activity,exited\nabcd,1,2,0\n",
        "missing required column(s): number_of_employees",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_file_is_rejected_whole_and_good_files_go_through(project, case, capsys):
    content, reason = BAD_FILES[case]
    project.write_input("bad.csv", content)
    assert ingestion.main(project.args()) == 0
    assert f"bad.csv: {reason}" in capsys.readouterr().err
    entry = record(project)["bad.csv"]
    assert (entry.status, entry.rows_accepted) == ("rejected", 0)
    assert reason in entry.note
    assert len(final_data(project)) == 600


BAD_ROWS = {
    "non-numeric": ("badx,12,lots,5,0", "lastyear_activity: 'lots' is not a number"),
    "negative count": ("badx,12,100,-5,0", "number_of_employees: -5 is negative"),
    "exited not 0/1": ("badx,12,100,5,2", "exited must be 0 or 1, got 2"),
    "exited missing": ("badx,12,100,5,", "exited must be 0 or 1, got nothing"),
    "exited text": ("badx,12,100,5,yes", "exited must be 0 or 1, got 'yes'"),
    "no corporation": (",12,100,5,0", "corporation is empty"),
    "too many fields": ("badx,12,100,5,0,7", "expected 5 fields, saw 6"),
}


@pytest.mark.parametrize("case", BAD_ROWS, ids=list(BAD_ROWS))
def test_bad_row_is_rejected_alone_with_file_and_line(project, case, capsys):
    row, reason = BAD_ROWS[case]
    project.write_input("rows.csv", HEADER + "gooa,1,20,3,0\n\n" + row + "\ngoob,2,30,4,1\n")
    assert ingestion.main(project.args()) == 0
    assert f"rows.csv:4: {reason}" in capsys.readouterr().err
    entry = record(project)["rows.csv"]
    assert (entry.rows_accepted, entry.rows_rejected) == (2, 1)
    assert {"gooa", "goob"} <= set(final_data(project)["corporation"])
    assert "badx" not in set(final_data(project)["corporation"])


def test_nothing_usable_exits_nonzero_and_keeps_previous_data(project, capsys):
    assert ingestion.main(project.args()) == 0
    before = (project.root / "ingesteddata" / "finaldata.csv").read_bytes()
    record_before = project.config.ingestion_record_file.read_bytes()
    for path in project.input_dir.iterdir():
        path.unlink()
    project.write_input("junk.csv", "just,some\ntext,here\n")
    assert ingestion.main(project.args()) == 1
    assert "no usable rows" in capsys.readouterr().err
    assert (project.root / "ingesteddata" / "finaldata.csv").read_bytes() == before
    assert project.config.ingestion_record_file.read_bytes() == record_before


def test_empty_input_folder_exits_nonzero(project, capsys):
    for path in project.input_dir.iterdir():
        path.unlink()
    assert ingestion.main(project.args()) == 1
    assert "no CSV files to ingest" in capsys.readouterr().err


def test_reingesting_unchanged_folder_changes_nothing(project):
    ingestion.main(project.args())
    data = (project.root / "ingesteddata" / "finaldata.csv").read_bytes()
    text = project.config.ingestion_record_file.read_bytes()
    assert ingestion.main(project.args()) == 0
    assert (project.root / "ingesteddata" / "finaldata.csv").read_bytes() == data
    assert project.config.ingestion_record_file.read_bytes() == text


def test_renamed_copy_is_not_counted_twice(project):
    ingestion.main(project.args())
    rows = len(final_data(project))
    shutil.copy(project.input_dir / "batch1.csv", project.input_dir / "batch1_copy.csv")
    assert ingestion.main(project.args()) == 0
    entry = record(project)["batch1_copy.csv"]
    assert entry.status == "duplicate"
    assert entry.rows_accepted == 0
    assert "batch1.csv" in entry.note
    assert len(final_data(project)) == rows


def test_changed_file_is_read_again(project):
    ingestion.main(project.args())
    old = record(project)["batch2.csv"]
    project.write_input("batch2.csv", HEADER + "newa,1,20,3,0\nnewb,2,30,4,1\n")
    assert ingestion.main(project.args()) == 0
    new = record(project)["batch2.csv"]
    assert new.sha256 != old.sha256
    assert new.rows_accepted == 2
    assert {"newa", "newb"} <= set(final_data(project)["corporation"])
    assert len(final_data(project)) == 302


def test_new_file_is_ordered_after_earlier_ones(project):
    ingestion.main(project.args())
    project.write_input("a_new.csv", HEADER + "newa,1,20,3,0\n")
    ingestion.main(project.args())
    assert [
        entry.file for entry in read_ingestion_record(project.config.ingestion_record_file)
    ] == [
        "batch1.csv",
        "batch2.csv",
        "a_new.csv",
    ]
    assert final_data(project)["corporation"].iloc[-1] == "newa"


def test_interrupted_write_leaves_previous_files_whole(project, monkeypatch):
    assert ingestion.main(project.args()) == 0
    final_path = project.root / "ingesteddata" / "finaldata.csv"
    before = final_path.read_bytes()
    record_before = project.config.ingestion_record_file.read_bytes()
    project.write_input("more.csv", HEADER + "mora,1,20,3,0\n")

    def write_half_then_die(frame, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("corporation,lastmonth_activity\nhalf")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_die)
    assert ingestion.main(project.args()) == 1
    assert final_path.read_bytes() == before
    assert project.config.ingestion_record_file.read_bytes() == record_before
    assert sorted(p.name for p in final_path.parent.iterdir()) == [
        "finaldata.csv",
        "ingestedfiles.txt",
    ]


def test_damaged_record_names_its_line(project, capsys):
    ingestion.main(project.args())
    record_file = project.config.ingestion_record_file
    record_file.write_text(record_file.read_text() + "broken line without tabs\n")
    assert ingestion.main(project.args()) == 1
    err = capsys.readouterr().err
    assert "ingestedfiles.txt: malformed line 5" in err
    assert "Traceback" not in err
