"""Session-wide test settings: what runs apart from the rest under pytest-xdist."""

import pytest

TIMING_GROUP = "timing"

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a virtualenv made before hypothesis joined the dev extras: `make venv`
    pass
else:
    # Fuzz tests are bounded and deterministic: the same examples on every run and machine,
    # no example database, no deadline (a loaded machine must not fail a test by being slow).
    settings.register_profile("rig", derandomize=True, database=None, deadline=None,
                              max_examples=200, print_blob=False,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("rig")


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `timing` share one xdist_group: `--dist loadgroup` runs them one after the
    other on a single worker, so two races or two burst timers never compete for the cores."""
    for item in items:
        if item.get_closest_marker("timing") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(TIMING_GROUP))
