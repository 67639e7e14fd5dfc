"""mmops: a workflow-orchestrated MLOps pipeline for multimodal (image + text) classifiers."""

__version__ = "0.1.0"
