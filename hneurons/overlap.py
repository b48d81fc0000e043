"""Question overlap between the pipeline's uses of the prepared tables.

A *use* is the set of questions one stage takes from one prepared table
(``data/prepared/<dataset>.parquet``), named ``<stage>@<family>/<dataset>`` (a
whole prepared table: ``prepare@<dataset>``), with the params key its rows come
from and a role:

- ``table``: a whole prepared table (its ``datasets.<name>.rows`` range). Every two
  tables must be disjoint: three of them are cut from the same TriviaQA file.
- ``train``: questions a model or probe learns from: ``sample`` (the probe's
  balanced set is drawn from them) and ``tune`` (the instruct twin's training
  rows). A training use must be disjoint from every use of another stage.
- ``eval``: questions only asked (``origin``, ``detect``, ``intervene``). Two
  evaluation uses may share questions (origin and detect both start at row 0).

Uses of one stage (``sample@a`` and ``sample@b``) may share questions, and a use
is never compared with a table (it is drawn from one).

Questions are compared by the underlying question id: ``faitheval_style`` ids
are ``fes_<TriviaQA question_id>`` and the TriviaQA part of ``sycophancy`` is
``ays_triviaqa_<TriviaQA question_id>`` (``ID_SPACES``); other ids stay in their
table's own space (NQ-Open ids are row positions of the prepared table).

Only uses that follow from params and the prepared tables alone are checked.
Those that depend on generated samples are disjoint by construction and not
re-derived here: detect's and origin's TriviaQA rows and intervene's capability
check all drop the probe's train/validation questions (``data/samples``). This
module never reads params.yaml; ``stages/check_rows.py`` builds the uses from the params
(``source_key`` names the key a family's value comes from) and the prepared tables (``Tables``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.io import read_table

ROLES = ("table", "train", "eval")
# format -> (example_id prefix, shared space): an id of that format starting with the prefix is, without
# it, a question id of the shared space; other ids stay in their own table's space.
ID_SPACES: dict[str, tuple[str, str]] = {
    "triviaqa": ("", "triviaqa"),
    "faitheval_style": ("fes_", "triviaqa"),
    "sycophancy": ("ays_triviaqa_", "triviaqa"),
}

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Use:
    """The questions ``name`` takes from ``data/prepared/<dataset>.parquet``.

    ``key``: the params key its rows come from; ``role``: table | train | eval;
    ``ids``: example_ids as in the prepared table.
    """

    name: str
    dataset: str
    key: str
    role: str
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise HNeuronsError(f"{self.name}: role {self.role!r} is not one of {', '.join(ROLES)}")

    @property
    def stage(self) -> str:
        """The stage part of the name (``origin`` for ``origin@gemma270m/nq_open``)."""
        return self.name.split("@", 1)[0]


@dataclass(frozen=True)
class Overlap:
    """Two uses that must be disjoint and are not: ``shared`` = their common (space, question id), sorted."""

    first: Use
    second: Use
    shared: tuple[tuple[str, str], ...]

    def message(self) -> str:
        """One line naming both uses, their keys, the id space, the count and one shared question id."""
        spaces = "/".join(sorted({space for space, _ in self.shared}))
        n = len(self.shared)
        return (f"row overlap: {self.first.name} ({self.first.key}) and {self.second.name} ({self.second.key}) "
                f"share {n} {spaces} question{'' if n == 1 else 's'} (e.g. {self.shared[0][1]!r})")


def question_key(dataset: str, fmt: str, example_id: str,
                 spaces: Mapping[str, tuple[str, str]] = ID_SPACES) -> tuple[str, str]:
    """(space, question id) of one example_id of table ``dataset`` with format ``fmt``."""
    prefix, space = spaces.get(fmt, (None, None))
    if space is not None and example_id.startswith(prefix):
        return space, example_id[len(prefix):]
    return dataset, example_id


def must_be_disjoint(a: Use, b: Use) -> bool:
    """Whether ``a`` and ``b`` may not share a question (see the module docstring)."""
    if a.role == "table" or b.role == "table":
        return a.role == b.role
    return a.stage != b.stage and "train" in (a.role, b.role)


def find_overlaps(uses: Sequence[Use], formats: Mapping[str, str],
                  spaces: Mapping[str, tuple[str, str]] = ID_SPACES) -> list[Overlap]:
    """Every pair of ``uses`` (in list order) that must be disjoint and shares questions.

    ``formats``: prepared dataset name -> its ``datasets.<name>.format`` (a name
    missing there is its own format).
    """
    keyed = []
    for use in uses:
        fmt = formats.get(use.dataset, use.dataset)
        keyed.append({question_key(use.dataset, fmt, i, spaces) for i in use.ids})
    found = []
    for i, a in enumerate(uses):
        for j in range(i + 1, len(uses)):
            b = uses[j]
            if not must_be_disjoint(a, b):
                continue
            shared = keyed[i] & keyed[j]
            if shared:
                found.append(Overlap(a, b, tuple(sorted(shared))))
    return found


def check_disjoint(uses: Sequence[Use], formats: Mapping[str, str],
                   spaces: Mapping[str, tuple[str, str]] = ID_SPACES) -> None:
    """Raise HNeuronsError with the first overlap's one-line message (find_overlaps order); None if none."""
    overlaps = find_overlaps(uses, formats, spaces)
    if overlaps:
        raise HNeuronsError(overlaps[0].message())


