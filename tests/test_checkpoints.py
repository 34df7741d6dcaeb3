"""Weights files: roundtrip, metadata, and clear errors for missing, truncated or mismatched files."""
import pytest
import torch

from conftest import PAIRS, batch, make_mixed, make_net
from pwl.mixing import distilled_parts
from pwl.checkpoints import fingerprint, load_weights, read_meta, save_weights
from pwl.config import LossConfig, OptimConfig
from pwl.errors import PWLError


def test_roundtrip(tmp_path, family):
    pair = PAIRS[family]
    net = make_net(pair["teacher"], pair["img"], seed=0).eval()
    path = tmp_path / "sub" / "teacher.safetensors"
    save_weights(path, net.state_dict(), {"arch": family, "role": "teacher"})
    assert path.exists() and not path.with_name(path.name + ".tmp").exists()
    other = make_net(pair["teacher"], pair["img"], seed=1).eval()
    x, _ = batch(family)
    assert not torch.equal(other(x), net(x))
    load_weights(path, other)
    for k, v in net.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    assert torch.equal(other(x), net(x))
    assert read_meta(path) == {"arch": family, "role": "teacher"}


def test_distilled_parts_roundtrip(tmp_path):
    m, m2 = make_mixed("vgg", seed=0), make_mixed("vgg", seed=5)
    path = tmp_path / "pwl.safetensors"
    save_weights(path, distilled_parts(m).state_dict(), {})
    load_weights(path, distilled_parts(m2))
    assert all(torch.equal(a, b) for a, b in zip(m.converters.parameters(), m2.converters.parameters()))
    # and with a prefix: only the student part
    path2 = tmp_path / "prefixed.safetensors"
    save_weights(path2, {"student." + k: v for k, v in m.student.state_dict().items()}, {})
    m3 = make_mixed("vgg", seed=7)
    load_weights(path2, m3.student, prefix="student.")
    assert all(torch.equal(a, b) for a, b in zip(m.student.parameters(), m3.student.parameters()))


def test_missing_file(tmp_path):
    net = make_net(PAIRS["vgg"]["student"], 8)
    with pytest.raises(PWLError, match="is missing"):
        load_weights(tmp_path / "nope.safetensors", net)
    with pytest.raises(PWLError, match="is missing"):
        read_meta(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0.5, -1, 5])
def test_truncated_file(tmp_path, keep):
    net = make_net(PAIRS["vgg"]["student"], 8)
    path = tmp_path / "w.safetensors"
    save_weights(path, net.state_dict(), {"a": 1})
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep > 0 else len(data) + keep)
    path.write_bytes(data[:cut])
    with pytest.raises(PWLError, match="corrupt or truncated"):
        load_weights(path, net)


def test_file_of_another_architecture(tmp_path):
    teacher = make_net(PAIRS["vgg"]["teacher"], 8)
    student = make_net(PAIRS["vgg"]["student"], 8)
    path = tmp_path / "teacher.safetensors"
    save_weights(path, teacher.state_dict(), {})
    with pytest.raises(PWLError, match="does not fit the model"):
        load_weights(path, student)
    vit = make_net(PAIRS["vit"]["student"], 8)
    with pytest.raises(PWLError, match="does not fit the model"):
        load_weights(path, vit)


def test_extra_tensors_are_rejected(tmp_path):
    net = make_net(PAIRS["vgg"]["student"], 8)
    path = tmp_path / "w.safetensors"
    save_weights(path, {**net.state_dict(), "extra": torch.zeros(1)}, {})
    with pytest.raises(PWLError, match="does not fit the model"):
        load_weights(path, net)


def test_fingerprint():
    a = fingerprint(OptimConfig(), LossConfig(), 0, {"x": 1})
    assert a == fingerprint(OptimConfig(), LossConfig(), 0, {"x": 1}) and len(a) == 16
    assert a != fingerprint(OptimConfig(lr=0.02), LossConfig(), 0, {"x": 1})
    assert a != fingerprint(OptimConfig(), LossConfig(), 1, {"x": 1})


def test_a_failed_save_leaves_neither_a_file_nor_its_tmp(tmp_path, monkeypatch):
    """pwl.atomic, the project's one atomic write: a write that fails half way removes its .tmp."""
    import pwl.checkpoints

    def disk_full(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("No space left on device")
    monkeypatch.setattr(pwl.checkpoints, "save_file", disk_full)
    with pytest.raises(PWLError, match="could not write .*w.safetensors: No space"):  # a full disk: exit 2
        save_weights(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, {})
    assert list(tmp_path.iterdir()) == []
