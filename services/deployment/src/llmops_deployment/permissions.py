"""What each route of the deployment service asks of its caller (admins hold every permission)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from llmops.auth import Permission, ProjectScope, Role, in_project

WRITE = Permission("deployment.write", {Role.ML_ENGINEER})
READ = Permission("deployment.read", {Role.ML_ENGINEER, Role.VIEWER})
#: Calling models through the gateway with a platform token (API keys hold it for their project).
INFER = Permission("deployment.infer", {Role.ML_ENGINEER, Role.VIEWER})
#: Deploying a version whose gates are missing or failed: admins only.
OVERRIDE = Permission("deployment.gate.override", set())

Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
