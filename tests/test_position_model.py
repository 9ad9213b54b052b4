"""The pure position model: average entry, realized PnL with fees, triggers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors._position_model import (
    PositionState,
    apply_fill,
    evaluate_triggers,
    unrealized_pnl,
)

D = Decimal


def test_round_trip_realizes_the_gain_minus_both_fees() -> None:
    s = apply_fill(PositionState("BTC/USDT"), "buy", D("0.5"), D(40000), D(20))
    s = apply_fill(s, "buy", D("0.5"), D(42000), D(21))
    assert s.quantity == 1
    assert s.average_entry == D(41000)
    s = apply_fill(s, "sell", D(1), D(43000), D(43))
    assert s.is_flat
    assert s.realized_pnl == D(2000) - D(20) - D(21) - D(43)
    assert s.fees == D(84)


def test_crossing_zero_opens_the_other_side_at_the_fill_price() -> None:
    s = apply_fill(PositionState("X"), "buy", D(1), D(100), D(0))
    s = apply_fill(s, "sell", D(3), D(110), D(0))
    assert (s.quantity, s.average_entry, s.realized_pnl) == (D(-2), D(110), D(10))
    assert unrealized_pnl(s, D(100)) == D(20)  # short gains when the price falls


def test_triggers_fire_on_the_move_in_the_positions_favour() -> None:
    long = apply_fill(PositionState("X"), "buy", D(1), D(100), D(0))
    assert evaluate_triggers(long, D(105), D(5), D(2)).fired == "take_profit"
    assert evaluate_triggers(long, D(98), D(5), D(2)).fired == "stop_loss"
    assert evaluate_triggers(long, D(101), D(5), D(2)).fired is None
    short = apply_fill(PositionState("X"), "sell", D(1), D(100), D(0))
    assert evaluate_triggers(short, D(95), D(5), D(2)).fired == "take_profit"
    assert evaluate_triggers(PositionState("X"), D(1), D(5), D(2)).fired is None


fills = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.decimals(min_value=D("0.001"), max_value=D(10), places=3),
        st.decimals(min_value=D(1), max_value=D(1000), places=2),
        st.decimals(min_value=D(0), max_value=D(5), places=2),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(fills)
def test_quantity_is_the_signed_sum_and_flat_pnl_is_cash_flow(
    sequence: list[tuple[str, Decimal, Decimal, Decimal]],
) -> None:
    state = PositionState("X")
    cash = D(0)
    for side, qty, price, fee in sequence:
        state = apply_fill(state, side, qty, price, fee)  # type: ignore[arg-type]
        cash += (-qty * price if side == "buy" else qty * price) - fee
    signed = sum((q if s == "buy" else -q for s, q, _, _ in sequence), D(0))
    assert state.quantity == signed
    assert state.fees == sum((f for *_, f in sequence), D(0))
    # Marked at any price, realized + unrealized equals the cash flow plus the
    # open quantity's value: the model neither loses nor invents money.
    mark = D(500)
    total = state.realized_pnl + unrealized_pnl(state, mark)
    assert abs(total - (cash + state.quantity * mark)) < D("1e-12")


def test_the_average_entry_does_not_depend_on_the_calling_threads_decimal_context() -> None:
    # ccxt's decimal_to_precision sets ROUND_HALF_UP on the thread that calls it;
    # the live actor and replay must still round an inexact average identically.
    fills = [("buy", D("0.001"), D("43000.11")), ("buy", D("0.002"), D("42999.97")),
             ("buy", D("0.003"), D("43000.03")), ("sell", D("0.001"), D("43001"))]  # fmt: skip

    def run() -> tuple[PositionState, Decimal]:
        state = PositionState("BTC/USDT")
        for side, qty, price in fills:
            state = apply_fill(state, side, qty, price, D("0.0431"))  # type: ignore[arg-type]
        return state, unrealized_pnl(state, D("43100.7"))

    plain = run()
    assert len(plain[0].average_entry.as_tuple().digits) == 28  # inexact: rounded
    for context in (Context(prec=50), Context(rounding=ROUND_HALF_UP), Context(prec=12)):
        with localcontext(context):
            assert run() == plain
