"""Which optional extra a command needs, and the one-line error naming it when it is not installed.

The core install (``pip install mvleval``) is everything that needs no model on this machine: tasks, benchmark folders,
data checks, metrics, served models (``--model openai:NAME``), score, report, leaderboard and gate. A model loaded
here (``run --model ./ckpt``), ``train``, ``export`` and ``demo`` need the ``hf`` extra (torch, transformers, peft,
bitsandbytes, ...). Those commands check for it before they read anything, and an import of one of its packages
that still fails deeper down is turned into the same message by the CLI (:func:`missing_extra`).
"""

from __future__ import annotations

import importlib.util

from mvleval.util.errors import MvlevalError

#: the command that installs the local-model extra (pyproject.toml's ``hf``)
HF_INSTALL = 'pip install "mvleval[hf]"'
#: import names of the packages the ``hf`` extra installs and the core does not
HF_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "bitsandbytes",
    "safetensors",
    "sentencepiece",
    "tokenizers",
    "psutil",
)
#: what a model run on this machine cannot start without (the rest is checked where it is used, e.g. peft for --adapter)
HF_CORE = ("torch", "transformers")


class MissingExtraError(MvlevalError):
    """A command needs an optional extra that is not installed; the message names its install command."""

    def __init__(self, purpose: str, missing: list[str]) -> None:
        names = ", ".join(missing)
        super().__init__(
            f"{purpose} needs mvleval's hf extra ({names} {'is' if len(missing) == 1 else 'are'} not installed here); "
            "the core install evaluates served models (--model openai:NAME) only.",
            fix=f"run `{HF_INSTALL}` (on a CUDA machine, install the torch build you want first).",
        )
        self.missing = missing


def is_installed(name: str) -> bool:
    """True when the top-level package `name` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a package whose import machinery refuses it counts as absent
        return False


def require_hf(purpose: str, packages: tuple[str, ...] = HF_CORE) -> None:
    """Raise MissingExtraError naming `purpose` unless every one of `packages` is installed.

    Args:
        purpose: what needs the extra, as the user typed it, e.g. "mvleval train" or "a model run on this machine".
        packages: the import names to check (default: torch and transformers).
    """
    missing = [name for name in packages if not is_installed(name)]
    if missing:
        raise MissingExtraError(purpose, missing)


def missing_extra(exc: ModuleNotFoundError, purpose: str) -> MissingExtraError | None:
    """The MissingExtraError for an import of one of the hf extra's packages that failed, else None (a bug)."""
    top = (exc.name or "").split(".")[0]
    return MissingExtraError(purpose, [top]) if top in HF_PACKAGES else None
