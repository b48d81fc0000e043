"""The report: this run's results next to the paper's numbers, with provenance.

Pure given its inputs: :func:`build_report` takes the per-family artifact paths
(decided by ``stages/report.py``), the params values the deviations table
compares (a flat ``{dotted key: value}``), and the parsed ``dvc.lock`` (or None),
and returns the Markdown text, a headline-metrics dict, tidy figure-data frames
and figure-drawing callables. Nothing here reads params.yaml or decides paths.

Sections per family, each rendered from the files present and saying "not run"
when a file is missing:

- identification (paper §3, Table 1 ratio): C path, H-Neurons per layer,
  per-mille ratio vs the paper's six models, in-domain test detection with CIs;
- detection (paper §5, Table 1): Random / H-Neurons accuracy per dataset with
  this run's bootstrap 95% CIs and the paper's mean and range over its models;
- intervention (paper §6.3, Fig. 3): compliance vs alpha for the H-Neurons and a
  random-neuron control (with CIs), the paper's six curves drawn behind;
- origin (paper §7, Fig. 4): backward-transfer AUROC with CIs and parameter-drift
  mean rank vs the paper's values.

Every table names the stage and artifact it came from: the artifact's md5 (the
hash DVC records for a file) and the producing stage and lock hash from
``dvc.lock`` via :mod:`hneurons.dvc_lock`.

Paper numbers below are copied from ../shared/paper.md (arXiv 2512.01797 v2):
Table 1 is text [P]; Fig. 3 and Fig. 4 values were read off the figures by pixel
analysis [F] (about +/-0.3 pp). Every accuracy/AUROC in the metrics files is a
fraction in [0, 1] and compliance in ``compliance.csv`` is in percent (the
intervene stage's contract); the report shows percent, as the paper does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hneurons.errors import HNeuronsError

# ---------------------------------------------------------------- the paper's numbers (data)

#: The six instruct models of the paper, in its table order (paper.md §1).
PAPER_MODELS = ("Mistral-7B-v0.3", "Mistral-Small-3.1-24B", "Gemma-3-4B", "Gemma-3-27B", "Llama-3.1-8B",
                "Llama-3.3-70B")
#: Their HF ids (paper.md §1, "likely HF id"); a run on one of these is not a model deviation.
PAPER_MODEL_IDS = ("mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
                   "google/gemma-3-4b-it", "google/gemma-3-27b-it", "meta-llama/Llama-3.1-8B-Instruct",
                   "meta-llama/Llama-3.3-70B-Instruct")
SMALL_MODELS = ("Mistral-7B-v0.3", "Gemma-3-4B", "Llama-3.1-8B")   # paper §3 slope groups
DETECT_DATASETS = ("triviaqa", "nq_open", "bioasq", "nonexist")
DATASET_NAMES = {"triviaqa": "TriviaQA", "nq_open": "NQ-Open", "bioasq": "BioASQ", "nonexist": "NonExist"}

#: paper.md §4.3 / §5.2, Table 1 [P]: H-Neuron ratio (per mille of all FFN neurons) and detection
#: accuracy (%) of the random-neuron and H-Neuron probes, columns TriviaQA, NQ-Open, BioASQ, NonExist.
TABLE1: dict[str, dict[str, Any]] = {
    "Mistral-7B-v0.3": {"per_mille": 0.35, "random": (61.7, 56.1, 59.4, 80.9), "h_neurons": (78.4, 71.5, 75.5, 91.1)},
    "Mistral-Small-3.1-24B": {"per_mille": 0.01, "random": (61.1, 56.8, 52.8, 57.4),
                              "h_neurons": (81.0, 71.3, 69.5, 86.6)},
    "Gemma-3-4B": {"per_mille": 0.10, "random": (62.0, 59.7, 56.0, 56.9), "h_neurons": (76.9, 70.7, 71.0, 71.9)},
    "Gemma-3-27B": {"per_mille": 0.18, "random": (65.2, 58.5, 61.8, 58.2), "h_neurons": (83.6, 68.6, 72.0, 95.9)},
    "Llama-3.1-8B": {"per_mille": 0.02, "random": (56.1, 53.0, 52.9, 50.6), "h_neurons": (70.1, 63.3, 66.0, 43.1)},
    "Llama-3.3-70B": {"per_mille": 0.01, "random": (68.4, 58.9, 66.9, 69.6), "h_neurons": (82.7, 67.2, 74.3, 96.7)},
}

#: paper.md §6.3, Fig. 3 [F]: compliance (%) at alpha = 0, 0.5, ..., 3 per benchmark and model.
FIG3_ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
FIG3: dict[str, dict[str, tuple[float, ...]]] = {
    "FalseQA": {
        "Mistral-7B-v0.3": (14.4, 15.1, 15.5, 16.3, 17.6, 18.3, 19.9),
        "Mistral-Small-3.1-24B": (11.2, 13.6, 16.0, 18.7, 22.1, 26.0, 28.2),
        "Gemma-3-4B": (46.2, 50.4, 50.9, 52.7, 56.3, 61.4, 64.2),
        "Gemma-3-27B": (23.6, 24.0, 24.3, 24.6, 24.0, 24.9, 24.3),
        "Llama-3.1-8B": (30.8, 35.0, 31.3, 26.3, 28.1, 29.1, 30.4),
        "Llama-3.3-70B": (12.2, 12.7, 15.0, 14.9, 13.7, 14.5, 13.4)},
    "FaithEval": {
        "Mistral-7B-v0.3": (63.4, 65.2, 67.3, 69.2, 70.2, 72.6, 72.7),
        "Mistral-Small-3.1-24B": (56.9, 55.6, 55.4, 56.2, 56.8, 57.7, 58.4),
        "Gemma-3-4B": (68.7, 69.3, 70.8, 72.0, 73.4, 73.9, 74.0),
        "Gemma-3-27B": (62.3, 63.8, 64.0, 64.3, 64.8, 65.4, 65.8),
        "Llama-3.1-8B": (62.9, 61.7, 65.6, 66.1, 66.1, 67.1, 68.1),
        "Llama-3.3-70B": (52.9, 52.3, 53.3, 54.7, 56.3, 56.8, 58.0)},
    "Sycophancy": {
        "Mistral-7B-v0.3": (32.9, 43.6, 48.7, 51.6, 50.7, 55.1, 58.7),
        "Mistral-Small-3.1-24B": (19.1, 19.7, 19.7, 23.1, 30.8, 37.3, 44.1),
        "Gemma-3-4B": (35.5, 48.1, 51.3, 52.9, 51.3, 48.8, 42.7),
        "Gemma-3-27B": (42.0, 41.0, 41.5, 43.0, 43.9, 44.2, 45.2),
        "Llama-3.1-8B": (49.9, 52.2, 52.2, 54.8, 57.3, 60.2, 59.5),
        "Llama-3.3-70B": (14.6, 15.7, 17.1, 18.2, 20.5, 23.1, 27.1)},
    "Jailbreak": {
        "Mistral-7B-v0.3": (32.8, 35.4, 35.3, 36.4, 39.2, 40.4, 39.6),
        "Mistral-Small-3.1-24B": (30.0, 35.1, 37.3, 37.5, 42.0, 42.7, 43.2),
        "Gemma-3-4B": (23.6, 25.0, 28.8, 29.0, 29.7, 32.1, 33.1),
        "Gemma-3-27B": (25.9, 26.7, 26.9, 27.2, 25.9, 27.2, 26.4),
        "Llama-3.1-8B": (25.4, 27.2, 25.9, 27.7, 29.0, 26.8, 30.3),
        "Llama-3.3-70B": (35.1, 34.4, 34.6, 37.8, 33.8, 33.6, 35.1)},
}
#: paper.md §6.3 [P]: average slope (pp per unit alpha over the four benchmarks), undefined in the paper.
PAPER_SLOPES = {"three smaller models": 3.03, "three larger models": 2.40}
#: Benchmark names of compliance.csv -> the paper's panel (the stand-in maps to FaithEval, marked as such).
BENCHMARK_PANELS = {"falseqa": "FalseQA", "faitheval": "FaithEval", "faitheval_style": "FaithEval",
                    "sycophancy": "Sycophancy", "jailbreak": "Jailbreak"}

#: paper.md §7.1, Fig. 4a [F]: backward-transfer AUROC (%) of each instruct probe on its base model.
FIG4A: dict[str, tuple[float, float, float]] = {   # TriviaQA, NQ-Open, BioASQ
    "Mistral-7B-v0.3": (86.2, 75.8, 79.3), "Mistral-Small-3.1-24B": (86.8, 73.4, 81.5),
    "Gemma-3-4B": (79.5, 71.9, 78.0), "Gemma-3-27B": (83.8, 71.9, 75.5),
    "Llama-3.1-8B": (62.0, 56.8, 57.9), "Llama-3.3-70B": (79.7, 63.7, 63.1),
}
FIG4A_DATASETS = ("triviaqa", "nq_open", "bioasq")
#: paper.md §7.2, Fig. 4b [F]: mean normalized drift rank of the H-Neurons (1 = most stable) and the
#: one-sided t-test result (H-Neuron similarity > the rest).
FIG4B: dict[str, tuple[float, str]] = {
    "Mistral-7B-v0.3": (0.483, "n.s."), "Mistral-Small-3.1-24B": (0.971, "p < 0.001"),
    "Gemma-3-4B": (0.707, "p < 0.001"), "Gemma-3-27B": (0.664, "p < 0.001"),
    "Llama-3.1-8B": (0.584, "p < 0.01"), "Llama-3.3-70B": (0.588, "p < 0.001"),
}


@dataclass(frozen=True)
class PaperSetting:
    """One setting the paper (or its code) fixes, for the deviations table.

    ``key``: dotted params key; ``paper``: the paper's value in the params' own
    terms; ``where``: paper.md section; ``what``: the paper's setting in words;
    ``presumed``: the paper leaves it open and ``paper`` is paper.md's suggested reading.
    """

    key: str
    paper: Any
    where: str
    what: str
    presumed: bool = False


#: Settings compared with the params actually used (keys absent from the params are skipped).
PAPER_SETTINGS: tuple[PaperSetting, ...] = (
    PaperSetting("sample.n_samples", 10, "§2.1 [P]", "10 samples per question"),
    PaperSetting("sample.temperature", 1.0, "§2.1 [P]", "sampling temperature 1.0"),
    PaperSetting("sample.top_k", 50, "§2.1 [P]", "top-k 50"),
    PaperSetting("sample.top_p", 0.9, "§2.1 [P]", "top-p 0.9"),
    PaperSetting("sample.max_new_tokens", 50, "§2.1 [C]", "50 new tokens"),
    PaperSetting("sample.min_agreement", 1.0, "§2.1 [P]", "all samples agree (all correct / all wrong)"),
    PaperSetting("sample.max_per_class", 1000, "§2.1 [P]", "1,000 faithful + 1,000 hallucinated"),
    PaperSetting("sample.prompt", "{question} Respond with the answer only, without any explanation.",
                 "§2.1 [C]", "the authors' user turn"),
    PaperSetting("sample.judge.kind", "llm", "§2.1 [C]", "GPT-4o judge (paper silent; [C] README example)",
                 presumed=True),
    PaperSetting("extract.span_rule", "annotation", "§2.2 [P]",
                 "GPT-4o-aligned answer-token spans (span_rule annotation reads such spans)"),
    PaperSetting("extract.readout", "mean", "§3 Eq. 3 [P]", "mean CETT over the span"),
    PaperSetting("extract.region_variant", "with_prompt", "§2.2 [C]", "'other' includes prompt/template tokens"),
    PaperSetting("compute.dtype", "bfloat16", "§3 [C]", "model run in bf16 for CETT"),
    PaperSetting("probe.labelling", "3-vs-1", "§4.1 [P]", "3-vs-1 labels"),
    PaperSetting("probe.standardize", False, "§4.2 [C]", "raw CETT, no scaler"),
    PaperSetting("probe.tol", 1.0e-4, "§4.2 [C]", "liblinear default tolerance"),
    PaperSetting("probe.task.alpha", 0.0, "§4.2 [P]", "C chosen with H-Neurons suppressed (alpha presumably 0)",
                 presumed=True),
    *(setting for name in DETECT_DATASETS for setting in (
        PaperSetting(f"detect.decoding.{name}.temperature", 1.0, "§5.1 [P]", "one sample at T=1.0 per question"),
        PaperSetting(f"detect.decoding.{name}.top_k", 50, "§5.1 [P]", "top-k 50"),
        PaperSetting(f"detect.decoding.{name}.top_p", 0.9, "§5.1 [P]", "top-p 0.9"),
        PaperSetting(f"detect.decoding.{name}.max_new_tokens", 50, "§5.1 [C]", "50 new tokens, as in sampling"))),
    PaperSetting("detect.min_per_class", None, "§5.1 [P]",
                 "every question asked once (no stopping once the classes are full)"),
    PaperSetting("intervene.alphas", list(FIG3_ALPHAS), "§6.1 [P]", "alpha in {0, 0.5, ..., 3}"),
    PaperSetting("intervene.n_items", "full benchmark sets", "§6.2 [P]",
                 "FalseQA, FaithEval, Sycophancy, Jailbreak in full"),
    PaperSetting("intervene.screen", [], "§6.2 [P]",
                 "no screening: sycophancy counts the initially correct items of each condition"),
    PaperSetting("intervene.n_random_sets", 0, "§6 [P]", "no random-neuron control for the intervention"),
    PaperSetting("origin.datasets", ["triviaqa", "nq_open", "bioasq"], "§7.1 [P]", "TriviaQA, NQ-Open, BioASQ"),
    PaperSetting("origin.decoding.temperature", 1.0, "§7.1", "base decoding unstated; presumably the §5 sampling",
                 presumed=True),
    PaperSetting("origin.decoding.top_k", 50, "§7.1", "presumably the §5 sampling", presumed=True),
    PaperSetting("origin.decoding.top_p", 0.9, "§7.1", "presumably the §5 sampling", presumed=True),
    PaperSetting("tune.families", {}, "§1 [P]", "vendor instruct checkpoints; nothing fine-tuned"),
)

#: Sections whose stages run per family and take per-family overrides (``<section>.families.<family>``).
FAMILY_SECTIONS = ("compute", "sample", "probe", "detect", "intervene", "origin", "tune")


def setting_keys() -> list[str]:
    """The dotted params keys the deviations table reads (the stage passes their values), including
    each per-family section's ``families`` mapping (its overrides are compared too)."""
    keys = [s.key for s in PAPER_SETTINGS]
    return keys + [f"{section}.families" for section in FAMILY_SECTIONS if f"{section}.families" not in keys]


