"""Loading states as S/T strings."""
import pytest

from pwl.errors import PWLError
from pwl.states import all_states, is_order, label, parse_state, prefix_order, suffix_order


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
