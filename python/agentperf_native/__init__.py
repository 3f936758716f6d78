"""agentperf-native: how many concurrent coding agents an inference deployment serves at a usable speed.

Public API: :class:`Engine` (the native replay engine), :class:`SimServer` (the built-in simulated
server), the workload types and loader, and :func:`run_phase` / :func:`summarize` for one
fixed-concurrency phase.
"""

__version__ = "0.1.0"

from .endpoint import Endpoint  # noqa: E402
from .engine import ERROR_KINDS, RECORD_DTYPE, Engine, Snapshot, now_ns  # noqa: E402
from .phase import PhaseSummary, run_phase, summarize  # noqa: E402
from .sim.server import SimServer  # noqa: E402
from .workload import (  # noqa: E402
    Conversation,
    EncodedWorkload,
    RequestPolicy,
    Turn,
    WorkloadError,
    bundled_path,
    encode,
    load_conversations,
)

__all__ = [
    "Conversation", "ERROR_KINDS", "EncodedWorkload", "Endpoint", "Engine", "PhaseSummary", "RECORD_DTYPE", "RequestPolicy",
    "SimServer", "Snapshot", "Turn", "WorkloadError", "bundled_path", "encode", "load_conversations", "now_ns",
    "run_phase", "summarize",
]
