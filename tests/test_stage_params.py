"""stages.config.family_params: per-family overrides of a section's keys."""

from __future__ import annotations

import pytest

from hneurons.errors import HNeuronsError
from stages.config import family_params

PARAMS = {
    "base": {"seed": 1},
    "sample": {"families": {"small": {}, "big": {"n_questions": 600, "decoding": {"top_k": 20}}},
               "n_questions": None, "temperature": 0.3, "decoding": {"top_k": 50, "top_p": 0.9}},
    "probe": {"families": {"big": {"C_grid": [1, 3]}}, "C_grid": [0.1, 1, 10], "tol": 1e-6},
    "report": {"families": ["small", "big"]},
}


def test_overrides_replace_defaults_for_that_family_only():
    big = family_params(PARAMS, "sample", "big")
    assert big["sample"]["n_questions"] == 600 and big["sample"]["temperature"] == 0.3
    assert big["sample"]["decoding"] == {"top_k": 20, "top_p": 0.9}  # nested mappings merge key by key
    assert big["probe"]["C_grid"] == [1, 3] and big["probe"]["tol"] == 1e-6  # every section's overrides apply
    small = family_params(PARAMS, "sample", "small")
    assert small["sample"]["n_questions"] is None and small["probe"]["C_grid"] == [0.1, 1, 10]
    assert PARAMS["sample"]["n_questions"] is None and PARAMS["sample"]["decoding"]["top_k"] == 50  # not mutated


def test_unlisted_family_and_bad_overrides_are_one_line_errors():
    with pytest.raises(HNeuronsError, match=r"^sample.families: 'huge' is not listed \(small, big\)$"):
        family_params(PARAMS, "sample", "huge")
    with pytest.raises(HNeuronsError, match=r"^report.families: expected a mapping family -> overrides"):
        family_params(PARAMS, "report", "small")
    typo = {**PARAMS, "sample": {**PARAMS["sample"], "families": {"big": {"n_question": 5}}}}
    with pytest.raises(HNeuronsError, match=r"^sample.families.big.n_question: not an overridable key"):
        family_params(typo, "sample", "big")
    scalar = {**PARAMS, "sample": {**PARAMS["sample"], "families": {"big": 5}}}
    with pytest.raises(HNeuronsError, match=r"^sample.families.big: expected a mapping of keys to override"):
        family_params(scalar, "sample", "big")


def test_an_os_error_on_a_file_is_one_line_and_exit_2(capsys, monkeypatch):
    import errno
    import sys

    from stages._common import run

    def main(argv):
        raise PermissionError(errno.EACCES, "Permission denied", "reports/probe/x/metrics.json")

    monkeypatch.setattr(sys, "argv", ["stage"])
    with pytest.raises(SystemExit) as info:
        run(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: reports/probe/x/metrics.json: Permission denied\n"

    def no_file(argv):
        raise OSError("no filename: a real bug keeps its traceback")

    with pytest.raises(OSError, match="no filename"):
        run(no_file)
