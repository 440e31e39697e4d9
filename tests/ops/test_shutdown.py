"""SIGTERM (what the kubelet sends) stops the operator cleanly: exit 0 within seconds, and a log
with no error in it. A running workspace loop returns when kopf sets its `stopped` flag, instead
of being cancelled ("Will escalate"); a second signal during the shutdown is not an asyncio error."""

from __future__ import annotations

import signal
import time

import pytest

from support.harness import RB_PLURAL

# Far below what kopf would give the loop (30 s) and the chart's terminationGracePeriodSeconds (60 s).
EXIT_WITHIN = 10.0


def _stop(h, signals: tuple[tuple[float, signal.Signals], ...]) -> tuple[int, float]:
    operator = h.operator
    assert operator is not None and operator.poll() is None, "the operator is not running:\n" + h.operator_log()
    started = time.monotonic()
    for delay, sig in signals:
        time.sleep(delay)
        operator.send_signal(sig)
    try:
        code = operator.wait(timeout=EXIT_WITHIN + 30)
    finally:
        h.stop_operator()  # kills it if it is still running
    return code, time.monotonic() - started


def _assert_clean(log: str) -> None:
    for bad in ("ERROR", "Traceback", "Will escalate", "did not exit in time", "Exception in callback"):
        assert bad not in log, f"{bad!r} in the operator's log on shutdown:\n{log[-6000:]}"


# Each signal after a delay. SIGINT then SIGTERM at once is `synapse-scim demo` stopped with Ctrl-C:
# the terminal interrupts the whole process group, then the demo terminates the operator. A second
# signal 0.3 s later finds the operator stopped and the interpreter tearing itself down.
SIGNALS = {
    "sigterm": ((0.0, signal.SIGTERM),),
    "sigint-then-sigterm": ((0.0, signal.SIGINT), (0.0, signal.SIGTERM)),
    "sigterm-twice-late": ((0.0, signal.SIGTERM), (0.3, signal.SIGTERM)),
}


@pytest.mark.parametrize("election", ["off", "on"])
@pytest.mark.parametrize("signals", SIGNALS.values(), ids=SIGNALS.keys())
def test_sigterm_stops_the_operator_cleanly(harness, election, signals):
    h = harness
    h.start_operator(SYNAPSE_SCIM_LEADER_ELECTION=election, SYNAPSE_SCIM_LEASE_NAMESPACE=h.namespace)
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")  # the workspace's loop runs and waits for its next sync

    code, took = _stop(h, signals)

    log = h.operator_log()
    assert code == 0, f"exit code {code}:\n{log[-6000:]}"
    assert took < EXIT_WITHIN, f"the operator took {took:.1f}s to stop:\n{log[-6000:]}"
    _assert_clean(log)
