"""agentperf-native: how many concurrent coding agents an inference deployment serves at a usable speed.

Public API: :class:`Engine` (the native replay engine), :class:`SimServer` (the built-in simulated
server), the workload types and loader, :func:`run_phase` for one fixed-concurrency phase, and
:func:`measure` / :class:`WindowMeter`, the one function that turns a window of records into numbers.
"""

__version__ = "0.1.0"

from .endpoint import Endpoint  # noqa: E402
from .engine import ERROR_KINDS, RECORD_DTYPE, Engine, Snapshot, now_ns  # noqa: E402
from .measure import WindowMeter, WindowStats, measure  # noqa: E402
from .probe import PhaseRules, run_phase  # noqa: E402
from .results import Probe, read_records  # noqa: E402
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
    "Conversation", "ERROR_KINDS", "EncodedWorkload", "Endpoint", "Engine", "PhaseRules", "Probe", "RECORD_DTYPE",
    "RequestPolicy", "SimServer", "Snapshot", "Turn", "WindowMeter", "WindowStats", "WorkloadError", "bundled_path",
    "encode", "load_conversations", "measure", "now_ns", "read_records", "run_phase",
]
