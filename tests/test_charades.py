"""End to end: Charades as a pipeline dataset (002, Table 8), on a tiny fixture in Charades' own formats.

The real archives cannot be downloaded here, so the fixture is synth videos relabelled multi-label and packed like
the official ones: `Charades_v1_480.zip` (videos under `Charades_v1_480/`) and `Charades.zip` (the train / test CSVs
and the class list under `Charades/`), given to `prepare` as local paths. `dvc repro` in a scratch copy of the
repository then runs every stage for one model (`rlstm2b`) and one replicate, and the checks are those of a
multi-label run: one official split, multi-hot targets trained with binary cross-entropy, test scores max-pooled
over clips, `map` in metrics.json, and the Table 8 notebook filled from it."""
import json, os, shutil, subprocess, sys, zipfile
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, yaml

pytestmark = pytest.mark.xdist_group('test_charades')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {'classes': 2, 'groups': 3, 'clips_per_group': 2, 'frames': 12, 'width': 80, 'height': 60, 'fps': 25,
        'distractor_ratio': 0.25, 'ext': 'avi', 'seed': 0}
N_CLASSES = 6             # the fixture's class list: c000, c001 as the synth classes, c004 co-occurring, the rest in no video
HEAD = 'id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n'

def run(cmd, cwd, check=True):
    env = {**os.environ, 'PATH': f'{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1'}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode: raise AssertionError(f'{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return r

def charades_archives(d: Path) -> tuple[dict, pd.DataFrame]:
    "Synth videos as a Charades fixture: the two archives (local paths, `datasets.charades.urls`) and the labels given."
    from memrec.synth import SynthConfig, generate_synth
    from memrec.data import ucf_split_table
    raw = d / 'synth'; generate_synth(raw, SynthConfig(**TINY)); t = ucf_split_table(raw / 'ucfTrainTestlist')
    rows = []
    for i, r in enumerate(t.itertuples()):
        acts = [f'c{r.label:03d} 0.00 0.40'] + (['c004 0.10 0.30'] if r.video.endswith('_c02') else [])
        if i == 0: acts = []                                    # a (test) video without any action
        rows.append({'id': f'V{i:04d}', 'file': r.path, 'actions': ';'.join(acts), 'role': r.split1,
                     'labels': sorted({int(a[1:4]) for a in acts})})
    lab = pd.DataFrame(rows)
    with zipfile.ZipFile(d / 'Charades_v1_480.zip', 'w') as z:
        for r in lab.itertuples(): z.write(raw / 'videos' / r.file, f'Charades_v1_480/{r.id}.avi')
    csv = lambda role: HEAD + ''.join(f'{r.id},P01,Kitchen,6,7,Yes,"Someone acts, then stops.",cup,"A person, acting.",{r.actions},0.48\n'
                                      for r in lab[lab.role == role].itertuples())
    with zipfile.ZipFile(d / 'Charades.zip', 'w') as z:
        z.writestr('Charades/Charades_v1_train.csv', csv('train')); z.writestr('Charades/Charades_v1_test.csv', csv('test'))
        z.writestr('Charades/Charades_v1_classes.txt', ''.join(f'c{k:03d} Action number {k}\n' for k in range(N_CLASSES)))
    return {'videos': str(d / 'Charades_v1_480.zip'), 'annotations': str(d / 'Charades.zip')}, lab

def charades_params(p: dict, urls: dict) -> dict:
    "params.yaml for a tiny Charades run of rlstm2b: one replicate, RGB table, 002's test clips mapped onto 6 cached positions."
    p['dataset'] = 'charades'
    p['datasets']['charades'] = {'urls': urls, 'sha256': {}, 'verify_tls': True, 'extractor': 'auto', 'rawframes': None}
    p['replicates'] = {'splits': [1], 'seeds': [0]}
    for m in p['models'].values(): (m or {}).pop('replicates', None)      # Charades has split 1 only
    p['frames']['short_side'] = 64
    p['features'].update(image_size=64, num_frames=6, flow_length=2)
    p['pipeline']['models'] = ['rlstm2b']
    p['models']['rlstm2b']['train'] = {'lr': 0.01, 'epochs': 2, 'batch_size': 8, 'clip_grad': 0,
                                       'segments': None, 'snippet': 3, 'test_snippets': 10}      # a clip = 3 of the 6 positions
    p['tables']['notebooks'] = ['rlstm_table8']
    return p

@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp('charades'); dst = d / 'repo'
    keep = shutil.ignore_patterns('.venv', '.git', 'data', 'results', 'reports', '__pycache__', '*.egg-info', 'dvc.lock', '.dvc')
    shutil.copytree(ROOT, dst, ignore=keep)
    urls, lab = charades_archives(d)
    p = charades_params(yaml.safe_load((ROOT / 'params.yaml').read_text()), urls)
    (dst / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    (dst / 'labels.json').write_text(lab.to_json())
    run('git init -q && dvc init -q && dvc config core.analytics false', dst)
    return dst

def test_one_official_split_only():
    "Asking for split 2 of Charades fails before any work, in one line naming the valid splits."
    from memrec.schema import ParamsError, validate_params
    p = charades_params(yaml.safe_load((ROOT / 'params.yaml').read_text()), {'videos': None, 'annotations': 'x.zip'})
    validate_params(p)
    p['replicates']['splits'] = [1, 2]
    with pytest.raises(ParamsError) as e: validate_params(p)
    assert str(e.value) == 'params.yaml: replicates.splits[1]: charades has no split 2; valid splits: 1'

def test_repro_charades_multilabel(repo):
    run('dvc repro', repo)
    lab = pd.read_json(repo / 'labels.json')
    idx = pd.read_csv(repo / 'data/charades/index.csv')
    assert [c for c in idx.columns if c.startswith('split')] == ['split1'] and 'labels' in idx and len(idx) == len(lab)
    test = lab[lab.role == 'test'].set_index('id')
    rd = repo / 'results/charades/rlstm2b/split1/seed0'
    m = json.loads((rd / 'spatial/metrics.json').read_text())
    assert 0 < m['map'] <= 1 and 0 <= m['hit1'] <= 1 and m['n_videos'] == len(test) and 'top1' not in m, m
    z = np.load(rd / 'spatial/scores.npz')
    y = np.zeros((len(test), N_CLASSES)); [y.__setitem__((i, k), 1) for i, v in enumerate(z['videos']) for k in test.labels[v]]
    assert z['labels'].shape == (len(test), N_CLASSES) and (z['labels'] == y).all()      # multi-hot, from the CSV's actions
    assert ((z['prob'] >= 0) & (z['prob'] <= 1)).all() and np.allclose(z['prob'], 1 / (1 + np.exp(-z['logits'])), atol=1e-5)
    from memrec.charades import mean_average_precision
    assert abs(mean_average_precision(z['prob'], z['labels']) - m['map']) < 1e-9
    pc = pd.read_csv(rd / 'spatial/per_class.csv')
    assert pc.columns.tolist() == ['class', 'n_videos', 'ap'] and len(pc) == N_CLASSES and pc.ap.isna().iloc[5]
    log = pd.read_csv(rd / 'spatial/train_log.csv'); assert len(log) == 2 and np.isfinite(log.loss).all()
    assert 'map' in json.loads((rd / 'twostream/metrics.json').read_text())
    assert json.loads((repo / 'results/charades/summary/rlstm2b.json').read_text())['spatial']['n'] == 1
    md = (repo / 'reports/charades/rlstm_table8.md').read_text()
    row = next(l for l in md.splitlines() if l.startswith('| Two-branch'))
    assert f'{m["map"] * 100:.1f} (n=1)' in row, row                               # our mAP, from metrics.json

def test_test_clips_are_max_pooled(repo):
    "The stored logits of a test video are the maximum over its clips (002, Sec. 5.6) of the model's clip logits."
    from memrec.train import MODES, load_trained
    p = yaml.safe_load((repo / 'params.yaml').read_text()); p.update(split=1, seed=0)
    rd = repo / 'results/charades/rlstm2b/split1/seed0/spatial'
    net, ck = load_trained(rd / 'model.pt'); te = MODES['features']['sources'](p, ck, 'spatial', repo)['test']
    b = torch.arange(len(te)); views = te.views(b)
    assert len(views) == 4 and all(x.shape[1] == 3 for x, _, _ in views)          # starts 0..3 of 6 positions: 4 distinct clips
    with torch.no_grad(): clip = torch.stack([net(x, mask)['logits'] for x, mask, _ in views])
    z = np.load(rd / 'scores.npz')
    np.testing.assert_allclose(z['logits'], clip.amax(0).numpy(), atol=1e-5)
