"""The built-in retraining pipeline for tabular models (scikit-learn to ONNX)."""

from edgeloop.pipeline.retrain.pipeline import RETRAIN, build_retrain

__all__ = ["RETRAIN", "build_retrain"]
