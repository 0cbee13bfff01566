"""The ranges the registry holds an instance's weight and lease to. The sidecar checks its own
settings by them, so a weight or lease the registry would refuse stops it at start-up rather
than as a 400 it would keep retrying.
"""

from __future__ import annotations

MIN_WEIGHT = 1
MAX_WEIGHT = 1000
MIN_LEASE_SECONDS = 5
MAX_LEASE_SECONDS = 300
