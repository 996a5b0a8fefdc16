"""A plain `git clone` of the repository, with nothing beside it, runs the notebooks that use reference data.

The reference files (split lists, class names, real clips) are vendored in `refdata/` (see refdata/SOURCES.md);
nothing may look for them outside the repository. The clone holds only committed files, as in CI."""
import os, subprocess, sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.xdist_group('test_fresh_clone')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = ['02_data', '02b_charades', '03_frames', '04_flow']   # the notebooks that read refdata/

def _env(clone: Path) -> dict:
    "Environment that imports the clone's `memrec` (not the editable install) and finds the venv's tools first."
    pp = os.environ.get('PYTHONPATH')
    return {**os.environ, 'PYTHONPATH': f'{clone}{os.pathsep}{pp}' if pp else str(clone),
            'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}', 'MEMREC_QUIET': '1'}

def _tail(r) -> str: return f'--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-4000:]}'

@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    "A fresh clone of the committed HEAD in an otherwise empty folder (no sibling folder of reference data exists)."
    dst = tmp_path_factory.mktemp('freshclone') / 'repo'
    r = subprocess.run(['git', 'clone', '-q', str(ROOT), str(dst)], capture_output=True, text=True)
    assert r.returncode == 0, _tail(r)
    assert sorted(p.name for p in dst.parent.iterdir()) == ['repo']
    r = subprocess.run([sys.executable, '-c', 'import memrec; print(memrec.__file__)'], cwd=dst, env=_env(dst),
                       capture_output=True, text=True)
    assert r.returncode == 0 and Path(r.stdout.strip()).resolve().is_relative_to(dst.resolve()), _tail(r)
    return dst

@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook_in_fresh_clone(clone, nb):
    r = subprocess.run(['nbdev_test', '--path', f'nbs/{nb}.ipynb', '--n_workers', '1'], cwd=clone, env=_env(clone),
                       capture_output=True, text=True)
    assert r.returncode == 0, f'nbdev_test nbs/{nb}.ipynb failed in a fresh clone ({r.returncode}):\n{_tail(r)}'

def test_no_reference_outside_repo():
    needle = '../' + 'sha' + 'red'        # built here so this file does not match itself
    hits = [str(p.relative_to(ROOT)) for d in ('nbs', 'memrec', 'tests') for p in sorted((ROOT / d).rglob('*'))
            if p.is_file() and '__pycache__' not in p.parts and '.ipynb_checkpoints' not in p.parts
            and needle in p.read_bytes().decode('utf-8', 'replace')]
    assert not hits, f'files that refer to {needle!r} (use memrec.core.ref_data instead): {hits}'
