"""The timer heap on plain numbers: order, ties, cancelling, what is due."""

from __future__ import annotations

import math

from rig.wire.timerheap import TimerHeap


def noop(_: object) -> None:
    return None


def test_deadlines_come_out_earliest_first_and_ties_in_push_order() -> None:
    heap = TimerHeap()
    for when, name in [(3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2"), (5.0, "late")]:
        heap.push(when, noop, name)
    assert heap.next_at == 1.0
    assert [arg for _, arg in heap.pop_due(2.0)] == ["a", "b1", "b2"]
    assert heap.next_at == 3.0 and len(heap) == 2
    assert [arg for _, arg in heap.pop_due(4.9)] == ["c"]
    assert heap.pop_due(4.9) == []
    assert [arg for _, arg in heap.pop_due(5.0)] == ["late"]
    assert heap.next_at == math.inf and len(heap) == 0


def test_a_cancelled_deadline_never_comes_out_and_next_at_skips_it() -> None:
    heap = TimerHeap()
    first = heap.push(1.0, noop, "first")
    heap.push(2.0, noop, "second")
    heap.cancel(first)
    heap.cancel(first)  # twice: still one cancel
    heap.cancel(None)
    assert len(heap) == 1
    assert heap.next_at == 2.0
    assert [arg for _, arg in heap.pop_due(10.0)] == ["second"]


def test_cancelling_a_popped_deadline_changes_nothing() -> None:
    heap = TimerHeap()
    entry = heap.push(1.0, noop, "x")
    heap.push(2.0, noop, "y")
    assert len(heap.pop_due(1.0)) == 1
    heap.cancel(entry)
    assert len(heap) == 1 and heap.next_at == 2.0


def test_the_callback_comes_back_with_its_argument() -> None:
    seen: list[object] = []
    heap = TimerHeap()
    heap.push(0.5, seen.append, "call-1")
    for callback, argument in heap.pop_due(0.5):
        callback(argument)
    assert seen == ["call-1"]
