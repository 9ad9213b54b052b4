"""Node configuration: TOML validated by pydantic (DESIGN section 7).

A bad config gets one clear message naming the field (exit code 2 in the
CLI). Api keys come from environment variables named here, never from the
file itself.
"""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phalanx.errors import ConfigError
from phalanx.runtime._alert_config import AlertRule, MetricsConfig

__all__ = [
    "ExchangeConfig",
    "NodeConfig",
    "RiskLimitsConfig",
    "StrategyConfig",
    "TradingConfig",
    "VenueConfig",
    "load_config",
]

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _check_urls(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_urls(item, f"{where}.{key}")
    elif not isinstance(value, str) or not _URL.match(value):
        raise ValueError(f"{where} is not an http(s) URL: {value!r}")


class ExchangeConfig(BaseModel):
    """One exchange connection: a ccxt client plus phalanx's limits and polling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    exchange: str = "binance"
    use_venue: bool = False  # point at the embedded paper venue (URLs and keys)
    urls: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    api_key_env: str | None = None
    secret_env: str | None = None
    rate_limit_per_s: float = Field(10.0, gt=0)  # weight units per second
    burst: float = Field(1.0, ge=1)
    weights: dict[str, float] = Field(default_factory=dict)  # per-endpoint weight overrides
    timeout_min_ms: int = Field(200, gt=0)
    timeout_max_ms: int = Field(10_000, gt=0)
    timeout_default_ms: int = Field(3_000, gt=0)
    poll_symbols: list[str] = Field(default_factory=list)
    poll_interval_s: float = Field(1.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"must be a path segment ([A-Za-z0-9_.:-]+), got {value!r}")
        return value

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        import ccxt  # noqa: PLC0415 - only a config with exchanges pays for importing ccxt

        if value not in ccxt.exchanges:
            raise ValueError(f"unknown ccxt exchange id {value!r}")
        return value

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_urls(value, "urls")
        return value

    def credentials(self) -> tuple[str | None, str | None]:
        """(api key, secret) read from the named environment variables."""
        out: list[str | None] = []
        for field_name in ("api_key_env", "secret_env"):
            env = getattr(self, field_name)
            if env is None:
                out.append(None)
                continue
            value = os.environ.get(env)
            if not value:
                raise ConfigError(
                    f"exchanges.{self.name}.{field_name}: environment variable {env} is not set"
                )
            out.append(value)
        return out[0], out[1]


class VenueConfig(BaseModel):
    """The embedded paper venue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    port: int = Field(0, ge=0, le=65535)
    seed: int = 7
    step_s: float = Field(0.1, gt=0)
    # Buys pay the fee in the base asset, as Binance charges without BNB (default: the quote).
    fee_in_base: bool = False


class RiskLimitsConfig(BaseModel):
    """Pre-trade limits (DESIGN section 6, Risk); amounts in ``quote_asset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_exposure: Decimal = Field(Decimal("100000"), ge=0)  # sum of |position notional|
    max_open_positions: int = Field(10, ge=0)  # symbols with a non-zero position
    max_daily_drawdown: Decimal = Field(Decimal("5000"), ge=0)
    max_trades_per_day: int = Field(100_000, ge=0)
    quote_asset: str = "USDT"


class StrategyConfig(BaseModel):
    """The seeded demo strategy (mean reversion around a moving average)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    seed: int = 7
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    interval_s: float = Field(0.1, gt=0)  # one decision per symbol per interval
    window: int = Field(6, ge=2)  # ticks in the moving average
    threshold_bps: Decimal = Field(Decimal("2"), ge=0)  # distance from the mean that trades
    offset_bps: Decimal = Field(Decimal("6"), ge=0)  # limit price 0, 1 or 2 offsets past the touch
    notional: Decimal = Field(Decimal("200"), gt=0)  # quote per order
    max_sagas: int = Field(200, ge=0)  # sagas over all boots of this var dir; 0: unbounded
    max_in_flight: int = Field(6, ge=1)
    fill_timeout_s: float = Field(1.5, gt=0)  # await_fill gives up and cancels after this

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if symbol.count("/") != 1 or not all(symbol.split("/")):
                raise ValueError(f"not a unified BASE/QUOTE symbol: {symbol!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate symbols in {value}")
        return value


class TradingConfig(BaseModel):
    """The trading core: which connection it trades on, its limits and its strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    exchange: str = "paper"  # the connection at /exchanges/<exchange>
    risk: RiskLimitsConfig = Field(default_factory=RiskLimitsConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    order_poll_s: float = Field(0.25, gt=0)  # an open order's status poll interval

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"must be a path segment ([A-Za-z0-9_.:-]+), got {value!r}")
        return value


class NodeConfig(BaseModel):
    """The whole ``phalanx run`` config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "phalanx"
    var_dir: str | None = None
    venue: VenueConfig | None = None
    exchanges: list[ExchangeConfig] = Field(default_factory=list)
    demo: bool = True  # also run the foundation demo tree
    trading: TradingConfig | None = None  # the trading core (the demo default turns it on)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    alerts: list[AlertRule] | None = None  # None: default_alert_rules()
    # "one": every thread of the node on one CPU, the least busy allowed one at
    # start; a number: that CPU; "inherit": as started (no pinning). Why pinning
    # is the default (GIL hand-offs across CPUs; measured): runtime/_affinity.py.
    cpu_affinity: Literal["one", "inherit"] | Annotated[int, Field(ge=0, strict=True)] = "one"

    @field_validator("exchanges")
    @classmethod
    def _unique(cls, value: list[ExchangeConfig]) -> list[ExchangeConfig]:
        names = [e.name for e in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate exchange names {dupes}")
        return value

    @model_validator(mode="after")
    def _trading_exchange(self) -> NodeConfig:
        if self.trading is not None and self.trading.enabled and self.exchanges:
            names = [e.name for e in self.exchanges]
            if self.trading.exchange not in names:
                raise ValueError(
                    f"trading.exchange {self.trading.exchange!r} is not in exchanges {names}"
                )
            traded = self.exchanges[names.index(self.trading.exchange)]
            if traded.use_venue and (self.venue is None or not self.venue.enabled):
                raise ValueError(
                    f"exchanges.{traded.name}.use_venue needs the [venue] section (enabled)"
                )
        return self


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate a TOML config; :class:`ConfigError` with the field on any problem."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid TOML: {exc}") from None
    try:
        config = NodeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"bad config {str(path)!r}: {_describe(exc)}") from None
    for exchange in config.exchanges:
        exchange.credentials()  # a missing key env var is a config error, found at load
    return config
