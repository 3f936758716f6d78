"""The client measuring itself: ``agentperf-native microbench`` and the benchmarks built on it.

- :mod:`.cpu`: the one CPU / memory accounting method (per thread, /proc schedstat);
- :mod:`.server`: the null server in its own process, with its stamps;
- :mod:`.clients`: one measured run of the engine or the baseline reader;
- :mod:`.bench`: a whole microbenchmark (runs, comparison, sweep);
- :mod:`.report`: summary, JSON, plot.
"""

from .bench import Options, run
from .server import NullModel, ServerProcess

__all__ = ["NullModel", "Options", "ServerProcess", "run"]
