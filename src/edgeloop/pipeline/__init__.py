"""Pipelines: `@step` functions wired by name into a validated graph, run inline, on Ray or
compiled for Kubeflow, started by triggers over the core journal."""

from edgeloop.pipeline.dsl import Artifact, Resources, Step, StepContext, step
from edgeloop.pipeline.graph import Pipeline, load_pipeline

__all__ = ["Artifact", "Pipeline", "Resources", "Step", "StepContext", "load_pipeline", "step"]
