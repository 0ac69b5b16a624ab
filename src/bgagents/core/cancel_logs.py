"""A cancel is one INFO line: DBOS's own records about a workflow bgagents cancelled on purpose are dropped.

DBOS reports such a workflow as a warning for the step it interrupted, another for the outcome it
could not record, and an ERROR with a traceback for the cancelled workflow it awaited; none of them
is a fault, and the runtime logs the cancel itself. Records about any other workflow pass untouched.
(Only the runtime cancels DBOS workflows, so a cancelled-workflow error is never a fault either, even
for a workflow another process cancelled.) A stop interrupts the running turns on purpose too: once the
runtime stops, DBOS's warning for each task it interrupts is dropped (the runtime logs each stopped task).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from dbos import DBOS
from dbos._error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

DBOS_LOGGER = "dbos"
KEEP = 1000  # workflow ids remembered; a cancel's records arrive within seconds of it
INTERRUPTED = "Asyncio task cancelled for workflow or step"  # DBOS's warning for an interrupted task


class CancelledWorkflows(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.draining = False  # set as the runtime stops: what DBOS says of the turns it interrupts is expected

    def add(self, workflow_id: str) -> None:
        self._ids[workflow_id] = None
        while len(self._ids) > KEEP:
            self._ids.popitem(last=False)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError)):
            return False  # only the runtime cancels workflows (a person, a kill, an expiry): never a fault
        message = record.getMessage()
        if self._mentions(message) or (self.draining and message.startswith(INTERRUPTED)):
            return False
        try:  # a step interrupted inside the workflow: the record is made in the workflow's own context
            current = DBOS.workflow_id
        except Exception:
            current = None
        return current not in self._ids

    def _mentions(self, text: str) -> bool:
        return any(workflow_id in text for workflow_id in reversed(self._ids))

    def install(self) -> None:
        logging.getLogger(DBOS_LOGGER).addFilter(self)

    def uninstall(self) -> None:
        logging.getLogger(DBOS_LOGGER).removeFilter(self)
