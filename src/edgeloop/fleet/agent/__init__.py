"""The edge agent: one per site, outbound connections only.

It long-polls the site's signed desired state (keeping the last verified copy on disk and
reading the copy replicated into the site's store when the control plane is away), installs
verified packages into the local server's repository and hot-swaps them through the
repository API, and runs its runbooks: restart a dead server, roll back a swap that turns
unhealthy, raise an alert when the capture spool or the replication backlog fills up.
"""

from edgeloop.fleet.agent.config import AgentConfig, for_workspace
from edgeloop.fleet.agent.loop import Agent
from edgeloop.fleet.agent.runbooks import HealthBounds

__all__ = ["Agent", "AgentConfig", "HealthBounds", "for_workspace"]
