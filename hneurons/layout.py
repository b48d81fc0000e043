"""Where every pipeline artifact lives: paths relative to the repo root, as functions of family, role, dataset, run.

The stages write, the library reads and the report cites the paths built here; dvc.yaml's outs, metrics and
plots are exactly the ``*_outputs`` of each stage (tests/test_layout.py).  File names inside a stage's directory
are the ``<STAGE>_<WHAT>`` constants.
"""

from __future__ import annotations

from pathlib import Path

DATA, MODELS, REPORTS = Path("data"), Path("models"), Path("reports")
METRICS = "metrics.json"  # a stage's metrics file inside its report directory

# tune: models/llm/<family>/instruct, data/tune/<family>/, reports/tune/<family>/
TUNE_INSTRUCTIONS = "instructions.parquet"  # the instruction-tuning rows
TUNE_CHECK_RESPONSES = "check_responses.jsonl"  # the twin's answers to the check questions
TUNE_LOSS_CSV, TUNE_LOSS_PNG = "loss.csv", "loss.png"  # training loss by step
# origin: data/origin/<family>/, reports/origin/<family>/, reports/origin/<family>.json
ORIGIN_DRIFT = "drift.parquet"  # base vs instruct per-neuron drift
ORIGIN_BASE_RESPONSES = "base_responses.parquet"  # the base model's answers to the transfer questions
ORIGIN_RANKS = "h_neuron_ranks.csv"  # drift rank of each H-Neuron
ORIGIN_STRIP = "drift_strip.png"  # drift ranks figure
ORIGIN_RANDOM_SETS = "drift_random_sets.csv"  # drift of random neuron sets
ORIGIN_TRANSFER = "transfer.csv"  # instruct probe applied to base activations
# probe: models/probe/<family>/, reports/probe/<family>/
PROBE_H_NEURONS = "h_neurons.parquet"  # the selected H-Neurons
PROBE_NEURONS_BY_C = "neurons_by_C.parquet"  # positive neurons at each C
PROBE_STABILITY = "stability.parquet"  # bootstrap selection frequency
PROBE_BASELINES = "baselines.csv"  # random / all-neuron baselines
PROBE_C_GRID = "c_grid.csv"  # validation score at each C
PROBE_COUNT_VS_C = "count_vs_C.csv"  # positive / negative counts at each C
PROBE_PER_LAYER = "per_layer.csv"  # H-Neurons per layer
PROBE_METRIC_PNG, PROBE_COUNT_PNG, PROBE_LAYER_PNG = "metric_vs_C.png", "count_vs_C.png", "per_layer.png"
# detect: data/detect/<family>/, reports/detect/<family>/
DETECT_RESPONSES = "responses.parquet"  # judged generations per dataset
DETECT_TABLE1_CSV, DETECT_TABLE1_PNG = "table1.csv", "table1.png"  # paper Table 1
# intervene: data/intervene/<family>/, reports/intervene/<family>/
INTERVENE_GENERATIONS = "generations.parquet"  # generations per alpha and item
INTERVENE_JUDGEMENTS = "judgements.parquet"  # judge verdicts of the generations
INTERVENE_EFFECTS = "effects_by_alpha.csv"  # H minus random per item, by alpha
INTERVENE_SLOPES = "effect_slopes.csv"  # slope of the paired effect over alpha
INTERVENE_COMPLIANCE_CSV, INTERVENE_COMPLIANCE_PNG = "compliance.csv", "compliance.png"  # compliance by alpha
INTERVENE_CAPABILITY_CSV, INTERVENE_CAPABILITY_PNG = "capability.csv", "capability.png"  # accuracy by alpha

CHECK_ROWS = REPORTS / "check_rows.json"  # the row-overlap check's counts
SUMMARY_MD, SUMMARY_JSON = REPORTS / "summary.md", REPORTS / "summary.json"  # the report and its metrics
FIGURES, FIGURE_DATA = REPORTS / "figures", REPORTS / "figure_data"  # report figures and their data
FIGURE_DATA_NAMES = ("detection", "compliance", "transfer")  # the report's plotted CSVs under FIGURE_DATA


def prepared(dataset: str) -> Path:
    """One dataset's prepared questions."""
    return DATA / "prepared" / f"{dataset}.parquet"


def prepare_report(dataset: str) -> Path:
    """Row counts of preparing one dataset."""
    return REPORTS / "prepare" / f"{dataset}.json"


def labels(stage: str) -> Path:
    """Hand-labelled judge checks of a stage (inputs kept in git)."""
    return DATA / "labels" / stage


