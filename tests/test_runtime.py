"""Load-time simulation: throttled reads, verified shards, and a model that swaps teacher blocks in safely."""
import itertools
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from pwl.config import LoadsimConfig
from pwl.errors import PWLError
from pwl.mixing import Converters, MixedModel
from pwl.models import build_model, parse_model_config
from pwl.runtime import (DeviceProfile, ParallelModel, PlainReader, ProgressiveModel, ThrottledReader,
                         accuracy_curve, block_seconds, curve_area, export_shards, load_shard, make_profile,
                         mean_accuracy, model_configs, order_area, predicted_timeline, read_manifest, run_requests,
                         shared_arrivals, teacher_file, time_to_accuracy, time_to_first_answer, value_order)
from pwl.runtime.progressive import FIRST_ANSWER_WAIT_S
from pwl.runtime.shards import CONVERTERS_FILE, MANIFEST, STUDENT_FILE
from pwl.states import all_states, best_order, changed_block, prefix_order

# the devices the pipeline simulates: the params' own (conf/config.yaml), validated as the stages validate them
CONF = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "config.yaml").read_text())
DEVICES = LoadsimConfig.model_validate(CONF["loadsim"])

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


def _damage(path, how):
    blob = bytearray(path.read_bytes())
    if how == "flip":
        blob[-5] ^= 0xFF  # inside tensor data: deserializes fine, only the checksum catches it
        path.write_bytes(bytes(blob))
    elif how == "truncate":
        path.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        path.unlink()


def _served(model, setup, state):
    logits, served = model.predict(setup["x"])
    with torch.no_grad():
        assert served == state and torch.equal(logits, setup["mixed"](setup["x"], state))


BY_TEACHER_BLOCKS = {s: 50.0 + 10 * s.count("T") for s in all_states(N)}  # an order-agnostic model
PREFIX_ONLY = {s: 90.0 if s in PREFIX else 40.0 for s in all_states(N)}  # non-prefix states collapse


@pytest.mark.parametrize("damage,message", [("flip", "corrupt"), ("truncate", "truncated"), ("delete", "missing")])
def test_bad_shard_is_clear_error(setup, tmp_path, damage, message):
    d = _copy(setup, tmp_path)
    _damage(d / teacher_file(3), damage)
    with pytest.raises(PWLError, match=message):
        load_shard(d, setup["manifest"], teacher_file(3))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("accuracy,final", [(BY_TEACHER_BLOCKS, "TTSTT"), (PREFIX_ONLY, "TTSSS"), (None, "TTSSS")],
                         ids=["order-agnostic", "prefix-only", "no-accuracy"])
def test_failed_middle_shard_serves_the_best_state_it_can(setup, tmp_path, damage, accuracy, final):
    """Block 3 of 5 fails in the prefix order: loading goes on with blocks 4 and 5, and the model serves the best
    state (by validation accuracy) among those whose teacher blocks arrived; without an accuracy table it keeps
    the last good state of the order. The timeline records the failure."""
    d = _copy(setup, tmp_path)
    _damage(d / teacher_file(3), damage)
    model = ProgressiveModel(d, FAST, PREFIX, accuracy=accuracy, first_answer_wait_s=0).start()
    assert model.wait(10)
    events = [e["event"] for e in model.timeline]
    failed = [e for e in model.timeline if e["event"] == "shard_failed"]
    assert len(failed) == 1 and failed[0]["file"] == teacher_file(3) and failed[0]["state"] == "TTSSS"
    assert isinstance(model.error, PWLError) and teacher_file(3) in str(model.error)
    assert teacher_file(3) in failed[0]["message"]
    assert model.failed == [teacher_file(3)]
    assert "teacher_complete" not in events
    assert model.timeline[-1]["event"] == "loading_incomplete" and model.timeline[-1]["state"] == final
    assert model.reader.files_read == 2 + N - (damage != "flip")  # every other shard was still read
    _served(model, setup, final)
    if accuracy is BY_TEACHER_BLOCKS:  # blocks 4 and 5 each improved the state as they arrived
        after = [e["state"] for e in model.timeline[events.index("shard_failed"):] if e["event"] == "block_swapped"]
        assert after == ["TTSTS", "TTSTT"]


def test_failed_shard_uses_the_manifests_validation_accuracy(setup, tmp_path):
    d = tmp_path / "shards"
    manifest = export_shards(setup["mixed"], d, setup["manifest"]["configs"], {"prefix": PREFIX},
                             {"val_accuracy": BY_TEACHER_BLOCKS})
    assert manifest["val_accuracy"] == BY_TEACHER_BLOCKS
    _damage(d / teacher_file(2), "flip")
    model = ProgressiveModel(d, FAST, PREFIX, first_answer_wait_s=0).start()
    assert model.wait(10) and model.accuracy == BY_TEACHER_BLOCKS
    _served(model, setup, "TSTTT")
    bad = dict(BY_TEACHER_BLOCKS)
    del bad["STSTS"]
    with pytest.raises(PWLError, match="lacks or garbles state"):
        ProgressiveModel(d, FAST, PREFIX, accuracy=bad)


