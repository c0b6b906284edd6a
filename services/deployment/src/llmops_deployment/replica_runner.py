"""Serving one claimed replica: its files, its backend process (started, checked, supervised, restarted with
backoff after a crash), and its reports (``deployment.ready``, ``restarted``, ``failed``, ``stopped``), each written
with the replica's row in one transaction, only while this worker still holds the replica's lease.

A replica ends in one of four ways: its deployment is stopped (the replica is marked ``stopping`` so the gateway
stops sending it requests, in-flight ones drain, then the backend is stopped); it fails (more than ``max_restarts``
crashes in a row, counting starts that never got healthy); its worker stops (the backend is stopped and the replica
handed back, pending, for another worker); or the lease is lost (the backend is killed, nothing is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import AsyncInferenceClient
from sqlalchemy.engine import Row

from llmops.bus import add_to_outbox
from llmops.logging import get_logger
from llmops.runtime import Runtime
from llmops_deployment import artifacts, backend_process, repository
from llmops_deployment.artifacts import ArtifactError, ModelFiles
from llmops_deployment.backends import Backend, backend_for
from llmops_deployment.leases import Claim, Lease
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import new_event
from llmops_schemas.events.deployments import (
    MAX_LOG_TAIL,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRestarted,
    DeploymentStopped,
)

log = get_logger(__name__)

#: A backend that served this long since its last start has its crash count reset.
HEALTHY_RESET_SECONDS = 60.0
#: How long a stopped backend has after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10.0
#: Backend log lines are written to the database this often.
LOG_FLUSH_SECONDS = 1.0
HEALTH_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Exited:
    """The backend ended (or never got healthy): why, and its exit code when it died."""

    reason: str
    exit_code: int | None = None
    served: bool = False  # it had been ready


class ReplicaRunner:
    """Serves one claimed replica until it is stopped, fails, is handed back or lost: ``await runner.run()``."""

    def __init__(
        self, settings: DeploymentSettings, runtime: Runtime, worker: str, cache_dir: Path, claim: Claim, since: float
    ) -> None:
        #: Called each time the replica becomes ready (the worker ends its span for the claim with it).
        self.on_ready: Callable[[], object] = lambda: None
        self.settings, self.runtime, self.worker, self.cache_dir, self.claim = (
            settings,
            runtime,
            worker,
            cache_dir,
            claim,
        )
        self.lease = Lease(
            runtime.db,
            claim.deployment_id,
            claim.replica,
            worker,
            settings.lease_seconds,
            self._renewed,
            since=since,
        )
        self.logs: deque[str] = deque(maxlen=settings.log_lines)
        self._unwritten: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task | None = None
        # what ends serving, set from the lease, the worker or the consumer
        self.stop_requested = asyncio.Event()
        self.lost = asyncio.Event()
        self.handing_over = asyncio.Event()
        self._interrupted = asyncio.Event()
        self.endpoint: str | None = None

    # -- what the worker and the lease tell it -------------------------------------------------------------------
    def hand_over(self) -> None:
        """The worker is stopping: stop the backend and hand the replica back."""
        self.handing_over.set()
        self._interrupted.set()

    def check_status(self) -> None:
        """Look at the deployment's status now (a stop was requested)."""
        self.lease.check_now.set()

    def _renewed(self, row: Row) -> None:
        if row.d_status in ("stopping", "stopped"):
            self.stop_requested.set()
            self._interrupted.set()

    def _interruption(self) -> str | None:
        if self.lost.is_set():
            return "lost"
        if self.handing_over.is_set():
            return "handover"
        if self.stop_requested.is_set():
            return "stop"
        return None

    # -- the replica's life ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        lease = asyncio.create_task(self._hold(), name=f"lease-{self.claim.deployment_id}-{self.claim.replica}")
        writer = asyncio.create_task(self._write_logs(), name=f"logs-{self.claim.deployment_id}")
        try:
            await self._serve()
        except Exception:
            log.exception("deployment.replica.crashed", deployment_id=self.claim.deployment_id)
        finally:
            await self._terminate(kill=self.lost.is_set())
            for task in (lease, writer):
                task.cancel()
            await asyncio.gather(lease, writer, return_exceptions=True)
            await self._flush_logs()

    async def _hold(self) -> None:
        await self.lease.hold()
        self.lost.set()
        self._interrupted.set()

    async def _serve(self) -> None:
        claim = self.claim
        if claim.status in ("stopping", "stopped"):
            await self._stopped()
            return
        try:
            backend, files = await self._prepare()
        except (ArtifactError, ValueError) as exc:
            await self._fail(str(exc))
            return
        restarts, host = 0, self.settings.backend_host
        while True:
            port = backend_process.free_port(host) if backend.command(files, host, 0) is not None else 0
            outcome = await self._start(backend, files, port)
            served_since = time.monotonic()
            if outcome is None:
                outcome = await self._serve_ready(backend, files, port, restarts)
            if not isinstance(outcome, Exited):
                await self._end(outcome, port)
                return
            await self._terminate()
            if outcome.served and time.monotonic() - served_since >= HEALTHY_RESET_SECONDS:
                restarts = 0
            restarts += 1
            if restarts > self.settings.max_restarts:
                await self._fail(f"{outcome.reason} ({restarts} times in a row)")
                return
            backoff = min(
                self.settings.restart_backoff_seconds * 2 ** (restarts - 1), self.settings.restart_backoff_max_seconds
            )
            if not await self._restarted(restarts, outcome, backoff):
                return
            if (why := await self._wait_interrupt(backoff)) is not None:
                await self._end(why, port)
                return

    async def _end(self, why: str, port: int) -> None:
        """Serving ends for ``why``: stop (drain first), hand the replica back, or (lost) just leave."""
        if why == "stop":
            await self._stop(port)
        elif why == "handover":
            await self._terminate()
            await self._release()

    async def _prepare(self) -> tuple[Backend, ModelFiles]:
        claim, settings = self.claim, self.settings
        pool = settings.pools.get(claim.pool)
        backend = backend_for(claim.backend, settings, claim.external)
        if pool is None or claim.backend not in pool.backends:
            raise ValueError(f"pool {claim.pool!r} does not run the {claim.backend} backend")
        if backend.gpu and not pool.cuda:
            raise ValueError(f"the {claim.backend} backend needs a CUDA pool; {claim.pool!r} has none")
        if claim.backend == "external":
            return backend, ModelFiles(Path(), "")
        if claim.model is None:
            raise ValueError("the deployment names no model")
        files = await artifacts.model_files(self.runtime.store, claim.model, self.cache_dir, merged=backend.merges)
        return backend, files

    async def _start(self, backend: Backend, files: ModelFiles, port: int) -> Exited | str | None:
        """Start the backend and wait until it answers; None once it does, else why not."""
        host = self.settings.backend_host
        command = backend.command(files, host, port)
        if (why := self._interruption()) is not None:  # while the files were fetched
            return why
        if command is not None:
            await self._spawn(command, backend.env())
        deadline = time.monotonic() + self.settings.backend_start_timeout_seconds
        headers = _auth(backend.api_key())
        async with httpx.AsyncClient(timeout=5.0, headers=headers) as http:
            while True:
                if (why := self._interruption()) is not None:
                    return why
                if self._process is not None and self._process.returncode is not None:
                    return Exited("the backend exited at start", self._process.returncode)
                try:
                    if (await http.get(backend.health_url(host, port))).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    return Exited(
                        f"the backend did not answer its health check within "
                        f"{self.settings.backend_start_timeout_seconds:g} s"
                    )
                await self._wait_interrupt(HEALTH_POLL_SECONDS, process=True)
        try:
            await self._prove(backend.endpoint(host, port), backend.served_model(files), backend.api_key())
        except Exception as exc:
            return Exited(f"the backend's first chat completion failed: {exc!r}"[:1000])
        return None

    async def _prove(self, endpoint: str, model: str, api_key: str | None) -> None:
        """One real call as the readiness proof: a one-token chat completion."""
        client = AsyncInferenceClient(
            base_url=endpoint, api_key=api_key, timeout=self.settings.first_token_timeout_seconds
        )
        try:
            await client.chat_completion(messages=[{"role": "user", "content": "Hello"}], model=model, max_tokens=1)
        finally:
            await client.close()

    async def _serve_ready(self, backend: Backend, files: ModelFiles, port: int, restarts: int) -> Exited | str:
        host = self.settings.advertised_host or self.settings.backend_host
        self.endpoint = backend.endpoint(host, port)
        if not await self._ready(backend, files, restarts):
            return "lost"
        await self._wait_interrupt(None, process=True)
        if (why := self._interruption()) is not None:
            return why
        assert self._process is not None
        return Exited("the backend exited", self._process.returncode, served=True)

    # -- the backend process -------------------------------------------------------------------------------------
    async def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        log.info("deployment.backend.starting", deployment_id=self.claim.deployment_id, command=command[:3])
        self._process = await backend_process.spawn(command, env)
        self._pump = asyncio.create_task(backend_process.pump_lines(self._process, self._line))

    def _line(self, text: str) -> None:
        self.logs.append(text)
        self._unwritten.append(text)

    async def _wait_interrupt(self, seconds: float | None, *, process: bool = False) -> str | None:
        """Wait ``seconds`` (None: for ever), or until interrupted, or (``process``) the backend ends."""
        waits = [asyncio.ensure_future(self._interrupted.wait())]
        if process and self._process is not None:
            waits.append(asyncio.ensure_future(self._process.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._interruption()

    async def _terminate(self, *, kill: bool = False) -> None:
        """Stop the backend: SIGTERM to its process group, SIGKILL after a grace period (at once when ``kill``)."""
        process, self._process = self._process, None
        if process is not None:
            await backend_process.terminate(process, kill=kill, grace=STOP_GRACE_SECONDS)
            if self._pump is not None:
                await asyncio.gather(self._pump, return_exceptions=True)

    async def _drain(self, port: int) -> None:
        """Wait until the backend holds no established connection on its port, at most ``drain_timeout``."""
        deadline = time.monotonic() + self.settings.drain_timeout_seconds
        while time.monotonic() < deadline and not self.lost.is_set():
            if not await asyncio.to_thread(backend_process.has_connections, port):
                return
            await asyncio.sleep(0.2)
        log.warning("deployment.drain.timed_out", deployment_id=self.claim.deployment_id, port=port)

    # -- the reports -----------------------------------------------------------------------------------------------
    def _event(self, payload) -> Any:
        return new_event(
            payload,
            subject=self.claim.deployment_id,
            source=f"/llmops/deployment/worker/{self.settings.pool}",
            actor=f"worker:{self.worker}",
            project=self.claim.project,
            correlation_id=self.claim.correlation_id,
        )

    async def _report(self, payload, **replica: Any) -> bool:
        """Update the replica and its deployment and add ``payload`` to the outbox, in one transaction, while this
        worker still holds the lease; False (nothing written) once it does not."""
        claim = self.claim
        error = replica.pop("deployment_error", None)
        async with self.runtime.db.transaction() as session:
            if not await repository.holds_replica(session, claim.deployment_id, claim.replica, self.worker):
                self.lost.set()
                self._interrupted.set()
                return False
            await repository.update_replica(session, claim.deployment_id, claim.replica, **replica)
            await repository.settle_deployment_status(session, claim.deployment_id, error=error)
            if payload is not None:
                await add_to_outbox(session, self._event(payload))
        return True

    async def _ready(self, backend: Backend, files: ModelFiles, restarts: int) -> bool:
        claim = self.claim
        served = backend.served_model(files)
        model_hash = files.model_hash or None
        payload = DeploymentReady(
            deployment_id=claim.deployment_id,
            project=claim.project,
            replica=claim.replica,
            endpoint=self.endpoint,
            backend=claim.backend,
            served_model=served,
            model_version_id=claim.model_version_id,
            model_hash=model_hash,
            worker=self.worker,
            attempt=claim.attempt,
        )
        ready = await self._report(
            payload,
            status="ready",
            endpoint=self.endpoint,
            served_model=served,
            model_hash=model_hash,
            restarts=restarts,
            last_error=None,
        )
        if ready:
            log.info("deployment.replica.ready", deployment_id=claim.deployment_id, endpoint=self.endpoint)
            self.on_ready()
        return ready

    async def _restarted(self, restarts: int, exited: Exited, backoff: float) -> bool:
        claim = self.claim
        log.warning(
            "deployment.backend.exited",
            deployment_id=claim.deployment_id,
            reason=exited.reason,
            exit_code=exited.exit_code,
            restarts=restarts,
        )
        payload = DeploymentRestarted(
            deployment_id=claim.deployment_id,
            project=claim.project,
            replica=claim.replica,
            restarts=restarts,
            exit_code=exited.exit_code,
            backoff_seconds=backoff,
            worker=self.worker,
        )
        return await self._report(
            payload, status="restarting", endpoint=None, restarts=restarts, last_error=exited.reason[:2000]
        )

    async def _fail(self, reason: str) -> None:
        claim = self.claim
        log.warning("deployment.replica.failed", deployment_id=claim.deployment_id, reason=reason)
        payload = DeploymentFailed(
            deployment_id=claim.deployment_id,
            project=claim.project,
            replica=claim.replica,
            reason=reason[:2000],
            log_tail=self.log_tail(),
            worker=self.worker,
        )
        await self._report(
            payload,
            status="failed",
            endpoint=None,
            lease_until=None,
            last_error=reason[:2000],
            deployment_error=reason[:2000],
        )

    async def _stop(self, port: int) -> None:
        """Stop taking requests (the gateway's cache ages), drain the in-flight ones, stop the backend."""
        if self._process is not None and await self._report(None, status="stopping"):
            # the gateway's caches age meanwhile; a lost lease ends the wait (the replica is no longer ours)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), self.settings.gateway_cache_seconds)
            if not self.lost.is_set():
                await self._drain(port)
        await self._terminate()
        await self._stopped()

    async def _stopped(self) -> None:
        claim = self.claim
        payload = DeploymentStopped(
            deployment_id=claim.deployment_id, project=claim.project, replica=claim.replica, worker=self.worker
        )
        if await self._report(payload, status="stopped", endpoint=None, lease_until=None):
            log.info("deployment.replica.stopped", deployment_id=claim.deployment_id, replica=claim.replica)

    async def _release(self) -> None:
        claim = self.claim
        async with self.runtime.db.transaction() as session:
            await repository.release_replica(session, claim.deployment_id, claim.replica, self.worker)
            await repository.settle_deployment_status(session, claim.deployment_id)
        log.info("deployment.replica.handed_back", deployment_id=claim.deployment_id, replica=claim.replica)

    # -- the backend's log lines -----------------------------------------------------------------------------------
    def log_tail(self) -> str:
        return "\n".join(self.logs)[-MAX_LOG_TAIL:]

    async def _write_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            try:
                await self._flush_logs()
            except Exception as exc:  # the lines stay in the ring; the next flush tries again
                log.warning("deployment.logs.write_failed", deployment_id=self.claim.deployment_id, error=repr(exc))

    async def _flush_logs(self) -> None:
        lines, self._unwritten = self._unwritten, []
        if not lines:
            return
        try:
            async with self.runtime.db.transaction() as session:
                await repository.append_logs(
                    session, self.claim.deployment_id, self.claim.replica, lines, self.settings.log_lines
                )
        except Exception:
            self._unwritten = lines + self._unwritten
            raise


def _auth(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
