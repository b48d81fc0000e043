"""The report: paper numbers, deviations from params, per-family sections, provenance, the stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hneurons import report as rp
from hneurons.errors import HNeuronsError
from hneurons.io import csv_text, dumps_json, jsonable
from hneurons.stats import detection_summary, mean_sd
from hneurons.workspace_state import md5_of

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- paper data and deviations

def test_paper_numbers_reproduce_paper_md_derived_figures():
    # paper.md §5.2 "my arithmetic" means and §6.3 endpoint slopes, computed independently there
    assert rp.paper_column("h_neurons", 0).mean() == pytest.approx(78.78, abs=0.01)
    assert rp.paper_column("random", 3).mean() == pytest.approx(62.27, abs=0.01)
    gains = rp.paper_column("h_neurons", 1) - rp.paper_column("random", 1)
    assert gains.mean() == pytest.approx(11.60, abs=0.01)
    small = [rp.paper_slopes(p)[m][0] for p in rp.FIG3 for m in rp.SMALL_MODELS]
    large = [rp.paper_slopes(p)[m][0] for p in rp.FIG3 for m in rp.PAPER_MODELS if m not in rp.SMALL_MODELS]
    assert np.mean(small) == pytest.approx(2.96, abs=0.01)
    assert np.mean(large) == pytest.approx(2.32, abs=0.01)
    assert all(len(v) == len(rp.FIG3_ALPHAS) for panel in rp.FIG3.values() for v in panel.values())


def test_deviations_compare_values():
    rows = rp.deviations({"sample.n_samples": 5, "sample.decoding.temperature": 1, "probe.standardize": 0,
                          "probe.task.alpha": 0.5, "tune.families": {"gemma270m": {}}})
    status = {r["key"]: r["status"] for r in rows}
    assert status == {"sample.n_samples": "differs", "sample.decoding.temperature": "same",  # 1 == 1.0
                      "probe.standardize": "differs",  # 0 is not false
                      "probe.task.alpha": "differs (paper unstated)", "tune.families": "differs"}
    assert [r["status"].startswith("differs") for r in rows] == [True, True, True, True, False]
    assert rp.deviations({"sample.n_samples": 10})[0]["status"] == "same"


def test_family_overrides_of_compared_settings_get_their_own_rows():
    values = {"sample.n_samples": 5, "detect.decoding.triviaqa.top_k": 50,
              "sample.families": {"smollm2": {}, "gemma270m": {"n_samples": 10, "n_questions": 600}},
              "detect.families": {"gemma270m": {"decoding": {"triviaqa": {"top_k": 20, "max_new_tokens": 16}}}}}
    status = {r["key"]: (r["value"], r["status"]) for r in rp.deviations(values)}
    assert status == {"sample.n_samples": (5, "differs"), "detect.decoding.triviaqa.top_k": (50, "same"),
                      "sample.families.gemma270m.n_samples": (10, "same"),  # n_questions: not a compared setting
                      "detect.families.gemma270m.decoding.triviaqa.top_k": (20, "differs"),
                      "detect.families.gemma270m.decoding.triviaqa.max_new_tokens": (16, "differs")}


def test_model_and_dataset_deviations():
    ours = {"smollm2-instruct": {"source": {"kind": "wheel", "file": "x/SmolLM2.gguf"}}}
    paper = {"llama8b-instruct": {"source": {"kind": "hf", "repo": "meta-llama/Llama-3.1-8B-Instruct"}}}
    assert rp.model_deviation(ours)["value"] == {"smollm2-instruct": "x/SmolLM2.gguf"}
    assert rp.model_deviation(paper) is None
    assert rp.dataset_deviations({"faitheval_style": {"format": "faitheval_style", "rows": [0, 5]}})[0]["status"] \
        == "differs"
    assert rp.dataset_deviations({"triviaqa": {}}) == []


def test_dvc_yaml_lists_every_compared_key_present_in_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    listed = set(yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["report"]["params"])

    def present(key):
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    wanted = {k for k in rp.setting_keys() if present(k)} | {"models", "datasets", "report.families"}
    covered = {k for k in wanted if any(k == p or k.startswith(p + ".") for p in listed)}  # a listed parent covers
    assert covered == wanted, f"add to the report stage's params in dvc.yaml: {sorted(wanted - covered)}"
    assert all(present(k) for k in listed), sorted(k for k in listed if not present(k))


# ---------------------------------------------------------------- synthetic artifacts

def scores_with_accuracy(n: int, acc: float) -> tuple[np.ndarray, np.ndarray]:
    """Balanced y and probabilities whose 0.5-threshold accuracy is exactly ``acc``."""
    y = np.repeat([0, 1], n // 2)
    score = np.where(y == 1, 0.9, 0.1)
    wrong = np.arange(int(round(n * (1 - acc))))
    score[wrong * 2 % n] = 1 - score[wrong * 2 % n]
    return y, score


def summary(acc: float, n: int = 100) -> dict:
    y, score = scores_with_accuracy(n, acc)
    return jsonable(detection_summary(y, score, 50, 0))


def paired_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """sweep.paired_effects on judgements where H-Neurons comply more with alpha on 40 falseqa items
    (every item compliant at alpha 3, none at 0) and 10 faitheval_style items (under the floor)."""
    from hneurons.sweep import paired_effects

    rows = []
    for bench, n_items in (("falseqa", 40), ("faitheval_style", 10)):
        for neurons, n_sets, alphas in (("h_neurons", 1, (0.0, 1.0, 3.0)), ("random", 2, (0.0, 1.0, 3.0))):
            for set_index in range(n_sets):
                for alpha in alphas:
                    for i in range(n_items):
                        compliant = (i % 2 == 0) if alpha == 1.0 or neurons == "random" else alpha == 3.0
                        rows.append({"benchmark": bench, "neurons": neurons, "set_index": set_index, "alpha": alpha,
                                     "example_id": f"{bench}_{i}", "format": "open", "in_denominator": True,
                                     "compliant": compliant, "parsed": True, "detail": "", "judge": "rule"})
    return paired_effects(pd.DataFrame(rows), 50, 0)


def write(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text, encoding="utf-8")


def write_family(root: Path, family: str, *, detect=True, intervene=True, origin=True) -> None:
    """Artifacts in the shapes the stages write (sample, probe, detect, intervene, origin)."""
    at = paths(family)
    write(root, at.sample_metrics, dumps_json(
        {"questions_seen": 2000, "consistent": {"faithful": 60, "hallucinated": 900}, "selected_per_class": 60,
         "splits": {"train": 36, "validation": 12, "test": 12}, "judge": "rule"}))
    random = {"n_seeds": 5, "n_neurons": 12, "accuracy": mean_sd([0.6, 0.62, 0.58, 0.6, 0.6]),
              "auroc": mean_sd([0.6, 0.65, 0.55, 0.6, 0.6])}
    write(root, at.probe_metrics, dumps_json(jsonable({
        "n_h_neurons": 12, "n_features": 46080, "per_mille": 1000 * 12 / 46080, "chosen_C": 3.0,
        "C_selection": {"criterion": "validation accuracy + task accuracy", "alpha": 0.0},
        "test": {"probe": summary(0.75), "h_neurons_l2": summary(0.7), "random": random,
                 "length": {"response_tokens": summary(0.55)}}})))
    grid = pd.DataFrame({"C": [1.0, 3.0, 10.0], "val_accuracy": [0.6, 0.7, 0.7], "task_accuracy": [0.1, 0.09, 0.05],
                         "score": [0.7, 0.79, 0.75], "n_positive": [3, 12, 40]})
    write(root, at.probe_c_grid, csv_text(grid))
    write(root, at.probe_per_layer,
          csv_text(pd.DataFrame({"layer": range(6), "n_h_neurons": [0, 1, 2, 0, 4, 5]})))
    if detect:
        datasets = {d: {"h_neurons": summary(acc, n), "random": random, "length": {"response_tokens": summary(0.5)}}
                    for d, acc, n in zip(rp.DETECT_DATASETS, (0.8, 0.7, 0.65, 0.9), (100, 100, 100, 40))}
        datasets["nonexist"].update(min_per_class=33, n_pool=600, n_questions=600)  # 20 per class: under the floor
        from hneurons.judge_eval import agreement as judge_agreement

        bio = judge_agreement([True] * 250 + [False] * 30 + [False] * 500 + [True] * 20,
                              [True] * 250 + [True] * 30 + [False] * 500 + [False] * 20)
        nq = {"n": 60, "agreement": 0.95,
              "faithful": {"n_human": 31, "n_judge": 30, "recall": 29 / 31, "precision": 29 / 30},
              "hallucinated": {"n_human": 29, "n_judge": 30, "recall": 28 / 29, "precision": 28 / 30}}
        agreement = {"bioasq_gpt4o": {"judge": "rule-bio", "report": bio},
                     "hand_labels": {"n": 60, "n_agree": 57, "agreement": 0.95, "by_dataset": {"nq_open": nq}}}
        write(root, at.detect_metrics,
              dumps_json({"table_metric": "accuracy", "datasets": datasets, "judge_agreement": agreement}))
    if intervene:
        rows = [{"benchmark": b, "neurons": neurons, "alpha": a, "compliance": c, "ci_lo": c - 5,
                 "ci_hi": c + 5, "n": 100, "n_parsed": 100 - int(10 * a)}  # percent, as stages/intervene.py
                for b in ("falseqa", "faitheval_style") for neurons, slope in (("h_neurons", 5.0), ("random", 0.0))
                for a in (0.0, 1.0, 2.0, 3.0) for c in [30 + slope * a]]
        write(root, at.intervene_compliance, csv_text(pd.DataFrame(rows)))
        effects, effect_slopes = paired_frames()
        write(root, at.intervene_effects, csv_text(effects))
        write(root, at.intervene_effect_slopes, csv_text(effect_slopes))
        write(root, at.intervene_metrics, dumps_json(
            {"screened": {"sycophancy": {"pool": 400, "screened": 128, "correct": 61, "wrong": 60, "unparsed": 7,
                                         "kept": 60, "target": 60, "reached": True}}}))
    if origin:
        from hneurons.origin import DriftTable, drift_report

        rng = np.random.default_rng(0)
        table = DriftTable.from_drifts(rng.random(600), rng.random(600), 100)
        drift = drift_report(table, np.arange(0, 600, 50), [1, 2, 3], [4, 5, 6])
        for scope in ("global", "per_layer"):
            for kind in ("random", "random_layer_matched"):
                drift[scope][kind].pop("runs", None)
        transfer = {"triviaqa": {"n_correct": 40, "n_wrong": 90, "n_refusal": 20, "n": 80, "auroc": 0.7, "auroc_ci95": [0.6, 0.8],
                                 "random_neurons": {"auroc": mean_sd([0.5, 0.55])}},
                    "nq_open": {"n": 10, "auroc": None, "note": "fewer than two classes after balancing"},
                    "bioasq": {"n": 6, "auroc": 0.5, "auroc_ci95": [0.0, 1.0],
                               "random_neurons": {"auroc": mean_sd([0.5, 0.6])}}}
        write(root, at.origin_metrics, dumps_json(jsonable({"drift": drift, "transfer": transfer})))


def paths(family: str):
    sys.path.insert(0, str(ROOT))
    from stages.report import family_paths

    return family_paths(family)


def lock_for(root: Path, files: dict[str, str]) -> dict:
    """A parsed dvc.lock whose stage ``name`` locks each file at its current md5 (or a given bad hash)."""
    from hneurons.dvc_lock import parse_lock

    stages: dict[str, dict] = {}
    for path, stage in files.items():
        value = md5_of(root / path) if (root / path).is_file() else "0" * 32 + ".dir"
        stages.setdefault(stage, {"cmd": "x", "outs": []})["outs"].append({"path": path, "md5": value, "hash": "md5"})
    return parse_lock({"schema": "2.0", "stages": stages})


# ---------------------------------------------------------------- build_report

def test_report_renders_every_section_next_to_the_paper(tmp_path):
    write_family(tmp_path, "fam")
    lock = lock_for(tmp_path, {"reports/probe/fam/metrics.json": "probe@fam", "reports/origin/fam": "origin@fam"})
    report = rp.build_report(tmp_path, [paths("fam")], {"sample.n_samples": 5, "sample.decoding.temperature": 1.0}, lock)
    md = report.markdown
    # identification: count, ratio, paper range, the chosen C marked
    assert "**12 H-Neurons**" in md and "**0.260‰**" in md and "inside the paper's range" in md
    assert "| 3 ← | 70.0 |" in md
    # detection in Table 1 shape, this run's CIs, the paper's mean (range)
    table1 = [line for line in md.splitlines() if line.startswith("| H-Neurons (this run)")][0]
    assert table1.startswith("| H-Neurons (this run) | 80.0 [") and "| 90.0 [" in table1
    assert "| H-Neurons (paper, mean of 6) | 78.8 (70.1–83.6) |" in md
    assert "| gain, pp (this run / paper mean) | +20.0 / +16.4 | +10.0 / +11.6 | +5.0 / +13.1 | too few rows / +18.6 |" in md
    assert "| n faithful / hallucinated | 50 / 50 | 50 / 50 | 50 / 50 | 20 / 20 ⚑ |" in md
    assert ("⚑ Too few rows to read, so no gain is printed: NonExist: fewer than 30 rows per class (faithful 20, "
            "hallucinated 20), target 33 per class not reached after 600 of 600 eligible questions.") in md
    assert ("| BioASQ | GPT-4o verdicts, Gemma-3-4B answers (held-out half; judge `rule-bio`) | 800 | 93.8 | 0.86 | "
            "correct: precision 92.6 of 270, recall 89.3 of 280 |") in md
    assert ("| NQ-Open | hand labels, real responses | 60 | 95.0 | – | faithful: precision 96.7 of 30, recall 93.5 of "
            "31; hallucinated: precision 93.3 of 30, recall 96.6 of 29 |") in md
    # intervention: slopes in pp per alpha (0.05 per alpha = 5 pp), the stand-in named, paper slope column
    assert "| falseqa | h_neurons |" in md and "+5.00 / +5.00" in md and "faitheval_style (stand-in" in md
    # intervention: paired H - random per item, flagged under the floor, screened pools named
    paired = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith(("| falseqa | 40", "| faitheval_style | 10"))}
    assert paired["| falseqa"].startswith("| falseqa | 40 | α=3 | +50.0 [")            # 100% vs 50% compliant
    assert paired["| faitheval_style"].count("too few items") == 2
    assert "Screened items (answered correctly by the unchanged model at α = 1" in md and "sycophancy: 60 kept of 128" in md
    assert report.metrics["families"]["fam"]["intervention"]["falseqa"]["paired"]["h_minus_random_pp_at_max_alpha"] == 50.0
    # origin: drift significance from the random sets first (empirical p), Welch second
    drift_row = [line for line in md.splitlines() if line.startswith("| global z-score")][0].split(" | ")
    assert drift_row[3].endswith("(3 sets)") and drift_row[3].startswith("p = ") and drift_row[5].startswith("p = ")
    # origin: drift and transfer with CI, a one-class dataset's note
    assert "| TriviaQA | 40/90/20 | 80 | 70.0 [60.0, 80.0] | 52.5 ± 3.5 |" in md
    assert "fewer than two classes after balancing" in md
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith(("| TriviaQA", "| BioASQ"))}
    assert rows["| BioASQ"].endswith("| fewer than 30 rows per class (per class 3) |") and "fewer" not in rows["| TriviaQA"]
    assert "the test split has" not in md  # 50 test rows per class
    # provenance: stage + md5 + lock status, and a file inside a locked directory
    assert "`reports/probe/fam/metrics.json` (stage `probe@fam`, md5 `" in md and "= dvc.lock" in md
    assert "no stage in dvc.lock" in md  # detect files are not in this lock
    # deviations from the params passed
    assert "| `sample.n_samples` | `5` | `10` |" in md and "1 of 2 compared settings differ" in md
    fam = report.metrics["families"]["fam"]
    assert fam["detection"]["triviaqa"]["gain_pp"] == pytest.approx(20.0)
    assert fam["intervention"]["falseqa"]["h_neurons"]["endpoint_slope_pp"] == pytest.approx(5.0)
    assert fam["identification"]["n_h_neurons"] == 12
    assert report.metrics["deviations"]["differs"] == ["sample.n_samples"]
    assert sorted(f.name for f in report.figures) == ["compliance_fam.png", "detection_fam.png",
                                                      "identification_fam.png", "origin_fam.png"]
    det = report.data["detection"]
    assert list(det["dataset"]) == ["TriviaQA", "NQ-Open", "BioASQ", "NonExist"]
    assert det["h_neurons"].tolist() == pytest.approx([80.0, 70.0, 65.0, 90.0])
    comp = report.data["compliance"]
    assert len(comp) == 8 and comp.loc[comp["alpha"] == 3.0, "h_neurons"].tolist() == pytest.approx([45.0, 45.0])
    for figure in report.figures:
        figure.draw(tmp_path / figure.name)
        assert (tmp_path / figure.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_origin_of_a_tuned_twin_shows_the_behaviour_check(tmp_path):
    write_family(tmp_path, "fam", detect=False, intervene=False)
    plain = rp.build_report(tmp_path, [paths("fam")], {}, None).markdown
    assert "instruction-tuned by" not in plain  # a vendor pair: no tune metrics
    check = {"refusal": {"n": 30, "format_ok": 1.0, "refusal_rate": 1.0, "dataset": "advbench"},
             "trivia": {"n": 30, "format_ok": 1.0, "refusal_rate": 0.0, "correct": 0.1, "dataset": "nq_open",
                        "rows": [2610, 3610]}}
    write(tmp_path, "reports/tune/fam/metrics.json", dumps_json({
        "check_base": {k: {**v, "format_ok": 0.0, "refusal_rate": 0.0} for k, v in check.items()},
        "check_instruct": check, "loss": {"first": 5.5, "mean_last_20": 1.25}}))
    md = rp.build_report(tmp_path, [paths("fam")], {}, None).markdown
    assert "instruction-tuned by `tune@fam` (loss of the first batch 5.50, mean of the last 20 batches 1.25" in md
    assert "| refusal (advbench) | 30 | 0.0 | 100.0 | 0.0 | 100.0 | — | — |" in md
    assert "| trivia (nq_open rows 2610–3610) | 30 | 0.0 | 100.0 | 0.0 | 0.0 | 10.0 | 10.0 |" in md
    assert "`reports/tune/fam/metrics.json`" in md


def test_missing_stage_files_say_not_run(tmp_path):
    write_family(tmp_path, "a", detect=False, intervene=False, origin=False)
    report = rp.build_report(tmp_path, [paths("a"), paths("b")], {}, None)
    md = report.markdown
    for stage, path in (("detect@a", "reports/detect/a/metrics.json"), ("intervene@a", "reports/intervene/a/compliance.csv"),
                        ("origin@a", "reports/origin/a.json"), ("probe@b", "reports/probe/b/metrics.json"),
                        ("sample@b", "reports/sample/b/metrics.json")):
        assert f"_Not run: `{path}` does not exist (stage `{stage}` has not produced it)._" in md
    assert "**12 H-Neurons**" in md  # family a's probe still rendered
    assert [f.name for f in report.figures] == ["identification_a.png"]
    assert report.data["detection"].empty and list(report.data["detection"].columns) == rp.PLOT_COLUMNS["detection"]


def test_provenance_states(tmp_path):
    write(tmp_path, "r/a.json", "{}\n")
    write(tmp_path, "r/d/b.csv", "x\n1\n")
    lock = lock_for(tmp_path, {"r/a.json": "s1", "r/d": "s2"})
    assert rp.provenance("r/a.json", tmp_path, lock)["lock_status"] == "matches"
    inside = rp.provenance("r/d/b.csv", tmp_path, lock)
    assert (inside["stage"], inside["lock_status"]) == ("s2", "inside r/d")
    write(tmp_path, "r/a.json", "{\"edited\": 1}\n")
    assert rp.provenance("r/a.json", tmp_path, lock)["lock_status"] == "differs"
    assert rp.provenance("r/a.json", tmp_path, None)["lock_status"] == "not in dvc.lock"


def test_bad_inputs_are_one_line_errors(tmp_path):
    write_family(tmp_path, "f", detect=False, origin=False)
    frame = pd.read_csv(tmp_path / "reports/intervene/f/compliance.csv")
    frame["compliance"] *= 100  # not a percentage any more
    write(tmp_path, "reports/intervene/f/compliance.csv", csv_text(frame))
    with pytest.raises(HNeuronsError, match=r"^reports/intervene/f/compliance.csv: compliance and its CI must be percentages"):
        rp.build_report(tmp_path, [paths("f")], {}, None)
    write(tmp_path, "reports/intervene/f/compliance.csv", "benchmark,alpha\nx,1\n")
    with pytest.raises(HNeuronsError, match=r"missing columns \['neurons', 'compliance'"):
        rp.build_report(tmp_path, [paths("f")], {}, None)
    write(tmp_path, "reports/probe/f/metrics.json", "{not json")
    with pytest.raises(HNeuronsError, match=r"^reports/probe/f/metrics.json: not readable as JSON"):
        rp.build_report(tmp_path, [paths("f")], {}, None)


# ---------------------------------------------------------------- the stage

def run_stage(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "stages.report"], cwd=cwd, capture_output=True, text=True, env=env)


def stage_repo(tmp_path: Path, families) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["report"] = {"families": families}
    write(tmp_path, "params.yaml", yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def outputs(root: Path) -> dict[str, bytes]:
    names = ["reports/summary.md", "reports/summary.json", *sorted(
        str(p.relative_to(root)) for d in ("reports/figures", "reports/figure_data") for p in (root / d).iterdir())]
    return {name: (root / name).read_bytes() for name in names}


def test_stage_writes_declared_outputs_byte_identically(tmp_path):
    repo = stage_repo(tmp_path, ["fam"])
    write_family(repo, "fam")
    first = run_stage(repo)
    assert first.returncode == 0, first.stderr
    before = outputs(repo)
    assert set(before) >= {"reports/summary.md", "reports/summary.json", "reports/figures/detection_fam.png",
                           "reports/figure_data/compliance.csv", "reports/figure_data/transfer.csv"}
    assert "## Deviations from the paper" in before["reports/summary.md"].decode()
    assert json.loads(before["reports/summary.json"])["families"]["fam"]["identification"]["chosen_C"] == 3.0
    assert str(tmp_path) not in before["reports/summary.md"].decode()  # no absolute paths
    again = run_stage(repo)
    assert again.returncode == 0, again.stderr
    assert outputs(repo) == before


def test_stage_bad_families_param_is_one_line(tmp_path):
    repo = stage_repo(tmp_path, "smollm2")                # a string: the params schema stops it
    result = run_stage(repo)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: report.families: expected list, got 'smollm2'"
    repo = stage_repo(tmp_path / "twice", ["fam", "fam"])  # the right type, a stage-level rule
    result = run_stage(repo)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: report.families=['fam', 'fam']: a family is listed twice"


def test_length_confound_note_fires_only_when_length_matches_the_probe():
    from hneurons.report import length_confound_note

    probe = {"auroc": 0.95}
    assert length_confound_note(probe, {"response_tokens": {"auroc": 0.6}}) is None
    note = length_confound_note(probe, {"response_tokens": {"auroc": 0.6}, "response_and_answer_tokens": {"auroc": 0.94}})
    assert note is not None and "response_and_answer_tokens" in note and "94.0%" in note
    assert "span_rule: content" in note
    both = length_confound_note(probe, {"response_tokens": {"auroc": 0.95}, "response_and_answer_tokens": {"auroc": 0.95}})
    assert "response length alone separates" in both and "span_rule" not in both
    assert length_confound_note({"auroc": float("nan")}, {"x": {"auroc": 1.0}}) is None


def test_a_small_probe_test_split_is_flagged(tmp_path):
    write_family(tmp_path, "fam", detect=False, intervene=False, origin=False)
    path = tmp_path / "reports/probe/fam/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["test"]["probe"] = summary(0.75, 48)  # 24 rows per class
    path.write_text(dumps_json(metrics))
    md = rp.build_report(tmp_path, [paths("fam")], {}, None).markdown
    assert ("⚑ Too few rows to read: the test split has fewer than 30 rows per class (faithful 24, "
            "hallucinated 24).") in md