def model_family(family: str) -> Path:
    """All materialized checkpoints of a family (one directory per role)."""
    return MODELS / "llm" / family


def model_dir(family: str, role: str) -> Path:
    """One materialized checkpoint (``base`` or ``instruct``)."""
    return model_family(family) / role


def samples(family: str, dataset: str) -> Path:
    """Consistency-sampled, judged answers of a family's instruct model on a dataset."""
    return DATA / "samples" / family / f"{dataset}.parquet"


def activations(family: str, role: str, dataset: str) -> Path:
    """All extract runs of a model on a dataset's samples."""
    return DATA / "activations" / family / role / dataset


def activation_run(family: str, role: str, dataset: str, run: str) -> Path:
    """One extract run's activation parts and manifest."""
    return activations(family, role, dataset) / run


def extract_report(family: str, role: str, dataset: str, run: str) -> Path:
    """One extract run's metrics."""
    return REPORTS / "extract" / family / role / dataset / f"{run}.json"


def probe_dir(family: str) -> Path:
    """The fitted probe and its H-Neurons."""
    return MODELS / "probe" / family


def data_dir(stage: str, family: str) -> Path:
    """A stage's data outputs for a family (tune, origin, detect, intervene)."""
    return DATA / stage / family


def report_dir(stage: str, family: str) -> Path:
    """A stage's reports for a family."""
    return REPORTS / stage / family


def report_root(stage: str) -> Path:
    """All families' reports of a stage."""
    return REPORTS / stage


def origin_metrics(family: str) -> Path:
    """The origin stage's metrics (beside, not inside, its report directory)."""
    return REPORTS / "origin" / f"{family}.json"


def prepare_outputs(dataset: str) -> list[Path]:
    """What ``prepare@<dataset>`` writes."""
    return [prepared(dataset), prepare_report(dataset)]


def check_rows_outputs() -> list[Path]:
    """What ``check_rows`` writes."""
    return [CHECK_ROWS]


def model_outputs(family: str, role: str) -> list[Path]:
    """What ``model@<name>`` writes."""
    return [model_dir(family, role)]


def tune_outputs(family: str) -> list[Path]:
    """What ``tune@<family>`` writes."""
    reports = report_dir("tune", family)
    return [model_dir(family, "instruct"), data_dir("tune", family) / TUNE_INSTRUCTIONS,
            reports / TUNE_CHECK_RESPONSES, reports / METRICS, reports / TUNE_LOSS_CSV, reports / TUNE_LOSS_PNG]


def origin_outputs(family: str) -> list[Path]:
    """What ``origin@<family>`` writes."""
    return [data_dir("origin", family), report_dir("origin", family), origin_metrics(family)]


def sample_outputs(family: str, dataset: str) -> list[Path]:
    """What ``sample@<family>`` writes."""
    return [samples(family, dataset), report_dir("sample", family) / METRICS]


def extract_outputs(family: str, role: str, dataset: str, run: str) -> list[Path]:
    """What ``extract@<run>`` writes."""
    return [activation_run(family, role, dataset, run), extract_report(family, role, dataset, run)]


def probe_outputs(family: str) -> list[Path]:
    """What ``probe@<family>`` writes."""
    reports = report_dir("probe", family)
    names = (PROBE_BASELINES, METRICS, PROBE_C_GRID, PROBE_COUNT_VS_C, PROBE_PER_LAYER, PROBE_METRIC_PNG,
             PROBE_COUNT_PNG, PROBE_LAYER_PNG)
    return [probe_dir(family)] + [reports / name for name in names]


def report_outputs() -> list[Path]:
    """What ``report`` writes."""
    return [SUMMARY_MD, FIGURES, SUMMARY_JSON] + [FIGURE_DATA / f"{name}.csv" for name in FIGURE_DATA_NAMES]


def detect_outputs(family: str) -> list[Path]:
    """What ``detect@<family>`` writes."""
    reports = report_dir("detect", family)
    return [data_dir("detect", family)] + [reports / n for n in (DETECT_TABLE1_CSV, METRICS, DETECT_TABLE1_PNG)]


def intervene_outputs(family: str) -> list[Path]:
    """What ``intervene@<family>`` writes."""
    reports = report_dir("intervene", family)
    names = (INTERVENE_EFFECTS, INTERVENE_SLOPES, METRICS, INTERVENE_COMPLIANCE_CSV, INTERVENE_CAPABILITY_CSV,
             INTERVENE_COMPLIANCE_PNG, INTERVENE_CAPABILITY_PNG)
    return [data_dir("intervene", family)] + [reports / name for name in names]
