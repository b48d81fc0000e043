"""A model directory's safetensors weights, read one tensor at a time.

Lets a stage compare a loaded model with a second checkpoint without loading the
second model: ``origin`` reads the instruct model's FFN weights layer by layer, so
its peak memory is the base model plus one layer's tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hneurons.errors import HNeuronsError

INDEX_FILE = "model.safetensors.index.json"


class Checkpoint:
    """The tensors of ``<model_dir>/*.safetensors`` (single file or sharded with an index), by name."""

    def __init__(self, model_dir: str | Path):
        from safetensors import safe_open

        self.path = Path(model_dir)
        config = self.path / "config.json"
        if not config.is_file():
            raise HNeuronsError(f"{self.path}: not a materialized model directory (no config.json); "
                                f"run the model stage")
        self.config: dict = json.loads(config.read_text(encoding="utf-8"))
        self.model_type: str | None = self.config.get("model_type")
        index = self.path / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            self._files = {name: self.path / file for name, file in weight_map.items()}
        else:
            self._files = {}
            for file in sorted(self.path.glob("*.safetensors")):
                with safe_open(str(file), framework="pt") as handle:
                    self._files.update({name: file for name in handle.keys()})
        if not self._files:
            raise HNeuronsError(f"{self.path}: no safetensors weights")

    @property
    def n_layers(self) -> int | None:
        """The decoder depth in config.json (``num_hidden_layers``, GPT-2's ``n_layer``, or the text config's)."""
        for config in (self.config, self.config.get("text_config") or {}):
            for key in ("num_hidden_layers", "n_layer"):
                if isinstance(config.get(key), int):
                    return config[key]
        return None

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def resolve(self, name: str) -> str:
        """The stored name of parameter ``name``: itself, or the one stored name ending in its
        ``layers.<i>...`` part (checkpoints may prefix the decoder differently from the module tree)."""
        if name in self._files:
            return name
        _, found, tail = name.partition(".layers.")
        matches = [key for key in self._files if found and key.endswith(".layers." + tail)]
        if len(matches) != 1:
            raise HNeuronsError(f"{self.path}: no tensor for parameter {name!r} "
                                f"({len(matches)} stored names end in 'layers.{tail}')")
        return matches[0]

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of tensor ``name`` (read from the header, no data)."""
        from safetensors import safe_open

        key = self.resolve(name)
        with safe_open(str(self._files[key]), framework="pt") as handle:
            return tuple(handle.get_slice(key).get_shape())

    def tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` in its stored dtype, on the CPU."""
        from safetensors import safe_open

        key = self.resolve(name)
        with safe_open(str(self._files[key]), framework="pt") as handle:
            return handle.get_tensor(key)
