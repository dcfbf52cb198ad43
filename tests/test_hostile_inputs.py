"""A corpus of hostile input files: each is named with its reason, the good data goes through,
the run exits 0 without a traceback, through ingestion.py and through fullprocess.py."""

import json
import os
import shutil
import time

import pandas as pd
import pytest

import fullprocess
import ingestion
from clientrisk.data import batchstore
from clientrisk.history.database import open_history
from clientrisk.pipeline import fullprocess as fullprocess_lib
from conftest import HEADER, client_rows, keep_writing

GOOD = "good.csv"
ROSTER_HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees\n"
HUGE = "1" + "9" * 400


def rows_file(*rows: str) -> bytes:
    """A file with a good first row, then `rows`, then a good last row."""
    return (
        HEADER + "hstf,1,20,3,0\n" + "".join(row + "\n" for row in rows) + "hstl,2,30,4,1\n"
    ).encode()


def write(name: str, content: bytes):
    def make(input_dir, tmp_path):
        (input_dir / os.fsdecode(name)).write_bytes(content)

    return make


def link_to(target_of):
    def make(input_dir, tmp_path):
        os.symlink(target_of(tmp_path), input_dir / "link.csv")

    return make


def outside_file(tmp_path):
    path = tmp_path / "outside.csv"
    path.write_text(HEADER + "outs,1,2,3,0\n")
    return path


def make_folder(input_dir, tmp_path):
    (input_dir / "folder.csv").mkdir()


def make_fifo(input_dir, tmp_path):
    os.mkfifo(input_dir / "pipe.csv")


def renamed_copy(input_dir, tmp_path):
    shutil.copy(input_dir / "batch1.csv", input_dir / "batch1 (copy).csv")


def being_written(input_dir, tmp_path):
    (input_dir / "uploading.csv").write_text(HEADER + "upld,1,2,3,0\n")


