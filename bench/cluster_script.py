"""scripts/cluster as a module, for the benches that run on the local cluster.

Why not a copy: `scripts/cluster up|down` is how an operator starts and stops the
loopback cluster (Redis, PostgreSQL, origins, edges, nginx, every PID recorded), and a
bench that starts it otherwise would rehearse something else. The script has no `.py`
suffix (it is a command), so it is loaded by path.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cluster"


def load_cluster() -> ModuleType:
    """The script's module: `up(args)`, `down(args)`, `Cluster`, `start_time(pid)` ..."""
    loader = importlib.machinery.SourceFileLoader("townhall_cluster_script", str(CLUSTER_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
