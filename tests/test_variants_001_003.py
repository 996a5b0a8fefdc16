"""Opt-in paper variants of issue #14: 001's LSTM baseline form (`lstm` kwargs), 001's motion-attention ALSTM
(`alstm_motion`, Table 2) and 003's two-stream ConvNet schedules (recipe `tattn_convnet_paper`). Tiny and CPU-only."""
import pytest, torch
import torch.nn.functional as F
from memrec.models.base import build_model, import_all_models
from memrec.recipes import PAPER_RECIPES, UCF101_TRAIN_SPLIT1, model_config, schedule

MODELS = import_all_models()
B, T, K = 3, 5, 4
MASK = torch.arange(T)[None] < torch.tensor([5, 3, 1])[:, None]
Y = torch.tensor([0, 1, 3])


def _lstm(**kw):
    torch.manual_seed(0)
    return build_model('lstm', 6, K, hidden=5, **kw).eval()


def test_lstm_001_form_shapes_loss_and_pooling():
    from memrec.models.lstm import LSTM
    m = _lstm(**{**LSTM.PAPER_001, 'fc': 16})
    x = torch.randn(B, T, 6)
    out = m(x, MASK)
    assert out['logits'].shape == (B, K) and out['step_logits'].shape == (B, T, K)
    s = out['step_logits']
    per_step = torch.stack([F.cross_entropy(s[b, :n], Y[b].repeat(n)) for b, n in enumerate(MASK.sum(1).tolist())]).mean()
    torch.testing.assert_close(m.loss(out, Y), per_step)
    summed = torch.stack([s[b, :n].softmax(-1).sum(0) for b, n in enumerate(MASK.sum(1).tolist())])
    torch.testing.assert_close(out['logits'].softmax(-1), summed / summed.sum(-1, keepdim=True))
    assert torch.equal(out['logits'].argmax(-1), summed.argmax(-1))
    assert m.head.net[0].out_features == 16 and m.head.net[2].p == 0.7 and m.drop.p == 0.0


def test_lstm_default_unchanged():
    m = _lstm()
    assert list(m.state_dict()) == ['rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'rnn.bias_ih_l0', 'rnn.bias_hh_l0',
                                    'head.1.weight', 'head.1.bias']
    out = m(torch.randn(B, T, 6), MASK)
    assert set(out) == {'logits', 'step_logits'}
    torch.testing.assert_close(m.loss(out, Y), F.cross_entropy(out['logits'], Y))
    with pytest.raises(ValueError, match='loss'): _lstm(loss='clip')
    with pytest.raises(ValueError, match='pool'): _lstm(pool='max')


def _maps(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 6, 3, 3, generator=g)


def test_alstm_motion_attention_from_flow():
    cls = MODELS.get('alstm_motion')
    assert cls.inputs == 'map2' and PAPER_RECIPES['alstm_motion'] == 'videolstm_paper'
    torch.manual_seed(0); m = cls((6, 3, 3), K, hidden=5, att=4, fc=8).eval()
    xr, xf = _maps(1), _maps(2)
    out = m((xr, xf), MASK)
    a = out['attn']
    assert a.shape == (B, T, 3, 3)
    torch.testing.assert_close(a.sum((2, 3))[MASK], torch.ones(int(MASK.sum())))    # sums to 1 over locations
    assert (a[~MASK] == 0).all()
    t = 2
    xf2 = xf.clone(); xf2[0, t] += 1
    assert (m((xr, xf2), MASK)['attn'][0, t] - a[0, t]).abs().max() > 1e-4          # depends on the flow at t
    xr2 = xr.clone(); xr2[0, t:] += 1
    torch.testing.assert_close(m((xr2, xf), MASK)['attn'][0, :t + 1], a[0, :t + 1])   # not on rgb frames >= t
    xr1 = xr.clone(); xr1[:, 0] += 1   # the first frame's attention reads no rgb at all
    torch.testing.assert_close(m((xr1, xf), MASK)['attn'][:, 0], a[:, 0])


def test_alstm_motion_gradients():
    torch.manual_seed(0); m = MODELS.get('alstm_motion')((6, 3, 3), K, hidden=5, att=4, fc=8).train()
    xr = _maps(1).requires_grad_(); xf = _maps(2).requires_grad_()
    out = m((xr, xf), MASK)
    m.loss(out, Y).backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert xf.grad.abs().sum() > 0 and xr.grad.abs().sum() > 0
    pair = MODELS.get('alstm_motion')(((6, 3, 3), (2, 3, 3)), K, hidden=5, att=4, fc=8)   # streams of different widths
    assert pair((_maps(1), torch.randn(B, T, 2, 3, 3)), MASK)['attn'].shape == (B, T, 3, 3)


def test_tattn_convnet_paper_recipe():
    P = {'train': {'batch_size': 64, 'epochs': 40, 'clip_grad': 20},
         'models': {'convnet': {'finetune': {'recipe': 'tattn_convnet_paper'}}}}
    for stream, lr, total, ms in [('spatial', 0.001, 10000, [4000, 8000]), ('temporal', 0.005, 30000, [10000, 20000])]:
        _, r = model_config(P, 'convnet', stream, 'finetune')
        assert (r['recipe'], r['optimizer'], r['momentum'], r['lr'], r['clip_grad']) == ('tattn_convnet_paper', 'sgd', 0.9, lr, 0)
        s = schedule(r, UCF101_TRAIN_SPLIT1, 'ucf101')
        assert (s['total_steps'], s['milestones']) == (total, ms)
    assert model_config({'train': {}}, 'convnet', 'spatial', 'finetune')[1]['recipe'] == 'matdl_paper'
