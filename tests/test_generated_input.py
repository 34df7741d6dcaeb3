"""Generated bad input (hypothesis): random mutations of the params, the prepared-data manifest and the loading
orders beside the pack. Whatever the mutation, the code that reads it must end like a stage does, with exit status 0 (the
input is usable, and then its consumers work) or 2 (a PWLError) and never a traceback, and must write nothing.

Derandomized (a fixed example sequence, no example database written into the repo) so CI is reproducible."""
import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PAIRS, make_mixed
from pwl.config import validate_params
from pwl.data import Normalizer, load_prepared
from pwl.models import parse_model_config
from pwl.profile import compose
from pwl.runtime import export_pack, model_configs, pack_index, read_orders, write_orders
from pwl.runtime.export import ORDERS_FILE
from pwl.runtime.skeletons import skeleton_factory
from pwl.stage_cli import main
from pwl.states import prefix_order
from test_data import prepare_fake

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = 250
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# values a user (or a bad editor, or a bad disk) might put anywhere
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 2.0 ** 64]),
    st.text(max_size=6), st.sampled_from(["inf", "nan", "-1", "1e999", "../x", "TTT", "SSS", ""]),
    st.lists(st.integers(-2, 5), max_size=4), st.lists(st.sampled_from(["S", "T", "SS", "TS"]), max_size=4),
    st.just({}), st.just([]))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _node(root, path):
    for k in path:
        root = root[k]
    return root


@st.composite
def mutated(draw, base):
    """`base` with 1-3 random edits: a value replaced (any type) or scaled (0, -1, huge, tiny, inf, nan), a key
    or list item deleted, an unknown key added, a list emptied or an item duplicated."""
    raw = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(raw))[1:] or [()]))
        if not path:
            return copy.deepcopy(draw(VALUES))
        parent, key = _node(raw, path[:-1]), path[-1]
        value = parent[key]
        op = draw(st.sampled_from(["replace", "scale", "delete", "add", "duplicate"]))
        if op == "scale" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = draw(st.sampled_from([0, -1, 10 ** 12, 1e-12, math.inf, math.nan, 2 ** 40]))
            parent[key] = value * factor
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(value, dict):
            value[draw(st.sampled_from(["extra", "epochs", "file", "orders", "x"]))] = copy.deepcopy(draw(VALUES))
        elif op == "duplicate" and isinstance(value, list):
            value.extend(value[:1]) if draw(st.booleans()) else value.clear()
        else:
            parent[key] = copy.deepcopy(draw(VALUES))  # st.just({}) is one object: never alias it into itself
    return raw


def exit_status(fn) -> int:
    """What a stage wrapped by pwl.stage_cli.main would exit with: 0, 2 for a PWLError; anything else escapes
    and fails the test with its traceback."""
    try:
        main(fn)
    except SystemExit as e:
        return e.code
    return 0


def listing(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def finite_leaves(node) -> bool:
    if isinstance(node, dict):
        return all(finite_leaves(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return all(finite_leaves(v) for v in node)
    return not isinstance(node, float) or math.isfinite(node)


# ------------------------------------------------------------------ params

@pytest.fixture(scope="module")
def base_params(tmp_path_factory):
    out = tmp_path_factory.mktemp("params") / "params.yaml"
    compose("smoke", out=out, conf=REPO / "conf")
    return yaml.safe_load(out.read_text())


def test_generated_params(base_params, tmp_path_factory):
    quiet = tmp_path_factory.mktemp("nothing_written")
    seen = {0: 0, 2: 0}

    def consume(raw):
        p = validate_params(raw, "generated params")
        assert finite_leaves(p.model_dump()), "a non-finite float passed the schema"
        torch.Generator().manual_seed(p.seed)  # the `prepare` overflow of seed=1e20
        np.random.default_rng(p.seed)
        for a in p.archs:
            p.for_arch(a)
        if p.loadsim is not None:
            for name in p.loadsim.devices:
                d = p.loadsim.device(name)
                assert d.open_latency_s <= 10 and d.read_bandwidth >= 1e4  # sleeps stay bounded

    @SETTINGS
    @given(mutated(base_params))
    def check(raw):
        seen[exit_status(lambda: consume(raw))] += 1

    check()
    assert seen[2] > EXAMPLES // 4 and sum(seen.values()) >= EXAMPLES, seen
    assert listing(quiet) == {}


# ------------------------------------------------------------------ the prepared-data manifest

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_fake(tmp_path_factory.mktemp("prepared"))


@st.composite
def damaged_text(draw, text: str):
    """The manifest's bytes truncated or with one character replaced: what a full disk or an editor leaves."""
    i = draw(st.integers(0, len(text) - 1))
    return text[:i] if draw(st.booleans()) else text[:i] + draw(st.sampled_from('{}[]",:0x\x00é')) + text[i + 1:]


def test_generated_prepared_manifests(prepared):
    path = prepared / "manifest.json"
    original = path.read_text()
    base = json.loads(original)
    seen = {0: 0, 2: 0}

    def consume():
        ds = load_prepared(prepared)
        norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
        assert norm(ds.val.x[:2]).shape[1:] == (ds.in_chans, ds.image_size, ds.image_size)
        assert 0 <= int(ds.train.y.max()) < ds.num_classes

    @SETTINGS
    @given(st.one_of(mutated(base).map(json.dumps), damaged_text(original)))
    def check(text):
        path.write_text(text)
        before = listing(prepared)
        seen[exit_status(consume)] += 1
        assert listing(prepared) == before, "reading a manifest wrote something"

    try:
        check()
    finally:
        path.write_text(original)
    assert seen[2] > EXAMPLES // 2 and sum(seen.values()) >= EXAMPLES, seen


# ------------------------------------------------------------------ the loading orders beside the pack

@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    tc, sc = (parse_model_config(PAIRS["vgg"][r]) for r in ("teacher", "student"))
    export_pack(make_mixed("vgg"), out, model_configs(tc, sc, 3, 5, 8))
    write_orders(out, 3, {"prefix": prefix_order(3), "other": ["SSS", "SST", "TST", "TTT"]})
    return out


def test_generated_loading_orders(shard_dir):
    path = shard_dir / ORDERS_FILE
    original = path.read_text()
    base = json.loads(original)
    seen = {0: 0, 2: 0}

    def consume():
        orders = read_orders(shard_dir, ("prefix",))
        index = pack_index(shard_dir)
        build = skeleton_factory(index.meta)
        assert build("teacher").num_blocks == build("student").num_blocks == index.num_blocks
        assert orders["prefix"][0] == "S" * len(orders["prefix"][0])

    @SETTINGS
    @given(st.one_of(mutated(base).map(json.dumps), damaged_text(original)))
    def check(text):
        path.write_text(text)
        before = listing(shard_dir)
        seen[exit_status(consume)] += 1
        assert listing(shard_dir) == before, "reading the orders wrote something"

    try:
        check()
    finally:
        path.write_text(original)
    assert seen[2] > EXAMPLES // 2 and sum(seen.values()) >= EXAMPLES, seen
