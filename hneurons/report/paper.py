"""The paper's numbers and settings, as data, for the report to set this run against.

Copied from the paper (arXiv 2512.01797 v2): Table 1 is text [P]; Fig. 3
and Fig. 4 values were read off the figures by pixel analysis [F] (about +/-0.3 pp).
Accuracies, AUROCs and compliance here are in percent, as the paper prints them;
the H-Neuron ratio is per mille of all FFN neurons; Fig. 4b drift ranks are
normalized ranks in [0, 1]. :data:`PAPER_SETTINGS` is the
list of settings the deviations table (:mod:`hneurons.report.deviations`) compares
with the params a run used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
    PaperSetting("sample.decoding.temperature", 1.0, "§2.1 [P]", "sampling temperature 1.0"),
    PaperSetting("sample.decoding.top_k", 50, "§2.1 [P]", "top-k 50"),
    PaperSetting("sample.decoding.top_p", 0.9, "§2.1 [P]", "top-p 0.9"),
    PaperSetting("sample.decoding.max_new_tokens", 50, "§2.1 [C]", "50 new tokens"),
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


def paper_column(table: str, index: int) -> np.ndarray:
    """Table 1 values (%) of one column (0-3 = TriviaQA..NonExist) over the six models."""
    return np.array([TABLE1[m][table][index] for m in PAPER_MODELS], dtype=float)


def paper_ratio_text() -> str:
    return ", ".join(f"{m} {TABLE1[m]['per_mille']:.2f}" for m in PAPER_MODELS)
