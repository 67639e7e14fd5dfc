"""Prefect flows: thin compositions of the stage functions in `mmops`, deployed from prefect.yaml.

Each flow works on the checkout it lives in (or `project_dir`), whatever directory it is started
from: a deployment's worker runs it from its own directory.
"""
