"""Issue #14 protocol items, on tiny scratch data (CPU, seconds):

* `train.init` through the `model@<model>` stage (`run.run_model`): with `init: spatial` the temporal units start from
  the spatial model of their replicate and run only after the spatial units (checked in one process, and in a pool of
  two spawned workers, where `run.run_scheduled` submits each temporal unit once its own spatial unit has finished:
  the scheduling itself is tested in nbs/08d_run.ipynb); a source on another dataset that does not exist stops the
  stage before any unit runs.
* `fusion.rule: logits` through `evaluate.fuse` on the stage's own scores.
* `run.file_hashes`: the stage key's folder fingerprints and the manifest are those of the code it replaced."""
import hashlib, json, shutil
from pathlib import Path
import numpy as np, pytest, torch, yaml
from test_train_resume_ddp import PARAMS, make_repo     # the scratch dataset of cached features used there (spatial only)

LSTM = {'hidden': 8, 'dropout': 0.0, 'train': {'init': 'spatial'}}

def both_streams(d: Path, epochs: int = 2) -> dict:
    "make_repo's scratch repository with its features copied for the temporal stream; its params with `init: spatial`."
    make_repo(d)
    shutil.copytree(d / 'data/synth/features/spatial', d / 'data/synth/features/temporal')
    p = {**PARAMS, 'train': {**PARAMS['train'], 'epochs': epochs, 'val_fraction': 0.0, 'checkpoint_every': None},
         'models': {'lstm': LSTM}, 'replicates': {'splits': [1, 2], 'seeds': [0]}, 'fusion': {'rule': 'logits', 'spatial_weight': 0.45}}
    (d / 'params.yaml').write_text(yaml.safe_dump(p))
    return p

def test_temporal_units_wait_for_spatial(tmp_path, monkeypatch):
    import memrec.run as R
    d = tmp_path / 'repo'; p = both_streams(d); order = []
    real = R.run_unit
    def spy(job):
        src = d / f'results/synth/lstm/split{job["split"]}/seed0/spatial/model.pt'
        order.append((job['stream'], job['split'], src.exists())); return real(job)
    monkeypatch.setattr(R, 'run_unit', spy); monkeypatch.setenv('MEMREC_QUIET', '1')
    R.run_model('lstm', p, root=d, workers=1)
    assert [(st, k) for st, k, _ in order] == [('spatial', 1), ('spatial', 2), ('temporal', 1), ('temporal', 2)]
    assert all(ok for st, _, ok in order if st == 'temporal')
    for k in (1, 2):
        rd = d / f'results/synth/lstm/split{k}/seed0'
        sp, tp = (torch.load(rd / s / 'model.pt', weights_only=False) for s in ('spatial', 'temporal'))
        assert 'init' not in sp and tp['init']['from'] == f'results/synth/lstm/split{k}/seed0/spatial/model.pt'
        assert tp['init']['not_copied'] == [] and len(tp['init']['copied']) == len(sp['state_dict'])
        m = json.loads((rd / 'twostream/metrics.json').read_text())
        assert m['rule'] == 'logits' and m['spatial_weight'] == 0.45 and m['top1'] == m['top1_logits']
        z = {s: dict(np.load(rd / s / 'scores.npz')) for s in ('spatial', 'temporal', 'twostream')}
        fused = 0.45 * z['spatial']['logits'] + 0.55 * z['temporal']['logits']
        e = np.exp(fused - fused.max(1, keepdims=True))
        np.testing.assert_allclose(z['twostream']['prob'], e / e.sum(1, keepdims=True), rtol=1e-6)
    # a second run finds every unit done: nothing re-runs
    order.clear(); R.run_model('lstm', p, root=d, workers=1); assert order == []
    # resuming with only a temporal unit left: it runs at once, from the spatial model already there
    (d / 'results/synth/lstm/split2/seed0/temporal/unit.json').unlink()
    R.run_model('lstm', p, root=d, workers=1); assert order == [('temporal', 2, True)]

def test_pool_starts_each_temporal_unit_from_its_own_spatial_model(tmp_path, monkeypatch):
    import memrec.run as R
    d = tmp_path / 'repo'; p = both_streams(d); monkeypatch.setenv('MEMREC_QUIET', '1')
    R.run_model('lstm', p, root=d, workers=2)
    for k in (1, 2):
        rd = d / f'results/synth/lstm/split{k}/seed0'
        sp, tp = (torch.load(rd / s / 'model.pt', weights_only=False) for s in ('spatial', 'temporal'))
        assert tp['init']['from'] == f'results/synth/lstm/split{k}/seed0/spatial/model.pt'
        assert len(tp['init']['copied']) == len(sp['state_dict']) and (rd / 'twostream/metrics.json').exists()

def test_missing_source_on_other_dataset_stops_before_any_unit(tmp_path, monkeypatch):
    import memrec.run as R
    d = tmp_path / 'repo'; p = both_streams(d)
    p['models'] = {'lstm': {**LSTM, 'train': {'init': {'dataset': 'ucf101'}}}}
    ran = []; monkeypatch.setattr(R, 'run_unit', lambda job: ran.append(job))
    with pytest.raises(FileNotFoundError, match=r'results/ucf101/lstm/split1/seed0/spatial/model\.pt, which does not exist'):
        R.run_model('lstm', p, root=d, workers=1)
    assert ran == []

def old_fingerprint(path: Path, data: bool):
    "run._fingerprint as it was before `file_hashes` (the reference)."
    from memrec.core import config_hash
    if path.is_file(): return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if not path.is_dir(): return None
    files = sorted(f for f in path.rglob('*') if f.is_file() and '__pycache__' not in f.parts)
    if data: return config_hash([(str(f.relative_to(path)), f.stat().st_size) for f in files])
    return config_hash([(str(f.relative_to(path)), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files])

def old_manifest(d: Path) -> dict:
    "run.write_manifest's dict as it was before `file_hashes` (the reference)."
    return {f.relative_to(d).as_posix(): hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(d.rglob('*')) if f.is_file() and f.name != 'unit.json'}

def test_file_hashes_keep_stage_key_and_manifest(tmp_path):
    from memrec.core import atomic_write_json
    from memrec.paths import manifest_path, model_dir
    from memrec.run import _fingerprint, write_manifest
    rng = np.random.default_rng(0)
    code = tmp_path / 'code'
    for f in ('a.py', 'models/b.py', 'models/__pycache__/b.cpython-311.pyc', 'models/x/c.py', 'z.txt', 'A.py'):
        (code / f).parent.mkdir(parents=True, exist_ok=True); (code / f).write_bytes(rng.bytes(int(rng.integers(0, 50))))
    for data in (False, True): assert _fingerprint(code, data) == old_fingerprint(code, data)
    assert _fingerprint(code / 'a.py', False) == old_fingerprint(code / 'a.py', False)
    assert _fingerprint(code / 'missing', False) is None
    q = {'dataset': 'synth'}; d = model_dir('synth', 'lstm', tmp_path)
    for f in ('split1/seed0/spatial/model.pt', 'split1/seed0/spatial/unit.json', 'split1/seed0/twostream/scores.npz', 'split2/seed0/temporal/metrics.json'):
        (d / f).parent.mkdir(parents=True, exist_ok=True); (d / f).write_bytes(rng.bytes(20))
    new = write_manifest(q, 'lstm', tmp_path); written = manifest_path('synth', 'lstm', tmp_path).read_bytes()
    assert new == old_manifest(d) and list(new) == list(old_manifest(d))
    atomic_write_json(tmp_path / 'old.json', old_manifest(d)); assert written == (tmp_path / 'old.json').read_bytes()
