"""The sampling settings of every generation path, with their defaults decided here once.

    SamplingConfig(temperature=0.6, top_p=0.95, top_k=None, max_new_tokens=None, seed=None)
    SamplingConfig.from_options(**options)      from CLI flags or lm-eval's model args (strings)
    config_from_options(cls, options, what)     the same for any config dataclass (DeepConfConfig uses it)

Defaults are the model card's (`falcon_h1r.RECOMMENDED_SAMPLING`): temperature 0.6, top_p 0.95, and a budget of
"up to 65,536 new tokens". A
`max_new_tokens` left as None is settled when a backend is built (`resolved`): the checkpoint's
generation_config.max_new_tokens if it names one, else DEFAULT_MAX_NEW_TOKENS, the same on every backend.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from falcon_h1r import RECOMMENDED_MAX_NEW_TOKENS, RECOMMENDED_SAMPLING

DEFAULT_TEMPERATURE = RECOMMENDED_SAMPLING["temperature"]
DEFAULT_TOP_P = RECOMMENDED_SAMPLING["top_p"]
DEFAULT_MAX_NEW_TOKENS = RECOMMENDED_MAX_NEW_TOKENS

T = TypeVar("T")


def _field_type(hint: Any) -> type:
    """int for `int | None`, and so on: the type a string option is converted to."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def config_from_options(cls: type[T], options: dict[str, Any], what: str) -> T:
    """An instance of dataclass `cls` from user options, the one way CLIs and lm-eval model args build configs:
    an unknown name is an error naming the known ones, None (or lm-eval's "None" / "") keeps the field's
    default, and strings are converted to the field's type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; choose from {names}")
    values: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value in ("None", ""):
            continue
        kind = _field_type(hints[name])
        try:
            values[name] = kind(value) if kind in (int, float) and not isinstance(value, bool) else value
        except ValueError as exc:
            raise ValueError(f"{what} option {name}={value!r} must be {kind.__name__}") from exc
    return cls(**values)


@dataclass(frozen=True)
class SamplingConfig:
    """How traces are sampled. temperature 0 is greedy; top_k None (or 0) is off; max_new_tokens None is settled
    by `resolved` from the checkpoint; seed None draws a fresh seed."""

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 or None = off), got {self.top_k}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @classmethod
    def from_options(cls, **options: Any) -> SamplingConfig:
        return config_from_options(cls, options, "sampling")

    def resolved(self, generation_config: Any = None) -> SamplingConfig:
        """This config with max_new_tokens settled: as given, else the generation config's, else the default."""
        if self.max_new_tokens is not None:
            return self
        budget = getattr(generation_config, "max_new_tokens", None) or DEFAULT_MAX_NEW_TOKENS
        return dataclasses.replace(self, max_new_tokens=int(budget))

    def generate_kwargs(self) -> dict[str, Any]:
        """transformers `generate()` keyword arguments (sampling, or greedy at temperature 0)."""
        budget = {} if self.max_new_tokens is None else {"max_new_tokens": self.max_new_tokens}
        if self.temperature == 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, **budget}
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k or None,
            **budget,
        }
