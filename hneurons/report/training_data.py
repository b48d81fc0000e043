"""The training-data section: the consistency-filtered set of the sample stage (paper §2.1)."""

from __future__ import annotations

from hneurons.report.inputs import FamilyPaths, Inputs, get
from hneurons.report.markdown import not_run
from hneurons.report.section import Section


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
