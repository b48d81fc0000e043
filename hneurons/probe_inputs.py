"""The probe stage's inputs: activation splits as on-disk row matrices, and the task term's questions.

Activations are ``data/activations/<family>/instruct/<dataset>/`` (see
hneurons.activations); each split is copied, in its stored dtype, into a raw row
file under a scratch directory and read back in row blocks
(hneurons.activation_rows.RowMatrix), so a fit holds a few rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hneurons.errors import HNeuronsError
from hneurons.probe import training_labels


@dataclass
class ProbeSplits:
    """The probe's rows. ``X``/``X_val``/``X_test``: float32[n, D] row matrices; ``train``/``val``/``test``:
    their row frames. ``keep``: bool[n] training rows used; ``y``: int8[n] training labels (0 where not kept);
    ``weight``: float64[n] (``keep`` as 0/1); ``y_val``/``y_test``: int64 answer-row labels (1 = hallucinated)."""

    train: pd.DataFrame
    X: np.ndarray
    keep: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    val: pd.DataFrame
    X_val: np.ndarray
    y_val: np.ndarray
    test: pd.DataFrame
    X_test: np.ndarray
    y_test: np.ndarray


def read_split(path: Path, split: str, answer_only: bool, scratch: Path):
    """One split's rows: (frame, X float32[n, D] as a hneurons.activation_rows.RowMatrix in ``scratch``).

    The class counts are checked from the frame before any cett is decoded; a split
    without two rows of each label is a one-line error.
    """
    from hneurons.activation_rows import spill_activations
    from hneurons.activations import read_activation_frame

    where = {"split": split, "region": "answer"} if answer_only else {"split": split}
    frame = read_activation_frame(path, where)
    answer = frame["region"].to_numpy() == "answer"
    labels = frame["label"].to_numpy()[answer]
    for cls, name in ((1, "hallucinated"), (0, "faithful")):
        n = int(np.sum(labels == cls))
        if n < 2:
            raise HNeuronsError(f"{path}: split {split!r} has {n} {name} answer rows; the probe needs >= 2 "
                                f"of each class per split (more questions in the sample/extract stages)")
    return spill_activations(path, scratch, where)


def validation_questions(samples_path: Path, n_questions: int) -> pd.DataFrame:
    """Validation-split questions in file order, first n (0 = all).

    Columns example_id, question, answers, prompt_ids: the prompt ids are the ones
    the sample stage generated from, so the task term asks exactly as sampling did.
    """
    from hneurons.io import read_schema, read_table

    if not samples_path.is_file():
        raise HNeuronsError(f"{samples_path}: not found (run the sample stage)")
    names = set(read_schema(samples_path).names)
    missing = {"example_id", "answers", "prompt_ids", "split"} - names
    if missing:
        raise HNeuronsError(f"{samples_path}: missing columns {sorted(missing)}")
    columns = ["example_id", "answers", "prompt_ids", "split"] + (["question"] if "question" in names else [])
    frame = read_table(samples_path, columns=columns).to_pandas()
    frame = frame[frame["split"] == "validation"].drop_duplicates("example_id").reset_index(drop=True)
    if "question" not in frame.columns:
        frame["question"] = ""
    if frame.empty:
        raise HNeuronsError(f"{samples_path}: no validation questions for the C criterion's task term")
    return frame.head(n_questions) if n_questions else frame


def read_probe_splits(acts: Path, labelling: str, scratch: Path, n_layers: int, d_ffn: int) -> ProbeSplits:
    """Training rows (both regions for 3-vs-1, answer rows for 1-vs-1), validation and test answer rows.

    Each split's row file goes under ``scratch``. A feature count other than
    ``n_layers * d_ffn`` is a one-line error.
    """
    train, X = read_split(acts, "train", labelling == "1-vs-1", scratch)
    keep, y = training_labels(train["region"].to_numpy(), train["label"].to_numpy(), labelling)
    weight = keep.astype(np.float64)
    val, X_val = read_split(acts, "validation", True, scratch)
    test, X_test = read_split(acts, "test", True, scratch)
    y_val, y_test = val["label"].to_numpy().astype(np.int64), test["label"].to_numpy().astype(np.int64)
    if X.shape[1] != n_layers * d_ffn:
        raise HNeuronsError(f"{acts}: {X.shape[1]} features but metadata says {n_layers} x {d_ffn}")
    return ProbeSplits(train, X, keep, y, weight, val, X_val, y_val, test, X_test, y_test)
