"""Load-time simulation: throttled reads, verified shards, and a model that swaps teacher blocks in safely."""
import shutil
import threading
import time

import pytest
import torch
from pydantic import ValidationError

from pwl.errors import PWLError
from pwl.mixing import Converters, MixedModel
from pwl.models import build_model, parse_model_config
from pwl.runtime import (DeviceProfile, PlainReader, ProgressiveModel, ThrottledReader, accuracy_curve,
                         export_shards, get_profile, load_shard, make_profile, mean_accuracy, model_configs,
                         predicted_timeline, read_manifest, run_requests, teacher_file, time_to_accuracy,
                         time_to_first_answer)
from pwl.runtime.progressive import FIRST_ANSWER_WAIT_S
from pwl.runtime.shards import CONVERTERS_FILE, MANIFEST, STUDENT_FILE
from pwl.states import prefix_order

N = 5
PREFIX = prefix_order(N)
MIDDLE = ["SSSSS", "SSTSS", "STTSS", "STTTS", "TTTTS", "TTTTT"]  # exercises E_i and D_i both ways
FAST = DeviceProfile(name="test", read_bandwidth=200_000, open_latency_s=0.0, threads=1)  # ~50 KB: ~0.25 s


def _randomize_bn(net):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    tc = parse_model_config({"family": "vgg", "widths": [8, 8, 16, 16, 16], "depths": [2, 1, 1, 1, 1]})
    sc = parse_model_config({"family": "vgg", "widths": [4, 8, 8, 16, 8], "depths": [1, 1, 1, 1, 1]})
    teacher, student = build_model(tc, 3, 10, 32), build_model(sc, 3, 10, 32)
    conv = Converters(teacher.block_widths, student.block_widths)
    for p in conv.parameters():
        p.data.normal_(0, 0.3)
    _randomize_bn(teacher), _randomize_bn(student)
    mixed = MixedModel(teacher, student, conv).eval()
    out = tmp_path_factory.mktemp("shards")
    manifest = export_shards(mixed, out, model_configs(tc, sc, 3, 10, 32), {"prefix": PREFIX, "middle": MIDDLE})
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        refs = {s: mixed(x, s) for s in {*PREFIX, *MIDDLE}}
    return {"mixed": mixed, "dir": out, "manifest": manifest, "x": x, "refs": refs}


def _copy(setup, tmp_path):
    d = tmp_path / "shards"
    shutil.copytree(setup["dir"], d)
    return d


def test_throttled_reader_takes_bytes_over_bandwidth(tmp_path):
    path = tmp_path / "blob"
    blob = bytes(range(256)) * 800  # 204,800 bytes
    path.write_bytes(blob)
    reader = ThrottledReader(1_000_000, open_latency_s=0.02)
    t = time.perf_counter()
    data = reader.read(path)
    took = time.perf_counter() - t
    expected = 0.02 + len(blob) / 1_000_000
    assert data == blob and reader.bytes_read == len(blob) and reader.files_read == 1
    assert abs(took - expected) < 0.1 * expected, (took, expected)


def test_export_writes_verifiable_shards(setup):
    d, manifest, mixed = setup["dir"], setup["manifest"], setup["mixed"]
    assert read_manifest(d) == manifest
    assert not list(d.glob("*.tmp"))
    files = manifest["files"]
    assert set(files) == {STUDENT_FILE, CONVERTERS_FILE, *(teacher_file(i) for i in range(1, N + 1))}
    assert files[STUDENT_FILE]["tensors"] == sorted(mixed.student.state_dict())
    assert files[CONVERTERS_FILE]["tensors"] == sorted(mixed.converters.state_dict())
    assert all(k.startswith("blocks.0.") for k in files[teacher_file(1)]["tensors"])  # vgg embed has no tensors
    assert {"head.fc.weight", "head.fc.bias"} <= set(files[teacher_file(N)]["tensors"])
    union = set().union(*(files[teacher_file(i)]["tensors"] for i in range(1, N + 1)))
    assert union == set(mixed.teacher.state_dict())
    assert sum(f["bytes"] for f in files.values()) == sum(p.stat().st_size for p in d.glob("*.safetensors"))
    shard = load_shard(d, manifest, teacher_file(3), PlainReader())
    assert torch.equal(shard["blocks.2.0.0.weight"], mixed.teacher.blocks[2][0][0].weight)
    assert manifest["orders"] == {"prefix": PREFIX, "middle": MIDDLE}
    with pytest.raises(PWLError, match="not a valid order"):
        export_shards(mixed, d / "bad", {}, {"bad": ["SSSSS", "TTSSS", "TTTTT"]})


