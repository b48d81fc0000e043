"""Answer judges against labels written elsewhere: BioASQ GPT-4o verdicts, SystemicVoid TriviaQA labels, hand labels.

    .venv/bin/python bench/judge_agreement.py [--old-rev 4da1708] [--seed 0]

Prints (and writes to bench/out/judge_agreement.json):

- BioASQ: Cohen's kappa, agreement and confusion counts of the whole-word rule judge as it was at
  ``--old-rev`` (loaded from git) and of today's ``RuleJudge`` and ``BioRuleJudge`` against the GPT-4o
  verdicts of data/raw/bioasq/systemicvoid_bioasq13b_factoid_samples.jsonl, on the dev half (read
  while writing BioRuleJudge's rules) and the report half (the headline), split by
  hneurons.judge_eval.split_half(seed);
- TriviaQA: agreement of the old and today's RuleJudge with the SystemicVoid substring-rule labels
  (35,000 Gemma-3-4B responses; a regression reference, not ground truth);
- the detect fixtures (data/labels/detect): agreement with the hand labels per dataset and per class
  (recall and precision of faithful / hallucinated), on the dev half (read while writing the judges'
  rules) and the report half (the headline), split by hneurons.judge_eval.split_fixture(seed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def old_rule_judge(rev: str):
    """RuleJudge from hneurons/judge.py at git revision ``rev`` (None if git cannot show it)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hneurons/judge.py"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "judge_old.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("judge_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["judge_old"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    judge = module.RuleJudge()
    judge.name = f"rule@{rev}"
    return judge


def brief(result: dict) -> str:
    c = result["confusion"]
    return (f"n {result['n']:5d}  agreement {result['agreement']:.3f}  kappa {result['kappa']:.3f}  "
            f"ref t/pred t {c['ref=t/pred=t']:4d}  t/f {c['ref=t/pred=f']:4d}  f/t {c['ref=f/pred=t']:4d}  "
            f"f/f {c['ref=f/pred=f']:5d}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="4da1708", help="git revision of the rule judge before this work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench/out/judge_agreement.json"))
    args = parser.parse_args(argv)

    from hneurons.bio_judge import BioRuleJudge
    from hneurons.detect import judge_agreement, read_fixture
    from hneurons.judge import RuleJudge
    from hneurons.judge_eval import (
        BIOASQ_REFERENCE,
        TRIVIAQA_REFERENCE,
        bioasq_reference_agreement,
        split_fixture,
        triviaqa_reference_agreement,
    )

    old = old_rule_judge(args.old_rev)
    judges = [j for j in (old, RuleJudge(), BioRuleJudge()) if j is not None]
    out: dict = {"bioasq": {}, "triviaqa": {}, "fixtures": {}}
    print("BioASQ vs GPT-4o verdicts (SystemicVoid, Gemma-3-4B, 1600 questions)")
    for judge in judges:
        result = bioasq_reference_agreement(ROOT / BIOASQ_REFERENCE, judge, args.seed)
        out["bioasq"][judge.name] = result
        for half in ("dev", "report"):
            print(f"  {judge.name:16s} {half:6s} {brief(result[half])}")
    print("TriviaQA vs SystemicVoid substring-rule labels (35,000 responses)")
    for judge in judges[:-1]:
        result = triviaqa_reference_agreement(ROOT / TRIVIAQA_REFERENCE, judge)
        result["n_disagreements"] = len(result.pop("disagreements"))
        out["triviaqa"][judge.name] = result
        print(f"  {judge.name:16s} {brief(result)}")
    print("Detect fixtures vs hand labels (recall / precision per class), per half")
    for kind in ("qa", "nonexist"):
        halves = split_fixture(read_fixture(ROOT / f"data/labels/detect/{kind}.jsonl"), args.seed)
        out["fixtures"][kind] = {}
        for half in ("dev", "report"):
            result = judge_agreement(halves[half])
            out["fixtures"][kind][half] = result
            for name, part in result["by_dataset"].items():
                cls = "  ".join(f"{c} n {part[c]['n_human']:3d} recall {part[c]['recall']:.3f} "
                                f"precision {part[c]['precision']:.3f} (judge {part[c]['n_judge']})"
                                for c in ("faithful", "hallucinated"))
                print(f"  {name:9s} {half:6s} {part['n_agree']:3d}/{part['n']:3d} = {part['agreement']:.3f}  {cls}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
