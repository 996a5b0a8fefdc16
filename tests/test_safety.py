"""No data is lost, no output is half-written (issue 25, "What to build" 4), on a tiny synth pipeline in scratch copies
of the repository: two clean `dvc repro` runs give identical `dvc.lock` files (no seconds, hosts, dates or absolute
paths in any DVC output); a `dvc repro` killed (SIGKILL) in the middle of a results write, then run again, gives the
`dvc.lock` of an uninterrupted run; a crop larger than the frames leaves the feature cache byte for byte as it was,
whether the stage is called directly (past the schema's up-front check) or through the command line; a stage under
which every video fails exits 2 with one line naming the first error, its previous output untouched.

The kill comes from outside production code: a wrapper `memrec` first on PATH imports `memrec.cli`, replaces
`os.replace` by one that SIGKILLs its own process when asked to rename a file into place as `metrics.json`, and runs
`memrec.cli.main` (units run in that process: `runtime.train_workers: 1`)."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml

pytestmark = pytest.mark.xdist_group('test_safety')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {'classes': 2, 'groups': 3, 'clips_per_group': 2, 'frames': 8, 'width': 80, 'height': 60, 'fps': 25,
        'distractor_ratio': 0.25, 'ext': 'avi', 'seed': 0}
TARGET = 'model@convnet'                                 # the stages up to one cheap model (the tables are not run here)
TMP = '.memrec-tmp-'                                     # memrec.core.TMP_MARK

def env(path_first: Path | None = None) -> dict:
    path = f'{path_first}:' if path_first else ''
    return {**os.environ, 'PATH': f'{path}{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1', 'PYTHONPATH': str(ROOT)}

def run(cmd, cwd, check=True, path_first=None):
    r = subprocess.run(cmd, cwd=cwd, env=env(path_first), capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode: raise AssertionError(f'{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return r

def edit(p):
    p['datasets']['synth'].update(TINY)
    p['frames'].update(short_side=64, workers=1)
    p['flow']['workers'] = 1
    p['features'].update(image_size=64, num_frames=4, flow_length=2)
    p['train']['epochs'] = 2
    p['pipeline']['models'] = ['convnet']
    p['models']['convnet'].setdefault('train', {})['epochs'] = 2
    p['replicates'] = {'splits': [1], 'seeds': [0]}
    p['runtime'] = {**(p.get('runtime') or {}), 'train_workers': 1, 'threads': 1}

def scratch_repo(dst: Path) -> Path:
    "A scratch copy of the repository (code, notebooks, pipeline, .dvcignore) at `dst` with the tiny configuration."
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns('.venv', '.git', 'data', 'results', 'reports', '__pycache__',
                                                             '*.egg-info', 'dvc.lock', '.dvc', '.pytest_cache'))
    p = yaml.safe_load((ROOT / 'params.yaml').read_text()); edit(p)
    (dst / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    run('git init -q && dvc init -q && dvc config core.analytics false', dst)
    return dst

def tree(d: Path) -> dict:
    "Relative path -> bytes of every file under `d` (links as their target), hidden files included."
    return {f.relative_to(d).as_posix(): (os.readlink(f) if f.is_symlink() else f.read_bytes())
            for f in sorted(Path(d).rglob('*')) if f.is_file() or f.is_symlink()}

def leftovers(d: Path) -> list:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob(f'*{TMP}*'))

def one_error_line(r, *expect):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith('memrec: error: '), (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr and all(e in lines[0] for e in expect), lines[0]
    return lines[0]

@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    "A clean run of the tiny pipeline up to the model stage; tests copy it rather than change it."
    repo = scratch_repo(tmp_path_factory.mktemp('safety') / 'clean')
    run(f'dvc repro {TARGET}', repo)
    return repo

def copy_of(repo: Path, dst: Path) -> Path:
    shutil.copytree(repo, dst, symlinks=True); return dst

def test_two_clean_runs_give_identical_locks(clean, tmp_path):
    other = scratch_repo(tmp_path / 'other')                 # another folder: absolute paths would show, too
    run(f'dvc repro {TARGET}', other)
    # the same entries, each byte for byte; DVC writes a new lock's stages in the order they ran, and features@spatial and
    # features@temporal, which do not depend on each other, may run in either order (a committed lock keeps its order)
    a, b = (yaml.safe_load((r / 'dvc.lock').read_text())['stages'] for r in (clean, other))
    assert set(a) == set(b) and TARGET in a and 'features@temporal' in a
    for stage in a: assert yaml.safe_dump(a[stage]) == yaml.safe_dump(b[stage]), stage
    unit = json.loads((clean / 'results/synth/convnet/split1/seed0/spatial/unit.json').read_text())
    assert set(unit) == {'key'}                              # no seconds in the DVC output ...
    assert json.loads((clean / 'results/synth/.timings/convnet/split1/seed0/spatial.json').read_text())['seconds'] > 0   # ... but beside it,
    from memrec.run import timing_path                       # where bench pipeline finds them
    assert len(__import__('glob').glob(str(timing_path('*', '*', '*', '*', '*', clean)))) == 2
    assert leftovers(clean) == [] and leftovers(other) == []

def test_two_runs_of_a_table_give_identical_reports(clean, tmp_path):
    "A table stage on the same results in two folders: the same report bytes and lock entry (no run times, no temporary or absolute paths)."
    a, b = copy_of(clean, tmp_path / 'a'), copy_of(clean, tmp_path / 'b')
    for r in (a, b): run('dvc repro tables@table2', r)
    la, lb = (yaml.safe_load((r / 'dvc.lock').read_text())['stages']['tables@table2'] for r in (a, b))
    assert yaml.safe_dump(la) == yaml.safe_dump(lb)
    assert (a / 'reports/synth/table2.ipynb').read_bytes() == (b / 'reports/synth/table2.ipynb').read_bytes()
    assert b'start_time' not in (a / 'reports/synth/table2.ipynb').read_bytes()

def test_killed_results_write_then_repro_gives_the_uninterrupted_lock(clean, tmp_path):
    repo = copy_of(clean, tmp_path / 'killed'); shutil.rmtree(repo / 'results')
    wrap = tmp_path / 'bin'; wrap.mkdir()
    (wrap / 'memrec').write_text(f'''#!{sys.executable}
import os, signal, sys
from pathlib import Path
import memrec.cli
_replace = os.replace
def replace(src, dst, *a, **kw):
    if Path(dst).name == 'metrics.json': os.kill(os.getpid(), signal.SIGKILL)    # mid-write: the temporary file is complete
    return _replace(src, dst, *a, **kw)
os.replace = replace
sys.exit(memrec.cli.main())
''')
    (wrap / 'memrec').chmod(0o755)
    r = run(f'dvc repro {TARGET}', repo, check=False, path_first=wrap)
    assert r.returncode != 0, r.stdout[-2000:]
    left = leftovers(repo / 'results')
    assert len(left) == 1 and left[0].startswith('synth/convnet/split1/seed0/') and '.metrics.json' + TMP in left[0], left
    assert not (repo / 'results/synth/convnet/split1/seed0/spatial/metrics.json').exists() or 'temporal' in left[0]
    r = run(f'dvc repro {TARGET}', repo)
    assert f"Running stage '{TARGET}'" in r.stdout, r.stdout[-2000:]
    assert leftovers(repo / 'results') == []                 # removed when the stage ran again (core.clean_tmp)
    assert (repo / 'dvc.lock').read_text() == (clean / 'dvc.lock').read_text()
    assert 'Running stage' not in run(f'dvc repro {TARGET}', repo).stdout

def test_invalid_crop_leaves_the_feature_cache_byte_identical(clean, tmp_path):
    from memrec.backbones import features
    from memrec.schema import MemrecError
    repo = copy_of(clean, tmp_path / 'crop'); cache = repo / 'data/synth/features'
    outputs = lambda: {k: v for k, v in tree(cache).items() if TMP not in k}   # not the attempt's folder aside (DVC-ignored)
    before, lock = outputs(), (repo / 'dvc.lock').read_text()
    assert sum(k.endswith('.npz') for k in before) == 2 * 12
    p = yaml.safe_load((repo / 'params.yaml').read_text()); p['features']['image_size'] = 96      # > frames.short_side 64
    for stream in ('spatial', 'temporal'):                   # the stage itself, past the schema's up-front check
        with pytest.raises(MemrecError, match=rf'features \({stream}\): 0 of 12 videos done \(first error: .*smaller than image_size 96'):
            features(stream, p, root=repo)
        assert outputs() == before                           # not one byte changed
        assert (cache / f'.{stream}{TMP}next/_report.csv').exists()   # the attempt, named in the error, sits aside
    (repo / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    r = run('memrec features --stream spatial', repo, check=False)       # the command line: refused up front or by the stage
    one_error_line(r, 'image_size')
    assert outputs() == before
    (repo / 'params.yaml').write_text((clean / 'params.yaml').read_text())
    r = run(f'dvc repro {TARGET}', repo)                     # the settings back: nothing to redo, the same lock
    assert 'Running stage' not in r.stdout and (repo / 'dvc.lock').read_text() == lock, r.stdout[-2000:]
    run('memrec features --stream spatial', repo)            # the stage with the cache's own settings: resumes it in place
    assert outputs() == before and not (cache / f'.spatial{TMP}next').exists()    # and drops the attempt

def test_zero_of_n_videos_fails_in_one_line_and_keeps_the_old_output(clean, tmp_path):
    repo = copy_of(clean, tmp_path / 'zero'); frames = repo / 'data/synth/frames'; before = tree(frames)
    for v in (repo / 'data/synth/raw').rglob('*.avi'): v.write_bytes(b'not a video')
    p = yaml.safe_load((repo / 'params.yaml').read_text()); p['frames']['short_side'] = 72
    (repo / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    r = run('memrec frames', repo, check=False)
    line = one_error_line(r, 'frames: 0 of 12 videos done (first error: ', 'cannot decode', '_report.csv', 'data/synth/frames was left as it was')
    assert str(repo) not in line                              # paths under the repository, as the user typed them
    assert tree(frames) == before
