"""prepare@<dataset>: data/raw snapshot -> data/prepared/<dataset>.parquet (one schema)."""

from __future__ import annotations

import logging

from hneurons import data
from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet
from stages._common import entry, load_params, run, setup_runtime

log = logging.getLogger("prepare")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.prepare DATASET")
    name = argv[0]
    params = load_params()
    setup_runtime(params)
    config = entry(params, "datasets", name)
    where = f"datasets.{name}"
    fmt, rows, options = data.load_raw(config, where)
    table = data.prepare(fmt, rows, options, where)
    metadata = {"dataset": name, "format": fmt, "n_examples": table.num_rows,
                "params": {k: v for k, v in config.items()}}
    write_parquet(f"data/prepared/{name}.parquet", table, metadata)
    log.info("%s: %d examples -> data/prepared/%s.parquet", name, table.num_rows, name)


if __name__ == "__main__":
    run(main)
