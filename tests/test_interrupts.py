"""A Ctrl-C whose KeyboardInterrupt Python drops (raised inside a __del__) still stops the
run at its next waiting loop. Each case runs in a child interpreter: signal handlers are
per process, and pytest has its own."""

import subprocess
import sys
import textwrap

# drop_one(): a __del__ that sends SIGINT to its own process; the handler runs inside the
# __del__, and Python prints its KeyboardInterrupt as "Exception ignored" and drops it.
PRELUDE = """
import os, signal
from rig import interrupts
from rig.topology.wait import NotReady, wait_until_ready

class SignalsOnCollection:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # bytecodes for the handler to run on, still in __del__
            pass

def drop_one():
    SignalsOnCollection()
    print("went on", flush=True)

class NeverReady:
    def check(self):
        raise NotReady("not yet")
    def describe(self):
        return "never"
"""


def run_child(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=30)


def test_python_drops_a_keyboard_interrupt_raised_in_a_del():
    done = run_child("""
        with interrupts.installed():
            drop_one()
            print("stopping" if interrupts.stopping() else "lost")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["went", "on", "stopping"]
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr


def test_the_next_waiting_loop_raises_the_dropped_interrupt():
    done = run_child("""
        with interrupts.installed():
            drop_one()
            try:
                wait_until_ready(NeverReady(), 10.0, lambda: True)
            except KeyboardInterrupt:
                print("interrupted")
    """)
    assert done.stdout.split() == ["went", "on", "interrupted"], done.stderr


def test_after_the_command_an_old_signal_stops_nothing_and_the_handlers_are_back():
    done = run_child("""
        with interrupts.installed():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
            except KeyboardInterrupt:
                print("interrupted")
        interrupts.raise_if_stopping()
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
              signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """)
    assert done.stdout.split() == ["interrupted", "True", "True"], done.stderr


def test_asyncio_gets_sigint_for_its_run():
    done = run_child("""
        with interrupts.installed():
            interrupts.raise_if_stopping()
            ours = signal.getsignal(signal.SIGINT)
            with interrupts.asyncio_sigint():
                inside = signal.getsignal(signal.SIGINT)
            after = signal.getsignal(signal.SIGINT)
        print(inside is signal.default_int_handler, after is ours, ours is not inside)
    """)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
