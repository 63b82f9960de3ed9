"""docs/security.md states the access policy exactly as edgeloop.model.rbac.POLICY has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.model.rbac import POLICY, Role, RoutePolicy

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ORDER = [Role.ADMIN, Role.OPERATOR, Role.SCIENTIST, Role.VIEWER, Role.AGENT, Role.JOIN]


@pytest.mark.parametrize("policy", POLICY, ids=lambda p: f"{p.method} {p.path}")
def test_security_doc_lists_the_route_with_its_roles(policy: RoutePolicy) -> None:
    rows = [
        line
        for line in DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| `{policy.method} {policy.path}` |")
    ]
    assert len(rows) == 1, f"{policy.method} {policy.path} is not in docs/security.md"
    cells = [c.strip() for c in rows[0].strip("|").split("|")[1:]]
    documented = {role for role, cell in zip(ORDER, cells, strict=True) if cell}
    assert documented == set(policy.roles)
