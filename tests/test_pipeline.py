"""Integration test: the whole DVC pipeline on a tiny synth configuration, in a scratch copy of the repository.

Checks what a new user relies on: `dvc repro` runs every stage and writes the paper table under reports/, every
model on every replicate (split x seed), the summaries visible to `dvc metrics show`; a second `dvc repro` does
nothing; changing one model's params re-runs that model only; a `dvc repro` killed half-way finishes on the next
run without redoing finished units; a second `dvc repro` at the same time stops on DVC's lock; papermill re-runs a
table for another dataset with a clear error when that dataset has no results; a bad name in params.yaml fails
with the list of valid names."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, yaml

pytestmark = pytest.mark.xdist_group('test_pipeline')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {'classes': 4, 'groups': 3, 'clips_per_group': 2, 'frames': 12, 'width': 80, 'height': 60, 'fps': 25,
        'distractor_ratio': 0.25, 'ext': 'avi', 'seed': 0}

def run(cmd, cwd, check=True):
    env = {**os.environ, 'PATH': f'{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1'}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode: raise AssertionError(f'{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return r

def scratch_repo(dst: Path, edit) -> Path:
    "A scratch copy of the repository (code, notebooks, pipeline) at `dst` with a tiny synth configuration, then `edit(params)`."
    keep = shutil.ignore_patterns('.venv', '.git', 'data', 'results', 'reports', '__pycache__', '*.egg-info', 'dvc.lock', '.dvc')
    shutil.copytree(ROOT, dst, ignore=keep)
    p = yaml.safe_load((ROOT / 'params.yaml').read_text())
    p['datasets']['synth'].update(TINY)
    edit(p)
    (dst / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    run('git init -q && dvc init -q && dvc config core.analytics false', dst)
    return dst

@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    "The pipeline on cached features, three models."
    def edit(p):
        p['frames']['short_side'] = 64
        p['features'].update(image_size=64, num_frames=4, flow_length=2)
        p['train']['epochs'] = 3
        # the test exercises the mechanism, not every model: three models, and tables that tolerate missing ones
        p['pipeline']['models'] = ['convnet', 'lstm', 'matdl']
        for m in p['models'].values(): (m.get('train') or {}).pop('epochs', None)
        p['tables']['notebooks'] = ['table2', 'table3', 'figure3']
        p['replicates'] = {'splits': [1, 2], 'seeds': [0, 1]}
        p['models']['convnet']['replicates'] = {'splits': [1], 'seeds': [0, 3]}      # a model's own replicates
    return scratch_repo(tmp_path_factory.mktemp('memrec') / 'repo', edit)

REPS = {'convnet': [(1, 0), (1, 3)], 'lstm': [(1, 0), (1, 1), (2, 0), (2, 1)], 'matdl': [(1, 0), (1, 1), (2, 0), (2, 1)]}

def test_repro_builds_tables(repo):
    r = run('dvc repro', repo)
    md = (repo / 'reports/synth/table2.md').read_text()
    assert 'published' in md and '82.7' in md           # the paper's number, labelled
    assert '| Ours' in md and '—' in md                   # rows not run yet: missing, never zero
    assert (repo / 'reports/synth/table2.ipynb').exists()
    for model, reps in REPS.items():
        assert sorted(p.relative_to(repo / 'results/synth' / model).as_posix() for p in (repo / 'results/synth' / model).glob('split*/seed*')) \
            == [f'split{k}/seed{s}' for k, s in reps]
        tops = {}
        for (k, s) in reps:
            for stream in ('spatial', 'temporal', 'twostream'):
                m = json.loads((repo / f'results/synth/{model}/split{k}/seed{s}/{stream}/metrics.json').read_text())
                assert 0 <= m['top1'] <= 1 and m['n_videos'] == 8; tops.setdefault(stream, []).append(m['top1'])
        summary = json.loads((repo / f'results/synth/summary/{model}.json').read_text())
        for stream, v in tops.items():               # the summary is the mean and sd of exactly these replicates
            assert summary[stream]['n'] == len(reps) and abs(summary[stream]['top1'] - np.mean(v)) < 1e-9
            assert abs(summary[stream]['top1_sd'] - np.std(v, ddof=1)) < 1e-9
    shown = run('dvc metrics show', repo).stdout
    assert 'top1_sd' in shown and 'summary/convnet.json' in shown
    assert '± ' in md and '(n=4)' in md                 # our cells: mean ± sd over the replicates, with n

def test_second_repro_does_nothing(repo):
    r = run('dvc repro', repo)
    assert 'Running stage' not in r.stdout, r.stdout

def changed_stages(repo) -> set:
    return set(json.loads(run('dvc status --json', repo).stdout or '{}'))

def set_param(repo, model, key, value):
    p = yaml.safe_load((repo / 'params.yaml').read_text()); p['models'][model][key] = value
    (repo / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))

def test_one_models_params_rerun_that_model_only(repo):
    before = (repo / 'params.yaml').read_text()
    set_param(repo, 'lstm', 'hidden', 33)
    assert changed_stages(repo) == {'model@lstm'}
    p = yaml.safe_load(before); p['runtime']['train_workers'] = 1; p['runtime']['threads'] = 2   # how, not what: nothing
    (repo / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    assert changed_stages(repo) == set()
    (repo / 'params.yaml').write_text(before)

def units(repo, model):
    return {u.parent.relative_to(repo).as_posix(): json.loads(u.read_text()) for u in (repo / 'results/synth' / model).glob('split*/seed*/*/unit.json')}

def test_killed_repro_resumes_and_second_repro_is_locked(repo):
    "Kill `dvc repro` after some units finished: the next run redoes only the rest; meanwhile a second repro stops on the lock."
    set_param(repo, 'matdl', 'hidden', 24)
    set_param(repo, 'matdl', 'train', {**yaml.safe_load((repo / 'params.yaml').read_text())['models']['matdl'].get('train', {}), 'epochs': 150})
    old = units(repo, 'matdl')                             # (long enough units that the kill lands inside the stage)
    env = {**os.environ, 'PATH': f'{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1'}
    # dvc itself is the child (no shell between): once killed, this process reaps it, so DVC's lock sees no live holder
    first = subprocess.Popen([str(BIN / 'dvc'), 'repro'], cwd=repo, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300; done = {}
        while time.time() < deadline and len(done) < 2:        # two new units written (of 8 + 4 fused)
            time.sleep(0.2); done = {k: v for k, v in units(repo, 'matdl').items() if old.get(k) != v and not k.endswith('twostream')}
        second = run('dvc repro', repo, check=False)
        assert second.returncode != 0 and 'lock' in (second.stdout + second.stderr).lower(), second.stdout + second.stderr
        assert first.poll() is None and len(done) >= 2, f'first repro ended or stalled: {done}'
    finally:
        os.killpg(first.pid, signal.SIGKILL); first.wait()
    finished = {k: (repo / k / 'model.pt').read_bytes() for k in done}
    r = run('dvc repro', repo)
    line = next(l for l in r.stdout.splitlines() if l.startswith('model matdl:') and 'units to run' in l)
    assert f'({len(done)} already done)' in line or int(line.split('(')[1].split()[0]) >= len(done), line
    for k, b in finished.items(): assert (repo / k / 'model.pt').read_bytes() == b, k     # not redone
    assert len(units(repo, 'matdl')) == 12 and all(v['key'] == next(iter(units(repo, 'matdl').values()))['key'] for v in units(repo, 'matdl').values())
    assert 'Running stage' not in run('dvc repro', repo).stdout

def test_papermill_other_dataset_fails_clearly(repo):
    ok = run('papermill nbs/table2.ipynb out.ipynb -p dataset synth', repo)
    bad = run('papermill nbs/table2.ipynb out2.ipynb -p dataset hmdb51', repo, check=False)
    assert bad.returncode != 0 and 'dvc repro' in bad.stderr + bad.stdout and 'hmdb51' in bad.stderr + bad.stdout

@pytest.mark.parametrize('key,value,expect', [('dataset', 'ucf-101', 'valid dataset names'),
                                              ('pipeline', None, 'valid model names')])
def test_bad_params_name_the_valid_choices(repo, tmp_path, key, value, expect):
    p = yaml.safe_load((repo / 'params.yaml').read_text())
    if key == 'pipeline': p['models']['lstn'] = {}
    else: p[key] = value
    bad = tmp_path / 'repo'; shutil.copytree(repo, bad, ignore=shutil.ignore_patterns('data', 'results', 'reports', '.git', '.dvc'))
    (bad / 'params.yaml').write_text(yaml.safe_dump(p))
    r = run('memrec prepare', bad, check=False)
    assert r.returncode != 0 and expect in r.stderr, r.stderr[-2000:]

@pytest.fixture(scope='module')
def ft_repo(tmp_path_factory):
    "The same tiny pipeline with `train.mode: finetune`: the backbone trained end to end on frames for a few iterations."
    def edit(p):
        p['frames']['short_side'] = 40
        p['features'].update(image_size=32, num_frames=4, flow_length=2)
        p['train']['mode'] = 'finetune'
        p['finetune'].update(image_size=32, segments=3, flow_length=2, workers=0, test_crops=5, test_groups=1,
                             train={'max_iters': 3, 'scale': 'none', 'batch_size': 4, 'milestones': [2]})
        p['pipeline']['models'] = ['convnet', 'matdl']
        p['tables']['notebooks'] = ['table2', 'figure3']
        p['replicates'] = {'splits': [1], 'seeds': [0]}
    return scratch_repo(tmp_path_factory.mktemp('memrec_ft') / 'repo', edit)

def test_finetune_mode_through_dvc_repro(ft_repo):
    "Training, evaluation, fusion and the tables run on fine-tuned models, with the files of the cached-feature mode."
    r = run('dvc repro', ft_repo)
    for model in ('convnet', 'matdl'):
        for stream in ('spatial', 'temporal'):
            rd = ft_repo / f'results/synth/{model}/split1/seed0/{stream}'
            ck = torch.load(rd / 'model.pt', weights_only=False)
            assert ck['mode'] == 'finetune' and ck['recipe']['recipe'] == 'matdl_paper' and 'backbone_state_dict' in ck
            assert pd.read_csv(rd / 'train_log.csv').step.iloc[-1] == 3
            assert sorted(p.name for p in rd.iterdir()) == ['confusion.png', 'metrics.json', 'model.pt', 'per_class.csv', 'scores.npz', 'train_log.csv', 'unit.json']
            m = json.loads((rd / 'metrics.json').read_text()); assert m['n_videos'] == 8
            z = np.load(rd / 'scores.npz'); assert z['frames'].shape == (8, 3)
            if model == 'matdl': assert z['s'].shape == (8, 3) and 'write_f1' in m
            else: assert 'top1_single_frame' in m
        assert json.loads((ft_repo / f'results/synth/{model}/split1/seed0/twostream/metrics.json').read_text())['n_videos'] == 8
    assert '| Ours' in (ft_repo / 'reports/synth/table2.md').read_text()
    assert (ft_repo / 'reports/synth/figure3.md').exists()
    assert 'Running stage' not in run('dvc repro', ft_repo).stdout

def test_dvc_plots_follow_pipeline_models():
    "dvc.yaml's top-level plots (which cannot loop over a list) name exactly the models of params.yaml: pipeline.models."
    plots = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['plots']
    ids = {name for p in plots for name in p}
    models = yaml.safe_load((ROOT / 'params.yaml').read_text())['pipeline']['models']
    assert ids == {f'{kind}@{m}' for m in models for kind in ('loss', 'lr', 'per-class')}, sorted(ids)
