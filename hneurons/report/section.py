"""What a section builder returns: its Markdown, headline metrics, figures to draw and figure-data rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """A PNG to write: ``name`` (file name in the figures directory) and ``draw(path)``."""

    name: str
    draw: Callable[[Path], None]


@dataclass
class Section:
    """One rendered section: Markdown text, headline metrics, figures, figure-data rows per CSV."""

    text: str
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
