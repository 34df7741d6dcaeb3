"""The comparison with the paper: mapping the published 4-position orders onto N blocks, the per-cell
differences and flags, the self-contradictions of the published CSV, and the delta text."""
from pathlib import Path

import pandas as pd
import pytest

from pwl.config import validate_params
from pwl.profile import compose
from pwl.report import deviations, markdown, tables
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
    params = compose("paper-cifar100", ["arch.vgg.train_teacher.epochs=2"], out=tmp_path / "p.yaml", conf=REPO / "conf")
    table = tables.paper_comparison(REFERENCE, "vgg", "cifar100", fake_states(5))
    text = markdown.paper_deltas(table)
    flagged = int((table["diff"].abs() > 1.5).sum())
    assert f"{flagged} of 15 cells differ by more than 1.5 points" in text
    prepared = {"source": "torchvision:cifar100", "train": 45000, "val": 5000}
    counts = {"teacher_params": 1, "student_params": 1, "converter_params": 0}
    rows = {r["item"]: r for r in deviations.rows(params, "vgg", prepared, counts)}
    assert rows["epochs"]["same"] == "**no**" and "teacher 2" in rows["epochs"]["ours"]
    full = validate_params(compose("paper-cifar100", out=tmp_path / "q.yaml", conf=REPO / "conf").model_dump())
    rows = {r["item"]: r for r in deviations.rows(full, "vgg", prepared, counts)}
    assert rows["teacher"]["same"] == "yes" and rows["converters"]["same"] == "yes"  # the published VGG-16-BN pair


def test_each_paper_table_is_compared_with_its_own_all_s():
    table = tables.paper_comparison(REFERENCE, "vgg", "cifar100", fake_states(5))
    row = table[(table.table == "contiguous") & (table.paper_order == "STSS")].iloc[0]
    assert row["paper_cifar100_vs_all_S"] == pytest.approx(59.4 - 53.1)  # its own table's all-S, not 71.1


def test_label_table_sets_the_papers_labels_beside_ours():
    table = tables.label_table(fake_states(5), REFERENCE, "vgg").set_index("label")
    assert list(table.index) == list(tables.LABELS)
    assert table["states"].sum() == 32 and table.loc["other", "states"] == 32 - 2 - 4 - 4 - 6
    assert table.loc["prefix", "min"] == 82.0 and table.loc["prefix", "mean"] == pytest.approx(85.0)
    # the paper's VGG CIFAR-10 cells labelled on its own 4 positions (prefix TSSS/TTSS/TTTS, ...)
    assert table.loc["prefix", "paper_cifar10_min"] == 92.1
    assert table.loc["prefix", "paper_cifar10_mean"] == pytest.approx((92.1 + 93.1 + 92.7) / 3)
    assert table.loc["suffix", "paper_cifar10_min"] == 90.3 and table.loc["contiguous", "paper_cifar10_min"] == 86.1
    assert table.loc["student", "paper_cifar100_mean"] == 71.1  # repeated cells: the prefix table's
    assert table.loc["other", "paper_cifar10_states"] == 0 and pd.isna(table.loc["other", "paper_cifar10_min"])


def test_lattice_stats_worst_state_and_non_prefix_mean():
    acc = {s: 88.0 for s in all_states(3)}
    acc.update({"TSS": 88.5, "TTS": 89.0, "TTT": 90.0, "SST": 86.5, "STS": 87.5, "TST": 80.0})
    stats = tables.lattice_stats(pd.Series(acc))
    assert stats["worst_state"] == "TST" and stats["worst"] == 80.0 and stats["worst_vs_all_S"] == -8.0
    assert stats["below_all_S_minus_1"] == 2  # SST (-1.5) and TST; STS (-0.5) is within one point
    nonprefix = [86.5, 87.5, 88.0, 80.0]  # SST, STS, STT, TST: the mixed states that are not prefixes
    assert stats["nonprefix_mixed_mean"] == pytest.approx(sum(nonprefix) / 4)
    rows = tables.lattice("vgg", fake_states(4), REFERENCE, "vgg")
    assert [r["source"] for r in rows] == ["ours", "paper vgg cifar10", "paper vgg cifar100"]
    paper10 = rows[1]
    assert paper10["states"] == 11 and paper10["worst_state"] == "STSS" and paper10["worst"] == 86.1
    assert paper10["below_all_S_minus_1"] == 4  # STSS 86.1, SSTS 88.4, STTS 89.8, SSTT 90.3 (< 91.7 - 1; SSST 91.0 not)


def test_a_family_without_paper_numbers_is_skipped_and_said_so():
    assert tables.paper_columns(REFERENCE, "mlp") is None
    assert tables.paper_comparison(REFERENCE, "mlp", "cifar10", fake_states(4)) is None
    labels = tables.label_table(fake_states(4), REFERENCE, "mlp")
    assert not any(c.startswith("paper_") for c in labels.columns)
    assert [r["source"] for r in tables.lattice("mlp", fake_states(4), REFERENCE, "mlp")] == ["ours"]
    text = "\n".join(markdown.label_section("mlp", {"labels": labels, "family": "mlp"}))
    assert "the paper publishes no numbers for the `mlp` family" in text


