"""Converters and the mixed model: pure states are exact, mixed states train, shared-prefix evaluation is exact."""
import pytest
import torch
from torch import nn

from conftest import batch, make_mixed
from pwl.build import freeze
from pwl.data import Normalizer, Split
from pwl.errors import PWLError
from pwl.losses import recon_loss
from pwl.mixing import ChannelMap, Converters, converter, logits_of_all_states, state_accuracies
from pwl.schema.objective import check_pairing
from pwl.states import all_states, prefix_order

N = 3


def test_pure_states_are_exactly_the_pure_models(mixed, xy):
    mixed.eval()
    x, _ = xy
    with torch.no_grad():
        assert torch.equal(mixed(x, "S" * N), mixed.student(x))
        assert torch.equal(mixed(x, "T" * N), mixed.teacher(x))
        # the two pure models really differ, so the check above is not vacuous
        assert not torch.allclose(mixed.student(x), mixed.teacher(x))


def test_width_reduced_students_get_channel_maps(mixed):
    assert mixed.student.block_widths != mixed.teacher.block_widths
    assert len(mixed.converters.enc) == len(mixed.converters.dec) == N - 1
    for i in range(N - 1):
        t, s = mixed.teacher.block_widths[i], mixed.student.block_widths[i]
        enc, dec = mixed.converters.enc[i], mixed.converters.dec[i]
        assert isinstance(enc, ChannelMap) and isinstance(dec, ChannelMap)
        assert enc.weight.shape == (s, t) and dec.weight.shape == (t, s)


@pytest.mark.parametrize("state", ["TSS", "STS", "TST", "SST"])
def test_mixed_state_trains_student_and_converters_only(frozen_mixed, xy, state):
    m = frozen_mixed
    m.student.train()
    x, y = xy
    out = m(x, state)
    assert out.shape == (len(y), 5)
    nn.functional.cross_entropy(out, y).backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    owner = state[0]
    for j, o in enumerate(state):
        params = list(m.student.blocks[j].parameters())
        if o == "S":
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), f"student block {j}"
        else:
            assert all(p.grad is None for p in params)
        if j > 0 and o != owner:
            conv = (m.converters.enc if owner == "T" else m.converters.dec)[j - 1]
            assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
        owner = o
    head_grads = [p.grad for p in m.student.head.parameters()]
    assert all(g is not None for g in head_grads) == (state[-1] == "S")


def test_converter_is_identity_at_equal_width(family):
    m = make_mixed(family, same_width=True)
    assert m.student.block_widths == m.teacher.block_widths
    assert all(isinstance(c, nn.Identity) for c in [*m.converters.enc, *m.converters.dec])
    assert sum(p.numel() for p in m.converters.parameters()) == 0
    m.eval()
    x, _ = batch(family)
    with torch.no_grad():
        f_s, f_t = m.student.features(x), m.teacher.features(x)
        for i in range(N - 1):  # D(E(f)) is f itself, so every reconstruction distance is d(f, f)
            assert m.converters.dec[i](m.converters.enc[i](f_t[i])) is f_t[i]
            assert m.converters.enc[i](m.converters.dec[i](f_s[i])) is f_s[i]
        assert abs(recon_loss(f_s, f_t, m.converters).item()) < 1e-6
        # with a wide-enough pair, mixed states still run without any converter parameters
        assert m(x, "TST").shape == (4, 5)


def test_recon_loss_positive_for_random_channel_maps(mixed, xy):
    mixed.eval()
    x, _ = xy
    with torch.no_grad():
        assert recon_loss(mixed.student.features(x), mixed.teacher.features(x), mixed.converters).item() > 1e-3


def test_channel_map_on_images_and_tokens():
    torch.manual_seed(0)
    cm = ChannelMap(6, 4)
    img = torch.randn(2, 6, 5, 3)
    out = cm(img)
    assert out.shape == (2, 4, 5, 3)
    manual = torch.einsum("oc,bchw->bohw", cm.weight, img) + cm.bias[None, :, None, None]
    assert torch.allclose(out, manual, atol=1e-6)
    tok = torch.randn(2, 7, 6)
    out = cm(tok)
    assert out.shape == (2, 7, 4)
    assert torch.allclose(out, tok @ cm.weight.T + cm.bias, atol=1e-6)
    assert isinstance(converter(5, 5), nn.Identity) and isinstance(converter(5, 3), ChannelMap)


