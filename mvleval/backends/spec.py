"""ModelSpec: which model a run evaluates (``--model``, ``--backend``) with the options that belong to it
(``-M KEY=VALUE``), each validated by the one pydantic model its backend declares (``Backend.options_model``)."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mvleval.util.errors import MvlevalError


class ModelOptions(BaseModel):
    """A backend's own options (``-M KEY=VALUE``): one field per key; a key the backend does not declare is refused.

    A backend subclasses it once (``class HfVlmOptions(ModelOptions)``) and names it as its ``options_model``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: keys the run already carries in fields of its own (recorded and part of the run's identity there)
    carried: ClassVar[frozenset[str]] = frozenset()

    def recorded(self) -> dict[str, Any]:
        """The options as given (explicit values only, JSON types), as a run record keeps them; no credentials."""
        return self.model_dump(mode="json", exclude_unset=True)

    def identity(self) -> dict[str, Any]:
        """The given options that change answers and that the run's identity does not hold already (resume, the
        run's name, the response cache's key); default: every given option that is not carried."""
        return {k: v for k, v in self.recorded().items() if k not in self.carried}


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it: ``--model`` (a folder, a hub id or ``openai:NAME``), ``--backend`` if forced, and
    the raw values of its options with where each was given (``-M base_url=...``, ``--base-url``, ``run.yaml:7``)."""

    model: str
    backend: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)

    def origin(self, key: str) -> str:
        return self.origins.get(key, f"-M {key}")


def option_key(key: str) -> str:
    """An option's key as declared: ``image-handling`` and ``image_handling`` name the same option."""
    return key.strip().replace("-", "_")


def parse_model_options(values: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``-M KEY=VALUE`` values -> ({key: value, or a list of values for a key given several times}, {key: origin}).

    Raises:
        MvlevalError: a value without ``=`` or without a key.
    """
    options: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        key = option_key(key)
        if not sep or not key:
            raise MvlevalError(
                f"-M {value!r} is not KEY=VALUE.",
                fix="pass a model option as -M KEY=VALUE, e.g. -M trust_remote_code=true (`mvleval run --help`).",
            )
        if key in options:
            previous = options[key]
            options[key] = [*previous, text] if isinstance(previous, list) else [previous, text]
        else:
            options[key] = text
            origins[key] = f"-M {key}"
    return options, origins


def takes_list(model: type[ModelOptions], key: str) -> bool:
    annotation = model.model_fields[key].annotation
    return typing.get_origin(annotation) is list or annotation is list


def check_options(spec: ModelSpec, backend: str, model: type[ModelOptions], owners: Mapping[str, str]) -> ModelOptions:
    """`spec`'s options validated by `backend`'s options model; every problem at once, in one paragraph.

    Args:
        owners: option key -> the backend that declares it, to say where a misplaced key belongs.

    Raises:
        MvlevalError: a key `backend` does not declare (naming its keys), a repeated single value, a bad value.
    """
    known = sorted(model.model_fields)
    unknown = [key for key in spec.options if key not in model.model_fields]
    if unknown:
        raise _refused(spec, backend, known, unknown, owners)
    problems: list[str] = []
    for key, value in spec.options.items():
        if isinstance(value, list) and not takes_list(model, key):
            problems.append(f"{spec.origin(key)} is given {len(value)} times ({', '.join(map(str, value))})")
    if not problems:
        try:
            return model.model_validate(dict(spec.options))
        except ValidationError as exc:
            for error in exc.errors():
                key = str(error["loc"][0]) if error["loc"] else "?"
                problems.append(f"{spec.origin(key)}={_shown(spec.options.get(key))}: {error['msg']}")
    raise MvlevalError(
        f"bad model option for the {backend} backend: {'; '.join(problems)}.",
        fix=f"give each option once with a value of its type; the {backend} backend's options: {', '.join(known)}.",
    )


def _refused(
    spec: ModelSpec, backend: str, known: list[str], unknown: list[str], owners: Mapping[str, str]
) -> MvlevalError:
    """The error for keys `backend` does not declare: its own keys, and where each refused key belongs."""
    takes = f"its options: {', '.join(known)}" if known else "it takes no -M options"
    named = ", ".join(spec.origin(key) for key in unknown)
    what = f"{named} {'is not an option' if len(unknown) == 1 else 'are not options'} of the {backend} backend "
    what += f"that runs {spec.model} ({takes})"
    for key in unknown:
        owner = owners.get(key)
        if owner:
            what += f"; {key} belongs to the {owner} backend ({describe_backend(owner)})"
        else:
            close = difflib.get_close_matches(key, list(owners), n=1, cutoff=0.5)
            what += f"; no backend has an option {key}" + (f" (did you mean {close[0]}?)" if close else "")
    return MvlevalError(what + ".", fix=_misplaced_fix(backend, [owners.get(key) for key in unknown]))


def describe_backend(name: str) -> str:
    return {
        "openai": "served models only, --model openai:NAME",
        "hf": "a model loaded here, any AutoModelForImageTextToText checkpoint",
        "mblip": "a model loaded here, BLIP-2/mBLIP checkpoints",
    }.get(name, name)


def _misplaced_fix(backend: str, owners: Sequence[str | None]) -> str:
    if "openai" in owners and backend != "openai":
        return "served-model options apply to served models only: pass --model openai:NAME, or drop them."
    if backend == "openai" and any(owner in ("hf", "mblip") for owner in owners):
        return "these only apply to a model loaded here, not to a served model; the server decides how it loads it."
    return "drop it or correct its name (`mvleval run --help` lists each backend's -M options)."


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
