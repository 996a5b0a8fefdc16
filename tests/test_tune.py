"""`memrec tune` (nbs/08e_tune.ipynb) on a tiny dataset in scratch folders.

* Model selection never sees test data: with every read of a test video's row of a feature store made to fail,
  tuning runs; with the test videos' features deleted and their labels moved to a class of their own, it gives
  exactly the same validation results.
* Bad input: one line `memrec: error: ...` naming the key, exit status 2, and no training started.
* `--write` on a copy of the project's params.yaml changes only the chosen values' text."""
import itertools, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
GRID = {'features.vector': ['head', 'map_mean'], 'models.lstm.train.epochs': [5]}

def make_repo(d: Path) -> Path:
    """params.yaml (with `tune:`), index.csv and cached spatial features (T=4: `vec` 8-d, `map` 4x2x2) of 3 classes x
    4 groups x 3 clips; split 1 tests group 1."""
    fd = d / 'data/synth/features/spatial'; fd.mkdir(parents=True)
    rng = np.random.default_rng(0); centres = rng.normal(size=(3, 8)); rows = []
    for c, g, k in itertools.product(range(3), range(1, 5), range(1, 4)):
        v = f'v_C{c}_g{g:02d}_c{k:02d}'
        vec = centres[c] + 1.5 * rng.normal(size=(4, 8))
        np.savez(fd / f'{v}.npz', vec=vec.astype(np.float16), map=(vec[:, :4, None, None] + rng.normal(size=(4, 4, 2, 2))).astype(np.float16),
                 frames=np.arange(4))
        rows.append({'video': v, 'class': f'C{c}', 'label': c, **{f'split{s}': 'test' if g == s else 'train' for s in (1, 2, 3)}})
    pd.DataFrame(rows).to_csv(d / 'data/synth/index.csv', index=False)
    p = {'dataset': 'synth', 'replicates': {'splits': [1], 'seeds': [0]}, 'flow': {'method': 'farneback'},
         'features': {'backbone': 'efficientnet_lite0', 'vector': 'head'},
         'train': {'optimizer': 'sgd', 'lr': 0.2, 'momentum': 0.9, 'weight_decay': 0.0005, 'batch_size': 7, 'epochs': 5,
                   'lr_steps': [0.6], 'clip_grad': 20},
         'models': {'lstm': {'hidden': 8, 'dropout': 0.0}},
         'tune': {'splits': [1], 'seeds': [0, 1], 'val_fraction': 0.3, 'streams': ['spatial'], 'grid': {'lstm': GRID}}}
    (d / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    return d

@pytest.fixture(autouse=True)
def quiet(monkeypatch): monkeypatch.setenv('MEMREC_QUIET', '1')

def the_test_videos(d: Path) -> set:
    idx = pd.read_csv(d / 'data/synth/index.csv'); return set(idx.video[idx.split1 == 'test'])

def guard_test_rows(monkeypatch, test: set):
    "Every read of a feature-store row that belongs to a test video raises."
    from memrec import featdata
    read = featdata.RowStore.read
    def guarded(self, rows):
        names = {self.videos[int(r)] for r in np.asarray(rows).reshape(-1)}
        if names & test: raise AssertionError(f'read the features of test videos {sorted(names & test)}')
        return read(self, rows)
    monkeypatch.setattr(featdata.RowStore, 'read', guarded)

def test_tune_never_reads_test_videos(tmp_path, monkeypatch):
    from memrec import featdata
    from memrec.core import load_params
    from memrec.tune import tune
    ref, blind = make_repo(tmp_path / 'ref'), make_repo(tmp_path / 'blind')
    test = the_test_videos(ref)
    for kind in ('vec', 'map'): featdata.feature_store('synth', 'spatial', kind, ref)   # the stores exist (as after `dvc repro`)
    guard_test_rows(monkeypatch, test)
    with pytest.raises(AssertionError, match='read the features of test videos'):      # the guard works ...
        part = featdata.load_split(load_params(ref / 'params.yaml') | {'split': 1}, 'spatial', 'vec', ref, parts=('test',))['test']
        part['x'][0][np.arange(2)]
    a = tune('lstm', root=ref)                                                            # ... and tuning never trips it
    idx = pd.read_csv(blind / 'data/synth/index.csv'); t = idx.split1 == 'test'
    for v in idx.video[t]: (blind / f'data/synth/features/spatial/{v}.npz').unlink()
    idx.loc[t, 'label'], idx.loc[t, 'class'] = 3, 'C3'                                    # test labels: a class of their own
    idx.to_csv(blind / 'data/synth/index.csv', index=False)
    b = tune('lstm', root=blind)
    cols = ['point', 'split', 'seed', 'val_top1', 'val_mean_class_acc', 'val_nll_spatial', 'n_train_spatial', 'n_val_spatial']
    pd.testing.assert_frame_equal(a['runs'][cols], b['runs'][cols])
    assert len(a['runs']) == 4 and (a['runs'].n_val_spatial == 9).all() and (a['runs'].n_train_spatial == 18).all()
    assert a['runs'].val_top1.max() > 0.5                          # it learned something (chance 1/3): the equality means something
    assert (ref / 'reports/synth/tuning/lstm.csv').exists() and '**chosen**' in (ref / 'reports/synth/tuning/lstm.md').read_text()

@pytest.mark.parametrize('change, args, needle', [
    ({}, ['--model', 'lstn'], "--model 'lstn': params.yaml has no models: entry for it; valid model names (models: entries): lstm"),
    ({'grid': {'lstm': {'models.lstm.train.epoch': [1]}}}, ['--model', 'lstm'], "unknown recipe key 'epoch'; valid recipe keys:"),
    ({'grid': {'lstm': {'models.lstm.hiden': [4]}}}, ['--model', 'lstm'], "'models.lstm.hiden' is not a key of params.yaml nor a keyword of model lstm"),
    ({'grid': {'lstm': {'train.lrr': [1]}}}, ['--model', 'lstm'], "'train.lrr' is not a key of params.yaml; train has: optimizer, lr"),
    ({'grid': {'lstm': {'models.lstm.hidden': []}}}, ['--model', 'lstm'], 'tune.grid.lstm.models.lstm.hidden: must be a non-empty list of values, got []'),
    ({'val_fraction': 0}, ['--model', 'lstm'], 'tune.val_fraction: must be a number in (0, 1)'),
    ({'val_fraction': 1.0}, ['--model', 'lstm'], 'tune.val_fraction: must be a number in (0, 1)'),
    ({'grid': {'lstm': {'features.vector': ['map_mean', 'pool']}}}, ['--model', 'lstm'], "unknown feature vector 'pool'; valid feature vector names: head, map_mean"),
])
def test_bad_input_is_one_line_before_training(tmp_path, monkeypatch, capsys, change, args, needle):
    import memrec.tune as T
    d = make_repo(tmp_path / 'r'); p = yaml.safe_load((d / 'params.yaml').read_text()); p['tune'] |= change
    (d / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    monkeypatch.setattr(T, 'run_one', lambda *a, **k: pytest.fail('training started before the input was checked'))
    monkeypatch.chdir(d)
    with pytest.raises(SystemExit) as e: T.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith('memrec: error: ') and needle in err, err

def test_write_params_changes_only_the_chosen_values(tmp_path):
    from memrec.tune import write_params
    f = tmp_path / 'params.yaml'; shutil.copy(ROOT / 'params.yaml', f); before = f.read_text()
    write_params(f, {'models.rlstm2b_local.train.lr': 0.02, 'features.vector': 'map_mean', 'models.lstm.train.epochs': 20})
    after = f.read_text(); old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new['models']['rlstm2b_local']['train'] == {**old['models']['rlstm2b_local']['train'], 'lr': 0.02}
    had_train, had_vector = 'train' in old['models']['lstm'], 'vector' in old['features']
    assert new['features']['vector'] == 'map_mean' and new['models']['lstm']['train'] == {**old['models']['lstm'].get('train', {}), 'epochs': 20}
    for sec in ('models', 'features'): new[sec], old[sec] = None, None
    assert new == old                                                                    # nothing else changed ...
    changed = [l for l in before.splitlines() if l not in after.splitlines()]
    assert len(changed) <= 3, changed                                                    # ... not even a comment or a line break
    assert len(after.splitlines()) - len(before.splitlines()) == (not had_vector) + (not had_train)   # keys added as new lines
