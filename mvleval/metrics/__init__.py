"""The metrics package: one file per metric; this module only re-exports their public names (cheap to import).

Nothing heavy is imported here: lingua, Sudachi, PyThaiNLP, sacrebleu and numpy load inside the metric that needs them, on
first use.
"""

from mvleval.metrics.base import Metric, MetricResult
from mvleval.metrics.bootstrap import PairedBootstrap, paired_bootstrap
from mvleval.metrics.cider import Cider
from mvleval.metrics.exact_match import ExactMatch, RelaxedAccuracy
from mvleval.metrics.language_fidelity import LanguageFidelity
from mvleval.metrics.sacrebleu_metrics import Bleu, ChrF

__all__ = [
    "Bleu",
    "ChrF",
    "Cider",
    "ExactMatch",
    "LanguageFidelity",
    "Metric",
    "MetricResult",
    "PairedBootstrap",
    "RelaxedAccuracy",
    "paired_bootstrap",
]
