"""The control commands' argument models, and how a validation failure reads.

Every model is strict, frozen and forbids extra keys: a client's ``args`` map
either matches one exactly or the request gets ``bad_args`` naming the field
(:func:`_summary`, at most five errors).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "_Args",
    "_Ask",
    "_DlqId",
    "_DlqLs",
    "_DlqPurge",
    "_DlqRedrive",
    "_DlqResolve",
    "_Events",
    "_NoArgs",
    "_Path",
    "_Ps",
    "_Tell",
    "_Unsubscribe",
    "_summary",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _NoArgs(_Args):
    pass


class _Ps(_Args):
    sort: Literal["spawn", "path", "depth", "processed", "restarts"] = "spawn"
    limit: int | None = Field(default=None, ge=1)
    prefix: str | None = None


class _Path(_Args):
    path: str = Field(min_length=1)


class _Tell(_Path):
    type: str = Field(min_length=1)
    body: Any = None


class _Ask(_Tell):
    timeout: float = Field(default=5.0, gt=0, le=300)


class _DlqLs(_Args):
    reason: str | None = None
    target: str | None = None
    status: Literal["pending", "redriven", "resolved"] | None = None
    since: float | None = None
    limit: int = Field(default=100, ge=1, le=10_000)
    after: str | None = None


class _DlqId(_Args):
    id: str = Field(min_length=1)


class _DlqRedrive(_DlqId):
    to: str | None = None


class _DlqResolve(_DlqId):
    note: str = Field(min_length=1)


class _DlqPurge(_Args):
    status: Literal["pending", "redriven", "resolved"] | None = None
    older_than_s: float | None = Field(default=None, ge=0)
    confirm: bool = False


class _Events(_Args):
    kinds: list[str] | None = None
    path: str | None = None  # fnmatch glob on the event's actor path
    history: int = Field(default=0, ge=0, le=1000)


class _Unsubscribe(_Args):
    id: int


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
