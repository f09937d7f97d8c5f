"""Only services/bpnt/ledger.py writes BPNT money: wallets (`BpntWallet`, `bpnt_wallets`)
and ledger entries (`LedgerEntry`, `ledger_entries`), in the ORM, in Core or in raw SQL.

Every other module reads them at most; a new way to move money goes into the ledger
module, next to the rules it must keep (see its docstring).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCHED = ("bot", "tg", "services", "infra", "sandbox", "models")
WRITER = "services/bpnt/ledger.py"
# Still writing until the lead switches its call to `ledger.bulk_credit` (switched by the
# lead after the imports split: then this set is empty).
KNOWN_EXCEPTIONS: set[str] = set()

MODELS = r"(?:BpntWallet|LedgerEntry)"
TABLES = r"(?:bpnt_wallets|ledger_entries)"
WRITES = {
    "DML on the model": re.compile(rf"\b(?:insert|update|delete|upsert)\(\s*{MODELS}\b"),
    "a new row": re.compile(rf"(?<!class )(?<![\w.]){MODELS}\("),
    "its Core table": re.compile(rf"\b{MODELS}\.__table__\b"),
    "its table name": re.compile(rf"\b{MODELS}\.__tablename__\b"),
    "raw SQL": re.compile(
        rf"\b(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?)\s+{TABLES}\b",
        re.IGNORECASE,
    ),
}
# Wallet columns that only the ledger sets on a loaded wallet (`wallet.frozen = True`).
FLAGS = {"frozen", "kks_count", "kks_month"}
WALLET_FIELDS = FLAGS | {"balance", "locked"}


def _attribute_writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        for target in targets:
            if not isinstance(target, ast.Attribute) or target.attr not in WALLET_FIELDS:
                continue
            owner = ast.unparse(target.value).lower()
            if target.attr in FLAGS or "wallet" in owner:
                found.append((node.lineno, f"sets {ast.unparse(target)}"))
    return found


def money_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) of every place `source` writes wallets or ledger entries."""
    found = [
        (number, what)
        for number, line in enumerate(source.splitlines(), 1)
        for what, pattern in WRITES.items()
        if pattern.search(line)
    ]
    return sorted(found + _attribute_writes(ast.parse(source)))


def _sources() -> list[Path]:
    return sorted(
        path
        for package in SEARCHED
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_the_scan_finds_each_way_of_writing_money() -> None:
    """The patterns are not vacuous: each spelling of a write is found."""
    samples = [
        "session.add(LedgerEntry(kind=kind))",
        "wallet = BpntWallet(beneficiary_id=1)",
        "await session.execute(update(BpntWallet).values(balance=0))",
        "statement = insert(LedgerEntry.__table__)",
        "table = BpntWallet.__table__",
        "sql = f'UPDATE {BpntWallet.__tablename__} SET balance = 0'",
        "sql = 'update bpnt_wallets set balance = 0'",
        "sql = 'INSERT INTO ledger_entries (kind) VALUES (1)'",
        "sql = 'DELETE FROM  bpnt_wallets'",
        "wallet.frozen = True",
        "found.kks_count += 1",
        "my_wallet.balance = 5",
    ]
    for sample in samples:
        assert money_writes(sample), sample
    reads = [
        "from models import BpntWallet, LedgerEntry",
        "select(LedgerEntry).where(LedgerEntry.kind == kind)",
        "class BpntWallet(Base): ...",
        "def view(entry: LedgerEntry) -> str: ...",
        "status.balance = 5",
        "sql = 'SELECT balance FROM bpnt_wallets'",
    ]
    for sample in reads:
        assert not money_writes(sample), sample


def test_only_the_ledger_module_writes_wallets_and_ledger_entries() -> None:
    found = {}
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        if name == WRITER or name == "models/ledger.py":  # the writer; the table definitions
            continue
        if writes := money_writes(path.read_text(encoding="utf-8")):
            found[name] = writes
    assert set(found) <= KNOWN_EXCEPTIONS, found


def test_the_ledger_module_is_where_the_writes_are() -> None:
    """The writer itself is found by the same scan (it is the one place, not no place)."""
    assert money_writes((ROOT / WRITER).read_text(encoding="utf-8"))
