"""The report: this run's results next to the paper's numbers, with provenance.

Pure given its inputs: :func:`build_report` takes the per-family artifact paths
(decided by ``stages/report.py``), the params values the deviations table
compares (a flat ``{dotted key: value}``), and the parsed ``dvc.lock`` (or None),
and returns the Markdown text, a headline-metrics dict, tidy figure-data frames
and figure-drawing callables. Nothing here reads params.yaml or decides paths.

Sections per family, each rendered from the files present and saying "not run"
when a file is missing (one module each, with its figure):

- training data (:mod:`.training_data`, paper §2.1): the consistency-filtered set;
- identification (:mod:`.identification`, paper §3, Table 1 ratio): C path,
  H-Neurons per layer, per-mille ratio vs the paper's six models, in-domain test
  detection with CIs;
- detection (:mod:`.detection`, paper §5, Table 1): Random / H-Neurons accuracy
  per dataset with this run's bootstrap 95% CIs and the paper's mean and range
  over its models;
- intervention (:mod:`.intervention`, paper §6.3, Fig. 3): compliance vs alpha
  for the H-Neurons and a random-neuron control (with CIs), the paper's six
  curves drawn behind;
- origin (:mod:`.origin`, paper §7, Fig. 4): backward-transfer AUROC with CIs and
  parameter-drift mean rank vs the paper's values.

The rest: :mod:`.paper` (the paper's numbers and settings, as data),
:mod:`.deviations` (the params used vs the paper's settings), :mod:`.sources`
(provenance: every table names the artifact's md5, the producing stage and its
``dvc.lock`` hash via :mod:`hneurons.dvc_lock`), :mod:`.inputs` (artifact paths
and reading), :mod:`.markdown` (text helpers), :mod:`.section` and
:mod:`.figures` (what a section returns, figure plumbing), :mod:`.build` (the
assembly).

Every accuracy/AUROC in the metrics files is a fraction in [0, 1] and compliance
in ``compliance.csv`` is in percent (the intervene stage's contract); the report
shows percent, as the paper does.
"""

from __future__ import annotations

from hneurons.report.build import SECTIONS, Report, build_report
from hneurons.report.detection import asked_text, detection_section, draw_detection, judge_lines
from hneurons.report.deviations import (
                                        dataset_deviations,
                                        deviations,
                                        deviations_markdown,
                                        family_override_values,
                                        model_deviation,
)
from hneurons.report.figures import PLOT_COLUMNS
from hneurons.report.identification import draw_identification, identification_section, length_confound_note
from hneurons.report.inputs import FamilyPaths, Inputs, get
from hneurons.report.intervention import (
                                        COMPLIANCE_COLUMNS,
                                        check_compliance,
                                        draw_compliance,
                                        intervention_section,
                                        paired_effect_lines,
                                        paper_slopes,
                                        screening_lines,
                                        slopes,
)
from hneurons.report.markdown import floor_flag, md_table, mean_sd_text, not_run, pct, pct_ci, range_text, value_text
from hneurons.report.origin import check_kind_text, draw_origin, origin_section, twin_lines
from hneurons.report.paper import (
                                        BENCHMARK_PANELS,
                                        DATASET_NAMES,
                                        DETECT_DATASETS,
                                        FAMILY_SECTIONS,
                                        FIG3,
                                        FIG3_ALPHAS,
                                        FIG4A,
                                        FIG4A_DATASETS,
                                        FIG4B,
                                        PAPER_MODEL_IDS,
                                        PAPER_MODELS,
                                        PAPER_SETTINGS,
                                        PAPER_SLOPES,
                                        SMALL_MODELS,
                                        TABLE1,
                                        PaperSetting,
                                        paper_column,
                                        paper_ratio_text,
                                        setting_keys,
)
from hneurons.report.section import Figure, Section
from hneurons.report.sources import provenance, source_line, sources_markdown
from hneurons.report.training_data import data_section

__all__ = [
    "BENCHMARK_PANELS", "COMPLIANCE_COLUMNS", "DATASET_NAMES", "DETECT_DATASETS", "FAMILY_SECTIONS", "FIG3",
    "FIG3_ALPHAS", "FIG4A", "FIG4A_DATASETS", "FIG4B", "PAPER_MODEL_IDS", "PAPER_MODELS", "PAPER_SETTINGS",
    "PAPER_SLOPES", "PLOT_COLUMNS", "SECTIONS", "SMALL_MODELS", "TABLE1",
    "FamilyPaths", "Figure", "Inputs", "PaperSetting", "Report", "Section",
    "asked_text", "build_report", "check_compliance", "check_kind_text", "data_section", "dataset_deviations",
    "detection_section", "deviations", "deviations_markdown", "draw_compliance", "draw_detection",
    "draw_identification", "draw_origin", "family_override_values", "floor_flag", "get", "identification_section",
    "intervention_section", "judge_lines", "length_confound_note", "md_table", "mean_sd_text", "model_deviation",
    "not_run", "origin_section", "paired_effect_lines", "paper_column", "paper_ratio_text", "paper_slopes", "pct",
    "pct_ci", "provenance", "range_text", "screening_lines", "setting_keys", "slopes", "source_line",
    "sources_markdown", "twin_lines", "value_text",
]
