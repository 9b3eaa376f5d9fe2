"""Audit: every step of a deal from chain events.

python scripts/audit_deal.py --help      (same as `deedchain audit deal`)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.audit.commands import script_main

if __name__ == "__main__":
    sys.exit(script_main("deal"))
