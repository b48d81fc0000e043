"""hneurons: find, test and trace hallucination-associated FFN neurons (arXiv 2512.01797).

The library never reads params.yaml and never decides output paths; the DVC stage
adapters in ``stages/`` do that.
"""

__version__ = "0.1.0"
