"""check_rows: the questions the stages take from the prepared tables are disjoint where they must be
(hneurons/overlap.py: roles, id spaces and which uses may share questions).

Reads params and ``data/prepared/<name>.parquet``. Uses, named ``<stage>@<family>/<part>``:

- ``prepare@<name>``: every table of ``datasets`` (table; ``datasets.<name>.rows``);
- ``sample@F/<sample.dataset>``: its first ``sample.n_questions`` answered rows (train);
- ``tune@F/trivia``: prepared rows ``tune.trivia.rows`` of ``tune.trivia.dataset``; ``tune@F/premise``:
  FalseQA train rows with label 1 of ``tune.premise.dataset`` (train);
- ``origin@F/<dataset>``: the first ``origin.n_questions`` answered rows of each of ``origin.datasets`` (eval);
- ``detect@F/<dataset>``: the first ``detect.n_questions.<dataset>`` eligible rows; NQ-Open without a
  count stops below ``tune.trivia.rows[0]`` as the detect stage does (eval);
- ``intervene@F/<benchmark>``: the item pool of each of ``intervene.benchmarks`` (eval).

F runs over each section's ``families`` with that family's overrides. Not checked (they need
``data/samples`` and drop the probe's train/validation questions by construction): origin's and
detect's rows of ``probe.dataset`` and intervene's capability check; they are listed under ``not_checked``.

Writes ``reports/check_rows.json``: per use its dataset, role, params key and number of questions,
``not_checked`` (use -> reason) and ``"overlaps": []``. On an overlap: one line naming both uses,
exit status 2, nothing written.
"""

from __future__ import annotations

import logging

from hneurons import layout, overlap
from hneurons.errors import HNeuronsError
from hneurons.io import write_json
from hneurons.overlap import Tables, Use, source_key
from stages._common import run, setup_runtime
from stages.config import Config, load_config

log = logging.getLogger("check_rows")
REPORT = layout.CHECK_ROWS
NEEDS_SAMPLES = "drops the probe's train/validation questions (data/samples): disjoint by construction"


def families(config: Config, section: str) -> list[str]:
    """The families listed under ``<section>.families`` (none when empty)."""
    table = getattr(config, section)
    return list((table.families if table is not None else None) or {})


def table_uses(config: Config, rows: Tables) -> list[Use]:
    uses = []
    for name, spec in (config.datasets or {}).items():
        key = f"datasets.{name}.rows" if "rows" in spec.model_fields_set else f"datasets.{name}"
        uses.append(Use(f"prepare@{name}", name, key, "table", tuple(r["example_id"] for r in rows(name))))
    return uses


def sample_uses(config: Config, rows: Tables) -> list[Use]:
    uses = []
    for family in families(config, "sample"):
        sample = config.family("sample", family).sample
        key = source_key(config.raw, "sample", family, "n_questions")
        ids = overlap.first_ids(rows(sample.dataset), sample.n_questions, key)
        uses.append(Use(f"sample@{family}/{sample.dataset}", sample.dataset, key, "train", ids))
    return uses


def tune_uses(config: Config, rows: Tables) -> list[Use]:
    uses = []
    for family in families(config, "tune"):
        tune = config.family("tune", family).tune
        trivia, key = tune.trivia.dataset, source_key(config.raw, "tune", family, "trivia.rows")
        uses.append(Use(f"tune@{family}/trivia", trivia, key, "train",
                        overlap.row_ids(rows(trivia), tune.trivia.rows, key)))
        premise = tune.premise.dataset
        uses.append(Use(f"tune@{family}/premise", premise, source_key(config.raw, "tune", family, "premise.dataset"),
                        "train", overlap.premise_ids(rows(premise))))
    return uses


def origin_uses(config: Config, rows: Tables, not_checked: dict[str, str]) -> list[Use]:
    uses = []
    for family in families(config, "origin"):
        p = config.family("origin", family)
        counts = p.origin.n_questions
        for name in p.origin.datasets:
            if name == p.probe.dataset:
                not_checked[f"origin@{family}/{name}"] = NEEDS_SAMPLES
                continue
            if isinstance(counts, dict) and name not in counts:
                raise HNeuronsError(f"{source_key(config.raw, 'origin', family, 'n_questions')}: no count for {name}")
            key = source_key(config.raw, "origin", family, f"n_questions.{name}" if isinstance(counts, dict)
                             else "n_questions")
            n = counts[name] if isinstance(counts, dict) else counts
            uses.append(Use(f"origin@{family}/{name}", name, key, "eval", overlap.first_ids(rows(name), n, key)))
    return uses


def detect_uses(config: Config, rows: Tables, not_checked: dict[str, str]) -> list[Use]:
    uses = []
    for family in families(config, "detect"):
        p = config.family("detect", family)
        counts = p.detect.n_questions or {}
        for name in p.detect.datasets:
            if name == p.probe.dataset:
                not_checked[f"detect@{family}/{name}"] = NEEDS_SAMPLES
                continue
            key = source_key(config.raw, "detect", family, f"n_questions.{name}")
            n = overlap.detect_count(name, counts.get(name), (p.raw.get("tune") or {}).get("trivia"))
            if n is not None and counts.get(name) is None:
                key += ", tune.trivia.rows"
            ids = overlap.first_ids(rows(name), n, key, need_answers=name != "nonexist")
            uses.append(Use(f"detect@{family}/{name}", name, key, "eval", ids))
    return uses


def intervene_uses(config: Config, rows: Tables, not_checked: dict[str, str]) -> list[Use]:
    uses = []
    for family in families(config, "intervene"):
        intervene = config.family("intervene", family).intervene
        key = source_key(config.raw, "intervene", family, "benchmarks")
        for bench in intervene.benchmarks:
            uses.append(Use(f"intervene@{family}/{bench}", bench, key, "eval",
                            overlap.intervene_ids(bench, rows(bench), intervene.sycophancy_categories)))
        not_checked[f"intervene@{family}/triviaqa"] = f"capability check {NEEDS_SAMPLES}"
    return uses


def main(argv: list[str]) -> None:
    if argv:
        raise HNeuronsError("usage: python -m stages.check_rows")
    config = load_config()
    setup_runtime(config)
    rows, not_checked = Tables(), {}
    uses = (table_uses(config, rows) + sample_uses(config, rows) + tune_uses(config, rows)
            + origin_uses(config, rows, not_checked) + detect_uses(config, rows, not_checked)
            + intervene_uses(config, rows, not_checked))
    formats = {name: spec.format or name for name, spec in (config.datasets or {}).items()}
    overlap.check_disjoint(uses, formats)
    report = {"uses": {u.name: {"dataset": u.dataset, "role": u.role, "key": u.key, "n_questions": len(u.ids)}
                       for u in uses},
              "not_checked": dict(sorted(not_checked.items())), "overlaps": []}
    write_json(REPORT, report)
    log.info("%d uses of %d prepared tables: no overlap -> %s", len(uses), len(rows), REPORT)


if __name__ == "__main__":
    run(main)
