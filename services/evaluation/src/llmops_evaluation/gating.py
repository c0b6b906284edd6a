"""Release gates decided on a completed run (placeholder).

This file is a placeholder of the evaluation worker's branch: the real module, written in parallel, replaces it on
merge. The worker calls :func:`decide_gates` in the transaction that completes a run.
"""

from __future__ import annotations


async def decide_gates(session, runtime, run_id: str) -> None:
    """Placeholder replaced on merge: decides nothing."""
    return None