def test_failed_converters_leave_all_s_until_the_teacher_is_whole(setup, tmp_path):
    d = _copy(setup, tmp_path)
    _damage(d / CONVERTERS_FILE, "flip")
    model = ProgressiveModel(d, FAST, PREFIX, accuracy=BY_TEACHER_BLOCKS, first_answer_wait_s=0).start()
    assert model.wait(10)
    assert [e["state"] for e in model.timeline if e["event"] == "block_swapped"] == ["T" * N]
    assert model.timeline[-1]["event"] == "teacher_complete"
    _served(model, setup, "T" * N)


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
        make_profile({**DEVICES.devices["sdcard"], "name": "sdcard", "read_bandwidth": 0})
    with pytest.raises(PWLError, match="open_latency_s"):
        make_profile({"name": "x", "read_bandwidth": 1e6, "open_latency_s": -1})
    with pytest.raises(PWLError, match="unknown device profile"):
        DEVICES.device("floppy")
    lte, sd, emmc, nvme = (DEVICES.device(n) for n in ("lte", "sdcard", "emmc", "nvme"))
    assert lte.read_bandwidth < sd.read_bandwidth < emmc.read_bandwidth < nvme.read_bandwidth
    assert lte.open_latency_s > sd.open_latency_s > emmc.open_latency_s > nvme.open_latency_s


def test_strategies_and_analytical_model(setup):
    x, manifest = setup["x"], setup["manifest"]
    runs = {s: run_requests(setup["dir"], FAST, s, x, order=PREFIX if s == "pwl" else None)
            for s in ("teacher_only", "student_only", "pwl", "parallel")}
    assert {r["state"] for r in runs["student_only"]["requests"]} == {"S" * N}
    assert [r["state"] for r in runs["teacher_only"]["requests"]] == ["T" * N]
    for s in ("pwl", "parallel"):
        assert runs[s]["requests"][0]["state"] == "S" * N and runs[s]["requests"][-1]["state"] == "T" * N
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
    model = ProgressiveModel(tmp_path, DEVICES.device("nvme"), prefix_order(2)).start()
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


class DelayedReader(PlainReader):
    """Files arrive after a fixed delay each, read concurrently: forces an arrival order."""

    def __init__(self, delays: dict):
        super().__init__()
        self.delays = delays

    def read(self, path):
        time.sleep(self.delays.get(Path(path).name, 0.0))
        return super().read(path)


ARRIVALS = {"converters first": [CONVERTERS_FILE, 4, 2, 5, 1, 3], "converters late": [2, 4, CONVERTERS_FILE, 1, 5, 3]}


@pytest.mark.parametrize("arrival", list(ARRIVALS), ids=list(ARRIVALS))
def test_out_of_order_swaps_in_arrival_order(setup, arrival):
    """Every shard is requested at once; each teacher block is swapped in as soon as it arrives (blocks that
    beat the converters wait for them), so the blocks added by the swaps come in arrival order, and every state
    served is the subset that has arrived, computed exactly as MixedModel computes it."""
    files = [f if f == CONVERTERS_FILE else teacher_file(f) for f in ARRIVALS[arrival]]
    reader = DelayedReader({f: 0.08 * k for k, f in enumerate(files)})
    x, seen = setup["x"], []

    def on_event(e):
        if e["event"] == "block_swapped":
            logits, state = model.predict(x)
            with torch.no_grad():
                assert state == e["state"] and torch.equal(logits, setup["mixed"](x, state))
            seen.append(state)

    model = ParallelModel(setup["dir"], FAST, reader=reader, on_event=on_event, first_answer_wait_s=0).start()
    assert model.wait(10) and model.error is None
    arrived = [e["file"] for e in model.timeline if e["event"] == "shard_arrived"]
    assert arrived == files
    blocks = [b for b in ARRIVALS[arrival] if b != CONVERTERS_FILE]
    assert [changed_block(a, b) + 1 for a, b in zip(["S" * N, *seen], seen)] == blocks
    assert seen[-1] == "T" * N and model.timeline[-1]["event"] == "teacher_complete"
    swaps = [e for e in model.timeline if e["event"] == "block_swapped"]
    conv_t = next(e["t"] for e in model.timeline if e["event"] == "shard_arrived" and e["file"] == CONVERTERS_FILE)
    assert all(e["t"] >= conv_t for e in swaps)  # mixed states need the converters


