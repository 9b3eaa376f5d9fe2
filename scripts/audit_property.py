"""Audit: a parcel's register rebuilt from chain events.

python scripts/audit_property.py --help      (same as `deedchain audit property`)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.audit.commands import script_main

if __name__ == "__main__":
    sys.exit(script_main("property"))
