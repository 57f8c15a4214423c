"""Every write about a session goes through here, by concern:

- `requests`: what is *wanted* (the API and the admin: create, start, stop, restart, log out,
  migrate, delete); `pairing`: a pairing code, asked of the owning worker and waited for;
- `presence`: contacts' presence and blocklist changes, as the owning worker hears them;
- `status`: what is *true* (the owning worker: status changes, failures);
- `lease`: the lease protocol; `fence`: the fence every write of a worker goes through;
- `snapshots`: the encrypted auth-state snapshots; `qr`: the current QR and pairing codes;
- `usage`: the daily `usage.report` of each session (any worker, once per day).

The names below are the app's door; import them from here.
"""

from sessions_app.services.fence import LeaseLost, fenced, fenced_lock, fenced_update
from sessions_app.services.lease import (
    Lease,
    session_delete_owned,
    session_forget_auth,
    session_lease,
    session_lease_held,
    session_release,
    session_request_done,
    sessions_claim,
    sessions_of_lost_workers,
    sessions_owned,
    sessions_release_all,
    sessions_renew,
)
from sessions_app.services.pairing import (
    E164,
    NotLinking,
    PairCodeRateLimited,
    PairCodeUnavailable,
    session_pair_code,
)
from sessions_app.services.presence import blocklist_announce, presence_announce
from sessions_app.services.requests import (
    NoWorkerAvailable,
    SessionBeingDeleted,
    session_create,
    session_delete,
    session_request_logout,
    session_request_migrate,
    session_request_restart,
    session_request_start,
    session_request_stop,
)
from sessions_app.services.status import IllegalTransition, session_fail, session_set_status
from sessions_app.services.usage import UsageReports, usage_report_due_day, usage_reports_send

__all__ = [
    "E164",
    "IllegalTransition",
    "Lease",
    "LeaseLost",
    "NoWorkerAvailable",
    "NotLinking",
    "PairCodeRateLimited",
    "PairCodeUnavailable",
    "SessionBeingDeleted",
    "UsageReports",
    "blocklist_announce",
    "fenced",
    "fenced_lock",
    "fenced_update",
    "presence_announce",
    "session_create",
    "session_delete",
    "session_delete_owned",
    "session_fail",
    "session_forget_auth",
    "session_lease",
    "session_lease_held",
    "session_pair_code",
    "session_release",
    "session_request_done",
    "session_request_logout",
    "session_request_migrate",
    "session_request_restart",
    "session_request_start",
    "session_request_stop",
    "session_set_status",
    "sessions_claim",
    "sessions_of_lost_workers",
    "sessions_owned",
    "sessions_release_all",
    "sessions_renew",
    "usage_report_due_day",
    "usage_reports_send",
]
