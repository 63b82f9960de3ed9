"""Drift and live-quality monitoring over captured data: reference profiles, the drift job and
its reports, and live quality from labels."""

from edgeloop.monitor.drift import DriftReport, DriftSettings, FeatureDrift, evaluate_drift
from edgeloop.monitor.job import DriftJob, DriftOutcome, drift_event_id
from edgeloop.monitor.profile import ReferenceProfile, build_profile
from edgeloop.monitor.profiles import load_profile, profile_key, save_profile
from edgeloop.monitor.quality import QUALITY_DEGRADED, QualityJob, QualityReport
from edgeloop.monitor.report import render_html, report_prefix, write_report

__all__ = [
    "QUALITY_DEGRADED",
    "DriftJob",
    "DriftOutcome",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "QualityJob",
    "QualityReport",
    "ReferenceProfile",
    "build_profile",
    "drift_event_id",
    "evaluate_drift",
    "load_profile",
    "profile_key",
    "render_html",
    "report_prefix",
    "save_profile",
    "write_report",
]
