"""Entry point MLflow executes to build the served model (models-from-code)."""

from mlflow.models import set_model

from mmops.serving.pyfunc import MultimodalClassifier

set_model(MultimodalClassifier())
