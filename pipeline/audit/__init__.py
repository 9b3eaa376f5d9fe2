"""The auditors' explorer: rebuild the register and every deal from chain events, read-only.

- `source`  connects without keys (`AuditChain`) and pins the block the audit reads up to;
- `replay`  folds events in chain order into plain state (`Replayer`, `AuditState`);
- `verify`  compares that state with the contracts' views, the registry's own records and
  archived snapshots (`verify`);
- `report`  renders text, JSON, CSV folders and one self-contained HTML file.
"""