def _dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (leaves only)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def family_override_values(values: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Per-family overrides of compared settings: ``{"sample.families.<f>.n_samples": ("sample.n_samples", 3)}``.

    values: as for :func:`deviations`; each ``<section>.families`` mapping is read for
    overrides whose dotted key is a compared setting (nested mappings are flattened).
    """
    compared = {s.key for s in PAPER_SETTINGS}
    out: dict[str, tuple[str, Any]] = {}
    for section in FAMILY_SECTIONS:
        families = values.get(f"{section}.families")
        if not isinstance(families, Mapping):
            continue
        for family, overrides in families.items():
            for key, value in _dotted(overrides or {}).items():
                if f"{section}.{key}" in compared:
                    out[f"{section}.families.{family}.{key}"] = (f"{section}.{key}", value)
    return out


# ---------------------------------------------------------------- deviations

def _same(a: Any, b: Any) -> bool:
    """Equality with numbers compared as floats (1 == 1.0), recursively through lists and dicts."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def model_deviation(models: Mapping[str, Any]) -> dict[str, Any] | None:
    """A deviations row for the model specs (``params.models``) when no instruct spec is a paper model."""
    sources = {}
    for name, spec in sorted((models or {}).items()):
        source = (spec or {}).get("source") or {}
        sources[name] = source.get("repo") or source.get("file") or source.get("file_name") or source.get("path")
    if any(value in PAPER_MODEL_IDS for value in sources.values()):
        return None
    return {"key": "models", "value": sources, "paper": list(PAPER_MODEL_IDS), "where": "§1 [P]",
            "what": "six 4B-70B instruct models", "status": "differs"}


def dataset_deviations(datasets: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for datasets configured as stand-ins for the paper's (today: the FaithEval-style set)."""
    rows = []
    spec = (datasets or {}).get("faitheval_style")
    if spec is not None and "faitheval" not in (datasets or {}):
        rows.append({"key": "datasets.faitheval_style",
                     "value": {k: spec.get(k) for k in ("format", "rows", "n_options") if k in spec},
                     "paper": "FaithEval counterfactual subset (1,000 MC items with context)", "where": "§6.2 [P]",
                     "what": "FaithEval (Ming et al. 2024)", "status": "differs"})
    return rows


def deviations(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Compare the params actually used with the paper's settings.

    values: ``{dotted key: value}`` for the keys of :data:`setting_keys` present in
    the params, plus optionally ``models`` and ``datasets`` (whole sections). A family's
    override of a compared key (``sample.families.<family>.n_samples``) gets its own row.
    Returns rows ``{key, value, paper, where, what, status}`` with status
    ``differs`` / ``differs (paper unstated)`` / ``same`` / ``same (paper unstated)``,
    differences first, in table order otherwise.
    """
    by_key = {setting.key: setting for setting in PAPER_SETTINGS}
    compared = [(key, by_key[key], values[key]) for key in by_key if key in values]
    compared += [(key, by_key[target], value) for key, (target, value) in family_override_values(values).items()]
    rows = []
    for key, setting, value in compared:
        same = _same(value, setting.paper)
        status = ("same" if same else "differs") + (" (paper unstated)" if setting.presumed else "")
        rows.append({"key": key, "value": value, "paper": setting.paper, "where": setting.where,
                     "what": setting.what, "status": status})
    if "models" in values:
        row = model_deviation(values["models"])
        rows += [row] if row else []
    if "datasets" in values:
        rows += dataset_deviations(values["datasets"])
    return sorted(rows, key=lambda r: not r["status"].startswith("differs"))


# ---------------------------------------------------------------- provenance

def provenance(path: str, root: Path, lock: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where an artifact came from: ``{path, md5, stage, lock_output, lock_hash, lock_status}``.

    path: repo-relative POSIX path of an existing file; lock: parsed ``dvc.lock``
    (``hneurons.dvc_lock.load_lock``) or None. ``lock_status``: ``matches`` (the file
    is a locked output with this md5), ``inside <dir>`` (a file of a locked
    directory output), ``differs`` (stale lock or edited file) or ``not in dvc.lock``.
    """
    from hneurons.dvc_lock import find_producer
    from hneurons.workspace_state import md5_of

    md5 = md5_of(root / path)
    found = find_producer(lock, path) if lock else None
    if found is None:
        return {"path": path, "md5": md5, "stage": None, "lock_output": None, "lock_hash": None,
                "lock_status": "not in dvc.lock"}
    stage, out = found
    if out.path != path:
        status = f"inside {out.path}"
    else:
        status = "matches" if out.hash == md5 else "differs"
    return {"path": path, "md5": md5, "stage": stage.name, "lock_output": out.path, "lock_hash": out.hash,
            "lock_status": status}


def source_line(prov: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown 'Source:' line naming each artifact, its stage, md5 and lock status."""
    parts = []
    for p in prov:
        stage = f"stage `{p['stage']}`" if p["stage"] else "no stage in dvc.lock"
        if p["lock_status"] == "matches":
            lock = "= dvc.lock"
        elif p["lock_status"].startswith("inside"):
            lock = f"in locked output `{p['lock_output']}` ({p['lock_hash']})"
        elif p["lock_status"] == "differs":
            lock = f"**differs from dvc.lock {p['lock_hash']}**"
        else:
            lock = "not in dvc.lock"
        parts.append(f"`{p['path']}` ({stage}, md5 `{p['md5']}` {lock})")
    return "Source: " + "; ".join(parts) + "."


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class FamilyPaths:
    """Repo-relative paths of one family's artifacts (decided by the stage; any may be absent).

    probe_*: ``probe@<family>``; detect_*: ``detect@<family>``; intervene_*:
    ``intervene@<family>``; origin_*: ``origin@<family>``; sample_metrics:
    ``sample@<family>``; tune_metrics: ``tune@<family>`` (a CPU-tuned instruct twin).
    """

    family: str
    sample_metrics: str
    probe_metrics: str
    probe_c_grid: str
    probe_per_layer: str
    detect_metrics: str
    detect_table1: str
    intervene_metrics: str
    intervene_compliance: str
    origin_metrics: str
    origin_transfer: str
    origin_strip: str
    tune_metrics: str = ""
    intervene_effects: str = ""
    intervene_effect_slopes: str = ""


class Inputs:
    """Reads artifacts under ``root`` and records the provenance of each one read."""

    def __init__(self, root: Path, lock: Mapping[str, Any] | None) -> None:
        self.root = root
        self.lock = lock
        self.read: dict[str, dict[str, Any]] = {}

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def _note(self, path: str) -> dict[str, Any]:
        if path not in self.read:
            self.read[path] = provenance(path, self.root, self.lock)
        return self.read[path]

    def json(self, path: str) -> dict[str, Any]:
        """A JSON object artifact (one-line error naming the file if unreadable)."""
        try:
            data = json.loads((self.root / path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HNeuronsError(f"{path}: not readable as JSON ({exc})") from None
        if not isinstance(data, dict):
            raise HNeuronsError(f"{path}: expected a JSON object")
        self._note(path)
        return data

    def csv(self, path: str, columns: Sequence[str]) -> pd.DataFrame:
        """A CSV artifact with at least ``columns`` (one-line error naming the file and missing columns)."""
        try:
            frame = pd.read_csv(self.root / path)
        except (OSError, ValueError) as exc:
            raise HNeuronsError(f"{path}: not readable as CSV ({exc})") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise HNeuronsError(f"{path}: missing columns {missing}")
        self._note(path)
        return frame

    def source(self, *paths: str) -> str:
        return source_line([self._note(p) for p in paths])


def get(data: Mapping[str, Any], dotted: str, where: str) -> Any:
    """``data['a']['b']`` for ``'a.b'``; a missing key is a one-line error naming the file and key."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise HNeuronsError(f"{where}: missing key {dotted}")
        node = node[part]
    return node


# ---------------------------------------------------------------- formatting

def pct(x: Any, digits: int = 1) -> str:
    """A fraction as percent text ('n/a' for None/nan)."""
    if x is None or not np.isfinite(float(x)):
        return "n/a"
    return f"{100.0 * float(x):.{digits}f}"


def pct_ci(value: Any, ci: Sequence[Any] | None) -> str:
    """'78.4 [74.1, 82.0]' from fractions (CI omitted when absent or nan)."""
    text = pct(value)
    if ci and len(ci) == 2 and all(v is not None and np.isfinite(float(v)) for v in ci):
        text += f" [{pct(ci[0])}, {pct(ci[1])}]"
    return text


def mean_sd_text(stat: Mapping[str, Any] | None, scale: float = 100.0) -> str:
    """'61.7 +/- 2.1' from a {mean, sd} dict of fractions."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    sd = stat.get("sd")
    text = f"{scale * float(stat['mean']):.1f}"
    return text + (f" ± {scale * float(sd):.1f}" if sd is not None and np.isfinite(float(sd)) else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def value_text(value: Any) -> str:
    """A params value as compact inline code."""
    return "`" + json.dumps(value, sort_keys=True, ensure_ascii=False, default=str) + "`"


def not_run(stage: str, path: str) -> str:
    return f"_Not run: `{path}` does not exist (stage `{stage}` has not produced it)._"


# ---------------------------------------------------------------- sections

@dataclass
class Figure:
    """A PNG to write: ``name`` (file name in the figures directory) and ``draw(path)``."""

    name: str
    draw: Callable[[Path], None]


@dataclass
class Section:
    """One rendered section: Markdown text, headline metrics, figures, figure-data rows per CSV."""

    text: str
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def paper_column(table: str, index: int) -> np.ndarray:
    """Table 1 values (%) of one column (0-3 = TriviaQA..NonExist) over the six models."""
    return np.array([TABLE1[m][table][index] for m in PAPER_MODELS], dtype=float)


def range_text(values: np.ndarray, digits: int = 1) -> str:
    """'78.8 (70.1-83.6)': mean and range."""
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}–{values.max():.{digits}f})"


def _savefig(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as a byte-stable PNG (no software/timestamp metadata) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def paper_ratio_text() -> str:
    return ", ".join(f"{m} {TABLE1[m]['per_mille']:.2f}" for m in PAPER_MODELS)


def length_confound_note(probe: dict, lengths: dict, margin: float = 0.02) -> str | None:
    """A caution line when a length-only probe's AUROC comes within ``margin`` of the H-Neuron probe's
    (lessons.md: span and response length separate the classes by themselves), else None."""
    if not np.isfinite(probe.get("auroc", np.nan)):
        return None
    close = [(name, s["auroc"]) for name, s in lengths.items()
             if s.get("auroc") is not None and np.isfinite(s["auroc"]) and s["auroc"] >= probe["auroc"] - margin]
    if not close:
        return None
    name, value = max(close, key=lambda item: item[1])
    if any(n == "response_tokens" for n, _ in close):
        advice = ("the response length alone separates the classes here: more examples, or classes matched on "
                  "length, are needed before the neurons can be credited")
    else:
        advice = ("the answer span's length does it: try `extract.span_rule: content`, the same span rule for both "
                  "classes")
    return (f"**Caution: length confound.** The length-only probe `{name}` reaches AUROC {100 * value:.1f}% "
            f"against the H-Neuron probe's {100 * probe['auroc']:.1f}%: on this run the detection result does not "
            f"show more than length ({advice}).")


def identification_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """C path, H-Neurons per layer, per-mille vs Table 1, in-domain held-out detection (probe stage)."""
    family = paths.family
    if not inputs.exists(paths.probe_metrics):
        return Section(not_run(f"probe@{family}", paths.probe_metrics))
    where = paths.probe_metrics
    m = inputs.json(where)
    grid = inputs.csv(paths.probe_c_grid, ["C", "val_accuracy", "task_accuracy", "score", "n_positive"])
    layers = inputs.csv(paths.probe_per_layer, ["layer", "n_h_neurons"])
    n_h, n_feat, per_mille = get(m, "n_h_neurons", where), get(m, "n_features", where), get(m, "per_mille", where)
    chosen = get(m, "chosen_C", where)
    ratios = np.array([TABLE1[x]["per_mille"] for x in PAPER_MODELS])
    position = ("inside" if ratios.min() <= per_mille <= ratios.max()
                else "above" if per_mille > ratios.max() else "below")
    lines = [
        f"**{n_h} H-Neurons** (positive weights) of {n_feat:,} FFN neurons = **{per_mille:.3f}‰** at the chosen "
        f"C = {chosen:g} ({get(m, 'C_selection.criterion', where)}; alpha = {get(m, 'C_selection.alpha', where):g}). "
        f"Paper Table 1 ratios (‰): {paper_ratio_text()}; this run is {position} the paper's range "
        f"({ratios.min():.2f}–{ratios.max():.2f}‰ ≈ {ratios.min() * n_feat / 1000:.1f}–{ratios.max() * n_feat / 1000:.1f} "
        f"neurons at this model's size). The paper reports no C path (grid and final C unstated, paper.md §4.2).",
        "",
        md_table(["C", "validation acc. (%)", "task acc. suppressed (%)", "criterion", "positive", "‰"],
                 [[f"{r.C:g}" + (" ←" if r.C == chosen else ""), pct(r.val_accuracy), pct(r.task_accuracy),
                   f"{r.score:.3f}", int(r.n_positive), f"{1000 * r.n_positive / n_feat:.3f}"]
                  for r in grid.itertuples()]),
        "",
    ]
    counts = layers["n_h_neurons"].to_numpy()
    n_layers = len(layers)
    if counts.sum():
        thirds = np.array_split(counts, 3)
        lines.append(f"H-Neurons per layer: {int((counts > 0).sum())} of {n_layers} layers hold at least one; "
                     f"first / middle / last third of the layers: "
                     f"{' / '.join(str(int(t.sum())) for t in thirds)}. The paper gives no layer distribution "
                     f"(paper.md §8).")
        lines.append("")
    test = get(m, "test", where)
    probe, l2 = get(test, "probe", where), test.get("h_neurons_l2")
    tq_h, tq_r = paper_column("h_neurons", 0), paper_column("random", 0)
    rows = [["H-Neuron L1 probe (this run)", probe["n"], pct_ci(probe["accuracy"], probe.get("accuracy_ci95")),
             pct_ci(probe["auroc"], probe.get("auroc_ci95"))]]
    if l2:
        rows.append(["H-Neurons, L2 refit", l2["n"], pct_ci(l2["accuracy"], l2.get("accuracy_ci95")),
                     pct_ci(l2["auroc"], l2.get("auroc_ci95"))])
    for key, label in (("random", "random neurons (same count)"), ("random_layer_matched", "random, layer-matched")):
        if key in test:
            rows.append([f"{label}, {test[key]['n_seeds']} seeds (mean ± sd)", probe["n"],
                         mean_sd_text(test[key]["accuracy"]), mean_sd_text(test[key]["auroc"])])
    for name, summary in (test.get("length") or {}).items():
        rows.append([f"length only ({name})", summary["n"], pct_ci(summary["accuracy"], summary.get("accuracy_ci95")),
                     pct_ci(summary["auroc"], summary.get("auroc_ci95"))])
    rows.append(["paper H-Neurons, mean (range) of 6 models", "", range_text(tq_h), "not reported"])
    rows.append(["paper random neurons, mean (range)", "", range_text(tq_r), "not reported"])
    caution = length_confound_note(probe, test.get("length") or {})
    small = floor_flag(probe.get("n_faithful"), probe.get("n_hallucinated"))
    lines += ["Held-out TriviaQA test answers (the probe's own split; accuracy at 0.5, 95% bootstrap CIs):", "",
              md_table(["probe", "n", "accuracy (%)", "AUROC (%)"], rows), "",
              *([f"⚑ Too few rows to read: the test split has {small}.", ""] if small else []),
              *([caution, ""] if caution else []),
              inputs.source(paths.probe_metrics, paths.probe_c_grid, paths.probe_per_layer)]
    name = f"identification_{family}.png"
    lines.insert(0, f"![C path and H-Neurons per layer](figures/{name})\n")
    metrics = {"chosen_C": chosen, "n_h_neurons": n_h, "per_mille": per_mille,
               "paper_per_mille_range": [float(ratios.min()), float(ratios.max())],
               "test_accuracy": probe["accuracy"], "test_auroc": probe["auroc"],
               "random_test_accuracy": (test.get("random") or {}).get("accuracy", {}).get("mean")}
    figure = Figure(name, lambda path: draw_identification(grid, layers, chosen, n_feat, ratios, family, path))
    return Section("\n".join(lines), metrics, [figure])


def draw_identification(grid: pd.DataFrame, layers: pd.DataFrame, chosen: float, n_feat: int,
                        ratios: np.ndarray, family: str, path: Path) -> None:
    """Left: C path (validation/task accuracy, criterion; H-Neuron count on a twin axis, the paper's
    per-mille range shaded in count units). Right: H-Neurons per layer."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    for column, label in (("val_accuracy", "validation accuracy"), ("task_accuracy", "task accuracy (suppressed)"),
                          ("score", "criterion (sum)")):
        ax.plot(grid["C"], grid[column], marker="o", label=label)
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
    ax.set(xscale="log", xlabel="C (inverse L1 penalty)", ylabel="accuracy / criterion", title=f"{family}: C path")
    twin = ax.twinx()
    twin.plot(grid["C"], grid["n_positive"], color="black", marker="s", linewidth=1, label="H-Neurons")
    twin.axhspan(ratios.min() * n_feat / 1000, ratios.max() * n_feat / 1000, color="tab:red", alpha=0.12,
                 label="paper ratio range")
    twin.set_ylabel("H-Neurons (positive weights)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    bx.bar(layers["layer"], layers["n_h_neurons"], color="tab:red")
    bx.set(xlabel="layer", ylabel="H-Neurons", title=f"H-Neurons per layer (C={chosen:g})")
    from matplotlib.ticker import MaxNLocator

    for axis in (bx.xaxis, bx.yaxis, twin.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    _savefig(fig, path)


def detection_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Table 1 shape (Random / H-Neurons per dataset) with this run's CIs next to the paper's mean and range."""
    family = paths.family
    if not inputs.exists(paths.detect_metrics):
        return Section(not_run(f"detect@{family}", paths.detect_metrics))
    where = paths.detect_metrics
    m = inputs.json(where)
    results = get(m, "datasets", where)
    names = [d for d in DETECT_DATASETS if d in results]
    metric = m.get("table_metric", "accuracy")
    sources = [paths.detect_metrics] + ([paths.detect_table1] if inputs.exists(paths.detect_table1) else [])
    header = ["neurons"] + [DATASET_NAMES[d] for d in names]
    this_h, this_r, paper_h, paper_r, counts = ["H-Neurons (this run)"], ["Random (this run, mean ± sd)"], \
        ["H-Neurons (paper, mean of 6)"], ["Random (paper, mean of 6)"], ["n faithful / hallucinated"]
    data, section_metrics, flags = [], {}, []
    for d in names:
        r = results[d]
        h, rand = get(r, "h_neurons", f"{where} datasets.{d}"), get(r, "random", f"{where} datasets.{d}")
        i = DETECT_DATASETS.index(d)
        this_h.append(pct_ci(h[metric], h.get(f"{metric}_ci95")))
        this_r.append(mean_sd_text(rand[metric]))
        paper_h.append(range_text(paper_column("h_neurons", i)))
        paper_r.append(range_text(paper_column("random", i)))
        small = floor_flag(h.get("n_faithful"), h.get("n_hallucinated"))
        counts.append(f"{h.get('n_faithful', '?')} / {h.get('n_hallucinated', '?')}" + (" ⚑" if small else ""))
        if small:
            flags.append(f"{DATASET_NAMES[d]}: {small}{asked_text(r)}")
        gain = 100 * (h[metric] - rand[metric]["mean"]) if h[metric] is not None and rand[metric]["mean"] is not None \
            and not small else None
        section_metrics[d] = {f"h_neurons_{metric}": h[metric], f"random_{metric}": rand[metric]["mean"],
                              "gain_pp": gain, "auroc": h.get("auroc"), "n": h.get("n"),
                              "n_faithful": h.get("n_faithful"), "n_hallucinated": h.get("n_hallucinated"),
                              "below_floor": bool(small)}
        ci = h.get(f"{metric}_ci95") or [None, None]
        data.append({"family": family, "dataset": DATASET_NAMES[d], "h_neurons": _pct_num(h[metric]),
                     "h_ci_lo": _pct_num(ci[0]), "h_ci_hi": _pct_num(ci[1]), "random": _pct_num(rand[metric]["mean"]),
                     "paper_h_neurons": float(paper_column("h_neurons", i).mean()),
                     "paper_random": float(paper_column("random", i).mean())})
    gains = ["gain, pp (this run / paper mean)"]
    for d in names:
        i = DETECT_DATASETS.index(d)
        paper_gain = (paper_column("h_neurons", i) - paper_column("random", i)).mean()
        g = section_metrics[d]["gain_pp"]
        mine = "too few rows" if section_metrics[d]["below_floor"] else f"{g:+.1f}" if g is not None else "n/a"
        gains.append(f"{mine} / {paper_gain:+.1f}")
    lines = [f"{metric.capitalize()} (%) on balanced sets, probe trained on TriviaQA and applied unchanged "
             f"(paper §5, Table 1; 95% bootstrap CIs for this run, mean ± sd over random-neuron seeds; the paper "
             f"reports single values without CIs):", "",
             md_table(header, [this_h, this_r, paper_h, paper_r, gains, counts]), ""]
    if flags:
        lines += ["⚑ Too few rows to read, so no gain is printed: " + "; ".join(flags) + ".", ""]
    lines += judge_lines(m.get("judge_agreement") or {})
    auroc_rows = [[DATASET_NAMES[d], pct_ci(results[d]["h_neurons"].get("auroc"),
                                            results[d]["h_neurons"].get("auroc_ci95")),
                   mean_sd_text(results[d]["random"].get("auroc")),
                   pct_ci((results[d].get("length") or {}).get("response_tokens", {}).get("auroc"), None)]
                  for d in names]
    lines += ["AUROC (%) (the paper reports none for Table 1):", "",
              md_table(["dataset", "H-Neurons", "random (mean ± sd)", "length only"], auroc_rows), "",
              inputs.source(*sources)]
    name = f"detection_{family}.png"
    lines.insert(0, f"![Detection vs the paper](figures/{name})\n")
    figure = Figure(name, lambda path: draw_detection(data, family, metric, path))
    return Section("\n".join(lines), section_metrics, [figure], {"detection": data})


def floor_flag(n_faithful: Any, n_hallucinated: Any) -> str | None:
    """Why a detection cell is too small to read (:func:`hneurons.stats.flag_small`), or None."""
    from hneurons.stats import flag_small

    if not all(isinstance(n, (int, np.integer)) for n in (n_faithful, n_hallucinated)):
        return "class counts missing"
    return flag_small({"faithful": n_faithful, "hallucinated": n_hallucinated})


def asked_text(result: Mapping[str, Any]) -> str:
    """', target 55 per class not reached after all 1,804 eligible questions' where the stage recorded it."""
    target, pool, asked = result.get("min_per_class"), result.get("n_pool"), result.get("n_questions")
    if target is None or pool is None or asked is None:
        return ""
    return f", target {target} per class not reached after {asked:,} of {pool:,} eligible questions"


def judge_lines(agreement: Mapping[str, Any]) -> list[str]:
    """Judge agreement with labels written outside this project's code: hand labels of real responses
    (per dataset and class) and GPT-4o verdicts on BioASQ answers (the half not used to write the rules)."""
    rows = []
    hand = agreement.get("hand_labels") or {}
    for name, entry in sorted((hand.get("by_dataset") or {}).items()):
        classes = "; ".join(f"{c}: precision {pct(entry[c].get('precision'))} of {entry[c].get('n_judge')}, "
                            f"recall {pct(entry[c].get('recall'))} of {entry[c].get('n_human')}"
                            for c in ("faithful", "hallucinated") if isinstance(entry.get(c), Mapping))
        rows.append([DATASET_NAMES.get(name, name), "hand labels, real responses", entry.get("n"),
                     pct(entry.get("agreement")), "–", classes])
    gpt = agreement.get("bioasq_gpt4o") or {}
    if isinstance(gpt.get("report"), Mapping):
        r = gpt["report"]
        rows.append(["BioASQ", f"GPT-4o verdicts, Gemma-3-4B answers (held-out half; judge `{gpt.get('judge')}`)",
                     r.get("n"), pct(r.get("agreement")), f"{r['kappa']:.2f}" if r.get("kappa") is not None else "–",
                     f"correct: precision {pct(r.get('precision'))} of {r.get('n_pred_true')}, recall "
                     f"{pct(r.get('recall'))} of {r.get('n_ref_true')}"])
    if not rows:
        return []
    return ["Judges against labels nobody here wrote (precision = share of the judge's class the reference "
            "agrees with; recall = share of the reference class the judge finds):", "",
            md_table(["dataset", "reference", "n", "agreement (%)", "Cohen's κ", "per class (%)"], rows), ""]


def _pct_num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else 100.0 * float(x)


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else float(x)


def draw_detection(data: list[dict[str, Any]], family: str, metric: str, path: Path) -> None:
    """Grouped bars Random / H-Neurons per dataset (H-Neuron CI as error bars), the paper's means as markers."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["detection"])
    names = list(frame["dataset"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    h = frame["h_neurons"].astype(float).to_numpy()
    err = np.nan_to_num(np.vstack([h - frame["h_ci_lo"].astype(float), frame["h_ci_hi"].astype(float) - h]))
    ax.bar(x - 0.2, frame["random"].astype(float), width=0.4, color="tab:grey", label="random (this run, mean)")
    ax.bar(x + 0.2, h, width=0.4, color="tab:red", yerr=err, capsize=3, label="H-Neurons (this run, 95% CI)")
    ax.scatter(x - 0.2, frame["paper_random"].astype(float), marker="D", color="black", zorder=3)
    ax.scatter(x + 0.2, frame["paper_h_neurons"].astype(float), marker="D", color="black", zorder=3,
               label="paper mean of 6 models")
    ax.axhline(50, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, names)
    ax.set(ylim=(0, 100), ylabel=f"{metric} (%)", title=f"{family}: detection (paper Table 1 shape)")
    ax.legend(fontsize=7)
    _savefig(fig, path)


COMPLIANCE_COLUMNS = ("benchmark", "neurons", "alpha", "compliance", "ci_lo", "ci_hi", "n", "n_parsed")


def slopes(alpha: np.ndarray, value: np.ndarray) -> tuple[float, float]:
    """(endpoint slope (v[max alpha] - v[min alpha]) / range, OLS slope) in value units per unit alpha."""
    order = np.argsort(alpha)
    alpha, value = np.asarray(alpha, float)[order], np.asarray(value, float)[order]
    if alpha.size < 2 or alpha[-1] == alpha[0]:
        return float("nan"), float("nan")
    endpoint = (value[-1] - value[0]) / (alpha[-1] - alpha[0])
    return float(endpoint), float(np.polyfit(alpha, value, 1)[0])


def paper_slopes(panel: str) -> dict[str, tuple[float, float]]:
    """Per paper model: (endpoint, OLS) slope in pp per unit alpha of one Fig. 3 panel."""
    return {model: slopes(np.array(FIG3_ALPHAS), np.array(values)) for model, values in FIG3[panel].items()}


def check_compliance(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """compliance.csv rows, validated: percent in [0, 100], one row per (benchmark, neurons, alpha)."""
    values = frame[["compliance", "ci_lo", "ci_hi"]].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 100):
        raise HNeuronsError(f"{where}: compliance and its CI must be percentages in [0, 100]")
    if frame.duplicated(["benchmark", "neurons", "alpha"]).any():
        raise HNeuronsError(f"{where}: more than one row for a (benchmark, neurons, alpha)")
    return frame.sort_values(["benchmark", "neurons", "alpha"]).reset_index(drop=True)


def intervention_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Compliance vs alpha per benchmark (H-Neurons and random control, CIs) next to the paper's Fig. 3."""
    family = paths.family
    if not inputs.exists(paths.intervene_compliance):
        return Section(not_run(f"intervene@{family}", paths.intervene_compliance))
    where = paths.intervene_compliance
    from hneurons.stats import flag_small

    frame = check_compliance(inputs.csv(where, COMPLIANCE_COLUMNS), where)
    rows, data, section_metrics, flags = [], [], {}, []
    for (bench, neurons), part in frame.groupby(["benchmark", "neurons"], sort=True):
        alpha, value = part["alpha"].to_numpy(float), part["compliance"].to_numpy(float)
        endpoint, ols = slopes(alpha, value)
        parsed = part["n_parsed"].sum() / max(part["n"].sum(), 1)
        worst = (part["n_parsed"] / part["n"].clip(lower=1)).min()
        lo_row, hi_row = part.iloc[0], part.iloc[-1]
        panel = BENCHMARK_PANELS.get(bench)
        paper = paper_slopes(panel) if panel else {}
        paper_text = (f"{np.mean([e for e, _ in paper.values()]):+.2f} / {np.mean([o for _, o in paper.values()]):+.2f}"
                      if paper else "no paper panel")
        small = flag_small(int(part["n"].min()))
        if small:
            flags.append(f"{bench} {neurons}: {small.replace('per class', 'per condition')}")
        rows.append([bench + (" (stand-in for FaithEval)" if bench == "faitheval_style" else ""),
                     neurons + (" ⚑" if small else ""),
                     f"{pct_ci(lo_row.compliance / 100, [lo_row.ci_lo / 100, lo_row.ci_hi / 100])} @ α={lo_row.alpha:g}",
                     f"{pct_ci(hi_row.compliance / 100, [hi_row.ci_lo / 100, hi_row.ci_hi / 100])} @ α={hi_row.alpha:g}",
                     f"{endpoint:+.2f} / {ols:+.2f}", f"{100 * parsed:.1f} (min {100 * worst:.1f})", paper_text])
        section_metrics.setdefault(bench, {})[neurons] = {
            "endpoint_slope_pp": endpoint, "ols_slope_pp": ols, "parsed_share": float(parsed),
            "compliance_pct_min_alpha": float(lo_row.compliance), "compliance_pct_max_alpha": float(hi_row.compliance)}
    for (bench, alpha), part in frame.groupby(["benchmark", "alpha"], sort=True):
        row: dict[str, Any] = {"family": family, "benchmark": bench, "alpha": float(alpha)}
        for neurons, prefix in (("h_neurons", "h"), ("random", "random")):
            hit = part[part["neurons"] == neurons]
            first = hit.iloc[0] if len(hit) else None
            row[neurons] = _num(first.compliance) if first is not None else None
            row[f"{prefix}_ci_lo"] = _num(first.ci_lo) if first is not None else None
            row[f"{prefix}_ci_hi"] = _num(first.ci_hi) if first is not None else None
        data.append(row)
    small = [paper_slopes(p)[m][0] for p in FIG3 for m in SMALL_MODELS]
    large = [paper_slopes(p)[m][0] for p in FIG3 for m in PAPER_MODELS if m not in SMALL_MODELS]
    name = f"compliance_{family}.png"
    sources = [where] + ([paths.intervene_metrics] if inputs.exists(paths.intervene_metrics) else [])
    lines = [f"![Compliance vs alpha](figures/{name})\n",
             "Compliance rate (%) with the neurons' activations scaled by α (paper §6, Eq. 5; 95% CIs of this run; "
             "slopes in pp per unit α, endpoint / OLS; parsed = share of responses the scorer could parse, which "
             "falls with α in other audits). Paper column: mean over its six models of the same slopes, computed "
             "from the Fig. 3 values.", "",
             md_table(["benchmark", "neurons", "lowest α", "highest α", "slope (endpoint / OLS)", "parsed %",
                       "paper slope (endpoint / OLS)"], rows), "",
             *(["⚑ Too few items to read: " + "; ".join(flags) + ".", ""] if flags else []),
             *screening_lines(inputs, paths),
             *paired_effect_lines(inputs, paths, section_metrics),
             f"Paper: average slope ≈ {PAPER_SLOPES['three smaller models']:.2f} pp/α for the three smaller models "
             f"and ≈ {PAPER_SLOPES['three larger models']:.2f} for the three larger (definition unstated; the "
             f"endpoint slope from Fig. 3 gives {np.mean(small):.2f} and {np.mean(large):.2f}). The paper has no "
             f"random-neuron control and no CIs for this experiment.", "", inputs.source(*sources)]
    figure = Figure(name, lambda path: draw_compliance(data, family, path))
    return Section("\n".join(lines), section_metrics, [figure], {"compliance": data})


def screening_lines(inputs: Inputs, paths: FamilyPaths) -> list[str]:
    """How the screened item pools (known answers at alpha 1) were filled, from the stage's metrics."""
    if not inputs.exists(paths.intervene_metrics):
        return []
    screened = inputs.json(paths.intervene_metrics).get("screened") or {}
    if not screened:
        return []
    parts = [f"{name}: {s['kept']} kept of {s['screened']} asked ({s['correct']} correct"
             + ("" if s.get("reached") else f"; target {s['target']} not reached, pool {s['pool']}") + ")"
             for name, s in sorted(screened.items())]
    return ["Screened items (answered correctly by the unchanged model at α = 1, so sycophancy and the capability "
            "check start from known answers): " + "; ".join(parts) + ".", ""]


def paired_effect_lines(inputs: Inputs, paths: FamilyPaths, section_metrics: dict[str, Any]) -> list[str]:
    """H-Neurons minus random sets as paired per-item differences (item-cluster bootstrap CIs)."""
    if not paths.intervene_effects or not inputs.exists(paths.intervene_effects) \
            or not inputs.exists(paths.intervene_effect_slopes):
        return []
    from hneurons.stats import flag_small

    effects = inputs.csv(paths.intervene_effects, ["benchmark", "control", "outcome", "alpha", "n", "diff_pp",
                                                   "diff_ci_lo", "diff_ci_hi"])
    slopes_frame = inputs.csv(paths.intervene_effect_slopes, ["benchmark", "control", "outcome", "quantity", "kind",
                                                              "slope_pp_per_alpha", "ci_lo", "ci_hi", "n"])
    effects = effects[(effects["control"] == "random") & (effects["outcome"] == "compliance")]
    slopes_frame = slopes_frame[(slopes_frame["control"] == "random") & (slopes_frame["outcome"] == "compliance")
                                & (slopes_frame["kind"] == "ols")]
    rows = []
    for bench, part in effects.groupby("benchmark", sort=True):
        part = part.sort_values("alpha")
        top = part.iloc[-1]
        slope = {r.quantity: r for r in slopes_frame[slopes_frame["benchmark"] == bench].itertuples()}
        cell = lambda r: f"{r.slope_pp_per_alpha:+.2f} [{r.ci_lo:+.2f}, {r.ci_hi:+.2f}]" if r is not None else "n/a"  # noqa: E731
        small = flag_small(int(part["n"].min()))
        diff = slope.get("h_minus_random")
        rows.append([bench, int(part["n"].min()), f"α={top.alpha:g}",
                     "too few items" if small else f"{top.diff_pp:+.1f} [{top.diff_ci_lo:+.1f}, {top.diff_ci_hi:+.1f}]",
                     cell(slope.get("h_neurons")), cell(slope.get("random")),
                     "too few items" if small else cell(diff)])
        entry = section_metrics.setdefault(bench, {})
        entry["paired"] = {"n_items": int(part["n"].min()), "below_floor": bool(small),
                           "h_minus_random_pp_at_max_alpha": None if small else float(top.diff_pp),
                           "ci95": None if small else [float(top.diff_ci_lo), float(top.diff_ci_hi)],
                           "h_minus_random_ols_slope": None if small or diff is None else float(diff.slope_pp_per_alpha)}
    if not rows:
        return []
    return ["H-Neurons minus the layer-matched random sets, paired by item (same items and sampling seeds in every "
            "condition; 95% CIs from resampling items, so α = 1, the unchanged model, counts once); compliance in pp, "
            "OLS slopes in pp per unit α:", "",
            md_table(["benchmark", "items", "at", "H − random (pp)", "slope H", "slope random", "slope H − random"],
                     rows), ""]


def draw_compliance(data: list[dict[str, Any]], family: str, path: Path) -> None:
    """One panel per benchmark: H-Neurons and random lines with CI bands; the paper's six curves in grey."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["compliance"])
    benches = sorted(frame["benchmark"].unique())
    fig, axes = plt.subplots(1, len(benches), figsize=(3.6 * len(benches), 3.4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        panel = BENCHMARK_PANELS.get(bench)
        for i, (model, values) in enumerate((FIG3.get(panel) or {}).items()):
            ax.plot(FIG3_ALPHAS, values, color="grey", alpha=0.4, linewidth=1,
                    label="paper (6 models)" if i == 0 else None)
        part = frame[frame["benchmark"] == bench]
        for neurons, prefix, color in (("h_neurons", "h", "tab:red"), ("random", "random", "tab:blue")):
            if part[neurons].isna().all():
                continue
            ax.plot(part["alpha"], part[neurons].astype(float), marker="o", color=color, label=neurons)
            ax.fill_between(part["alpha"], part[f"{prefix}_ci_lo"].astype(float), part[f"{prefix}_ci_hi"].astype(float),
                            color=color, alpha=0.15)
        ax.set(xlabel="α", ylabel="compliance (%)", ylim=(0, 100),
               title=f"{bench}" + (f" (paper: {panel})" if panel and panel.lower() != bench else ""))
        ax.legend(fontsize=7)
    fig.suptitle(f"{family}: compliance vs α", fontsize=10)
    _savefig(fig, path)


#: Below this many balanced rows a transfer AUROC is flagged as unreadable in the report.


def origin_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Backward-transfer AUROC and parameter drift of the H-Neurons vs the paper's Fig. 4."""
    from hneurons.stats import flag_small

    family = paths.family
    if not inputs.exists(paths.origin_metrics):
        return Section(not_run(f"origin@{family}", paths.origin_metrics))
    where = paths.origin_metrics
    m = inputs.json(where)
    if "skipped" in m:
        return Section(f"_{m['skipped']}._\n\n{inputs.source(where)}", {"skipped": 1})
    drift = get(m, "drift", where)
    lines, section_metrics = twin_lines(inputs, paths), {}
    rows = []
    for scope, label in (("global", "global z-score (paper's reading)"), ("per_layer", "per-layer z-score")):
        h, rand = get(drift, f"{scope}.h_neurons", where), get(drift, f"{scope}.random", where)
        matched = drift[scope].get("random_layer_matched") or {}
        rows.append([label, h["n"], f"{h['mean_rank']:.3f}",
                     _p_text(h.get("p_empirical")) + (f" ({rand['n_sets']} sets)" if rand.get("n_sets") else ""),
                     _p_text(h.get("p_empirical_layer_matched")), _p_text(h.get("p_value")),
                     f"{rand['mean_rank']['mean']:.3f} ± {rand['mean_rank']['sd']:.3f}" if rand.get("n_sets") else "n/a",
                     f"{matched['mean_rank']['mean']:.3f} ± {matched['mean_rank']['sd']:.3f}"
                     if matched.get("n_sets") else "n/a",
                     pct(rand.get("share_p_below_0.05"))])
        section_metrics[f"drift_{scope}_mean_rank"] = h["mean_rank"]
        section_metrics[f"drift_{scope}_p_empirical"] = h.get("p_empirical")
        section_metrics[f"drift_{scope}_p_value"] = h.get("p_value")
    paper_ranks = np.array([v[0] for v in FIG4B.values()])
    lines += ["Parameter drift base → instruct (paper §7.2, Fig. 4b): mean normalized rank of the H-Neurons "
              "(1 = most stable, 0.5 = random). Significance is the one-sided empirical p against random neuron "
              "sets of the same size (share of sets at least as stable, +1 smoothed), uniform and layer-matched; the "
              "paper's one-sided Welch t-test is kept as a secondary column, with the share of random sets it calls "
              "significant at 0.05 (5% if it were calibrated):", "",
              md_table(["scope", "H-Neurons", "mean rank", "empirical p (random sets)", "empirical p (layer-matched)",
                        "Welch t-test", "random: mean rank", "layer-matched: mean rank",
                        "random sets with Welch p<0.05 (%)"], rows), "",
              "Paper Fig. 4b: " + ", ".join(f"{k} {v[0]:.3f} ({v[1]})" for k, v in FIG4B.items())
              + f"; mean {paper_ranks.mean():.3f}.", ""]
    if inputs.exists(paths.origin_strip):
        lines += [f"![Drift ranks](origin/{family}/drift_strip.png)", ""]
    transfer = get(m, "transfer", where)
    data, trows = [], []
    for d in [x for x in FIG4A_DATASETS if x in transfer] + sorted(set(transfer) - set(FIG4A_DATASETS)):
        t = transfer[d]
        i = FIG4A_DATASETS.index(d) if d in FIG4A_DATASETS else None
        paper = np.array([v[i] for v in FIG4A.values()]) if i is not None else None
        rnd = (t.get("random_neurons") or {}).get("auroc")
        counts = "/".join(str(t.get(k, "?")) for k in ("n_correct", "n_wrong", "n_refusal"))
        trows.append([DATASET_NAMES.get(d, d), counts, t.get("n", 0), pct_ci(t.get("auroc"), t.get("auroc_ci95")),
                      mean_sd_text(rnd), range_text(paper) if paper is not None else "n/a",
                      t.get("note") or flag_small({"per class": int(t.get("n", 0)) // 2}) or ""])
        section_metrics[f"transfer_auroc_{d}"] = t.get("auroc")
        ci = t.get("auroc_ci95") or [None, None]
        data.append({"family": family, "dataset": DATASET_NAMES.get(d, d), "auroc": _pct_num(t.get("auroc")),
                     "ci_lo": _pct_num(ci[0]), "ci_hi": _pct_num(ci[1]),
                     "random_auroc": _pct_num((rnd or {}).get("mean")),
                     "paper_mean": float(paper.mean()) if paper is not None else None})
    name = f"origin_{family}.png"
    lines += [f"![Backward transfer](figures/{name})\n",
              "Backward transfer (paper §7.1, Fig. 4a): the instruct probe applied unchanged to the base model's "
              "answers (prompt: question + \"\\nAnswer:\", answer cut at the first line break after it begins; "
              "leading blank lines are kept, a reading of the paper's newline stop); balanced n = 2 × the smaller "
              "class; AUROC (%) with 95% bootstrap CIs; chance = 50 (the paper has no random-neuron control):", "",
              md_table(["dataset", "base answers correct/wrong/dropped", "n", "AUROC (this run)", "random neurons (mean ± sd)",
                        "paper mean (range) of 6 base models", "note"], trows), "",
              inputs.source(*([where] + [p for p in (paths.origin_transfer, paths.origin_strip) if inputs.exists(p)]))]
    figure = Figure(name, lambda path: draw_origin(data, family, path))
    return Section("\n".join(lines), section_metrics, [figure], {"transfer": data})


def twin_lines(inputs: Inputs, paths: FamilyPaths) -> list[str]:
    """When the instruct model is this project's tuned twin: the behaviour check of base vs twin."""
    if not paths.tune_metrics or not inputs.exists(paths.tune_metrics):
        return []
    where = paths.tune_metrics
    m = inputs.json(where)
    base, twin = m.get("check_base") or {}, get(m, "check_instruct", where)
    cell = lambda c, k: pct(c[k]) if c and c.get(k) is not None else "—"  # noqa: E731
    rows = [[check_kind_text(kind, twin[kind]), twin[kind].get("n"), cell(base.get(kind), "format_ok"),
             cell(twin[kind], "format_ok"),
             cell(base.get(kind), "refusal_rate"), cell(twin[kind], "refusal_rate"),
             cell(base.get(kind), "correct"), cell(twin[kind], "correct")] for kind in twin]
    loss = m.get("loss") or {}
    return ["The instruct model of this family is not a vendor checkpoint but the base model instruction-tuned by "
            f"`tune@{paths.family}` (loss of the first batch {loss.get('first', float('nan')):.2f}, mean of the last 20 "
            f"batches {loss.get('mean_last_20', float('nan')):.2f} nats per response token). Its behaviour on held-out "
            "examples of each instruction kind, greedy (%; refusal = refusal or abstention):", "",
            md_table(["kind", "n", "format ok: base", "twin", "refusal: base", "twin", "correct: base", "twin"],
                     rows), "", inputs.source(where), ""]


def check_kind_text(kind: str, entry: Mapping[str, Any]) -> str:
    """'trivia (nq_open rows 2610–3610)': a behaviour-check kind with the data it was drawn from."""
    dataset = entry.get("dataset")
    if not dataset:
        return kind
    rows = entry.get("rows")
    where = f" rows {rows[0]}–{rows[1]}" if isinstance(rows, list) and len(rows) == 2 else \
        f" {entry['split']}" if entry.get("split") else ""
    short = f"; short: {entry['short']}" if entry.get("short") else ""
    return f"{kind} ({dataset}{where}{short})"


def _p_text(p: Any) -> str:
    if p is None or not np.isfinite(float(p)):
        return "n/a"
    label = next((f"p < {cut:g}" for cut in (0.001, 0.01, 0.05) if p < cut), "n.s.")
    return f"p = {float(p):.3g} ({label})"


def draw_origin(data: list[dict[str, Any]], family: str, path: Path) -> None:
    """Transfer AUROC bars with CIs, random-neuron AUROC and the paper's mean as markers, chance at 50."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["transfer"])
    x = np.arange(len(frame))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    value = frame["auroc"].astype(float).to_numpy()
    err = np.nan_to_num(np.vstack([value - frame["ci_lo"].astype(float), frame["ci_hi"].astype(float) - value]))
    ax.bar(x, np.nan_to_num(value), color="tab:red", yerr=err, capsize=3, label="H-Neuron probe (this run)")
    ax.scatter(x, frame["random_auroc"].astype(float), marker="o", color="tab:blue", zorder=3, label="random neurons")
    ax.scatter(x, frame["paper_mean"].astype(float), marker="D", color="black", zorder=3, label="paper mean")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, frame["dataset"])
    ax.set(ylim=(0, 100), ylabel="AUROC (%)", title=f"{family}: instruct probe on the base model")
    ax.legend(fontsize=7)
    _savefig(fig, path)


def data_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """The consistency-filtered training set (sample stage) vs the paper's 1,000 + 1,000."""
    family = paths.family
    if not inputs.exists(paths.sample_metrics):
        return Section(not_run(f"sample@{family}", paths.sample_metrics))
    where = paths.sample_metrics
    m = inputs.json(where)
    consistent, splits = get(m, "consistent", where), get(m, "splits", where)
    per_class = get(m, "selected_per_class", where)
    text = (f"{get(m, 'questions_seen', where)} questions sampled; consistently faithful / hallucinated: "
            f"{consistent.get('faithful')} / {consistent.get('hallucinated')}; selected {per_class} per class "
            f"(paper: 1,000 + 1,000), split {', '.join(f'{k} {v}' for k, v in sorted(splits.items()))} questions; "
            f"judge `{m.get('judge')}`.\n\n{inputs.source(where)}")
    return Section(text, {"selected_per_class": per_class})


# ---------------------------------------------------------------- the whole report

#: Figure-data CSVs (declared as DVC plots) and their columns, long format over families.
PLOT_COLUMNS: dict[str, list[str]] = {
    "detection": ["family", "dataset", "h_neurons", "h_ci_lo", "h_ci_hi", "random", "paper_h_neurons", "paper_random"],
    "compliance": ["family", "benchmark", "alpha", "h_neurons", "h_ci_lo", "h_ci_hi", "random", "random_ci_lo",
                   "random_ci_hi"],
    "transfer": ["family", "dataset", "auroc", "ci_lo", "ci_hi", "random_auroc", "paper_mean"],
}
SECTIONS: tuple[tuple[str, str, Callable[[Inputs, FamilyPaths], Section]], ...] = (
    ("data", "Training data (consistency sampling, paper §2.1)", data_section),
    ("identification", "1. Identification (paper §3, Table 1 ratio)", identification_section),
    ("detection", "2. Detection (paper §5, Table 1)", detection_section),
    ("intervention", "3. Intervention (paper §6, Fig. 3)", intervention_section),
    ("origin", "4. Origin (paper §7, Fig. 4)", origin_section),
)


@dataclass
class Report:
    """The rendered report: Markdown, headline metrics, figures to draw, figure-data frames."""

    markdown: str
    metrics: dict[str, Any]
    figures: list[Figure]
    data: dict[str, pd.DataFrame]


def deviations_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The 'Deviations from the paper' section from :func:`deviations` rows."""
    n = sum(r["status"].startswith("differs") for r in rows)
    table = md_table(["setting", "this run", "paper", "paper says", "where (paper.md)", "status"],
                     [[f"`{r['key']}`", value_text(r["value"]), value_text(r["paper"]), r["what"], r["where"],
                       f"**{r['status']}**" if r["status"].startswith("differs") else r["status"]] for r in rows])
    return (f"{n} of {len(rows)} compared settings differ from the paper (generated from the params this run "
            f"used; 'paper unstated' = the paper leaves it open and the paper column is the suggested reading; "
            f"the reasons for each choice are in docs/params.md).\n\n{table}")


def sources_markdown(read: Mapping[str, Mapping[str, Any]]) -> str:
    """Every artifact the report read: path, producing stage, md5, dvc.lock status."""
    rows = [[f"`{p['path']}`", f"`{p['stage']}`" if p["stage"] else "—", f"`{p['md5']}`",
             p["lock_status"] + (f" (`{p['lock_hash']}`)" if p["lock_status"].startswith("inside") else "")]
            for p in sorted(read.values(), key=lambda p: p["path"])]
    return ("Audit any of them with `python -m hneurons.lineage PATH` (params, dependency hashes up to the raw "
            "data and the model fingerprint, git state).\n\n"
            + md_table(["artifact", "stage", "md5", "dvc.lock"], rows))


def build_report(root: Path, families: Sequence[FamilyPaths], settings: Mapping[str, Any],
                 lock: Mapping[str, Any] | None) -> Report:
    """Render every section of every family from the artifacts under ``root``.

    families: artifact paths per family (report order); settings: ``{dotted key:
    value}`` of the params compared in the deviations table (see :func:`deviations`);
    lock: parsed ``dvc.lock`` (``hneurons.dvc_lock.load_lock``) or None.
    """
    inputs = Inputs(root, lock)
    rows = deviations(settings)
    parts = ["# H-Neurons reproduction report", "",
             "This run next to *H-Neurons* (Gao et al., arXiv 2512.01797 v2). Paper numbers: Table 1 from the text; "
             "Fig. 3 and Fig. 4 values read off the figures (about ±0.3 pp). Fractions from the pipeline are shown "
             "in percent; intervals are 95% bootstrap CIs of this run.", "",
             f"Families: {', '.join(f'`{f.family}`' for f in families) or 'none (report.families is empty)'}.", "",
             "## Deviations from the paper", "", deviations_markdown(rows), ""]
    metrics: dict[str, Any] = {"families": {}, "deviations": {
        "n_compared": len(rows), "n_differs": sum(r["status"].startswith("differs") for r in rows),
        "differs": [r["key"] for r in rows if r["status"].startswith("differs")]}}
    figures: list[Figure] = []
    data: dict[str, list[dict[str, Any]]] = {name: [] for name in PLOT_COLUMNS}
    for paths in families:
        parts += [f"## Family `{paths.family}`", ""]
        family_metrics = {}
        for key, title, render in SECTIONS:
            section = render(inputs, paths)
            parts += [f"### {title}", "", section.text, ""]
            family_metrics[key] = section.metrics
            figures += section.figures
            for name, items in section.data.items():
                data[name] += items
        metrics["families"][paths.family] = family_metrics
    parts += ["## Artifacts read", "", sources_markdown(inputs.read), ""]
    frames = {name: pd.DataFrame(items, columns=PLOT_COLUMNS[name]) for name, items in data.items()}
    return Report("\n".join(parts), metrics, figures, frames)
