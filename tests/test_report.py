"""The comparison with the paper: mapping the published 4-position orders onto N blocks, the per-cell
differences and flags, the self-contradictions of the published CSV, and the delta text."""
from pathlib import Path

import pandas as pd
import pytest

from pwl.config import validate_params
from pwl.profile import compose
from pwl.report import markdown, tables
from pwl.states import all_states, prefix_order

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference" / "paper_loading_orders.csv"
PUBLISHED = pd.read_csv(REFERENCE)["order"].unique()


def test_four_blocks_map_to_themselves():
    assert all(tables.map_paper_state(s, 4) == s for s in PUBLISHED)


@pytest.mark.parametrize("n,cases", [
    (5, {"TTSS": "TTSSS", "SSTS": "SSTTS", "TSSS": "TSSSS", "SSST": "SSSST", "STTS": "STTTS"}),
    (6, {"TTSS": "TTTSSS", "SSTS": "SSSTSS", "TSSS": "TSSSSS", "SSST": "SSSSTT", "STSS": "STTSSS"}),
    (2, {"TTSS": "TS", "SSTT": "ST", "TSSS": "SS"}),  # position 1 holds no block midpoint of 2
])
def test_mapping_by_block_midpoint(n, cases):
    for paper, ours in cases.items():
        assert tables.map_paper_state(paper, n) == ours


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 8])
def test_mapping_keeps_prefix_orders_prefix_and_the_ends_fixed(n):
    mapped = [tables.map_paper_state(s, n) for s in ("SSSS", "TSSS", "TTSS", "TTTS", "TTTT")]
    assert mapped[0] == "S" * n and mapped[-1] == "T" * n
    assert all(m in prefix_order(n) for m in mapped)
    assert [m.count("T") for m in mapped] == sorted(m.count("T") for m in mapped)


def fake_states(n: int, acc=lambda s: 80.0 + 2.0 * s.count("T")) -> pd.DataFrame:
    states = all_states(n)
    return pd.DataFrame({"state": states, "test_acc": [acc(s) for s in states]})


def test_comparison_diff_and_flags_on_the_papers_dataset():
    table = tables.paper_comparison(REFERENCE, "vgg", "cifar10", fake_states(5))
    ref = pd.read_csv(REFERENCE)
    assert len(table) == len(ref) and list(table["paper_cifar10"]) == list(ref["vgg_cifar10"])
    row = table[(table.table == "prefix") & (table.paper_order == "TTSS")].iloc[0]
    assert row.our_state == "TTSSS" and row.ours == 80.0 + 2 * 2
    assert row["diff"] == pytest.approx(84.0 - 93.1)
    assert ((table["flag"] == "!") == (table["diff"].abs() > tables.FLAG_POINTS)).all()
    near = tables.paper_comparison(REFERENCE, "vgg", "cifar10",
                                   fake_states(4, lambda s: 91.7 + 1.0 if s == "SSSS" else 0.0))
    first = near[(near.table == "prefix") & (near.paper_order == "SSSS")].iloc[0]
    assert first["diff"] == pytest.approx(1.0) and first["flag"] == ""  # within 1.5 points: not flagged


def test_comparison_off_the_papers_dataset_has_no_diff():
    table = tables.paper_comparison(REFERENCE, "resnet", "fashion-mnist", fake_states(4))
    assert "diff" not in table and "flag" not in table


def test_published_table_contradictions_are_listed():
    notes = tables.paper_inconsistencies(REFERENCE)
    assert any(n.startswith("vgg_cifar100 SSSS") and "71.1" in n and "53.1" in n for n in notes)
    assert not any(n.startswith("vgg_cifar10 ") for n in notes)  # consistent columns are not listed


def test_delta_text_states_counts_and_setup_differences(tmp_path):
    params = compose("paper-cifar100", ["arch.vgg.train_teacher.epochs=2", "data.train_limit=1000"],
                     out=tmp_path / "p.yaml", conf=REPO / "conf")
    table = tables.paper_comparison(REFERENCE, "vgg", "cifar100", fake_states(5))
    text = markdown.paper_deltas(params, "vgg", table)
    flagged = int((table["diff"].abs() > 1.5).sum())
    assert f"{flagged} of 15 cells differ by more than 1.5 points" in text
    assert "teacher 2 vs 100" in text and "1000 training images" in text and "mapped onto our 5 blocks" in text
    full = validate_params(compose("paper-cifar100", out=tmp_path / "q.yaml", conf=REPO / "conf").model_dump())
    assert "fewer epochs" not in markdown.paper_deltas(full, "vgg", table)  # the published recipe: not a reason
