"""nbs/claims.ipynb (the tables@claims stage's notebook) run end to end on a synthetic results tree: no pipeline run
needed. Two models with 3 seeds in 3 splits (a large, certain effect), a controller that writes the relevant frames,
and a variant with one seed per split; every other row of the ledger has no results."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from memrec.core import repo_root
from memrec.paths import scores_path

ROOT = repo_root(Path(__file__).parent)

def _tree(root: Path, V=40, T=6):
    "results/toy/<model>/split<k>/seed<s>/<stream>/{scores.npz,metrics.json} and data/toy/raw/annotations.csv."
    rng = np.random.default_rng(0); videos = np.array([f'v{i}' for i in range(V)]); labels = rng.integers(0, 3, V)
    rel = rng.random((V, T)) < .5; rel[:, 0], rel[:, 1] = True, False
    (root / 'data/toy/raw').mkdir(parents=True)
    pd.DataFrame([(v, f + 1, int(rel[i, f])) for i, v in enumerate(videos) for f in range(T)],
                 columns=['video', 'frame', 'relevant']).to_csv(root / 'data/toy/raw/annotations.csv', index=False)
    for model, acc, seeds in [('matdl', .95, (0, 1, 2)), ('lstm', .3, (0, 1, 2)), ('rlstm2b', .7, (0, 1, 2)), ('rlstm2b_t6', .7, (0,))]:
        for stream in ('spatial', 'temporal', 'twostream'):
            for k in (1, 2, 3):
                for s in seeds:
                    f = scores_path('toy', k, model, stream, results=root / 'results', seed=s); f.parent.mkdir(parents=True, exist_ok=True)
                    pred = np.where(rng.random(V) < acc, labels, (labels + 1) % 3)
                    z = dict(videos=videos, labels=labels, prob=np.eye(3)[pred], classes=np.array(['a', 'b', 'c']),
                             frames=np.tile(np.arange(T), (V, 1)), flow_length=1)
                    if model == 'matdl': z['s'] = (rel | (rng.random((V, T)) < .1)).astype(float)
                    np.savez(f, **z)
                    m = {'top1': float((pred == labels).mean())} | ({'write_precision': .8, 'write_recall': .9, 'write_rate': .5} if 's' in z else {})
                    f.with_name('metrics.json').write_text(json.dumps(m))

def test_ledger_notebook_on_synthetic_results(tmp_path):
    _tree(tmp_path)
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs/claims.ipynb'), str(tmp_path / 'out.ipynb'), '-k', 'python3',
                        '-p', 'dataset', 'toy', '-p', 'results', str(tmp_path / 'results'), '-p', 'reports', str(tmp_path / 'reports'),
                        '-p', 'data', str(tmp_path / 'data')], cwd=ROOT / 'nbs', capture_output=True, text=True,
                       env=os.environ | {'MEMREC_QUIET': '1', 'PYTHONPATH': str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path / 'reports/toy/claims.md').read_text()
    assert (tmp_path / 'reports/toy/claims_files/claims.png').stat().st_size > 10_000
    for s in ('conditional on these splits', 'seed noise', 'split difficulty', 'test sampling', 'Holm', '80 % power',
              'the family is every row of this ledger with a verdict (9 rows here', 'MDE (80 % power)', 'verdict (Holm)'):
        assert s in md, s
    rows = {l.split('|')[1].strip(): [c.strip() for c in l.split('|')[2:-1]] for l in md.splitlines() if l.startswith('| C')}
    assert len(rows) == 60
    assert rows['C01s'][-2:] == ['**supported**', '**supported**'], rows['C01s']               # matdl .95 against lstm .3
    assert rows['C08s'][-1] == '**supported**'                                                 # the controller row
    assert rows['C16s'][-2:] == ['too few seeds (1 per split)'] * 2 and rows['C16s'][5].startswith('≥ ')
    assert rows['C21s'][-2].startswith('**inconclusive** (MDE ') and rows['C21s'][-1] == '**inconclusive**'   # two arms alike
    assert rows['C02s'][-1] == 'no results'
    assert ('60 comparisons in 24 claims; raw: 5 supported, 0 contradicted, 4 inconclusive, 3 too few seeds, 48 no results; '
            'Holm over the 9 rows with a verdict: 5 supported') in md
