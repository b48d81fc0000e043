"""prepare@<dataset>: data/raw snapshot -> data/prepared/<dataset>.parquet (one schema)
and reports/prepare/<dataset>.json (raw rows read, examples kept, rows dropped per reason)."""

from __future__ import annotations

import logging
from collections import Counter

from hneurons import data, layout
from hneurons.errors import HNeuronsError
from hneurons.io import write_json, write_parquet
from stages._common import run, setup_runtime
from stages.config import load_config

log = logging.getLogger("prepare")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.prepare DATASET")
    name = argv[0]
    params = load_config()
    setup_runtime(params)
    datasets = params.raw.get("datasets") or {}   # the mapping as written: the reader takes it, metadata records it
    if name not in datasets:
        raise HNeuronsError(f"datasets.{name}: unknown (known: {', '.join(sorted(datasets)) or 'none'})")
    config = datasets[name]
    where = f"datasets.{name}"
    fmt, rows, options = data.load_raw(config, where)
    drops: Counter = Counter()
    table = data.prepare(fmt, rows, options, where, drops)
    metadata = {"dataset": name, "format": fmt, "n_examples": table.num_rows,
                "params": {k: v for k, v in config.items()}}
    write_parquet(layout.prepared(name), table, metadata)
    report = {"dataset": name, "format": fmt, "n_raw": len(rows), "n_examples": table.num_rows,
              "n_dropped": sum(drops.values()), "dropped": dict(sorted(drops.items()))}
    write_json(layout.prepare_report(name), report)
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(drops.items()) if n) or "none"
    log.info("%s: %d raw rows -> %d examples (dropped: %s) -> %s",
             name, len(rows), table.num_rows, dropped, layout.prepared(name))


if __name__ == "__main__":
    run(main)
