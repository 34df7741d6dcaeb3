"""Loading states as S/T strings."""
import pytest

from pwl.errors import PWLError
from pwl.states import all_states, is_order, label, parse_state, prefix_mean, prefix_order, suffix_order


def test_parse_state_normalises():
    assert parse_state("tTsS", 4) == "TTSS"
    assert parse_state("  SSTT ", 4) == "SSTT"


@pytest.mark.parametrize("bad", ["", "TTS", "TTSSS", "TTSX", "TT S", "12ST", "T-SS", None])
def test_parse_state_rejects(bad):
    with pytest.raises(PWLError, match="is not a string of 4 letters S/T"):
        parse_state(bad, 4)


@pytest.mark.parametrize("state,expected", [
    ("SSSS", "student"), ("TTTT", "teacher"), ("TTSS", "prefix"), ("TSSS", "prefix"),
    ("SSTT", "suffix"), ("SSST", "suffix"), ("STTS", "contiguous"), ("STSS", "contiguous"),
    ("TSTS", "other"), ("TSST", "other"), ("STST", "other")])
def test_label(state, expected):
    assert label(state) == expected


def test_orders():
    assert prefix_order(4) == ["SSSS", "TSSS", "TTSS", "TTTS", "TTTT"]
    assert suffix_order(4) == ["SSSS", "SSST", "SSTT", "STTT", "TTTT"]
    assert prefix_order(1) == ["S", "T"]
    for n in (2, 3, 5, 6):
        assert len(prefix_order(n)) == len(suffix_order(n)) == n + 1
        assert is_order(prefix_order(n)) and is_order(suffix_order(n))


def test_is_order():
    assert is_order(["SSS", "STS", "STT", "TTT"])  # any single-block additions
    assert not is_order([])
    assert not is_order(list(reversed(prefix_order(3))))  # unloading
    assert not is_order(["SSS", "TTS", "TTT"])  # two blocks in one step
    assert not is_order(["TSS", "TTS", "TTT"])  # does not start from the student
    assert not is_order(["SSS", "TSS", "TTS"])  # does not end at the teacher
    assert not is_order(["SSS", "TSS", "STS", "STT", "TTT"])  # a swap adds no teacher block


def test_all_states():
    states = all_states(3)
    assert states == sorted(states) and len(set(states)) == 8
    assert states[0] == "SSS" and states[-1] == "TTT"
    assert all(parse_state(s, 3) == s for s in states)


def test_prefix_mean_is_over_the_states_served_before_all_T():
    """One definition: distill selects on it, evaluate reports it (eval.json `prefix_mean`)."""
    acc = {"SSS": 0.5, "TSS": 0.6, "TTS": 0.7, "TTT": 1.0}
    assert prefix_mean(acc, 3) == pytest.approx(0.6)  # the teacher (TTT) is not averaged in


def test_lattice_summary_on_a_hand_made_table():
    from pwl.states import lattice_summary
    acc = {"SS": 0.80, "ST": 0.785, "TS": 0.82, "TT": 0.90}
    got = lattice_summary(acc)
    assert got["worst_state"] == "ST" and got["worst"] == 0.785
    assert abs(got["worst_vs_all_S"] + 0.015) < 1e-12
    assert got["nonprefix_mixed_mean"] == 0.785  # ST is the only mixed state that is not a prefix
    assert got["below_all_S"] == 1  # ST is 1.5 points below all-S; TS and TT are above
    assert got["by_label"]["prefix"] == {"min": 0.82, "mean": 0.82, "states": 1}
    assert lattice_summary({"SS": 0.8, "TS": 0.81, "TT": 0.9, "ST": 0.795})["below_all_S"] == 0
