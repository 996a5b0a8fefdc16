"""Training robustness on a tiny problem, in scratch folders, in both training modes (`train.mode`): fake cached
features for `features`, fake frames (EfficientNet-Lite0 fine-tuned end to end at 32 px) for `finetune`.

* Resume: a `memrec`-style training process killed with SIGKILL three times (at different steps, after checkpoints
  were written) and restarted each time ends with exactly the weights, log and metrics of an uninterrupted run.
* DDP: `torchrun --nproc_per_node 2` on CPU (gloo) gives the weights, log and metrics of a single-process run,
  within floating-point tolerance (same global batches shared out over the ranks, no dropout).

Each run is a separate `python` / `torchrun` process reading the scratch folder's params.yaml, as `dvc repro` runs it."""
import json, os, signal, subprocess, sys
from pathlib import Path
import cv2, numpy as np, pandas as pd, pytest, torch, yaml

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS, EVERY = 3, 16, 4      # 18 training videos (27 minus 9 held out for validation), batch 7
PARAMS = {'seed': 0, 'dataset': 'synth', 'split': 1, 'features': {'flow_length': 1},
          'train': {'optimizer': 'sgd', 'lr': 0.2, 'momentum': 0.9, 'weight_decay': 0.0005, 'batch_size': 7, 'epochs': EPOCHS,
                    'lr_steps': [0.6], 'clip_grad': 20, 'checkpoint_every': EVERY, 'val_fraction': 0.3},
          'models': {'lstm': {'hidden': 8, 'dropout': 0.3}, 'lstm0': {'arch': 'lstm', 'hidden': 8, 'dropout': 0.0}}}
# prints each finished step and slows the loop a little, so that the test can kill it at a chosen point
DRIVER = ("import sys, time, memrec.train as T\n"
          "T.train(sys.argv[1], 'spatial', callback=lambda s: (print(f'STEP {s}', flush=True), time.sleep(0.05)))\n")