def test_report_text_has_no_hand_typed_measurements():
    source = Path(markdown.__file__).read_text()
    assert "4.5 s" not in source and "2-3 points" not in source and "2-3 minutes" not in source


def test_strategy_gains_against_the_prefix_order():
    table = pd.DataFrame({"device": ["lte"] * 3 + ["nvme"] * 3,
                          "strategy": ["pwl_prefix", "pwl_value", "pwl_parallel"] * 2,
                          "mean acc over horizon": [80.0, 81.5, 70.0, 88.0, 88.0, 87.25]})
    text = markdown.strategy_gains(table)[0]
    assert "`pwl_value` lte +1.50, nvme +0.00" in text and "`pwl_parallel` lte -10.00, nvme -0.75" in text


def test_teachers_are_set_beside_the_papers_on_its_dataset_or_a_copy_of_it():
    summary = pd.DataFrame({"arch": ["vgg", "resnet", "mobilenet"], "teacher": [79.13, 77.79, 70.0]})
    paper = {"vgg": {"table": tables.paper_comparison(REFERENCE, "vgg", "imagefolder", fake_states(5))},
             "resnet": {"table": tables.paper_comparison(REFERENCE, "resnet", "imagefolder", fake_states(4))},
             "mobilenet": None}
    jpegs = markdown.paper_dataset_of("imagefolder", "imagefolder:data/raw/CIFAR-10-images")
    assert jpegs == "cifar10" and markdown.paper_dataset_of("cifar100", "torchvision") == "cifar100"
    (line,) = markdown.teacher_distance(summary, paper, jpegs)
    assert "vgg 79.13 vs 93.8 (-14.67)" in line and "resnet 77.79 vs 94.8 (-17.01)" in line
    assert "mobilenet" not in line  # the paper has no such family
    assert markdown.paper_dataset_of("fashion-mnist", "/usr/share/datasets/fashion-mnist") is None
    assert markdown.teacher_distance(summary, paper, None) == []


def test_targets_per_replica_their_mean_and_the_states_that_miss():
    from pwl.report import targets

    def acc_of(worst_gap, step):  # N=2: SS, ST, TS, TT; ST is the one non-prefix mixed state
        return pd.Series({"SS": 80.0, "ST": 80.0 + worst_gap, "TS": 80.0 + step, "TT": 85.0})

    t = targets.table("vgg", {0: acc_of(-3.0, 1.0), 1: acc_of(-1.0, -0.8)}, {0: 80.5, 1: 82.0})
    assert list(t["replica"]) == ["0", "1", "mean"]
    r0, r1, mean = t.to_dict("records")
    assert r0["worst_state"] == "ST" and r0["worst_vs_all_S"] == pytest.approx(-3.0)
    assert r0["nonprefix_vs_all_S"] == pytest.approx(-3.0) and r0["all_S_vs_scratch"] == pytest.approx(-0.5)
    assert r0["misses"] == "worst_vs_all_S, nonprefix_vs_all_S"
    assert r1["min_prefix_step"] == pytest.approx(-0.8) and r1["worst_state"] == "ST"
    assert r1["misses"] == "nonprefix_vs_all_S, all_S_vs_scratch, min_prefix_step"
    assert mean["worst_state"] == "ST" and mean["worst_vs_all_S"] == pytest.approx(-2.0)
    assert mean["all_S_vs_scratch"] == pytest.approx(-1.25)
    assert "worst_vs_all_S" not in mean["misses"]  # -2.0 is on the floor, not below it
    assert targets.states_below(acc_of(-3.0, 1.0)) == [("ST", -3.0)]
    assert targets.states_below(acc_of(-2.0, 1.0)) == []
    one = targets.table("vit", {0: acc_of(0.0, 1.0)}, {0: 79.0})
    assert list(one["replica"]) == ["0"] and one["misses"].iloc[0] == "-"
    line = markdown.targets_bullet(pd.concat([t, one], ignore_index=True))[0]
    assert "vgg misses" in line and "(mean over replicas)" in line and "vit meets all four (replica 0)" in line


@pytest.mark.parametrize("readme", sorted(p for p in (REPO / "reports").glob("*/README.md")
                                          if (p.parent / "run.json").exists()), ids=lambda p: p.parent.name)
def test_every_committed_report_opens_with_a_short_front_page(readme):
    """What a reader sees first: at most 25 lines before the first section, at most 300 in all."""
    lines = readme.read_text().splitlines()
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    assert first_section <= 25, f"{readme}: front page of {first_section} lines"
    assert len(lines) <= 300, f"{readme}: {len(lines)} lines"
