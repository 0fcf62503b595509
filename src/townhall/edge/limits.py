"""Process limits every townhall process raises at start-up."""

from __future__ import annotations

import resource


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.

    Each listener is one socket, and the soft default (often 1,024) would refuse
    listeners long before the machine runs out of anything real. The hard limit is
    the operator's to set; we never try to pass it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
