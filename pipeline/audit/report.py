"""Render what the replay rebuilt: plain dicts first (the JSON), then text, CSV and HTML.

The HTML is one file with inline CSS and no script or link to anywhere, so an auditor can
attach it to a working paper and open it offline years later.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from pipeline.audit.replay import PAYMENTS, STATES, AuditState, Lookups, iso

ENCUMBRANCES = ("provisional_seizure", "injunction", "auction", "mortgage")


def property_report(state: AuditState, key: str) -> dict[str, Any]:
    """The register of one parcel (표제부, 갑구, 을구) as the events wrote it."""
    p = state.parcel(key)
    if p is None:
        raise LookupError(f"no parcel {key!r} in the events up to block {state.head}")
    history = [e.to_dict() for e in [*p.gapgu, *p.eulgu]]
    return {
        "parcel_id": p.parcel_id,
        "number": p.number,
        "address": p.address,
        "area_m2": p.area_m2_x100 / 100,
        "land_use": p.land_use,
        "owner": p.owner,
        "blocked": p.blocked,
        "encumbrances": [e for e in history if e["active"] and e["kind"] in ENCUMBRANCES],
        "history": history,
        "deals": [{"deal_id": d, "state": STATES[state.deals[d].state]} for d in p.deals],
        "head": state.head,
    }


def _deals_per_tx(state: AuditState, txs: set[str]) -> dict[str, int]:
    """For each of `txs`, how many deals have a step in it."""
    deals: dict[str, set[int]] = {tx: set() for tx in txs}
    for deal_id, deal in state.deals.items():
        for step in deal.steps:
            if step.tx in deals:
                deals[step.tx].add(deal_id)
    return {tx: len(found) for tx, found in deals.items()}


def deal_report(state: AuditState, deal_id: int, lookups: Lookups | None) -> dict[str, Any]:
    """Every step of a deal: who acted (address and role), amounts, tx, block, time and gas.

    Without `lookups` the tx sender, gas and block time are left out (they are not in the
    events; a snapshot comparison does not need them)."""
    d = state.deals.get(deal_id)
    if d is None:
        raise LookupError(f"no deal {deal_id} in the events up to block {state.head}")
    if lookups is not None:
        lookups.prefetch([s.block for s in d.steps], [s.tx for s in d.steps])
    carried = _deals_per_tx(state, {s.tx for s in d.steps})
    steps = []
    gas_seen: set[str] = set()
    for s in d.steps:
        row: dict[str, Any] = {
            "step": s.step,
            "contract": s.contract,
            "actor": s.actor,
            "actor_role": d.role_of(s.actor),
            "details": s.details,
            "tx": s.tx,
            "block": s.block,
            "log_index": s.log_index,
            # how many deals' steps the transaction carried: more than 1 for a batch call
            # (settleMany, payMany, ...), whose gas the deals share
            "batch_deals": carried[s.tx],
        }
        if lookups is not None:
            sender, gas = lookups.tx(s.tx)
            row["time"] = iso(lookups.block_time(s.block))
            row["by"] = sender
            row["by_role"] = d.role_of(sender) or ", ".join(state.roles_of(sender)) if sender else None
            row["gas"] = gas
            row["gas_counted"] = s.tx not in gas_seen  # one tx may hold several steps
            gas_seen.add(s.tx)
        steps.append(row)
    flows = [
        {
            "kind": f.kind,
            "from": _name(d, state, f.source),
            "to": _name(d, state, f.target),
            "from_address": f.source,
            "to_address": f.target,
            "amount": f.amount,
            "tx": f.tx,
            "block": f.block,
            "step": f.step,
        }
        for f in d.flows
    ]
    report: dict[str, Any] = {
        "deal_id": deal_id,
        "parcel_id": d.parcel_id,
        "state": STATES[d.state],
        "broker": d.broker,
        "terms": d.terms,
        "paid": dict(zip(PAYMENTS, d.paid, strict=True)),
        "held": d.held,
        "steps": steps,
        "money_flows": flows,
        "head": state.head,
    }
    if lookups is not None:
        report["gas_total"] = sum(s["gas"] or 0 for s in steps if s["gas_counted"])
    loan = state.loans.get(deal_id)
    if loan is not None:
        report["loan"] = {
            "lender": loan.lender,
            "status": loan.status,
            "approved": loan.approved_amount,
            "max_secured": loan.max_secured,
            "mortgage_entry": loan.mortgage_entry,
        }
    return report


def _name(d: Any, state: AuditState, address: str) -> str:
    if address == "escrow":
        return "escrow (claimable)"
    role = d.role_of(address)
    if role:
        return role
    for name, a in state.addresses.items():
        if a.lower() == address.lower():
            return name
    return "mint" if address == "0x" + "00" * 20 else address


# ---------------------------------------------------------------------- text


def property_text(r: dict[str, Any]) -> str:
    lines = [
        f"표제부  {r['number']}  {r['address']}  {r['area_m2']} m²  {r['land_use']}  ({r['parcel_id']})",
        f"owner   {r['owner']}" + ("   BLOCKED" if r["blocked"] else ""),
        f"active encumbrances: {len(r['encumbrances'])}",
    ]
    for section, title in (("gapgu", "갑구 (ownership)"), ("eulgu", "을구 (rights)")):
        lines.append(title)
        for e in (e for e in r["history"] if e["section"] == section):
            mark = " " if e["active"] else "x"
            extra = f" ref={e['ref']}" if e["ref"] is not None else ""
            lines.append(
                f"  [{mark}] {e['index']:>3} {e['kind']:<19} {e['holder'] or '-':<42} {e['amount']:>15,}"
                f"{extra}  {e['receipt']}  {e['time']}  block {e['block']}  tx {e['tx']}"
            )
    if r["deals"]:
        lines.append("deals: " + ", ".join(f"{d['deal_id']} ({d['state']})" for d in r["deals"]))
    return "\n".join(lines)


def deal_text(r: dict[str, Any]) -> str:
    t = r["terms"]
    lines = [
        f"deal {r['deal_id']}  {r['state']}  parcel {r['parcel_id']}",
        f"  seller {t['seller']}  buyer {t['buyer']}  broker {r['broker']}",
        f"  price {t['price']:,}  deposit {t['deposit']:,}  interim {t['interim']:,}"
        f"  balance {t['balance']:,}  loan {t['loanAmount']:,}  held now {r['held']:,}",
        "steps:",
    ]
    for s in r["steps"]:
        amounts = ", ".join(
            f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in s["details"].items()
        )
        who = f"{s.get('by') or s['actor'] or '-'} ({s.get('by_role') or s['actor_role'] or '-'})"
        gas = f" gas {s['gas']:,}" if s.get("gas") is not None and s.get("gas_counted") else ""
        if s["batch_deals"] > 1:
            gas += f" (a batch of {s['batch_deals']} deals)"
        lines.append(
            f"  {s.get('time') or '':20} block {s['block']:>6} {s['step']:<22} {who}  {amounts}{gas}"
            f"  tx {s['tx']}"
        )
    lines.append("money:")
    for f in r["money_flows"]:
        lines.append(
            f"  {f['kind']:<8} {f['from']:<22} -> {f['to']:<22} {f['amount']:>15,}"
            f"  ({f['step']}, tx {f['tx']})"
        )
    if "gas_total" in r:
        lines.append(f"gas total {r['gas_total']:,}")
    return "\n".join(lines)


def verify_text(result: dict[str, Any]) -> str:
    head = "CONSISTENT" if result["consistent"] else f"{len(result['mismatches'])} MISMATCH(ES)"
    lines = [
        f"{head}: {result['events']} events, {result['parcels']} parcels, {result['deals']} deals "
        f"up to block {result['head']}; checked {result['checked']}"
    ]
    for m in result["mismatches"]:
        lines.append("  " + json.dumps(m, ensure_ascii=False, default=str))
    return "\n".join(lines)


# ---------------------------------------------------------------------- CSV / HTML


def tables_of(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The report's tables, flat (one CSV file each)."""
    if "deal_id" in report:
        steps = [
            {**{k: v for k, v in s.items() if k != "details"}, "details": json.dumps(s["details"])}
            for s in report["steps"]
        ]
        tables: dict[str, list[dict[str, Any]]] = {"steps": steps, "money_flows": report["money_flows"]}
        if "title" in report:
            tables["title_history"] = report["title"]["history"]
        return tables
    return {"title_history": report["history"], "deals": report["deals"]}


