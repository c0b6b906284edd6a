"""Fixtures every test suite of the repository shares."""

import os

import pytest

# Tests run as local development (the Makefile says so too); unset, LLMOPS_ENV means production rules.
os.environ.setdefault("LLMOPS_ENV", "local")
# A pytest-xdist worker starts with COLUMNS=80 and LINES=24 in its environment; the CLI's consoles, built at import,
# would keep that width for every command the tests invoke in-process (each asks for its own width with COLUMNS).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def infra_up():
    """Start (or find running) the local Kafka, Postgres and S3 store: integration tests talk to the real ones."""
    from llmops import infra

    infra.up()


# -- parallel runs (`make test`: pytest-xdist, `--dist loadgroup`) ---------------------------------------------------
#: Services whose tests must not run beside each other's: each one's test service projects the others' shared topics
#: (the model registry, suites attached to models, gate decisions) from their ends, and their tests name the same
#: projects and models (``p1``, ``tiny-lora``). Every other service's tests form a group of its own, for the same
#: reason within the service (its consumers read the topics its other test files publish to).
_SHARED_TOPIC_GROUPS = {"training": "models", "evaluation": "models", "deployment": "models"}
#: Groups handed out first, the longest first, so that the longest is not the last to start.
_FIRST = (
    "models",
    "monitoring",
    "tests/api/test_fuzz.py",
    "tests/faults/test_outages.py",
    "tests/stack/test_up_down.py",
)


def _group(nodeid: str) -> str:
    """The worker group of a test (by its id, the file's path from the repository's root first): its service's tests
    run on one worker, one after another; any other test file is a group of its own (module fixtures set up once)."""
    parts = nodeid.split("::", 1)[0].split("/")
    if parts[0] == "services" and len(parts) > 2:
        return _SHARED_TOPIC_GROUPS.get(parts[1], parts[1])
    return "/".join(parts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest groups first (a run without workers runs them in the same order)."""
    rank = {group: n for n, group in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``--dist loadgroup``, each group (:func:`_group`) goes to one worker whole. pytest-xdist's own grouping
    (``xdist_group`` marks) writes the group into ``item._nodeid``, which pytest 9 no longer reads: its groups are
    lost, and a file's tests are shared out one by one."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ByGroup(config, log)
