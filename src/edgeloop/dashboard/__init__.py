"""The web dashboard, served by the fleet control plane at /ui/: fleet, models, rollouts,
drift and quality, the loop timeline and the audit log, read through the control plane's API
with a person's token."""

from edgeloop.dashboard.routes import UI_PATH, mount_dashboard
from edgeloop.dashboard.sources import DashboardSources

__all__ = ["UI_PATH", "DashboardSources", "mount_dashboard"]