def write_csv(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rows in tables_of(report).items():
        path = folder / f"{name}.csv"
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns or ["empty"])
            writer.writeheader()
            writer.writerows(rows)
        files.append(path)
    return files


_CSS = """
body{font-family:system-ui,-apple-system,'Noto Sans KR',sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.inactive td{color:#999;text-decoration:line-through}code{font-size:.9em}
.meta{color:#555}
"""


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{html.escape(str(value if value is not None else '-'))}</td>"
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, dict):
        return "<td>" + html.escape(", ".join(f"{k}={v}" for k, v in value.items())) + "</td>"
    text = str(value)
    if text.startswith("0x") and len(text) > 20:
        short = f"{text[:10]}…{text[-6:]}"
        return f'<td><code title="{html.escape(text)}">{html.escape(short)}</code></td>'
    return f"<td>{html.escape(text)}</td>"


def _table(rows: list[dict[str, Any]], columns: list[str], css_row: Any = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = f' class="{css_row(row)}"' if css_row and css_row(row) else ""
        body.append(f"<tr{cls}>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>")
    rows_html = "".join(body) or "<tr><td>none</td></tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: deal timeline, the parcel's title history, money-flow table."""
    title_report = report.get("title", report if "history" in report else None)
    parts: list[str] = []
    if "deal_id" in report:
        t = report["terms"]
        heading = f"Deal {report['deal_id']} — {report['state']}"
        parts.append(
            f'<p class="meta">parcel <code>{html.escape(report["parcel_id"])}</code>, '
            f"price {t['price']:,} won, "
            f"seller <code>{html.escape(t['seller'])}</code>, buyer <code>{html.escape(t['buyer'])}</code>, "
            f"held in escrow now {report['held']:,} won, up to block {report['head']}</p>"
        )
        parts.append("<h2>Timeline</h2>")
        parts.append(
            _table(
                report["steps"],
                [
                    "time",
                    "block",
                    "step",
                    "contract",
                    "by",
                    "by_role",
                    "actor",
                    "actor_role",
                    "details",
                    "gas",
                    "batch_deals",
                    "tx",
                ],
            )
        )
        parts.append("<h2>Money flow</h2>")
        parts.append(_table(report["money_flows"], ["step", "kind", "from", "to", "amount", "block", "tx"]))
    else:
        heading = f"Parcel {report['number']}"
    if title_report is not None:
        r = title_report
        parts.append("<h2>Title history (표제부 · 갑구 · 을구)</h2>")
        parts.append(
            f'<p class="meta">{html.escape(r["number"])} · {html.escape(r["address"])} · {r["area_m2"]} m² · '
            f"{html.escape(r['land_use'])} · owner <code>{html.escape(r['owner'])}</code>"
            f"{' · BLOCKED' if r['blocked'] else ''} · {len(r['encumbrances'])} active encumbrance(s)</p>"
        )
        parts.append(
            _table(
                r["history"],
                [
                    "section",
                    "index",
                    "kind",
                    "holder",
                    "debtor",
                    "amount",
                    "rank",
                    "ref",
                    "active",
                    "receipt",
                    "time",
                    "block",
                    "tx",
                ],
                lambda row: "" if row["active"] else "inactive",
            )
        )
        if "deal_id" not in report:
            parts.append("<h2>Deals on this parcel</h2>")
            parts.append(_table(r["deals"], ["deal_id", "state"]))
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(heading)}</h1>{''.join(parts)}"
        '<p class="meta">Rebuilt from chain events by deedchain audit.</p></body></html>'
    )
