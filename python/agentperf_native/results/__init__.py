"""A run's results directory: the schema (``schema``), the JSON files (``files``) and the request
records file (``records``). ``report`` reads what these write."""

from .files import base_manifest, machine_info, write_json
from .records import RecordFile, read_records
from .schema import Probe, Summary, TierResult, Validity, from_dict, validity_of

__all__ = ["Probe", "RecordFile", "Summary", "TierResult", "Validity", "base_manifest", "from_dict",
           "machine_info", "read_records", "validity_of", "write_json"]
