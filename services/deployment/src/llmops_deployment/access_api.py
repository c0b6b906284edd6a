"""HTTP routes of the deployment service for traffic: routes, API keys, limits and budgets."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/projects/{project}", tags=["deployment"])
