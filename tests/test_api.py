"""The models API (`nbs/07z_api.ipynb`): every registered model round-trips create_model -> save_model (the model.pt
dict `memrec train` writes in mode `features`) -> load_model with identical outputs, and save_model writes the keys
of a real training run."""
import numpy as np, pandas as pd, pytest, torch
import memrec
from memrec.api import model_defaults
from memrec.models.base import import_all_models

SMALL = {'hidden': 8, 'mem_dim': 8, 'att': 8, 'fc': 16, 'embed': 4, 'hidden_m': 8}   # fast; whichever a model takes

def inputs(net, B=3, T=5, seed=0):
    "Random inputs of the kind `net` reads, and a mask with one padded video."
    g = torch.Generator().manual_seed(seed)
    if net.inputs == 'vec': x = torch.randn(B, T, net.in_dim, generator=g)
    elif net.inputs == 'map': x = torch.randn(B, T, *net.in_dim, generator=g)
    else: x = tuple(torch.randn(B, T, *net.in_dim, generator=g) for _ in range(2))
    mask = torch.ones(B, T, dtype=torch.bool); mask[1, 3:] = False
    return x, mask

@pytest.mark.parametrize('name', memrec.list_models())
def test_round_trip(tmp_path, name):
    torch.manual_seed(0)
    kw = {k: v for k, v in SMALL.items() if k in model_defaults(name)}
    in_dim = 16 if import_all_models()[name].inputs == 'vec' else (16, 3, 3)
    net = memrec.create_model(name, in_dim, 4, **kw)
    x, mask = inputs(net)
    net.train(); net(x, mask)                        # one training-mode pass: BN running statistics (rlstm) move off their init
    net.eval()
    p = memrec.save_model(net, tmp_path / 'model.pt', classes=list('abcd'), stream='temporal')
    back, ck = memrec.load_model(p, checkpoint=True)
    assert type(back) is type(net) and not back.training
    assert (ck['model'], ck['mode'], ck['stream'], ck['classes'], ck['kwargs']) == (name, 'features', 'temporal', list('abcd'), kw)
    with torch.no_grad(): a, b = net(x, mask), back(x, mask)
    assert set(a) == set(b) and set(net.extras) <= set(a) | {'mask'}
    for k in a: assert torch.equal(a[k], b[k]), k

def test_paper_defaults():
    net = memrec.create_model('matdl', in_dim=2048, n_classes=101)
    assert (net.hidden, net.mem_dim, net.ctrl_dim, net.thr) == (512, 512, 512, 0.5)
    assert net.classifier.out_features == 101 and net.cell.input_size == 2048
    assert memrec.model_defaults('tattn')['hidden'] == 512 and memrec.model_defaults('alstm')['fc'] == 1024

def test_save_model_writes_what_train_writes(tmp_path):
    "The keys of save_model's dict are those of a model.pt from `memrec.train.train` (mode features) on fake features."
    from memrec.train import train
    d = tmp_path / 'data/synth'; (d / 'features/spatial').mkdir(parents=True); rows = []
    rng = np.random.default_rng(0)
    for c in range(2):
        for g in range(1, 4):
            v = f'v_C{c}_g{g:02d}_c01'
            np.savez(d / f'features/spatial/{v}.npz', vec=rng.normal(size=(4, 8)).astype(np.float32), frames=np.arange(4))
            rows.append({'video': v, 'path': f'C{c}/{v}.avi', 'class': f'C{c}', 'label': c,
                         **{f'split{s}': 'test' if g == s else 'train' for s in (1, 2, 3)}})
    pd.DataFrame(rows).to_csv(d / 'index.csv', index=False)
    params = {'seed': 0, 'dataset': 'synth', 'split': 1, 'frames': {'short_side': 112}, 'flow': {'method': 'farneback', 'bound': 20},
              'features': {'backbone': 'efficientnet_lite0', 'image_size': 112, 'num_frames': 4, 'flow_length': 1},
              'train': {'optimizer': 'sgd', 'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0, 'batch_size': 4, 'epochs': 1,
                        'lr_steps': [], 'clip_grad': 0},
              'models': {'lstm': {'hidden': 4}}}
    out = train('lstm', 'spatial', params, root=tmp_path)
    real = torch.load(out / 'model.pt', weights_only=False)
    net = memrec.load_model(out / 'model.pt')
    mine = torch.load(memrec.save_model(net, tmp_path / 'mine.pt', real['classes'], kwargs=real['kwargs']), weights_only=False)
    assert set(mine) == set(real), set(mine) ^ set(real)
    for k in ('mode', 'model', 'kwargs', 'in_dim', 'n_classes', 'classes', 'inputs'): assert mine[k] == real[k], k
    assert all(torch.equal(mine['state_dict'][k], v) for k, v in real['state_dict'].items())