@pytest.mark.parametrize("order", [PREFIX, MIDDLE], ids=["prefix", "middle"])
def test_every_state_matches_mixed_model_and_final_is_teacher(setup, order):
    x, refs, checked = setup["x"], setup["refs"], []

    def on_event(e):  # runs in the loader thread right after a swap: nothing else can swap meanwhile
        if e["event"] in ("student_ready", "block_swapped"):
            logits, state = model.predict(x)
            checked.append(state)
            assert state == e["state"] and torch.equal(logits, refs[state])

    model = ProgressiveModel(setup["dir"], FAST, order, on_event=on_event)
    model.start()
    assert model.wait(10) and model.error is None
    assert checked == order
    logits, state = model.predict(x)
    with torch.no_grad():
        assert state == "T" * N and torch.equal(logits, setup["mixed"].teacher(x))
    events = [e["event"] for e in model.timeline]
    assert events[:2] == ["launch", "student_ready"] and events[-1] == "teacher_complete"
    assert events.count("block_swapped") == N and events.count("first_answer") == 1
    assert model.timeline[-1]["bytes_read"] == sum(f["bytes"] for f in setup["manifest"]["files"].values())
    assert all(a["t"] <= b["t"] and a["bytes_read"] <= b["bytes_read"]
               for a, b in zip(model.timeline, model.timeline[1:]))


def test_requests_during_swaps_never_see_half_built_blocks(setup):
    x, refs, answers, errors = setup["x"], setup["refs"], [], []
    model = ProgressiveModel(setup["dir"], FAST, MIDDLE).start()

    def hammer():
        while not model.done:
            try:
                answers.append(model.predict(x))
            except Exception as e:  # noqa: BLE001  (a half-built model would fail here: report, don't hide)
                errors.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and model.error is None and len({s for _, s in answers}) >= 3, (errors[:3], len(answers))
    bad = [s for logits, s in answers if not torch.equal(logits, refs[s])]
    assert not bad, f"{len(bad)} of {len(answers)} answers differ from MixedModel of their state: {set(bad)}"


@pytest.mark.parametrize("damage,block,message", [("flip", 3, "corrupt"), ("truncate", 2, "truncated"),
                                                  ("delete", 1, "missing")])
def test_bad_shard_is_clear_error_and_last_good_state_keeps_serving(setup, tmp_path, damage, block, message):
    d = _copy(setup, tmp_path)
    path = d / teacher_file(block)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-5] ^= 0xFF  # inside tensor data: deserializes fine, only the checksum catches it
        path.write_bytes(bytes(blob))
    elif damage == "truncate":
        path.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        path.unlink()
    with pytest.raises(PWLError, match=message):
        load_shard(d, setup["manifest"], teacher_file(block))
    model = ProgressiveModel(d, FAST, PREFIX).start()
    assert model.wait(10)
    last_good = PREFIX[block - 1]
    assert isinstance(model.error, PWLError) and teacher_file(block) in str(model.error)
    assert model.timeline[-1]["event"] == "error" and model.timeline[-1]["state"] == last_good
    assert "teacher_complete" not in [e["event"] for e in model.timeline]
    logits, state = model.predict(setup["x"])
    assert state == last_good and torch.equal(logits, setup["refs"][last_good])


def test_corrupt_student_fails_start(setup, tmp_path):
    d = _copy(setup, tmp_path)
    blob = bytearray((d / STUDENT_FILE).read_bytes())
    blob[-1] ^= 1
    (d / STUDENT_FILE).write_bytes(bytes(blob))
    model = ProgressiveModel(d, FAST, PREFIX)
    with pytest.raises(PWLError, match="corrupt"):
        model.start()
    assert model.timeline[-1]["event"] == "error"


def test_profiles_validate():
    with pytest.raises(ValidationError, match="read_bandwidth"):
        DeviceProfile(name="dead", read_bandwidth=0)
    with pytest.raises(PWLError, match="read_bandwidth"):
        get_profile("sdcard", read_bandwidth=0)
    with pytest.raises(PWLError, match="open_latency_s"):
        make_profile({"name": "x", "read_bandwidth": 1e6, "open_latency_s": -1})
    with pytest.raises(PWLError, match="unknown device profile"):
        get_profile("floppy")
    sd, emmc, nvme = (get_profile(n) for n in ("sdcard", "emmc", "nvme"))
    assert sd.read_bandwidth < emmc.read_bandwidth < nvme.read_bandwidth
    assert get_profile("nvme", read_bandwidth=5e4).read_bandwidth == 5e4


