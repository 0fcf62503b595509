"""Stream workers: more live listeners per node than one process can hold.

``Supervisor`` (in the server process) runs N workers; each worker
(``townhall.edge.worker``) shares the stream port through SO_REUSEPORT, checks
tickets by HMAC alone, relays each space's program from the origin once and
fans it out with the same ``LiveFanout`` the origin uses. The origin's side is
two internal routes in ``townhall.api.live``, guarded by relay tokens; the answer
to each count report carries who was removed from the spaces a worker serves
(``townhall.edge.removals``), so removals reach the workers within a second.

Only the light, pure parts are exported here; the supervisor is
``townhall.edge.supervisor.Supervisor`` (importing it pulls in the worker).
"""

from townhall.edge.limits import raise_open_file_limit
from townhall.edge.relay_token import RelayRefused, check_relay_token, issue_relay_token
from townhall.edge.removals import RemovalsRefused, parse_removed, removed_answer
from townhall.edge.reports import ListenerReports, ReportRefused, parse_counts

__all__ = [
    "ListenerReports",
    "RelayRefused",
    "RemovalsRefused",
    "ReportRefused",
    "check_relay_token",
    "issue_relay_token",
    "parse_counts",
    "parse_removed",
    "raise_open_file_limit",
    "removed_answer",
]
