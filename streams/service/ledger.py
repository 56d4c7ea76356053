"""State keys of the router's tables (the budget ledger itself is router_core.budget.BudgetLedger).

State keys start with the input partition that owns them (``"<partition>/<name>"``), so
each partition owns its decisions and its budget share B_i / P.
"""

from __future__ import annotations


def state_key(partition: int, name: str) -> str:
    """Key of a state entry owned by input ``partition``."""
    return f"{partition}/{name}"


def key_partition(key: str) -> int:
    """The input partition that owns state key ``key``."""
    return int(key.split("/", 1)[0])
