"""The step protocol of `memrec.models` (nbs/07_models.ipynb), checked on every registered model, timm style.

Each model is built small from its own `inputs` kind and constructor, then: forward + backward give a finite gradient
to every trainable parameter; padding is inert; forwards and initialisation are deterministic; every name in `extras`
is a per-step output (B,T,...) that is zero at padded steps; and `step_logits` is there exactly for the models that
score each step."""
import inspect
import pytest, torch
from memrec.models.base import import_all_models

MODELS = import_all_models()
B, T, K = 3, 5, 4
LENGTHS = (5, 3, 1)
VEC, MAP = 16, (8, 4, 4)
SMALL = dict(hidden=8, mem_dim=8, ctrl_dim=8, att=4, fc=8)   # whichever of these a constructor takes

# the per-step class score: which models have one (all others classify one video-level representation)
STEP_LOGITS = {'convnet', 'lstm', 'tattn', 'tattn_mean', 'alstm', 'alstm_motion', 'convlstm', 'convalstm', 'videolstm'}
NO_STEP_LOGITS = {'matdl', 'rlstm', 'rlstm2b'}
NAMES = sorted(MODELS)

def in_dim(kind: str):
    one = {'vec': VEC, 'map': MAP}[kind.rstrip('2')]
    return (one, one) if kind.endswith('2') else one

def build(name: str, seed: int = 0):
    cls = MODELS.get(name)
    params = inspect.signature(cls.__init__).parameters
    torch.manual_seed(seed)
    return cls(in_dim(cls.inputs), K, **{k: v for k, v in SMALL.items() if k in params})

def inputs(kind: str, T: int = T, seed: int = 1):
    "A batch of lengths LENGTHS padded to T steps, with large random values on the padded steps."
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None] < torch.tensor(LENGTHS)[:, None]
    def one():
        shape = (VEC,) if kind.startswith('vec') else MAP
        x = torch.randn(B, T, *shape, generator=g)
        x[~mask] = 100 * torch.randn(int((~mask).sum()), *shape, generator=g)
        return x
    return ((one(), one()) if kind.endswith('2') else one()), mask

def pad(x, extra: int, seed: int = 2):
    "Right-pad `x` (a tensor or a pair) with `extra` more steps of random values."
    if isinstance(x, tuple): return tuple(pad(v, extra, seed + i) for i, v in enumerate(x))
    g = torch.Generator().manual_seed(seed)
    return torch.cat([x, 10 * torch.randn(x.shape[0], extra, *x.shape[2:], generator=g)], 1)

def test_every_model_is_classified():
    assert STEP_LOGITS | NO_STEP_LOGITS == set(NAMES), 'a new model: add it to STEP_LOGITS or NO_STEP_LOGITS'

@pytest.mark.parametrize('name', NAMES)
def test_forward_backward(name):
    m = build(name).train()
    x, mask = inputs(m.inputs)
    out = m(x, mask)
    assert out['logits'].shape == (B, K)
    m.loss(out, torch.arange(B) % K).backward()
    for n, p in m.named_parameters():
        if not p.requires_grad: continue
        assert p.grad is not None, f'{name}: {n} gets no gradient'
        assert torch.isfinite(p.grad).all(), f'{name}: {n} has a non-finite gradient'
    assert any(p.grad.abs().sum() > 0 for p in m.parameters())

@pytest.mark.parametrize('name', NAMES)
def test_extras_and_step_logits(name):
    m = build(name).eval()
    x, mask = inputs(m.inputs)
    with torch.no_grad(): out = m(x, mask)
    assert 'frame_logits' not in out
    for e in m.extras:
        assert e in out, f'{name}: extra {e!r} missing from the output'
        assert out[e].shape[:2] == (B, T), (name, e, out[e].shape)
        assert (out[e][~mask] == 0).all(), f'{name}: extra {e!r} is not zero at padded steps'
    assert ('step_logits' in m.extras) == (name in STEP_LOGITS), name
    if name in STEP_LOGITS: assert out['step_logits'].shape == (B, T, K)

@pytest.mark.parametrize('name', NAMES)
def test_padding_is_inert(name):
    m = build(name).eval()
    x, mask = inputs(m.inputs)
    mask2 = torch.cat([mask, torch.zeros(B, 3, dtype=torch.bool)], 1)
    with torch.no_grad(): o1, o2 = m(x, mask), m(pad(x, 3), mask2)
    torch.testing.assert_close(o2['logits'], o1['logits'], rtol=0, atol=1e-5)
    for e in m.extras:   # crop every axis to the short run's size (tattn's alpha is (B,T,T)); padded entries are 0 in both
        got = o2[e][tuple(slice(0, n) for n in o1[e].shape)]
        torch.testing.assert_close(got, o1[e], rtol=0, atol=1e-5)

@pytest.mark.parametrize('name', NAMES)
def test_deterministic(name):
    m, m2 = build(name, seed=3), build(name, seed=3)
    s1, s2 = m.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1), f'{name}: same seed, different init'
    m.eval(); x, mask = inputs(m.inputs)
    with torch.no_grad(): o1, o2 = m(x, mask), m(x, mask)
    assert o1.keys() == o2.keys()
    for k in o1: assert torch.equal(o1[k], o2[k]), (name, k)
