import pytest

from rig.load.clocksync import Exchange, best_offset, to_node_clock


def exchange(sent: float, ahead: float, out: float, back: float, hold: float = 0.0) -> Exchange:
    """An exchange with a node whose clock is `ahead`, `out`/`back` seconds each way."""
    t1 = sent + out + ahead
    return Exchange(t0=sent, t1=t1, t2=t1 + hold, t3=sent + out + hold + back)


def test_a_symmetric_path_gives_the_offset_exactly():
    e = exchange(100.0, ahead=0.25, out=0.004, back=0.004, hold=0.001)
    assert e.offset == pytest.approx(0.25)
    assert e.delay == pytest.approx(0.008)


def test_a_node_behind_has_a_negative_offset():
    assert exchange(5.0, ahead=-1.5, out=0.01, back=0.01).offset == pytest.approx(-1.5)


def test_the_exchange_with_the_least_delay_is_kept():
    slow = exchange(0.0, ahead=0.1, out=0.050, back=0.002)  # asymmetric: off by 24 ms
    fast = exchange(1.0, ahead=0.1, out=0.001, back=0.001)
    best = best_offset([slow, fast, slow])
    assert best.offset_s == pytest.approx(0.1)
    assert best.delay_s == pytest.approx(0.002)
    assert best.exchanges == 3
    assert slow.offset != pytest.approx(0.1)


def test_no_exchanges_is_an_error():
    with pytest.raises(ValueError):
        best_offset([])


def test_an_instant_moves_onto_the_node_clock():
    assert to_node_clock(1000.0, -0.5) == 999.5
