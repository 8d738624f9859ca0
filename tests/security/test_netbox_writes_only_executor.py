"""Only the executor writes to NetBox: a static scan of netops' source for NetBox write calls.

Every write must pass review, the executor's drift check and its rollback. The scan parses every
module of the product (``netops``, ``registry``, ``chat``, ``netboxrw``; not ``tests/`` nor
``bench/``, which build their own fixtures in throwaway NetBoxes) and finds calls of the client's
write methods on anything that holds a :class:`~netboxrw.client.NetBoxClient`:

* a parameter or variable annotated ``NetBoxClient`` (also ``NetBoxClient | None``);
* a name or ``self.<attribute>`` assigned from ``NetBoxClient(...)``, ``netbox_client()`` or another
  such name;
* ``netbox_client().create(...)`` directly.

pynetbox itself may only be imported by ``netboxrw/client.py`` (its ``Record.save()`` would write
around everything). Inside the client, no method other than the write primitives may call a write
(the removed ``ensure_*`` / ``assign_ip_to_interface`` helpers did, and nothing reviewed them).

Allowed writers, precisely: ``netboxrw/executor.py`` (the executor and its crash recovery) and
``purge`` in ``netboxrw/seed/reconcile.py`` — ``seed_netbox --purge`` bulk-deletes only objects that
carry the seeder's own ``netops-demo`` tag; the executor has no bulk delete yet (one ``DELETE`` per
object would take hours for a full demo network), so it writes directly, for now, alone.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from tests.support.processes import ROOT

PACKAGES = ("netops", "registry", "chat", "netboxrw")
WRITE_METHODS = frozenset(
    {"create", "bulk_create", "update", "bulk_update", "delete", "bulk_delete", "_request"}
)
CLIENT_MODULE = "netboxrw/client.py"
# module -> functions allowed to write ("*": the whole module)
ALLOWED: dict[str, set[str]] = {"netboxrw/executor.py": {"*"}, "netboxrw/seed/reconcile.py": {"purge"}}
CLIENT_FACTORIES = frozenset({"NetBoxClient", "netbox_client"})


@dataclass(frozen=True)
class Write:
    module: str
    function: str
    line: int
    call: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} in {self.function}(): {self.call}"


def _is_client_annotation(node: ast.expr | None) -> bool:
    if node is None:
        return False
    text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ast.unparse(node)
    return "NetBoxClient" in text


def _is_client_source(node: ast.expr, clients: set[str]) -> bool:
    """``NetBoxClient(...)``, ``netbox_client()`` or a name already known to hold a client."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in CLIENT_FACTORIES
    return ast.unparse(node) in clients


class _Scanner(ast.NodeVisitor):
    """Two passes over one module: collect client-holding names, then find their write calls."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.clients: set[str] = set()
        self.writes: list[Write] = []
        self.function = "<module>"

    def collect(self, tree: ast.AST) -> None:
        for _ in range(3):  # names assigned from names: a few rounds reach the fixed point
            for node in ast.walk(tree):
                if isinstance(node, ast.arg) and _is_client_annotation(node.annotation):
                    self.clients.add(node.arg)
                    self.clients.add(f"self.{node.arg}")  # the usual self.client = client
                elif isinstance(node, ast.AnnAssign) and _is_client_annotation(node.annotation):
                    self.clients.add(ast.unparse(node.target))
                elif isinstance(node, ast.Assign) and _is_client_source(node.value, self.clients):
                    self.clients.update(ast.unparse(target) for target in node.targets)
                elif isinstance(node, ast.NamedExpr) and _is_client_source(node.value, self.clients):
                    self.clients.add(ast.unparse(node.target))
                elif (
                    isinstance(node, ast.withitem)
                    and node.optional_vars is not None
                    and _is_client_source(node.context_expr, self.clients)
                ):
                    self.clients.add(ast.unparse(node.optional_vars))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in WRITE_METHODS
            and _is_client_source(func.value, self.clients)
        ):
            self.writes.append(Write(self.module, self.function, node.lineno, ast.unparse(node)[:120]))
        self.generic_visit(node)


def scan_source(module: str, source: str) -> list[Write]:
    tree = ast.parse(source)
    scanner = _Scanner(module)
    scanner.collect(tree)
    scanner.visit(tree)
    return scanner.writes


def product_modules() -> dict[str, str]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in relative:
                modules[relative] = path.read_text()
    return modules


def _allowed(write: Write) -> bool:
    functions = ALLOWED.get(write.module, set())
    return "*" in functions or write.function in functions


def test_no_module_but_the_executor_writes_to_netbox() -> None:
    writes = [w for module, source in product_modules().items() if module != CLIENT_MODULE
              for w in scan_source(module, source)]  # fmt: skip
    outside = [str(w) for w in writes if not _allowed(w)]
    assert outside == [], "NetBox writes outside the executor:\n" + "\n".join(outside)
    # The scan is not vacuous: it does see the executor's writes and the purge.
    assert {w.module for w in writes} >= {"netboxrw/executor.py"}
    assert any(w.module == "netboxrw/seed/reconcile.py" and w.function == "purge" for w in writes)


def test_the_client_has_no_writers_besides_its_primitives() -> None:
    """No ``ensure_*``-style helper composes writes inside the client, out of the executor's sight."""
    tree = ast.parse((ROOT / CLIENT_MODULE).read_text())
    client = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NetBoxClient")
    composing = []
    for method in client.body:
        if not isinstance(method, ast.FunctionDef) or method.name in WRITE_METHODS:
            continue
        for node in ast.walk(method):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITE_METHODS - {"_request"}
                and ast.unparse(node.func.value) == "self"
            ):
                composing.append(f"{method.name} -> self.{node.func.attr}()")
            if (  # a raw write request
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_request"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value != "GET"
            ):
                composing.append(f"{method.name} -> {node.args[0].value}")
    assert composing == []


def test_only_the_client_imports_pynetbox() -> None:
    importers = []
    for module, source in product_modules().items():
        for node in ast.walk(ast.parse(source)):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "pynetbox" for name in names) and module != CLIENT_MODULE:
                importers.append(module)
    assert importers == []


def test_the_scan_finds_writes_however_the_client_is_reached() -> None:
    source = """
from netboxrw.client import NetBoxClient
from netboxrw.config import netbox_client

def by_parameter(nb: NetBoxClient | None) -> None:
    nb.bulk_delete("dcim/sites", [1])

def by_factory() -> None:
    c = netbox_client()
    other = c
    other.update("dcim/sites", 1, {})
    netbox_client().create("dcim/sites", {})

class Holder:
    def __init__(self, client: "NetBoxClient") -> None:
        self.client = client

    def go(self) -> None:
        self.client.delete("dcim/sites", 1)

def not_netbox(model) -> None:
    model.objects.create(name="x")
    model.delete()
"""
    found = {(w.function, w.call[: w.call.rindex("(")]) for w in scan_source("probe.py", source)}
    assert found == {
        ("by_parameter", "nb.bulk_delete"),
        ("by_factory", "other.update"),
        ("by_factory", "netbox_client().create"),
        ("go", "self.client.delete"),
    }