def test_out_of_order_with_a_failed_shard(setup, tmp_path):
    d = _copy(setup, tmp_path)
    _damage(d / teacher_file(3), "flip")
    model = ParallelModel(d, FAST, accuracy=BY_TEACHER_BLOCKS, first_answer_wait_s=0).start()
    assert model.wait(10)
    failed = [e for e in model.timeline if e["event"] == "shard_failed"]
    assert [e["file"] for e in failed] == [teacher_file(3)] and model.failed == [teacher_file(3)]
    assert model.timeline[-1]["event"] == "loading_incomplete" and model.timeline[-1]["state"] == "TTSTT"
    _served(model, setup, "TTSTT")


def test_shared_arrivals_split_the_bandwidth():
    dev = DeviceProfile(name="d", read_bandwidth=1e4, open_latency_s=1.0)
    assert shared_arrivals({"a": 10_000, "b": 30_000, "c": 30_000}, dev, 2.0) == {"a": 6.0, "b": 10.0, "c": 10.0}


def test_concurrent_reads_share_the_bandwidth(tmp_path):
    blobs = {name: bytes(range(256)) * 400 for name in ("a", "b")}  # 102,400 bytes each
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    reader, done = ThrottledReader(1_000_000, chunk_size=4096), {}  # fine chunks: a close fair share

    def read(name):
        assert reader.read(tmp_path / name) == blobs[name]
        done[name] = time.perf_counter() - t0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=read, args=(n,)) for n in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    expected = 2 * 102_400 / 1_000_000  # equal files sharing one device finish together, at twice one file's time
    assert all(0.9 * expected <= v <= 1.4 * expected for v in done.values()), done  # alone: 0.5 x expected
    assert reader.bytes_read == 204_800 and reader.files_read == 2


def _fake_manifest(rng, n):
    files = {teacher_file(i): {"bytes": rng.randint(1_000, 2_000_000), "block": i} for i in range(1, n + 1)}
    files[STUDENT_FILE] = {"bytes": rng.randint(1_000, 200_000)}
    files[CONVERTERS_FILE] = {"bytes": rng.randint(0, 100_000)}
    return {"num_blocks": n, "files": files}


@pytest.mark.parametrize("seed", range(12))
def test_value_order_equals_brute_force(seed):
    """The DP order has the largest area under accuracy against the analytical model's time since launch,
    over every one of the N! orders, on random blocks, devices and accuracy tables (N = 2..6)."""
    rng = random.Random(seed)
    n = 2 + seed % 5
    manifest = _fake_manifest(rng, n)
    dev = DeviceProfile(name="d", read_bandwidth=rng.choice([2e6, 2e7, 2.5e8]),
                        open_latency_s=rng.choice([0, 2e-3, 0.03]))
    acc = {s: rng.uniform(10, 95) for s in all_states(n)}
    build = {teacher_file(i): rng.uniform(0, 0.01) for i in range(1, n + 1)} if seed % 2 else None
    best = value_order(acc, manifest, dev, build)
    horizon = predicted_timeline(manifest, dev, "pwl", prefix_order(n), build_s=build)[-1]["t"] + 1.0

    def area(order):
        return curve_area(accuracy_curve(predicted_timeline(manifest, dev, "pwl", order, build_s=build), acc), horizon)

    orders = []
    for perm in itertools.permutations(range(n)):
        state, order = ["S"] * n, ["S" * n]
        for j in perm:
            state[j] = "T"
            order.append("".join(state))
        orders.append(order)
    brute = max(orders, key=area)
    assert area(best) == pytest.approx(area(brute), rel=1e-12, abs=1e-12)
    costs = block_seconds(manifest, dev, build)
    assert order_area(best, acc, costs) == pytest.approx(max(order_area(o, acc, costs) for o in orders))
    assert best == best_order(acc, costs)


def test_value_order_depends_on_the_device():
    """Bytes decide on a slow link, latency on a fast one: a big accurate block first only where bytes are cheap."""
    n = 2
    manifest = {"num_blocks": n, "files": {teacher_file(1): {"bytes": 1_000_000}, teacher_file(2): {"bytes": 1_000}}}
    acc = {"SS": 50.0, "TS": 90.0, "ST": 55.0, "TT": 91.0}
    slow = DeviceProfile(name="slow", read_bandwidth=1e6, open_latency_s=0.0)
    # SS while block 1 loads (1 s), then TS while block 2 loads (1 ms) vs SS for 1 ms then ST for 1 s
    assert value_order(acc, manifest, slow) == ["SS", "ST", "TT"]
    fast = DeviceProfile(name="fast", read_bandwidth=1e12, open_latency_s=0.01)  # equal costs: best state first
    assert value_order(acc, manifest, fast) == ["SS", "TS", "TT"]
