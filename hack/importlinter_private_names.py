"""An import-linter contract: no module imports a ``_private`` name of another module.

import-linter's own contracts judge modules, not names; a name with a leading underscore is private
to the module that defines it (a dunder such as ``__version__`` is not), so ``from .sync import
_guard`` in another module breaks this contract. The source line of every import between two modules
of the root packages is read from grimp's import details.
"""

from __future__ import annotations

import re

import grimp
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

_FROM = re.compile(r"^\s*from\s+[\w.]+\s+import\s+\(?(?P<names>[^)#]*)")


def _private_names(line: str) -> list[str]:
    match = _FROM.match(line)
    if not match:
        return []
    names = [n.strip().split(" as ")[0].strip() for n in match.group("names").split(",")]
    return [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]


class PrivateNamesContract(Contract):
    type_name = "private_names"

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        containers = tuple(self.containers)  # type: ignore[attr-defined]
        found: list[str] = []
        for importer in sorted(graph.modules):
            if not importer.startswith(containers):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if imported == importer or not imported.startswith(containers):
                    continue
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    for name in _private_names(detail["line_contents"]):
                        found.append(f"{importer}:{detail['line_number']} imports {imported}.{name}")
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        from importlinter.application import output

        for line in check.metadata["found"]:
            output.print_error(f"- {line}: make it public (no leading underscore) or keep the use inside its module")