def env():
    return {**os.environ, 'MEMREC_QUIET': '1', 'OMP_NUM_THREADS': '1',
            'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}

# fine-tuning: every BN layer frozen (batch statistics would differ between 1 and 2 processes), a short SGD run
FINETUNE = {'image_size': 32, 'segments': 2, 'workers': 0, 'test_crops': 1, 'bn': 'frozen',
            'train': {'lr': 0.004, 'batch_size': 7, 'max_iters': None, 'milestones': [], 'lr_steps': [0.6], 'weight_decay': 0.0005}}

def make_repo(d: Path, mode: str = 'features') -> Path:
    """params.yaml, index.csv and, per video of 3 classes x 4 groups x 3 clips (split 1 tests group 1), cached features
    (T=4, D=8) or, for fine-tuning, 6 frames of 40x40 px whose colour carries the class."""
    (d / 'data/synth/features/spatial').mkdir(parents=True)
    p = {**PARAMS, 'train': {**PARAMS['train'], 'mode': mode}, 'finetune': FINETUNE}
    (d / 'params.yaml').write_text(yaml.safe_dump(p))
    rng = np.random.default_rng(0); centres = rng.normal(size=(3, 8)); rows = []
    for c in range(3):
        for g in range(1, 5):
            for k in range(1, 4):
                v = f'v_C{c}_g{g:02d}_c{k:02d}'
                vec = (centres[c] + 2.5 * rng.normal(size=(4, 8))).astype(np.float32)
                np.savez(d / f'data/synth/features/spatial/{v}.npz', vec=vec, frames=np.arange(4))
                if mode == 'finetune':
                    (d / f'data/synth/frames/{v}').mkdir(parents=True)
                    for f in range(6):
                        im = np.clip(rng.normal(60 + 70 * np.eye(3)[c] * 2, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                        cv2.imwrite(str(d / f'data/synth/frames/{v}/img_{f + 1:05d}.jpg'), im)
                rows.append({'video': v, 'path': f'C{c}/{v}.avi', 'class': f'C{c}', 'label': c,
                             **{f'split{s}': 'test' if g == s else 'train' for s in (1, 2, 3)}})
    pd.DataFrame(rows).to_csv(d / 'data/synth/index.csv', index=False)
    return d

def outputs(d: Path, model: str) -> dict:
    from memrec.core import load_params
    from memrec.evaluate import evaluate
    rd = d / 'results/synth' / model / 'split1/seed0/spatial'
    metrics = evaluate(model, 'spatial', load_params(d / 'params.yaml'), root=d)
    ck = torch.load(rd / 'model.pt', weights_only=False)
    state = {**ck['state_dict'], **{f'backbone.{k}': v for k, v in ck.get('backbone_state_dict', {}).items()}}
    return {'state': state, 'log': pd.read_csv(rd / 'train_log.csv'),
            'metrics': metrics, 'files': sorted(p.name for p in rd.iterdir())}

def train_proc(d: Path, model: str):
    return subprocess.Popen([sys.executable, '-c', DRIVER, model], cwd=d, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

def finish(p) -> str:
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-3000:]
    return out

MODES = pytest.mark.parametrize('mode', ['features', 'finetune'])

@MODES
def test_killed_three_times_resumes_exactly(tmp_path, mode):
    ref = make_repo(tmp_path / 'ref', mode); run = make_repo(tmp_path / 'killed', mode)
    finish(train_proc(ref, 'lstm'))
    ck = run / 'results/synth/lstm/split1/seed0/spatial/checkpoint.pt'
    resumed_at = []
    for target in (10, 23, 37):                        # kill points between checkpoints (every 4 steps), all different
        p = train_proc(run, 'lstm'); seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith('STEP ') and int(line.split()[1]) >= target: break
        p.send_signal(signal.SIGKILL); p.wait()
        assert p.returncode == -signal.SIGKILL and ck.exists(), ''.join(seen)[-2000:]
        resumed_at += [int(l.split('resuming from step ')[1].split()[0]) for l in seen if 'resuming from step' in l]
    out = finish(train_proc(run, 'lstm'))
    resumed_at += [int(l.split('resuming from step ')[1].split()[0]) for l in out.splitlines() if 'resuming from step' in l]
    # runs 2, 3 and 4 each resumed from the last checkpoint written before the previous kill
    assert len(resumed_at) == 3 and all(s % EVERY == 0 for s in resumed_at), resumed_at
    assert [t - EVERY < s <= t + EVERY for t, s in zip((10, 23, 37), resumed_at)] == [True] * 3, resumed_at
    a, b = outputs(ref, 'lstm'), outputs(run, 'lstm')
    print(f'resumed at steps {resumed_at}; metrics {a["metrics"]}')
    assert len(a['log']) == EPOCHS and a['log'].step.iloc[-1] == EPOCHS * STEPS_PER_EPOCH
    pd.testing.assert_frame_equal(a['log'], b['log'], check_exact=True)
    for k in a['state']: assert torch.equal(a['state'][k], b['state'][k]), k
    assert a['metrics'] == b['metrics'] and 'val_top1' in a['metrics']
    assert b['files'] == ['confusion.png', 'metrics.json', 'model.pt', 'per_class.csv', 'scores.npz', 'train_log.csv']  # no checkpoint, no temp files
    for f in b['files']:                               # byte-identical result files: identical runs give identical outputs
        assert (ref / 'results/synth/lstm/split1/seed0/spatial' / f).read_bytes() == (run / 'results/synth/lstm/split1/seed0/spatial' / f).read_bytes(), f

@MODES
def test_torchrun_two_processes_match_one(tmp_path, mode):
    one = make_repo(tmp_path / 'one', mode); two = make_repo(tmp_path / 'two', mode)
    cmd = ['-m', 'memrec.train', '--model', 'lstm0', '--stream', 'spatial']
    r1 = subprocess.run([sys.executable, *cmd], cwd=one, env=env(), capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stdout[-2000:] + r1.stderr[-3000:]
    r2 = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', *cmd],
                        cwd=two, env=env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-3000:]
    assert 'over 2 processes' in r2.stdout and r2.stdout.count('train lstm0/spatial (') == 1, r2.stdout   # rank 0 reports
    a, b = outputs(one, 'lstm0'), outputs(two, 'lstm0')
    assert torch.load(two / 'results/synth/lstm0/split1/seed0/spatial/model.pt', weights_only=False)['world_size'] == 2
    print('max |w1 - w2|:', max(float((a['state'][k] - b['state'][k]).abs().max()) for k in a['state']), a['metrics'], b['metrics'])
    for k in a['state']: torch.testing.assert_close(a['state'][k], b['state'][k], rtol=1e-4, atol=1e-5, msg=k)
    pd.testing.assert_frame_equal(a['log'], b['log'], rtol=1e-5)
    assert a['log'].train_top1.iloc[-1] > 0.6                     # it learned something: the comparison is not trivial
    assert a['metrics']['top1'] == b['metrics']['top1'] and a['metrics']['val_top1'] == b['metrics']['val_top1']

@MODES
def test_training_never_reads_test_videos(tmp_path, mode):
    "Model selection never sees test data: with every test video's inputs deleted and its label changed, training gives the same model."
    ref = make_repo(tmp_path / 'ref', mode); blind = make_repo(tmp_path / 'blind', mode)
    idx = pd.read_csv(blind / 'data/synth/index.csv'); test = idx.split1 == 'test'
    for v in idx.video[test]:
        (blind / f'data/synth/features/spatial/{v}.npz').unlink()
        if mode == 'finetune':
            for f in (blind / f'data/synth/frames/{v}').iterdir(): f.unlink()
    idx.loc[test, 'label'] = (idx.label[test] + 1) % 3; idx.to_csv(blind / 'data/synth/index.csv', index=False)
    for d in (ref, blind): finish(train_proc(d, 'lstm'))
    a, b = (torch.load(d / 'results/synth/lstm/split1/seed0/spatial/model.pt', weights_only=False) for d in (ref, blind))
    for k in a['state_dict']: assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    assert a['val_videos'] == b['val_videos'] and not set(a['val_videos']) & set(idx.video[test])
