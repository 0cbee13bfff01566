"""lambdamesh sidecar: keeps one ECS task registered in the lambdamesh registry while it lives.

Standard library only, so the image stays a plain Python base with nothing to patch.
"""

from __future__ import annotations

__version__ = "0.1.0"
