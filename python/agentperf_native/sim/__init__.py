"""The built-in simulated inference server: the native server (``server``), its named
configurations (``presets``) and the closed form of its capacity (``closed_form``).
See ``SIMULATOR.md`` beside this file."""

from .presets import DEFAULT_EMBEDDED_PRESET, PRESETS, BatchingParams, get_preset
from .server import SimServer, embedded_server

__all__ = ["BatchingParams", "DEFAULT_EMBEDDED_PRESET", "PRESETS", "SimServer", "embedded_server", "get_preset"]
