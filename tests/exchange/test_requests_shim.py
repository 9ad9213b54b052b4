"""The requests shim answers isinstance exactly as the SupportsItems protocol it stands for."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

import pytest
import requests
import requests.utils
from requests._types import SupportsItems
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from phalanx.actors.exchange._requests_shim import SupportsItemsCheck, install, installed

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11 only")


class _Items:
    def items(self) -> list[tuple[str, int]]:
        return [("a", 1)]


class _ItemsNone(dict[str, int]):
    items = None  # type: ignore[assignment]


class _InstanceItems:
    def __init__(self) -> None:
        self.items = lambda: [("b", 2)]


class _InstanceItemsNone:
    def __init__(self) -> None:
        self.items = None


class _Registered:
    pass


SupportsItems.register(_Registered)


def _values() -> list[Any]:
    return [
        {}, {"a": 1}, OrderedDict(a=1), CaseInsensitiveDict({"A": "1"}), RequestsCookieJar(),
        [("a", 1)], (("a", 1),), "a=1", b"a=1", None, 1, True, 1.5, object(),
        _Items(), _ItemsNone(a=1), _InstanceItems(), _InstanceItemsNone(), _Registered(),
        _Items, dict,
    ]  # fmt: skip


def test_the_check_answers_as_the_protocol_for_every_kind_of_value() -> None:
    install()  # the protocol's answers do not depend on it: it only changes requests.utils
    for value in _values():
        assert isinstance(value, SupportsItemsCheck) == isinstance(value, SupportsItems), value


def test_install_makes_requests_use_it_and_requests_merges_as_before() -> None:
    assert install() is True
    assert installed()
    assert install() is True  # idempotent
    assert requests.utils._SupportsItems is SupportsItemsCheck  # type: ignore[attr-defined]
    assert requests.utils.to_key_val_list({"a": 1}) == [("a", 1)]
    assert requests.utils.to_key_val_list([("a", 1)]) == [("a", 1)]
    with pytest.raises(ValueError, match="2-tuples"):
        requests.utils.to_key_val_list("a")
    session = requests.Session()
    session.headers["X-Session"] = "s"
    prepared = session.prepare_request(
        requests.Request("GET", "http://127.0.0.1/x", headers={"X-Call": "c"}, params={"q": "1"})
    )
    assert prepared.url == "http://127.0.0.1/x?q=1"
    assert prepared.headers["X-Session"] == "s"
    assert prepared.headers["X-Call"] == "c"


def test_install_leaves_an_unknown_requests_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class Other:
        pass

    monkeypatch.setattr(requests.utils, "_SupportsItems", Other)
    assert install() is False
    assert requests.utils._SupportsItems is Other  # type: ignore[attr-defined]
    assert not installed()
