"""The `tables@<notebook>` stages' driver (memrec.tables, nbs/10_tables.ipynb): no torch, notebooks run in-process as
papermill would run them, and the sections the stage does not validate itself are validated by earlier stages."""
import copy, json, os, subprocess, sys
from pathlib import Path
import nbformat, pytest, yaml
from memrec.core import load_params, repo_root
from memrec.tables import RUNNERS, TABLE_SECTIONS, declared_parameters, run_notebook, run_table

ROOT = repo_root(Path(__file__).parent)
P = load_params(ROOT / 'params.yaml')

def _repo(tmp: Path, notebooks: dict, **change) -> Path:
    "A throw-away repository: params.yaml (ours, `tables.notebooks` = `notebooks`, dotted `change`s) and nbs/<name>.ipynb."
    q = copy.deepcopy(P); q['tables']['notebooks'] = list(notebooks)
    for k, v in change.items():
        *path, last = k.split('__'); d = q
        for x in path: d = d[x]
        d[last] = v
    (tmp / 'params.yaml').write_text(yaml.safe_dump(q)); (tmp / 'nbs').mkdir()
    for name, cells in notebooks.items(): nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={
        'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}}), tmp / 'nbs' / f'{name}.ipynb')
    return tmp

def _stage(cwd: Path, *names) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'memrec.tables', *names], cwd=cwd, capture_output=True, text=True,
                          env=os.environ | {'MEMREC_QUIET': '1', 'PYTHONPATH': str(ROOT)})

PARAMS = nbformat.v4.new_code_cell("dataset = 'x'\nreports = 'reports'\nsigma = 1.0", metadata={'tags': ['parameters']})
REPORT = nbformat.v4.new_code_cell(
    "import matplotlib.pyplot as plt\nfrom memrec.tables import report_figure, write_report\n"
    "fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([0, sigma, 1]); ax.set_title(dataset)\n"
    "link = report_figure(fig, 'tiny', dataset, reports)\nprint('drawn', link)\n"
    "write_report(f'# {dataset}\\n\\nsigma {sigma}\\n\\n![f]({link})\\n', 'tiny', dataset, reports)\nfig")

def test_driver_never_imports_torch(tmp_path):
    "Validation, parameters and the in-process run of a notebook that draws: torch stays out of the stage's process."
    repo = _repo(tmp_path, {'tiny': [PARAMS, REPORT]})
    code = ("import sys; from memrec.tables import main\n"
            "try: main(['tiny'])\nfinally: print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True,
                       env=os.environ | {'MEMREC_QUIET': '1', 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == 'False', r.stdout
    assert (repo / 'reports/synth/tiny.md').read_text().startswith('# synth\n\nsigma ')

def test_bad_parameters_stop_the_stage(tmp_path):
    "A bad value of a section the stage validates: one line, exit status 2, nothing executed."
    for i, (change, msg) in enumerate([({'localise__sigma': -1}, 'params.yaml: localise.sigma: must be > 0, got -1'),
                                       ({'replicates__splits': [1, 4]}, 'params.yaml: replicates.splits[1]: synth has no split 4'),
                                       ({'fusion__spatial_weight': 2}, 'params.yaml: fusion.spatial_weight: must be <= 1')]):
        (d := tmp_path / str(i)).mkdir(); repo = _repo(d, {'tiny': [PARAMS, REPORT]}, **change)
        r = _stage(repo, 'tiny')
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f'memrec: error: {msg}'), r.stderr
        assert not (repo / 'reports').exists()

def test_unvalidated_sections_are_validated_upstream():
    """Each params.yaml key a tables@ stage lists in dvc.yaml is in a section the stage validates itself
    (TABLE_SECTIONS), or under a key listed by the features@ or model@ stages, which run first when it changes and
    validate the whole file (`memrec` subcommands: memrec.cli.run calls validate_params)."""
    stages = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['stages']
    upstream = {}
    for name in ('features', 'model'):
        s = stages[name].get('do', stages[name])
        assert s['cmd'].startswith('memrec '), s['cmd']
        upstream[name] = [p for p in s['params'] if isinstance(p, str)]
    import inspect, memrec.cli
    assert 'validate_params(read_params())' in inspect.getsource(memrec.cli.run)
    table = stages['tables']['do']
    assert table['cmd'].startswith('python -m memrec.tables ')
    for key in table['params']:
        covered = key.split('.')[0] in TABLE_SECTIONS or any(key == u or key.startswith(u + '.') for us in upstream.values() for u in us)
        assert covered, f'dvc.yaml: tables@ reads {key!r}, which neither memrec.tables.TABLE_SECTIONS nor an upstream stage validates'

def test_cell_error_is_one_line(tmp_path):
    boom = nbformat.v4.new_code_cell("# the broken cell\nresult = 1 / (sigma - sigma)")
    repo = _repo(tmp_path, {'boom': [PARAMS, boom]})
    r = _stage(repo, 'boom')
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith('memrec: error: nbs/boom.ipynb: cell In [3] (`result = 1 / (sigma - sigma)`) raised '
                               'ZeroDivisionError: division by zero'), r.stderr
    assert not (repo / 'reports/synth/boom.ipynb').exists()     # written atomically: nothing on failure

def test_same_report_as_papermill(tmp_path):
    "The in-process runner and papermill's kernel write the same report and figure bytes, and equivalent notebooks."
    repo = _repo(tmp_path, {'tiny': [PARAMS, nbformat.v4.new_markdown_cell('prose'), REPORT]})
    got = {}
    for runner in RUNNERS:
        out = run_table('tiny', load_params(repo / 'params.yaml'), root=repo, runner=runner)
        got[runner] = ((repo / 'reports/synth/tiny.md').read_bytes(), (repo / 'reports/synth/tiny_files/tiny.png').read_bytes(),
                       nbformat.read(out, 4))
    (md1, png1, nb1), (md2, png2, nb2) = got['in-process'], got['papermill']
    assert md1 == md2 and png1 == png2
    strip = lambda nb: [(c.cell_type, c.source, c.get('execution_count'), c.metadata.get('tags'), c.get('outputs')) for c in nb.cells]
    assert strip(nb1) == strip(nb2)                              # cells, injected parameters, counts and outputs alike
    assert nb1.cells[1].metadata.tags == ['injected-parameters'] and f"sigma = {P['localise']['sigma']}" in nb1.cells[1].source
    assert nb1.metadata.papermill.parameters == nb2.metadata.papermill.parameters

@pytest.mark.parametrize('nb', P['tables']['notebooks'])
def test_notebooks_keep_papermill_parameters(nb):
    "Each table notebook has a papermill `parameters` cell (`papermill nbs/<nb>.ipynb out.ipynb -p dataset hmdb51`)."
    declared = declared_parameters(nb, ROOT)
    assert 'dataset' in declared, declared
