"""The price table behind `nl2sql.llm.cost`: USD per 1M input and output tokens, per model.

The package ships a few current models in `prices.json` (each with its source and the date of the
price). `OBSERVABILITY_PRICES_FILE` names a JSON file of the same shape whose models are added to the
defaults and win over them:

    {"unit": "USD per 1M tokens",
     "models": {"gpt-4o": {"input": 2.5, "output": 10.0, "source": "https://openai.com/api/pricing/",
                           "date": "2026-03-21"}}}

A model matches its own name, or its name with a release suffix (`-2024-08-06`, `-20250514`,
`-latest`); never another model's prefix (`gpt-4o` does not price `gpt-4o-mini`). A model with no
price gets no cost: `nl2sql.llm.unpriced_tokens` counts its tokens, so the gap shows and is never
guessed. A bad file stops start-up (`settings.load_all`) with one line naming the variable, the
file and the problem. On the hot path nothing raises: lookups are cached per model.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.safetext import loads_bounded

__all__ = [
    "CURRENCY",
    "PRICES_FILE_ENV",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "load_price_table",
    "price_table",
    "use_price_table",
]

_log = logging.getLogger(__name__)

PRICES_FILE_ENV = "OBSERVABILITY_PRICES_FILE"
CURRENCY = "USD"
_PER_TOKENS = 1_000_000
_MAX_FILE_BYTES = 1 << 20
_CACHE_MAX = 1024
# USD per 1M tokens. Today's dearest models cost a few hundred; a bound keeps a typo (or 1e308) from
# making every cost infinite or absurd.
MAX_PRICE = 10_000.0
# Release suffixes providers append to a model name: dates, or "-latest".
_RELEASE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class PriceTableError(ConfigurationError):
    """The prices file is unusable; the message names the variable, the file and the problem."""


class ModelPrice(BaseModel):
    """One model's price in USD per 1M tokens, with where and when it was read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)
    output: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)
    source: str = Field(min_length=1, max_length=500)
    date: date

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for these token counts."""
        return (input_tokens * self.input + output_tokens * self.output) / _PER_TOKENS


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: Literal["USD per 1M tokens"]
    models: dict[str, ModelPrice]


class PriceTable:
    """Model name → price. `lookup` is cached per model name and never raises."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)
        self._cache: dict[str, ModelPrice | None] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, model: str) -> ModelPrice | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        except TypeError:  # an unhashable "model" from a careless caller
            return None
        found = self._prices.get(model)
        if found is None and isinstance(model, str):
            base = _RELEASE_SUFFIX.sub("", model)
            found = self._prices.get(base) if base != model else None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # many distinct names: keep the memory bounded
        self._cache[model] = found
        return found


def _parse(text: str, where: str) -> dict[str, ModelPrice]:
    try:
        raw = loads_bounded(text)
    except ValueError as exc:
        raise PriceTableError(f"{where}: not valid JSON ({exc})") from None
    try:
        return dict(_PriceFile.model_validate(raw).models)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PriceTableError(f"{where}: {loc}: {first['msg']}{more}") from None


def _defaults() -> dict[str, ModelPrice]:
    text = resources.files("nl2sql_observability").joinpath("prices.json").read_text(encoding="utf-8")
    return _parse(text, "the packaged prices.json")


def _read_user_file(value: str) -> dict[str, ModelPrice]:
    where = f"{PRICES_FILE_ENV}={value!r}"
    path = Path(value).expanduser()
    try:
        # O_NONBLOCK: a FIFO or device named by mistake is refused below instead of blocking start-up.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PriceTableError(f"{where}: not a regular file (a FIFO, device or socket); give a file")
            data = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PriceTableError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise PriceTableError(f"{where}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise PriceTableError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > _MAX_FILE_BYTES:
        raise PriceTableError(f"{where}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PriceTableError(f"{where}: not UTF-8 text") from None
    return _parse(text, where)


def load_price_table(environ: Mapping[str, str] | None = None) -> PriceTable:
    """The packaged defaults plus the file named by `OBSERVABILITY_PRICES_FILE` (its models win).
    Raises `PriceTableError` with one line when that file is unusable."""
    env = os.environ if environ is None else environ
    prices = _defaults()
    value = (env.get(PRICES_FILE_ENV) or "").strip()
    if value:
        prices.update(_read_user_file(value))
    return PriceTable(prices)


_table: PriceTable | None = None


def price_table() -> PriceTable:
    """The process's table: the one `use_price_table` was handed (`settings.use_settings` does that),
    else loaded on first use.
    Never raises: if the file is bad (library use, no start-up check), every model is unpriced
    (visible in `nl2sql.llm.unpriced_tokens`) and one warning is logged, rather than a price guessed."""
    global _table
    if _table is None:
        try:
            _table = load_price_table()
        except Exception as exc:
            _log.warning("LLM cost is not recorded: %s", exc)
            _table = PriceTable({})
    return _table


def use_price_table(table: PriceTable | None) -> None:
    """Use this table from now on (tests, or apps that build their own); None: reload on next use."""
    global _table
    _table = table
