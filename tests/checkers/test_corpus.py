"""Every public history in tests/data/corpus gets the verdict its source project asserts.

The histories are byte-for-byte copies from Porcupine and Knossos (see
tests/data/corpus/NOTICE.md); the manifest names each one's source and the
verdict that project's own tests assert. A file the manifest lists but the
folder lacks is a failure, not a skip.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"
EXIT_FOR = {"linearizable": 0, "not-linearizable": 1}


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = _rows()


def test_manifest_is_present_and_complete() -> None:
    assert MANIFEST.is_file(), f"the corpus manifest is missing: expected {MANIFEST}"
    assert len(ROWS) >= 150, f"{MANIFEST} lists only {len(ROWS)} files"
    assert {row["expected"] for row in ROWS} == set(EXIT_FOR)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_corpus_file_verdict(row: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / row["file"]
    assert path.is_file(), f"{row['file']} is listed in the manifest but missing from {CORPUS}"
    code = main(["check", str(path), "--model", row["model"], "--time-limit", "60"])
    out = capsys.readouterr()
    assert code == EXIT_FOR[row["expected"]], (
        f"{row['file']}: expected {row['expected']}, exit {code}\n{out.out}{out.err}"
    )


def test_knossos_failing_ops_match_the_ones_knossos_asserts(tmp_path: Path) -> None:
    """Where the manifest names Knossos's failing op (its :index), ours is the same op."""
    import json
    import re

    named = [row for row in ROWS if ":index" in row["notes"] and "failing op" in row["notes"]]
    assert len(named) >= 4
    for row in named:
        index = int(re.search(r"failing op \{[^}]*:index (\d+)\}", row["notes"]).group(1))  # type: ignore[union-attr]
        results = tmp_path / "results.json"
        main(["check", str(CORPUS / row["file"]), "--results", str(results)])
        lin = json.loads(results.read_text())["checkers"]["linearizable"]
        assert lin["first_unlinearizable"]["complete_index"] == index, row["file"]


def test_console_script_on_one_corpus_file() -> None:
    path = CORPUS / "porcupine-etcd" / "etcd_000.log"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT LINEARIZABLE" in proc.stdout
    assert "but the register held" in proc.stdout


def test_counterexamples_of_invalid_corpus_files_are_minimal(tmp_path: Path) -> None:
    """The counterexample holds the first op that cannot be linearized, and every op in it is needed.

    Removing any one of its ops (with what that removal leaves unexplained:
    checkers.counterexample.remove) leaves a linearizable history.
    """
    import json

    from checkers.counterexample import remove
    from checkers.history import Operation
    from checkers.models import get_model
    from checkers.search import search

    invalid = [row for row in ROWS if row["expected"] == "not-linearizable"]
    assert invalid
    for row in invalid:
        results = tmp_path / "results.json"
        main(["check", str(CORPUS / row["file"]), "--results", str(results)])
        lin = json.loads(results.read_text())["checkers"]["linearizable"]
        ce = lin["counterexample"]
        model = get_model(
            "cas-register", initial=lin["initial"], nil_reads_unknown=lin["nil_reads"] == "unknown"
        )
        assert ce["minimal"] is True, row["file"]
        members = [
            Operation(
                id=o["id"],
                process=o["process"],
                f=o["f"],
                key=o["key"],
                value_in=tuple(o["value_in"]) if isinstance(o["value_in"], list) else o["value_in"],
                value_out=o["value_out"],
                outcome=o["outcome"],
                call=o["invoke_index"],
                ret=o["complete_index"] if o["outcome"] == "ok" else None,
                call_ns=0,
                return_ns=None,
                invoke_index=o["invoke_index"],
                complete_index=o["complete_index"],
            )
            for o in ce["ops"]
        ]
        stuck = lin["first_unlinearizable"]["id"]
        own = search(model, members)
        assert own.valid is False, row["file"]
        assert own.stuck_op == stuck, row["file"]
        for removed in members:
            rest, settled = remove(model, members, removed.id, stuck)
            assert settled.valid is True, (
                f"{row['file']}: without op {removed.id} the counterexample still fails at op "
                f"{settled.stuck_op}: {[op.id for op in rest]}"
            )
