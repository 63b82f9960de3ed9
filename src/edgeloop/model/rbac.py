"""The RBAC policy of the control plane as data: which roles may call which route.

Pure: the app checks every request against `POLICY`, and the route-by-role test matrix
walks the same table, so the policy is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a token may do. `join` is the one-time token a new site trades for an agent token."""

    ADMIN = "admin"
    OPERATOR = "operator"
    SCIENTIST = "scientist"
    VIEWER = "viewer"
    AGENT = "agent"
    JOIN = "join"


#: Roles a person can be given with `edgeloop tokens create` (join and agent tokens are minted
#: by their own routes, always scoped to one site).
PERSON_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.SCIENTIST, Role.VIEWER})
READERS = frozenset({Role.ADMIN, Role.OPERATOR, Role.SCIENTIST, Role.VIEWER})
OPERATORS = frozenset({Role.ADMIN, Role.OPERATOR})
ADMINS = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Who may call one route; `site_scoped` routes take `{site}` and an agent only its own."""

    method: str
    path: str
    roles: frozenset[Role]
    site_scoped: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def mutating(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}


API = "/api/v1"

#: Routes anyone may call without a token: liveness and readiness only.
OPEN_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz")})

POLICY: tuple[RoutePolicy, ...] = (
    RoutePolicy("GET", f"{API}/openapi.json", READERS),
    RoutePolicy("GET", f"{API}/whoami", READERS | {Role.AGENT}),
    # projects and tokens: admins only
    RoutePolicy("GET", f"{API}/projects", ADMINS),
    RoutePolicy("POST", f"{API}/projects", ADMINS),
    RoutePolicy("GET", f"{API}/tokens", ADMINS),
    RoutePolicy("POST", f"{API}/tokens", ADMINS),
    RoutePolicy("DELETE", f"{API}/tokens/{{token_id}}", ADMINS),
    RoutePolicy("GET", f"{API}/audit", ADMINS),
    # sites
    RoutePolicy("POST", f"{API}/join-tokens", OPERATORS),
    RoutePolicy("POST", f"{API}/join", frozenset({Role.JOIN})),
    RoutePolicy("GET", f"{API}/sites", READERS),
    RoutePolicy("GET", f"{API}/sites/{{site}}", READERS | {Role.AGENT}, site_scoped=True),
    RoutePolicy("PUT", f"{API}/sites/{{site}}/labels", OPERATORS),
    RoutePolicy("DELETE", f"{API}/sites/{{site}}", ADMINS),
    # the agent-facing routes
    RoutePolicy(
        "POST", f"{API}/sites/{{site}}/heartbeat", frozenset({Role.AGENT}), site_scoped=True
    ),
    RoutePolicy("POST", f"{API}/sites/{{site}}/reports", frozenset({Role.AGENT}), site_scoped=True),
    RoutePolicy("GET", f"{API}/sites/{{site}}/desired", READERS | {Role.AGENT}, site_scoped=True),
    # desired state and rollouts
    RoutePolicy("GET", f"{API}/deployments", READERS),
    RoutePolicy("PUT", f"{API}/deployments/{{name}}", OPERATORS),
    RoutePolicy("DELETE", f"{API}/deployments/{{name}}", OPERATORS),
    RoutePolicy("GET", f"{API}/rollouts", READERS),
    RoutePolicy("POST", f"{API}/rollouts", OPERATORS),
    RoutePolicy("GET", f"{API}/rollouts/{{rollout_id}}", READERS),
    RoutePolicy("POST", f"{API}/rollouts/{{rollout_id}}/pause", OPERATORS),
    RoutePolicy("POST", f"{API}/rollouts/{{rollout_id}}/resume", OPERATORS),
    RoutePolicy("POST", f"{API}/rollouts/{{rollout_id}}/abort", OPERATORS),
    RoutePolicy("POST", f"{API}/rollouts/{{rollout_id}}/rollback", OPERATORS),
    # what the dashboard reads: the registry, the core journal, drift and quality
    RoutePolicy("GET", f"{API}/registry/models", READERS),
    RoutePolicy("GET", f"{API}/registry/models/{{name}}", READERS),
    RoutePolicy("GET", f"{API}/journal", READERS),
    RoutePolicy("GET", f"{API}/monitoring", READERS),
    RoutePolicy("GET", f"{API}/monitoring/{{name}}/drift", READERS),
    RoutePolicy("GET", f"{API}/monitoring/{{name}}/quality", READERS),
)

#: The serving admin API of an edge's inference server: repository index, load (hot swap),
#: unload, and the status the agent reads. It accepts one credential only, the server's own
#: token (`serving-token`, 0600, minted by `edgeloop serve`), which the site's agent holds;
#: no control-plane token of any role opens it (tests/fleet/test_serving_rbac_matrix.py).
#: An operator swaps by hand on the edge host with that file, or fleet-wide via deployments.
SERVING_POLICY: tuple[RoutePolicy, ...] = (
    RoutePolicy("POST", "/v2/repository/index", frozenset({Role.AGENT}), site_scoped=True),
    RoutePolicy(
        "POST", "/v2/repository/models/{model_name}/load", frozenset({Role.AGENT}), site_scoped=True
    ),
    RoutePolicy(
        "POST",
        "/v2/repository/models/{model_name}/unload",
        frozenset({Role.AGENT}),
        site_scoped=True,
    ),
    RoutePolicy("GET", "/v2/status", frozenset({Role.AGENT}), site_scoped=True),
)

_BY_KEY = {p.key: p for p in POLICY}


def policy_for(method: str, path_template: str) -> RoutePolicy | None:
    """The policy of a route (by method and path template), or None if it has none."""
    return _BY_KEY.get((method.upper(), path_template))


def allows(policy: RoutePolicy, role: Role, *, token_site: str | None, site: str | None) -> bool:
    """Whether a token of `role` (scoped to `token_site`) may call `policy` for `site`."""
    if role not in policy.roles:
        return False
    if role in (Role.AGENT, Role.JOIN):
        # Site tokens never act beyond their site: a route without {site} is only open to
        # them when the policy names them explicitly (join, whoami).
        return not policy.site_scoped or (token_site is not None and token_site == site)
    return True
