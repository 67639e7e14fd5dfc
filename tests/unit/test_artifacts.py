import pytest
import torch

from mmops.artifacts import atomic_path, load_torch, save_torch, write_json


def test_saving_the_same_tensors_twice_gives_the_same_bytes(tmp_path):
    obj = {"ids": ["a", "b"], "x": torch.arange(6.0).reshape(2, 3)}
    first, second = save_torch(tmp_path / "a.pt", obj), save_torch(tmp_path / "b.pt", obj)
    assert first.read_bytes() == second.read_bytes()
    assert torch.equal(load_torch(first)["x"], obj["x"])


def test_a_failed_write_leaves_neither_a_partial_file_nor_debris(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_write_replaces_the_previous_version_whole(tmp_path):
    target = write_json(tmp_path / "m.json", {"v": 1})
    write_json(target, {"v": 2})
    assert target.read_text() == '{\n  "v": 2\n}\n'
