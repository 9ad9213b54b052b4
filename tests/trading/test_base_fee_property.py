"""State machine: random fills with fees in the base, the quote or BNB keep the books right.

After every step the ledger balances per valuation currency, its holdings
equal an independent model of the venue's balances (Binance's rules: a
buy receives ``amount - base fee``, a BNB fee lowers BNB), the fee expense
accounts hold what was paid per asset, each position holds the net quantity
of its symbol, and replaying any fill (alone or in a batch) changes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from decimal import ROUND_DOWN, Decimal, localcontext
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._position_terms import position_terms
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Ledger, Storage
from phalanx.storage._positions import PositionStore

D = Decimal
ZERO = D(0)
SYMBOLS = ("BTC/USDT", "ETH/USDT", "ETH/BTC")  # two valuation currencies: USDT and BTC
RATES = (D(0), D("0.00075"), D("0.001"))

_fill = st.fixed_dictionaries(
    {
        "symbol": st.sampled_from(SYMBOLS),
        "side": st.sampled_from(("buy", "sell")),
        "amount": st.integers(1, 10**6).map(lambda n: D(n) / 10**6),
        "price": st.integers(1, 10**7).map(lambda n: D(n) / 100),
        "payer": st.sampled_from(("base", "quote", "BNB")),
        "rate": st.sampled_from(RATES),
        "bnb": st.integers(0, 10**5).map(lambda n: D(n) / 10**8),
    }
)


class FeeBooks(RuleBasedStateMachine):
    """The ledger and positions against a model of the venue, one random fill at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fee-books-"))
        self.storage = Storage(self.dir / "state.lmdb", sync=False)
        self.ledger = Ledger(self.storage)
        self.positions = PositionStore(self.storage)
        self.held: dict[str, Decimal] = {}  # the venue's balance change per asset
        self.fees: dict[str, Decimal] = {}  # fees paid per asset
        self.net: dict[str, Decimal] = {}  # net base quantity per symbol
        self.done: list[OrderFill] = []
        self.n = 0

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _make(self, spec: dict[str, object]) -> OrderFill:
        symbol, side = str(spec["symbol"]), str(spec["side"])
        amount, price, rate = D(str(spec["amount"])), D(str(spec["price"])), D(str(spec["rate"]))
        base, quote = symbol.split("/")
        payer = str(spec["payer"])
        if payer == "base":  # Binance buys without BNB; a sell paying in the base, elsewhere
            fee, currency = (amount * rate).quantize(D("1e-8"), rounding=ROUND_DOWN), base
        elif payer == "BNB":
            fee, currency = D(str(spec["bnb"])), "BNB"
        else:
            fee, currency = (amount * price * rate).quantize(D("1e-8"), rounding=ROUND_DOWN), quote
        self.n += 1
        return OrderFill(
            trade_id=str(self.n), order_req_id=f"o-{self.n}", exchange_order_id=str(self.n),
            symbol=symbol, side=side, price=price, amount=amount,  # type: ignore[arg-type]
            fee=fee, fee_currency=currency,
        )  # fmt: skip

    def _model(self, f: OrderFill) -> None:
        base, quote = f.symbol.split("/")
        with localcontext() as ctx:
            ctx.prec = 60  # the model is exact for these magnitudes
            sign = 1 if f.side == "buy" else -1
            moves = {base: sign * f.amount, quote: -sign * f.amount * f.price}
            if f.fee:
                moves[str(f.fee_currency)] = moves.get(str(f.fee_currency), ZERO) - f.fee
                self.fees[str(f.fee_currency)] = self.fees.get(str(f.fee_currency), ZERO) + f.fee
            for asset, delta in moves.items():
                self.held[asset] = self.held.get(asset, ZERO) + delta
            self.net[f.symbol] = self.net.get(f.symbol, ZERO) + moves[base]

    def _apply(self, f: OrderFill) -> bool:
        quantity, fee = position_terms(f)
        applied, _ = self.positions.apply_fill(f.symbol, f.trade_id, f.side, quantity, f.price, fee)
        return applied

    @rule(spec=_fill)
    def one_fill(self, spec: dict[str, object]) -> None:
        f = self._make(spec)
        assert self.ledger.post_fill(ledger_fill_from(f))
        assert self._apply(f)
        self._model(f)
        self.done.append(f)

    @rule(specs=st.lists(_fill, min_size=1, max_size=5), replays=st.integers(0, 3))
    def a_batch(self, specs: list[dict[str, object]], replays: int) -> None:
        fresh = [self._make(s) for s in specs]
        old = self.done[-replays:] if replays else []
        posted = self.ledger.post_fills([ledger_fill_from(f) for f in [*fresh, *old]])
        assert posted == [True] * len(fresh) + [False] * len(old)
        for f in fresh:
            assert self._apply(f)
            self._model(f)
        self.done.extend(fresh)

    @precondition(lambda self: self.done)
    @rule(pick=st.integers(0, 10**6))
    def replay_a_fill(self, pick: int) -> None:
        f = self.done[pick % len(self.done)]
        before = self.ledger.balances()
        assert not self.ledger.post_fill(ledger_fill_from(f))
        assert not self._apply(f)
        assert self.ledger.balances() == before

    @invariant()
    def balanced_per_currency(self) -> None:
        for currency, tb in self.ledger.trial_balances().items():
            assert tb["difference"] == 0, currency
        assert self.ledger.trial_balance()["difference"] == 0

    @invariant()
    def holdings_equal_the_venue(self) -> None:
        assert self.ledger.verify(self.held) == {}

    @invariant()
    def fee_accounts_hold_what_was_paid(self) -> None:
        balances = self.ledger.balances()
        for asset, paid in self.fees.items():
            assert balances[f"expenses:fees:{asset}"][1] == paid, asset

    @invariant()
    def positions_hold_the_net_quantity(self) -> None:
        for symbol in SYMBOLS:
            assert self.positions.load(symbol).quantity == self.net.get(symbol, ZERO), symbol


FeeBooks.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)
test_fee_books_stay_balanced_and_equal_to_the_venue = FeeBooks.TestCase