def test_convert_direction():
    conv = Converters([8, 8, 8], [4, 8, 2])
    assert isinstance(conv.enc[0], ChannelMap) and isinstance(conv.enc[1], nn.Identity)
    f = torch.randn(2, 8, 3, 3)
    assert conv.convert(f, 0, "T", "T") is f
    assert conv.convert(f, 0, "T", "S").shape == (2, 4, 3, 3)
    assert conv.convert(torch.randn(2, 4, 3, 3), 0, "S", "T").shape == (2, 8, 3, 3)


def test_pairing_errors():
    with pytest.raises(PWLError, match="same number of blocks"):
        check_pairing([8, 8], [8, 8, 8])
    with pytest.raises(PWLError, match="wider than the teacher at block\\(s\\) \\[2\\]"):
        Converters([8, 8, 8], [8, 9, 8])


def test_logits_of_all_states_match_forward(mixed, xy):
    mixed.eval()
    x, _ = xy
    states = all_states(N)
    assert len(states) == 2 ** N
    calls, handles = _count_block_calls(mixed)
    out = logits_of_all_states(mixed, x, states)
    for h in handles:
        h.remove()
    assert len(calls) <= 2 ** (N + 1) - 2
    assert set(out) == set(states)
    with torch.no_grad():
        for s in states:
            assert torch.allclose(out[s], mixed(x, s), atol=1e-5), s
    # a subset returns only what was asked
    assert set(logits_of_all_states(mixed, x, ["TSS", "SST"])) == {"TSS", "SST"}


def _count_block_calls(mixed):
    calls = []
    handles = [b.register_forward_hook(lambda *a: calls.append(1))
               for net in (mixed.teacher, mixed.student) for b in net.blocks]
    return calls, handles


@pytest.mark.parametrize("n_blocks", [3, 4])
def test_logits_of_all_states_shares_prefixes(n_blocks):
    from conftest import make_net
    t = make_net({"family": "vgg", "widths": [4] * n_blocks, "depths": [1] * n_blocks}, img=16)
    s = make_net({"family": "vgg", "widths": [2] * n_blocks, "depths": [1] * n_blocks}, img=16, seed=1)
    from pwl.mixing import MixedModel
    m = MixedModel(t, s, Converters(t.block_widths, s.block_widths)).eval()
    x = torch.randn(2, 3, 16, 16)
    calls, handles = _count_block_calls(m)
    logits_of_all_states(m, x, all_states(n_blocks))
    assert 0 < len(calls) <= 2 ** (n_blocks + 1) - 2
    assert len(calls) == 2 ** (n_blocks + 1) - 2  # every node of the full prefix tree, once
    naive = n_blocks * 2 ** n_blocks
    assert len(calls) < naive
    calls.clear()
    with torch.no_grad():
        m(x, "T" * n_blocks)
    assert len(calls) == n_blocks  # the hooks do count block passes
    calls.clear()
    order = prefix_order(n_blocks)
    logits_of_all_states(m, x, order)
    # one block pass per distinct non-empty prefix of the wanted states
    assert len(calls) == len({s[:k] for s in order for k in range(1, n_blocks + 1)}) < n_blocks * len(order)
    for h in handles:
        h.remove()


def test_state_accuracies_agree_with_forward(family):
    m = make_mixed(family).eval()
    x, y = batch(family, n=6)
    xu = (torch.rand_like(x) * 255).to(torch.uint8)
    norm = Normalizer([0.5] * 3, [0.25] * 3)
    acc = state_accuracies(m, ["SSS", "TTS", "TTT"], Split(xu, y), norm, batch_size=4)
    with torch.no_grad():
        for s in acc:
            expected = (m(norm(xu), s).argmax(1) == y).float().mean().item()
            assert acc[s] == pytest.approx(expected)


def test_freeze_keeps_teacher_bn_stats(family):
    m = make_mixed(family)
    freeze(m.teacher)
    before = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    x, _ = batch(family)
    m.student.train()
    m(x, "TTS")
    for k, v in m.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