# case: (how to make it, what the log says, clients that must get through from it)
CORPUS = {
    "401-digit count": (
        write("huge_int.csv", rows_file(f"hug1,1,20,{HUGE},0")),
        "huge_int.csv:3: number_of_employees: '19999999999999999999'… (401 characters) is too"
        " large",
        {"hstf", "hstl"},
    ),
    "float overflow": (
        write("overflow.csv", rows_file("ovf1,1e400,20,3,0")),
        "overflow.csv:3: lastmonth_activity: 1e400 is too large",
        {"hstf", "hstl"},
    ),
    "count whose twelve months overflow": (
        write("vast.csv", rows_file("vst1,1.5e307,,3,0")),
        "vast.csv:3: lastmonth_activity: 1.5e307 is too large (at most 1,000,000,000,000,000)",
        {"hstf", "hstl"},
    ),
    "roster count past the bound": (
        write("vast_roster.csv", (ROSTER_HEADER + "vst2,1,20,3\nvst3,1.5e307,,3\n").encode()),
        "vast_roster.csv:3: lastmonth_activity: 1.5e307 is too large",
        set(),
    ),
    "inf in exited": (
        write("inf_exited.csv", rows_file("infx,1,20,3,inf")),
        "inf_exited.csv:3: exited must be 0, 1 or empty, got 'inf'",
        {"hstf", "hstl"},
    ),
    "nan in exited": (
        write("nan_exited.csv", rows_file("nanx,1,20,3,nan")),
        "nan_exited.csv:3: exited must be 0, 1 or empty, got 'nan'",
        {"hstf", "hstl"},
    ),
    "NA in exited": (
        write("na_exited.csv", rows_file("nax1,1,20,3,NA")),
        "na_exited.csv:3: exited must be 0, 1 or empty, got 'NA'",
        {"hstf", "hstl"},
    ),
    "infinite feature": (
        write("inf_feature.csv", rows_file("inff,1,-Infinity,3,0")),
        "inf_feature.csv:3: lastyear_activity: '-Infinity' is not finite",
        {"hstf", "hstl"},
    ),
    "short row": (
        write("short.csv", rows_file("shrt,1,20")),
        "short.csv:3: expected 5 fields, saw 3",
        {"hstf", "hstl"},
    ),
    "long row": (
        write("long.csv", rows_file("lng1,1,20,3,0,9,9")),
        "long.csv:3: expected 5 fields, saw 7",
        {"hstf", "hstl"},
    ),
    "blank and quoted multi-line rows": (
        write("multiline.csv", rows_file("", '"two\nlines",1,20,3,0', "mlt2,x,20,3,0")),
        "multiline.csv:6: lastmonth_activity: 'x' is not a number",
        {"hstf", "hstl"},
    ),
    "formula identifiers": (
        write(
            "formulas.csv",
            rows_file(
                '"=HYPERLINK(""http://evil"",""x"")",1,20,3,0', "+cmd,1,20,3,1", "@sum,1,2,3,0"
            ),
        ),
        None,
        {"hstf", "hstl", '=HYPERLINK("http://evil","x")', "+cmd", "@sum"},
    ),
    "absurdly long identifier": (
        write("long_id.csv", rows_file("x" * 5000 + ",1,20,3,0")),
        "long_id.csv:3: corporation is 5,000 characters long (at most 100)",
        {"hstf", "hstl"},
    ),
    "control character in identifier": (
        write("control.csv", rows_file('"bell\x07",1,20,3,0')),
        "control.csv:3: corporation contains a control character",
        {"hstf", "hstl"},
    ),
    "all rows bad": (
        write("all_bad.csv", (HEADER + "bad1,x,1,1,0\nbad2,1,y,1,0\n").encode()),
        "all_bad.csv: no valid rows (2 rejected)",
        set(),
    ),
    "empty file": (write("empty.csv", b""), "empty.csv: file is empty", set()),
    "header only": (
        write("header_only.csv", HEADER.encode()),
        "header_only.csv: no data rows",
        set(),
    ),
    "binary": (
        write("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 30),
        "image.csv: not UTF-8 text (line 1 has byte 0x89)",
        set(),
    ),
    "latin-1 text": (
        write("latin1.csv", (HEADER + "caf\xe9,1,20,3,0\n").encode("latin-1")),
        "latin1.csv: not UTF-8 text (line 2 has byte 0xe9)",
        set(),
    ),
    "UTF-16 text": (
        write("utf16.csv", (HEADER + "abcd,1,20,3,0\n").encode("utf-16")),
        "utf16.csv: UTF-16 text; save the file as UTF-8 CSV",
        set(),
    ),
    "NUL bytes": (
        write("nul.csv", (HEADER + "ab\x00cd,1,20,3,0\n").encode()),
        "nul.csv: not a text file (a NUL byte on line 2)",
        set(),
    ),
    "semicolons": (
        write("semicolons.csv", HEADER.replace(",", ";").encode() + b"abcd;1;20;3;0\n"),
        "semicolons.csv: missing required column(s)",
        set(),
    ),
    "repeated column": (
        write(
            "repeated.csv", b"corporation,exited," + HEADER.encode()[12:] + b"a,0,abcd,1,2,3,0\n"
        ),
        "repeated.csv: repeated column(s) in the header: exited",
        set(),
    ),
    "ten thousand columns": (
        write("wide.csv", (",".join(f"c{i}" for i in range(10_000)) + "\n1\n").encode()),
        "wide.csv: 10,000 columns in the header; at most 256",
        set(),
    ),
    "unterminated quote": (
        write("quote.csv", (HEADER + 'abcd,1,20,3,0\n"efgh,1,20,3,0\n').encode()),
        "quote.csv:3: a quote is never closed: expected 5 fields, saw 1",
        {"abcd"},
    ),
    "renamed copy": (renamed_copy, "batch1 (copy).csv: same content as batch1.csv", set()),
    "folder": (make_folder, "folder.csv: a folder, not a file; not read", set()),
    "broken link": (
        link_to(lambda tmp_path: tmp_path / "nowhere.csv"),
        "link.csv: a broken link; not read",
        set(),
    ),
    "link outside": (
        link_to(outside_file),
        "link.csv: a link to a file outside the input folder; not read",
        set(),
    ),
    "pipe": (make_fifo, "pipe.csv: not a regular file (a pipe, socket or device)", set()),
    "tab in name": (write("tab\tname.csv", rows_file()), None, {"hstf", "hstl"}),
    "newline in name": (write("new\nline.csv", rows_file()), None, {"hstf", "hstl"}),
    "markup in name": (write("<b>bold<b> & co.csv", rows_file()), None, {"hstf", "hstl"}),
    "non-ASCII name": (write("clientès_日本.csv", rows_file()), None, {"hstf", "hstl"}),
    "name not UTF-8": (write(b"\xff\xfebytes.csv", rows_file()), None, {"hstf", "hstl"}),
    "only current clients": (
        write("roster.csv", (ROSTER_HEADER + "rst1,1,20,3\nrst2,0,10,1\n").encode()),
        None,
        set(),
    ),
    "being written": (being_written, "uploading.csv: still being written", set()),
}


@pytest.fixture
def hostile(request, diagnosed, tmp_path):
    """The diagnosed project with one hostile case and one good file in its input folder."""
    make, message, clients = CORPUS[request.param]
    config = json.loads(diagnosed.config_path.read_text())
    config["settle_seconds"] = 0.5
    diagnosed.config_path.write_text(json.dumps(config))
    make(diagnosed.input_dir, tmp_path)
    diagnosed.write_input(GOOD, client_rows(150, seed=31))
    settled = time.time() - 120
    for entry in os.scandir(diagnosed.input_dir):
        if entry.name != "uploading.csv" and entry.is_file(follow_symlinks=False):
            os.utime(entry.path, (settled, settled))
    uploading = diagnosed.input_dir / "uploading.csv"
    if not uploading.exists():
        yield diagnosed, message, clients
        return
    with keep_writing(uploading):
        yield diagnosed, message, clients


def ingested_clients(project) -> set:
    data = pd.read_csv(project.root / "ingesteddata" / "finaldata.csv", dtype={"corporation": str})
    current = pd.read_csv(project.root / "ingesteddata" / "currentclients.csv", dtype=str)
    return set(data["corporation"]) | set(current["corporation"])


def check_outcome(project, message, clients, err):
    assert "Traceback" not in err
    if message:
        assert message in err
    good = set(client_rows(150, seed=31)["corporation"])
    found = ingested_clients(project)
    assert good <= found
    shown = {name.removeprefix("'") for name in found}
    assert clients <= shown


@pytest.mark.parametrize("hostile", list(CORPUS), indirect=True)
def test_ingestion_names_the_bad_part_and_keeps_the_good(hostile, capsys):
    project, message, clients = hostile
    assert ingestion.main(project.args()) == 0
    check_outcome(project, message, clients, capsys.readouterr().err)


@pytest.mark.parametrize("hostile", list(CORPUS), indirect=True)
def test_fullprocess_names_the_bad_part_and_keeps_the_good(hostile, capsys, monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    project, message, clients = hostile
    assert fullprocess.main(project.args()) == 0
    check_outcome(project, message, clients, capsys.readouterr().err)
    with open_history(project.config.history_path) as history:
        first = history.latest_runs(1)[0]
        assert first.outcome in {"no drift", "nothing to judge", "redeployed"}
    # Judged once: the next tick has nothing to do and says so without failing.
    assert fullprocess.main(project.args()) == 0
    with open_history(project.config.history_path) as history:
        assert history.latest_runs(1)[0].outcome == "no new data"


def test_permission_denied_is_retried_on_a_later_run(diagnosed, monkeypatch, capsys):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    locked = diagnosed.write_input("locked.csv", client_rows(120, seed=41))
    diagnosed.write_input(GOOD, client_rows(150, seed=31))
    read_bytes, hash_file = batchstore.read_input_bytes, fullprocess_lib.sha256_file

    def denied(reader):
        def read(path):
            if os.path.basename(path) == "locked.csv":
                raise PermissionError(13, "Permission denied")
            return reader(path)

        return read

    monkeypatch.setattr(batchstore, "read_input_bytes", denied(read_bytes))
    monkeypatch.setattr(fullprocess_lib, "sha256_file", denied(hash_file))
    assert fullprocess.main(diagnosed.args()) == 0
    err = capsys.readouterr().err
    assert "locked.csv: cannot read: Permission denied; will try again on the next run" in err
    assert "Traceback" not in err
    assert set(client_rows(150, seed=31)["corporation"]) <= ingested_clients(diagnosed)
    assert fullprocess.main(diagnosed.args()) == 0
    with open_history(diagnosed.config.history_path) as history:
        quiet = history.latest_runs(1)[0]
    assert "waiting: locked.csv: cannot read: Permission denied" in quiet.reason
    # Once readable, it is ingested.
    monkeypatch.setattr(batchstore, "read_input_bytes", read_bytes)
    monkeypatch.setattr(fullprocess_lib, "sha256_file", hash_file)
    assert fullprocess.main(diagnosed.args()) == 0
    assert set(pd.read_csv(locked)["corporation"]) <= ingested_clients(diagnosed)


def test_odd_names_are_escaped_in_the_record_and_the_report(diagnosed):
    names = ["tab\tname.csv", "new\nline.csv", "<b>bold<b> & co.csv", "=HYPERLINK(1).csv"]
    for seed, name in enumerate(names, start=50):
        diagnosed.write_input(name, client_rows(30, seed=seed))
    assert ingestion.main(diagnosed.args()) == 0
    record = (diagnosed.root / "ingesteddata" / "ingestedfiles.txt").read_text()
    lines = record.splitlines()
    assert len(lines) == 2 + 2 + len(names)
    assert all(len(line.split("\t")) == 8 for line in lines[1:])
    assert "tab\\tname.csv\t" in record
    assert "new\\nline.csv\t" in record
    assert "'=HYPERLINK(1).csv\t" in record
    import diagnostics
    import reporting

    assert diagnostics.main(diagnosed.args()) == 0
    assert reporting.main(diagnosed.args()) == 0
    assert (diagnosed.root / "models" / "summary_report.pdf").stat().st_size > 10_000


def test_formulas_are_neutralised_in_every_csv_a_person_opens(diagnosed):
    diagnosed.write_input(
        "formulas.csv", rows_file('"=HYPERLINK(""http://evil"",""x"")",1,20,3,0', "+cmd,0,90,3,0")
    )
    assert ingestion.main(diagnosed.args()) == 0
    import diagnostics

    assert diagnostics.main(diagnosed.args()) == 0
    for path in (
        diagnosed.root / "ingesteddata" / "finaldata.csv",
        diagnosed.root / "models" / "riskranking.csv",
    ):
        text = path.read_text()
        assert "'=HYPERLINK(" in text, path.name
        assert "'+cmd" in text, path.name
        for unsafe in ("\n=HYPERLINK", ",=HYPERLINK", ',"=HYPERLINK', "\n+cmd", ",+cmd"):
            assert unsafe not in text, path.name


# Cells that a quick parse of a clean file could read differently from the careful one.
ODD_ROWS = {
    "nan text in exited": "oddr,1,20,3,nan",
    "NAN text in a feature": "oddr,NAN,20,3,0",
    "infinity": "oddr,inf,20,3,0",
    "too large to be finite": "oddr,1e400,20,3,0",
    "negative": "oddr,-1,20,3,0",
    "negative zero": "oddr,-0,20,3,0",
    "plus sign, bare points, exponent": "oddr,+5,.5,1e3,1",
    "trailing point": "oddr,5.,20,3,1",
    "hexadecimal": "oddr,0x10,20,3,0",
    "digit groups": "oddr,1_000,20,3,0",
    "full-width digit": "oddr,\uff11,20,3,0",
    "outcome 2": "oddr,1,20,3,2",
    "outcome 1.0": "oddr,1,20,3,1.0",
    "outcome NA": "oddr,1,20,3,NA",
    "missing tokens": "oddr,N/A,null,None,0",
    "no outcome": "oddr,1,20,3,",
    "no code": ",1,20,3,0",
    "code NA": "NA,1,20,3,0",
    "code too long": "o" * 101 + ",1,20,3,0",
    "short row": "oddr,1,20,3",
    "long row": "oddr,1,20,3,0,9",
    "blank line": "",
}


@pytest.mark.parametrize("row", list(ODD_ROWS.values()), ids=list(ODD_ROWS))
def test_clean_files_are_read_as_the_careful_parse_reads_them(row, monkeypatch):
    """A file without quotes or white space is parsed straight into numbers when every cell is
    clean; any other cell sends it to the careful parse. Both give the same rows and reasons."""
    from clientrisk.data import clientcsv

    data = rows_file(row)
    for text in (data, data.replace(b"\n", b"\r\n")):
        quick = clientcsv.parse_client_csv(text, "odd.csv")
        with monkeypatch.context() as patch:
            patch.setattr(clientcsv, "_clean_frame", lambda *args: None)
            careful = clientcsv.parse_client_csv(text, "odd.csv")
        pd.testing.assert_frame_equal(quick.frame, careful.frame)
        assert quick.rejections == careful.rejections


def test_a_clean_file_takes_the_quick_parse(monkeypatch):
    """Columns in any order, an extra one, an outcome missing: still clean, read in one go."""
    from clientrisk.data import clientcsv

    monkeypatch.setattr(clientcsv, "_parse_table", None)  # the careful parse would fail
    columns = "exited,number_of_employees,corporation,note,lastyear_activity,lastmonth_activity"
    data = f"{columns}\n1,3,clna,x,20,1\n,4,clnb,y,30,2\n".encode()
    batch = clientcsv.parse_client_csv(data, "clean.csv")
    assert batch.rejections == []
    frame = batch.frame.astype({"exited": "float64"})
    assert frame.fillna(-1).to_dict("list") == {
        "corporation": ["clna", "clnb"],
        "lastmonth_activity": [1.0, 2.0],
        "lastyear_activity": [20.0, 30.0],
        "number_of_employees": [3.0, 4.0],
        "exited": [1.0, -1.0],
    }
