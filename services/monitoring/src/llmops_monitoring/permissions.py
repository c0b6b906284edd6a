"""What each route of the monitoring service asks of its caller (admins hold every permission)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from llmops.auth import Permission, ProjectScope, Role, in_project

#: Alert rules, policies, drift baselines and reports on request.
WRITE = Permission("monitoring.write", {Role.ML_ENGINEER})
READ = Permission("monitoring.read", {Role.ML_ENGINEER, Role.VIEWER})
#: The records themselves (redacted or hashed text, users): not for viewers.
RECORDS = Permission("monitoring.records.read", {Role.ML_ENGINEER, Role.AUDITOR})

Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
RecordReader = Annotated[ProjectScope, Depends(in_project(RECORDS))]
