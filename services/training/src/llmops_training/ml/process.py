"""Training in a child process, with :func:`~llmops_training.ml.trainer.train`'s signature and hooks.

Why a process rather than a thread of the worker: the training loop and the worker's event loop (Kafka polls,
checkpoint uploads, database writes) no longer share one interpreter lock, so the worker's I/O does not slow training
down; a crash or an out-of-memory kill of training cannot take the worker with it (the job fails with the reason);
and every byte a job used, GPU memory included, is returned when its process ends.

Children fork from a forkserver that imported torch, transformers, peft and TRL once (:data:`PRELOAD`), so a job
starts in milliseconds rather than the seconds those imports take; :func:`start_forkserver` pays that cost up front.
The child's hooks are relayed over a pipe to the caller's hooks, called in the caller's thread. At each checkpoint
the child waits until the caller's ``on_checkpoint`` has returned, as it would in-process. A child whose parent dies
is killed with it (Linux ``PR_SET_PDEATHSIG``), and at the latest at its next step (the pipe is broken).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_training.examples import TrainingError

if TYPE_CHECKING:
    from llmops_training.ml.trainer import Hooks, TrainResult, TrainSpec

#: Modules the forkserver imports once, for every child it forks.
PRELOAD = ["llmops_training.ml._preload"]
#: How long a child that has sent its result may take to exit before it is killed.
EXIT_GRACE_SECONDS = 30.0


class TrainingProcessError(RuntimeError):
    """The training process failed other than with a :class:`TrainingError`, or died; the message says how and
    ``child_traceback`` holds the child's traceback when it had one."""

    def __init__(self, message: str, child_traceback: str | None = None) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_forkserver() -> None:
    """Start the forkserver and its imports now, rather than when the first job starts (blocks a few seconds)."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def train_in_process(
    model_dir: Path,
    examples: Sequence[dict] | Path,
    spec: TrainSpec,
    output_dir: Path,
    *,
    resume_from: Path | None = None,
    hooks: Hooks | None = None,
    threads: int = 0,
    poll_seconds: float = 0.2,
) -> TrainResult:
    """Run ``train`` in a child process; ``threads`` > 0 sets torch's CPU threads there (0: torch's default).
    ``examples`` given as a JSONL file's path are read by the child alone (the caller never holds them).

    Raises ``TrainingError`` as ``train`` does, and :class:`TrainingProcessError` for any other failure of the
    child, including its death (exit code or signal in the message)."""
    context = _context()
    ours, theirs = context.Pipe()
    stop, pause = context.Event(), context.Event()
    process = context.Process(
        target=_child,
        args=(theirs, stop, pause, Path(model_dir), _as_sent(examples), spec, Path(output_dir), resume_from, threads),
        name="llmops-training",
    )
    process.start()
    theirs.close()
    try:
        while True:
            if hooks is not None and not stop.is_set() and hooks.should_stop():
                stop.set()
            if hooks is not None and not pause.is_set() and hooks.should_pause():
                pause.set()
            if not ours.poll(poll_seconds):
                continue
            try:
                message = ours.recv()
            except EOFError:
                process.join(EXIT_GRACE_SECONDS)
                raise TrainingProcessError(f"the training process died {_how(process.exitcode)}") from None
            kind = message[0]
            if kind == "progress":
                if hooks is not None:
                    hooks.on_progress(message[1])
            elif kind == "checkpoint":
                if hooks is not None:
                    hooks.on_checkpoint(message[1], message[2])
                ours.send("go")
            elif kind == "result":
                return message[1]
            elif message[1]:  # "error", raised by train() as a TrainingError
                raise TrainingError(message[2])
            else:
                raise TrainingProcessError(f"training failed: {message[2]}", message[3])
    finally:
        stop.set()
        ours.close()
        process.join(EXIT_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _as_sent(examples: Sequence[dict] | Path) -> list[dict] | Path:
    return Path(examples) if isinstance(examples, str | Path) else list(examples)


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "(it did not exit)"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = ", perhaps out of memory" if exitcode == -signal.SIGKILL else ""
        return f"(killed by {name}{hint})"
    return f"(exit code {exitcode})"


class _Relay:
    """The child's hooks: everything goes to the parent over the pipe; a stop or pause is the parent's event."""

    def __init__(self, connection: Any, stop: Any, pause: Any) -> None:
        self.connection, self.stop, self.pause = connection, stop, pause

    def on_progress(self, progress: Any) -> None:
        self.connection.send(("progress", progress))

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def should_pause(self) -> bool:
        return self.pause.is_set()

    def on_checkpoint(self, step: int, directory: Path) -> None:
        self.connection.send(("checkpoint", step, directory))
        self.connection.recv()  # the parent's go-ahead: it has taken the checkpoint over


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(connection, stop, pause, model_dir, examples, spec, output_dir, resume_from, threads) -> None:
    _die_with_parent()
    from llmops_training.ml.trainer import train

    try:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        if isinstance(examples, Path):
            from llmops_training.examples import read_examples

            examples = read_examples(examples)
        result = train(
            model_dir, examples, spec, output_dir, resume_from=resume_from, hooks=_Relay(connection, stop, pause)
        )
    except TrainingError as exc:
        connection.send(("error", True, str(exc)))
    except BaseException as exc:
        connection.send(("error", False, repr(exc), traceback.format_exc()))
    else:
        connection.send(("result", result))
    finally:
        connection.close()
