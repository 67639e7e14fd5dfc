"""A flow works in its project checkout whatever directory it was started from, and goes back."""

import os
from pathlib import Path

from mmops.project import checkout_of, flow_parser, working_in


def test_a_flow_works_in_the_checkout_holding_it_and_returns_to_where_it_was(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    flow_file = project / "flows" / "training.py"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert checkout_of(str(flow_file)) == project
    with working_in(None, str(flow_file)) as root:
        assert root == project and Path(os.getcwd()) == project
    assert Path(os.getcwd()) == elsewhere


def test_a_project_given_wins_over_the_flows_own_checkout(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(tmp_path)
    with working_in("other", str(tmp_path / "project" / "flows" / "x.py")) as root:
        assert root == other.resolve()


def test_a_flows_command_line_takes_its_paths_relative_to_the_project():
    args = flow_parser("doc", artifacts=True).parse_args(["--project", "/p", "--params", "other.yaml"])
    assert (args.project, args.params, args.artifacts) == ("/p", "other.yaml", "artifacts")
    assert not hasattr(flow_parser("doc", params=False).parse_args([]), "params")
