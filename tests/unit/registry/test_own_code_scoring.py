"""The gate scores each version with the code it was registered with, not today's `mmops`."""

import pandas as pd

MODEL_CODE = '''
import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

import mmops

# Only the logged copy of mmops has WHO: today's (imported by the test and by MLflow's check
# when logging) gives "Objects", so a score of "Flags" proves the logged code ran.
WHO = getattr(mmops, "WHO", "Objects")


class Logged(mlflow.pyfunc.PythonModel):
    classes = ["Flags", "Objects"]

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"label": [WHO] * len(model_input)})


set_model(Logged())
'''


def test_a_version_is_scored_with_its_own_logged_code(tmp_path, monkeypatch):
    import mlflow

    from mmops.registry.gate import UNKNOWN
    from mmops.registry.promotion import score_version

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "old" / "mmops").mkdir(parents=True)
    (tmp_path / "old" / "mmops" / "__init__.py").write_text('WHO = "Flags"\n')
    (tmp_path / "model.py").write_text(MODEL_CODE)
    mlflow.set_experiment("own-code")  # in this store: another test may have left its experiment active
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "model.py"),
                                code_paths=[str(tmp_path / "old" / "mmops")], registered_model_name="m")
    requests = pd.DataFrame({"text": ["a", "b", None], "image": [None, "x", "y"]})
    scored = score_version("models:/m/1", "1", requests, ["Flags", "Objects", "Smileys"])
    assert scored.classes == ("Flags", "Objects")
    assert scored.target.tolist() == [0, 1, UNKNOWN]  # a label the model was not trained on
    assert scored.fused.tolist() == [0, 0, 0]
    assert scored.present["text"].tolist() == [True, True, False]  # scored alone where present
    assert scored.modalities["text"][:2].tolist() == [0, 0]
    assert scored.present["image"].tolist() == [False, True, True]
    assert scored.modalities["image"][1:].tolist() == [0, 0]
    assert scored.p95_latency_ms > 0
