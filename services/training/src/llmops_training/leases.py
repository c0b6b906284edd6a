"""A worker's hold on a running job: the lease in the jobs table, renewed while the job runs, and what the training
thread and the event loop share while it does (cancel, lost, pause)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class JobLost(Exception):
    """This worker's lease on the job was taken over: stop without reporting anything."""


@dataclass(eq=False)  # compared and hashed by identity: a worker keeps its running jobs' in a set
class JobControl:
    """What the training thread and the event loop share while a job runs."""

    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)  # the worker is stopping: checkpoint, hand over
    cancelled_by: str | None = None
    metrics: deque = field(default_factory=deque)  # every step's figures, written in batches
    latest: Any = None  # the latest Progress
