"""Generation in a child process: :func:`~llmops_evaluation.ml.generate.generate_batches` with each batch's outputs
sent back to the caller over a pipe as soon as it is done (so progress is reported, and a worker killed mid-run
loses at most one batch).

Why a process: generation and the worker's event loop (Kafka polls, lease renewals, progress writes) do not share one
interpreter lock; a crash or an out-of-memory kill of generation fails the run, not the worker; and the memory of a
run, GPU memory included, is returned when its process ends. Children fork from a forkserver that imported torch,
transformers and peft once (:data:`PRELOAD`), so a run starts without paying those imports. A child whose parent dies
is killed with it (Linux ``PR_SET_PDEATHSIG``), and at the latest at its next batch (the pipe is broken).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmops_evaluation.ml.generate import Generated, GenerationSpec, Input

#: Modules the forkserver imports once, for every child it forks.
PRELOAD = ["llmops_evaluation.ml._preload"]
#: How long a child that has sent its last batch may take to exit before it is killed.
EXIT_GRACE_SECONDS = 30.0


class GenerationError(RuntimeError):
    """The generation process failed or died; the message says how, ``child_traceback`` holds its traceback."""

    def __init__(self, message: str, child_traceback: str | None = None) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_forkserver() -> None:
    """Start the forkserver and its imports now, rather than when the first run starts (blocks a few seconds)."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def generate_in_process(
    model_dir: Path,
    adapter_dir: Path | None,
    inputs: Sequence[tuple[int, Input]],
    spec: GenerationSpec,
    *,
    on_batch: Callable[[list[Generated]], None],
    should_stop: Callable[[], bool] = lambda: False,
    threads: int = 0,
    poll_seconds: float = 0.2,
) -> float | None:
    """Generate every input's output in a child process, calling ``on_batch`` (in the caller's thread) with each
    batch's outputs as they come. Returns the seconds the child spent loading and generating, or None when
    ``should_stop`` stopped it first. Raises :class:`GenerationError` when the child fails or dies."""
    context = _context()
    ours, theirs = context.Pipe(duplex=False)
    stop = context.Event()
    process = context.Process(
        target=_child,
        args=(theirs, stop, Path(model_dir), adapter_dir, list(inputs), spec, threads),
        name="llmops-generation",
    )
    process.start()
    theirs.close()
    try:
        while True:
            if not stop.is_set() and should_stop():
                stop.set()
            if not ours.poll(poll_seconds):
                continue
            try:
                message = ours.recv()
            except EOFError:
                process.join(EXIT_GRACE_SECONDS)
                raise GenerationError(f"the generation process died {_how(process.exitcode)}") from None
            kind = message[0]
            if kind == "batch":
                on_batch(message[1])
            elif kind == "done":
                return None if stop.is_set() else message[1]
            else:
                raise GenerationError(f"generation failed: {message[1]}", message[2])
    finally:
        stop.set()
        ours.close()
        process.join(EXIT_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "(it did not exit)"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = ", perhaps out of memory" if exitcode == -signal.SIGKILL else ""
        return f"(killed by {name}{hint})"
    return f"(exit code {exitcode})"


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(connection, stop, model_dir, adapter_dir, inputs, spec, threads) -> None:
    _die_with_parent()
    from llmops_evaluation.ml.generate import generate_batches, load_model

    started = time.perf_counter()
    try:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        model, tokenizer = load_model(model_dir, adapter_dir)
        for batch in generate_batches(model, tokenizer, inputs, spec, should_stop=stop.is_set):
            connection.send(("batch", batch))
    except BaseException as exc:
        connection.send(("error", repr(exc), traceback.format_exc()))
    else:
        connection.send(("done", time.perf_counter() - started))
    finally:
        connection.close()
