import multiprocessing
import os
import random
import re

import pytest

from rig.topology.loopback import block_host, loopback_block, reserve_block


def test_block_host_is_in_this_process_block_and_stable() -> None:
    host = block_host("3.1")
    assert re.fullmatch(r"127\.\d+\.3\.1", host)
    assert host.split(".")[1] == str(loopback_block())
    assert block_host("3.2") == f"127.{loopback_block()}.3.2"
    assert 64 <= loopback_block() <= 254


@pytest.mark.parametrize("rest", ["3", "3.1.1", "a.1", "3.256"])
def test_block_host_rejects_what_is_not_two_octets(rest: str) -> None:
    with pytest.raises(ValueError, match="last two octets"):
        block_host(rest)


def test_a_held_block_is_not_given_twice() -> None:
    held = [reserve_block(random.Random(seed)) for seed in range(8)]
    try:
        octets = [octet for octet, _ in held] + [loopback_block()]
        assert len(set(octets)) == len(octets)
    finally:
        for _, fd in held:
            os.close(fd)


def _child_block(queue: "multiprocessing.Queue[int]") -> None:
    queue.put(loopback_block())


def test_another_process_gets_another_block() -> None:
    mine = loopback_block()
    queue: multiprocessing.Queue[int] = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=_child_block, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    assert theirs != mine


def test_a_kernel_table_is_held_by_one_run_at_a_time():
    from rig.errors import InfraError
    from rig.topology.runtime import held_kernel_table

    table = 40 + os.getpid() % 20  # a table no other test process of this run holds
    with held_kernel_table(table):
        with pytest.raises(InfraError, match=f"kernel table {table} is in use"):
            with held_kernel_table(table):
                pass
        with held_kernel_table(table + 1):
            pass  # another table is free
    with held_kernel_table(table):
        pass  # released with the run
