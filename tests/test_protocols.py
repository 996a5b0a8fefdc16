"""Issue #14: the papers' test protocols and input variants, opt-in, end to end on a tiny synth dataset (CPU, seconds).

* `finetune.test_protocol` (`rlstm_paper`: 002's 4 groups x 5 crops; `matdl_paper`: 000's 25 frames x 10 crops) and
  `flow_length: 1` (001's single flow image) through `train.train` / `evaluate.evaluate` in fine-tune mode;
* `features.flow_length: 1` through the `features` stage and `featdata` (a 2-channel flow input);
* `local_init: conv5_3` (002's local branch from the pre-trained block) against a local weights file, and kept
  through a checkpoint;
* the defaults are unchanged: no protocol, no split, no local initialisation."""
import json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch

from memrec.finetune import (FINETUNE_DEFAULTS, TEST_PROTOCOLS, MODES, build_end_to_end, finetune_config)

torch.set_num_threads(1)


pytestmark = pytest.mark.xdist_group('test_protocols')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)

@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    "6 synth videos of 10 frames (short side 40) with Farneback flow, made by the pipeline's own stages."
    from memrec.data import prepare
    from memrec.frames import frames as frames_stage
    from memrec.flow import flow as flow_stage
    root = tmp_path_factory.mktemp('protocols')
    P = {'dataset': 'synth', 'split': 1, 'seed': 0,
         'datasets': {'synth': dict(classes=2, groups=3, clips_per_group=1, frames=10, width=64, height=48)},
         'frames': {'short_side': 40, 'workers': 1}, 'flow': {'method': 'farneback', 'bound': 20, 'workers': 1},
         'train': {'mode': 'finetune', 'optimizer': 'sgd', 'lr': 0.01, 'batch_size': 4, 'epochs': 1},
         'models': {'convnet': {'dropout': 0.5}},
         'finetune': {'image_size': 32, 'segments': 3, 'flow_length': 2, 'workers': 0, 'test_crops': 1, 'test_batch': 2,
                      'train': {'batch_size': 2, 'max_iters': 1, 'scale': 'none', 'lr_steps': [], 'lr': 0.01}}}
    prepare(P, root=root); frames_stage(P, root=root); flow_stage(P, root=root)
    return P, root


def test_defaults_off():
    ft, _ = finetune_config({}, 'spatial')
    assert (ft['test_protocol'], ft['test_segments'], ft['snippet_split'], ft['local_init']) == (None, None, False, None)
    assert (ft['test_groups'], ft['test_crops'], ft['flow_length']) == (FINETUNE_DEFAULTS['test_groups'], 10, 5)


@pytest.mark.parametrize('protocol,views,T', [('rlstm_paper', 20, 3), ('matdl_paper', 10, 25)])
def test_protocol_end_to_end(synth, protocol, views, T):
    "A model trained in fine-tune mode and tested with a named protocol, on 001's single flow image (2 channels)."
    from memrec.train import train, load_trained
    from memrec.evaluate import evaluate
    P, root = synth
    PF = P | {'models': {'convnet': {'dropout': 0.5, 'finetune': {'test_protocol': protocol, 'flow_length': 1}}}}
    out = train('convnet', 'temporal', PF, root=root)
    net, ck = load_trained(out / 'model.pt')
    assert ck['in_chans'] == 2 and net.first_conv.in_channels == 2
    want = {k: v for k, v in TEST_PROTOCOLS[protocol].items()}
    assert {k: ck['data'][k] for k in want} == want and ck['data']['flow_length'] == 1
    te = MODES['finetune']['sources'](PF, ck, 'temporal', root)['test']
    batch = next(te.test_batches())
    assert len(batch) == views and batch[0][0].shape[1:] == (T, 2, 32, 32)
    m = evaluate('convnet', 'temporal', PF, root=root)
    assert m['n_videos'] == len(te) and 0 <= m['top1'] <= 1


def test_features_single_flow_image(synth):
    "`features.flow_length: 1`: the features stage reads one flow field per position into a 2-channel backbone; featdata reads it."
    from memrec.backbones import features, load_inputs
    from memrec.featdata import FeatureSource, load_split
    P, root = synth
    PF = P | {'features': {'backbone': 'efficientnet_lite0', 'image_size': 32, 'num_frames': 4, 'flow_length': 1, 'batch_size': 64}}
    d = root / 'data' / 'synth'
    v = sorted(p.name for p in (d / 'flow').iterdir() if p.is_dir())[0]
    x, idx = load_inputs(d, v, 'temporal', 4, 1, 32)
    assert x.shape == (4, 2, 32, 32)
    out = features('temporal', PF, root=root)
    meta = json.loads((out / '_meta.json').read_text())
    assert meta['flow_length'] == 1 and meta['vec_dim'] == 1280
    data = load_split(PF, 'temporal', 'vec', root=root)
    src = FeatureSource(data['train'], 'vec')
    xb, mask, y = src.batch(torch.arange(len(src)), step=0)
    assert xb.shape == (len(src), 4, 1280) and torch.isfinite(xb).all()


def test_local_conv5_3_from_weights_file(tmp_path):
    "The local branch starts as `backbones.resnet101_conv5_3(weights)`, and a reloaded checkpoint rebuilds that layout."
    from memrec.backbones import resnet101_conv5_3, torchvision_net
    torch.manual_seed(0)
    f = tmp_path / 'r101.pth'; torch.save(torchvision_net('resnet101', pretrained=False).state_dict(), f)
    kw = {'hidden': 8, 'embed': 8, 'bottleneck': 8, 'dropout': 0.}
    net = build_end_to_end('rlstm2b', kw, 2, 'spatial', 'resnet101_conv5_2', 32, weights=str(f), local_init='conv5_3')
    ref = resnet101_conv5_3(weights=str(f)).state_dict(); got = net.temporal.local.state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    ck = {'model': 'rlstm2b', 'kwargs': kw, 'n_classes': 2, 'stream': 'spatial', 'backbone': 'resnet101_conv5_2',
          'data': {'image_size': 32, 'flow_length': 5}, 'in_chans': 3, 'bn': 'partial', 'local_init': 'conv5_3',
          'backbone_state_dict': net.backbone.state_dict(), 'state_dict': net.temporal.state_dict()}
    back = MODES['finetune']['load'](ck).eval(); net.eval()
    x = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad(): assert torch.allclose(back(x)['logits'], net(x)['logits'])