# ---------------------------------------------------------------- which rows each stage takes

def answered(row: Row) -> bool:
    """The row has a non-empty reference answer (the QA stages skip rows without one)."""
    return any(a for a in (row.get("answers") or []))


def first_ids(rows: Iterable[Row], n: int | None, where: str, need_answers: bool = True) -> tuple[str, ...]:
    """example_ids of the first ``n`` rows (None = all) that have answers (every row if not ``need_answers``).

    The rule of sample (read_questions), origin (transfer_questions: datasets
    other than the probe's) and detect (detect_questions: NonExist without the
    answer filter). ``where`` names the count's params key in errors.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise HNeuronsError(f"{where}={n!r}: expected an integer >= 1 or null")
    eligible = [r["example_id"] for r in rows if not need_answers or answered(r)]
    return tuple(eligible if n is None else eligible[:n])


def row_ids(rows: Sequence[Row], span: Sequence[int], where: str) -> tuple[str, ...]:
    """example_ids of prepared rows ``span[0]:span[1]`` (tune's trivia rows); past the table is an error."""
    if not (len(span) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            and 0 <= span[0] < span[1]):
        raise HNeuronsError(f"{where}={list(span)!r}: expected [start, stop] with 0 <= start < stop")
    if span[1] > len(rows):
        raise HNeuronsError(f"{where}={list(span)!r}: the prepared table has {len(rows)} rows")
    return tuple(r["example_id"] for r in rows[span[0]:span[1]])


def premise_ids(rows: Iterable[Row]) -> tuple[str, ...]:
    """example_ids of FalseQA train rows with label 1 (tune's premise corrections)."""
    return tuple(r["example_id"] for r in rows if r.get("split") == "train" and r.get("label") == 1)


def detect_count(dataset: str, n_questions: int | None, tune_trivia: Any) -> int | None:
    """detect's question budget for ``dataset``: for NQ-Open with tune's trivia taken from NQ-Open and no
    count set, the first row of ``tune.trivia.rows`` (stages.detect.read_config); else ``n_questions``."""
    if (dataset == "nq_open" and n_questions is None and isinstance(tune_trivia, dict)
            and tune_trivia.get("dataset") == "nq_open"):
        rows = tune_trivia.get("rows")
        if not (isinstance(rows, list) and len(rows) == 2 and all(isinstance(r, int) for r in rows)):
            raise HNeuronsError(f"tune.trivia.rows={rows!r}: expected [start, end]")
        return int(rows[0])
    return n_questions


def intervene_ids(benchmark: str, rows: Sequence[Row], categories: Sequence[str]) -> tuple[str, ...]:
    """example_ids of intervene's item pool for ``benchmark`` (hneurons.compliance builders; the stage
    asks a seeded subset of it)."""
    from hneurons import compliance as C

    builders = {"falseqa": lambda: C.falseqa_items(rows), "faitheval_style": lambda: C.faitheval_items(rows),
                "sycophancy": lambda: C.sycophancy_items(rows, categories),
                "jailbreak": lambda: C.jailbreak_items(rows)}
    if benchmark not in builders:
        raise HNeuronsError(f"intervene.benchmarks: unknown benchmark {benchmark!r} (known: {', '.join(builders)})")
    return tuple(item.example_id for item in builders[benchmark]())


class Tables:
    """Prepared tables (``data/prepared/<name>.parquet``) by name, each read once (rows as dicts)."""

    def __init__(self) -> None:
        self._rows: dict[str, list[dict]] = {}

    def __call__(self, name: str) -> list[dict]:
        if name not in self._rows:
            path = layout.prepared(name)
            if not path.is_file():
                raise HNeuronsError(f"{path}: not found; run prepare@{name}")
            self._rows[name] = read_table(path).to_pylist()
        return self._rows[name]

    def __len__(self) -> int:
        return len(self._rows)


def source_key(params: dict[str, Any], section: str, family: str, key: str) -> str:
    """``<section>.families.<family>.<key>`` when that family overrides ``key``, else ``<section>.<key>``."""
    node: Any = ((params.get(section) or {}).get("families") or {}).get(family) or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return f"{section}.{key}"
        node = node[part]
    return f"{section}.families.{family}.{key}"
