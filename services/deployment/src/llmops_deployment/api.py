"""HTTP routes of the deployment service: deployments (with the evaluation gate enforced) and lineage."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/projects/{project}", tags=["deployment"])