def test_strategies_and_analytical_model(setup):
    x, manifest = setup["x"], setup["manifest"]
    runs = {s: run_requests(setup["dir"], FAST, s, x, order=PREFIX if s == "pwl" else None)
            for s in ("teacher_only", "student_only", "pwl")}
    assert {r["state"] for r in runs["student_only"]["requests"]} == {"S" * N}
    assert [r["state"] for r in runs["teacher_only"]["requests"]] == ["T" * N]
    assert runs["pwl"]["requests"][0]["state"] == "S" * N and runs["pwl"]["requests"][-1]["state"] == "T" * N
    assert time_to_first_answer(runs["student_only"]["timeline"]) < time_to_first_answer(runs["teacher_only"]["timeline"])
    for strategy, run in runs.items():
        pred = predicted_timeline(manifest, FAST, strategy, PREFIX if strategy == "pwl" else None)
        measured = {e["event"]: e for e in run["timeline"]}
        for e in pred:  # reading can only be slower than the bandwidth allows, and reads the same bytes
            if e["event"] in ("student_ready", "teacher_complete"):
                assert measured[e["event"]]["bytes_read"] == e["bytes_read"]
                assert measured[e["event"]]["t"] >= 0.99 * e["t"]


def test_accuracy_curve_scores():
    timeline = [{"event": "launch", "t": 0.0, "state": None}, {"event": "student_ready", "t": 1.0, "state": "SS"},
                {"event": "first_answer", "t": 1.5, "state": "SS"}, {"event": "block_swapped", "t": 2.0, "state": "TS"},
                {"event": "block_swapped", "t": 3.0, "state": "TT"}, {"event": "teacher_complete", "t": 3.0, "state": "TT"}]
    acc = {"SS": 0.5, "TS": 0.8, "TT": 0.9}
    curve = accuracy_curve(timeline, acc)
    assert curve[:4] == [(0.0, 0.0), (1.0, 0.5), (2.0, 0.8), (3.0, 0.9)]
    assert time_to_first_answer(timeline) == 1.5
    assert time_to_accuracy(curve, acc["TT"]) == 3.0 and time_to_accuracy(curve, 0.95) is None
    assert mean_accuracy(curve, 4.0) == pytest.approx((0.5 + 0.8 + 0.9) / 4)
    assert mean_accuracy(curve, 1.5) == pytest.approx(0.5 * 0.5 / 1.5)


def test_vit_shards_round_trip(tmp_path):
    torch.manual_seed(1)
    tc = parse_model_config({"family": "vit", "patch_size": 8, "dim": 16, "heads": 2, "depths": [2, 2]})
    sc = parse_model_config({"family": "vit", "patch_size": 8, "dim": 16, "heads": 2, "depths": [1, 1]})
    teacher, student = build_model(tc, 3, 10, 16), build_model(sc, 3, 10, 16)
    mixed = MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths)).eval()
    manifest = export_shards(mixed, tmp_path, model_configs(tc, sc, 3, 10, 16), {"prefix": prefix_order(2)})
    assert manifest["files"][CONVERTERS_FILE]["tensors"] == []  # equal widths: identity converters
    assert any(k.startswith("embed.") for k in manifest["files"][teacher_file(1)]["tensors"])
    x = torch.randn(2, 3, 16, 16)
    model = ProgressiveModel(tmp_path, get_profile("nvme", threads=1), prefix_order(2)).start()
    assert model.wait(10) and model.error is None
    with torch.no_grad():
        assert torch.equal(model.predict(x)[0], teacher(x))
    assert (tmp_path / MANIFEST).exists()


def test_loader_serves_first_then_loads(setup):
    """No teacher byte is read until the first answer is out (it would compete with it for the CPU); without
    any request the loader starts after FIRST_ANSWER_WAIT_S anyway."""
    model = ProgressiveModel(setup["dir"], FAST, PREFIX).start()
    time.sleep(0.3)
    assert [e["event"] for e in model.timeline] == ["launch", "student_ready"]
    student_bytes = model.timeline[-1]["bytes_read"]
    assert model.reader.bytes_read == student_bytes
    model.predict(setup["x"])
    assert model.wait(10) and model.error is None
    events = [e["event"] for e in model.timeline]
    assert events.index("first_answer") < events.index("block_swapped")
    idle = ProgressiveModel(setup["dir"], FAST, PREFIX).start()
    assert idle.wait(10) and idle.timeline[-1]["event"] == "teacher_complete"
    first_read = next(e for e in idle.timeline if e["event"] == "block_swapped")
    assert first_read["t"] >= FIRST_ANSWER_WAIT_S
    eager = ProgressiveModel(setup["dir"], FAST, PREFIX, first_answer_wait_s=0).start()  # e.g. to time builds
    assert eager.wait(10) and next(e for e in eager.timeline if e["event"] == "block_swapped")["t"] < FIRST_ANSWER_WAIT_S
