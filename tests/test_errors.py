"""Errors before work, in one line: each bad input makes `memrec <stage>` exit with status 2 and print exactly one
line on stderr that names the key (or argument) and the valid choices, without a traceback.

Each case runs the real console script in a scratch folder holding only a broken copy of params.yaml (and the table
notebooks' names under nbs/, which validation checks); no stage gets far enough to do work."""
import copy, os, subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS = yaml.safe_load((ROOT / 'params.yaml').read_text())

def setting(**change):
    "A function editing params: each `a__b__c=v` sets params['a']['b']['c'] = v."
    def edit(p):
        for k, v in change.items():
            *path, last = k.split('__'); d = p
            for x in path: d = d[x]
            d[last] = v
    return edit

def scratch(tmp_path, edit=None, text=None) -> Path:
    "A folder with params.yaml (edited by `edit`, or `text` as it is) and an nbs/ holding the table notebooks' names."
    p = copy.deepcopy(PARAMS)
    if edit: edit(p)
    (tmp_path / 'params.yaml').write_text(text if text is not None else yaml.safe_dump(p, sort_keys=False))
    (tmp_path / 'nbs').mkdir(exist_ok=True)
    for nb in PARAMS['tables']['notebooks']: (tmp_path / 'nbs' / f'{nb}.ipynb').write_text('{}')
    return tmp_path

def memrec(args: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != 'MEMREC_DEBUG'}
    env = {**base, 'PATH': f'{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1', **env}
    return subprocess.run(['memrec', *args.split()], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

def snapshot(d: Path) -> dict:
    "Every path under `d` (ignored and hidden files included) -> its size and modification time (None for a folder)."
    return {str(f.relative_to(d)): None if f.is_dir() else (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(d).rglob('*'))}

def run_bad(cmd: str, d: Path, expect, **env) -> str:
    "Run `memrec cmd` in `d`: assert the one-line error (`assert_one_line`) and that no file or folder was created or changed."
    before = snapshot(d); r = memrec(cmd, d, **env); after = snapshot(d)
    line = assert_one_line(r, expect)
    assert after == before, f'bad input changed the tree: added {sorted(set(after) - set(before))}, removed {sorted(set(before) - set(after))}, ' \
                            f'changed {sorted(k for k in set(before) & set(after) if before[k] != after[k])}'
    return line

def assert_one_line(r, expect):
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith('memrec: error: '), r.stderr[-3000:]
    assert 'Traceback' not in r.stderr + r.stdout
    for e in expect: assert e in lines[0], f'{e!r} not in {lines[0]!r}'
    return lines[0]

bad_yaml = 'seed: 0\ndataset: synth\nsplit: 1\ntrain:\n  lr: [0.1, 0.2\n  epochs: 4\n'

CASES = {   # id: (edit of params.yaml or its text, command, what the line must contain)
    'dataset': (setting(dataset='ucf-101'), 'prepare', ['params.yaml: dataset:', "'ucf-101'", 'valid dataset names: charades, hmdb51, synth, ucf101']),
    'pipeline_model': (lambda p: p['pipeline']['models'].append('lstn'), 'prepare',
                       [f'params.yaml: pipeline.models[{len(PARAMS["pipeline"]["models"])}]:', "'lstn'", 'valid model names', 'convnet, lstm, matdl']),
    'models_entry': (setting(models__lstn={}), 'prepare', ['params.yaml: models.lstn:', "'lstn'", 'valid model names', 'convnet']),
    'arch': (setting(models__rlstm2b_t6__arch='rlstm2'), 'prepare',
             ['params.yaml: models.rlstm2b_t6.arch:', "'rlstm2'", 'valid model names', 'rlstm2b']),
    'stream_cli': (None, 'train --model lstm --stream flow', ['--stream', "'flow'", "'spatial', 'temporal'"]),
    'stage_cli': (None, 'trian', ["'trian'", "'prepare'", "'train'"]),
    'missing_arg': (None, 'train --model lstm', ['train', '--stream']),
    'model_cli': (None, 'train --model lstn --stream spatial', ["--model 'lstn'", 'valid model names', 'lstm']),
    'optimizer': (setting(models__lstm__train={'optimizer': 'adamw'}), 'prepare',
                  ['params.yaml: models.lstm.train.optimizer:', "'adamw'", 'valid optimizer names:', 'rmsprop', 'sgd']),
    'fusion_rule': (setting(fusion__rule='max'), 'fuse --model lstm',
                    ['params.yaml: fusion.rule:', "'max'", 'valid fusion rule names: average, logits, product, weighted']),
    'backbone': (setting(features__backbone='vgg'), 'features --stream spatial',
                 ['params.yaml: features.backbone:', "'vgg'", 'valid backbone names:', 'efficientnet_lite0', 'vgg16']),
    'flow_method': (setting(flow__method='tvl'), 'flow', ['params.yaml: flow.method:', "'tvl'", 'valid flow method names:', 'farneback', 'tvl1']),
    'recipe': (setting(models__matdl__train={'recipe': 'matdl'}), 'prepare',
               ['params.yaml: models.matdl.train.recipe:', "'matdl'", 'valid recipe names:', 'matdl_paper']),
    'train_mode': (setting(train__mode='e2e'), 'train --model lstm --stream spatial',
                   ['params.yaml: train.mode:', "'e2e'", 'valid train mode names: features, finetune']),
    'type': (setting(train__batch_size='big'), 'prepare', ['params.yaml: train.batch_size:', 'must be an integer', "'big'"]),
    'negative': (setting(train__lr=-1), 'prepare', ['params.yaml: train.lr:', 'must be > 0', '-1']),
    'per_stream_key': (setting(train__lr={'spatial': 0.1, 'flow': 0.1}), 'prepare',
                       ['params.yaml: train.lr.flow:', "'flow'", 'valid keys: spatial, temporal']),
    'fraction': (setting(train__val_fraction=1.0), 'prepare', ['params.yaml: train.val_fraction:', 'must be < 1', '1.0']),
    'train_key': (setting(train__weigth_decay=0), 'prepare', ['params.yaml: train.weigth_decay:', 'unknown key', 'valid keys:', 'weight_decay']),
    'model_keyword': (setting(models__lstm__hiddn=128), 'prepare',
                      ['params.yaml: models.lstm.hiddn:', "'hiddn'", 'valid keywords: hidden, dropout']),
    'finetune_bn': (setting(models__lstm__finetune={'bn': 'half'}), 'prepare',
                    ['params.yaml: models.lstm.finetune.bn:', "'half'", 'partial, frozen, train']),
    'yaml_number': (setting(train__lr='1e-3'), 'prepare', ['params.yaml: train.lr:', 'must be a number', '1.0e-3']),
    'broken_yaml': (bad_yaml, 'prepare', ['params.yaml: line 6, column 9: invalid YAML:', 'line 5, column 7']),
    'not_a_mapping': ('- just\n- a list\n', 'prepare', ['params.yaml: must be a mapping']),
    'split': (setting(replicates={'splits': [1, 4], 'seeds': [0]}), 'prepare', ['params.yaml: replicates.splits[1]:', 'no split 4', 'valid splits: 1, 2, 3']),
    'seed': (setting(replicates={'splits': [1], 'seeds': [0, 1.5]}), 'prepare', ['params.yaml: replicates.seeds[1]:', 'must be an integer', '1.5']),
    'no_seeds': (setting(replicates={'splits': [1], 'seeds': []}), 'prepare', ['params.yaml: replicates.seeds:', 'at least 1 item']),
    'model_split': (setting(models__tattn__replicates={'splits': [7], 'seeds': [0]}), 'prepare',
                    ['params.yaml: models.tattn.replicates.splits[0]:', 'no split 7', 'valid splits: 1, 2, 3']),
    'unit_split': (None, 'train --model lstm --stream spatial --split 9', ['params.yaml: split:', 'no split 9']),
    'run_features': (None, 'run --model lstm', ['data/synth/features/spatial', 'dvc repro features@spatial']),
    'notebook': (setting(tables__notebooks=['tabel2']), 'tables', ['params.yaml: tables.notebooks[0]:', 'tabel2', 'table2']),
    'features': (None, 'train --model lstm --stream spatial', ['data/synth/features/spatial', 'dvc repro features@spatial']),
    'features_evaluate': (None, 'evaluate --model lstm --stream temporal', ['data/synth/features/temporal', 'dvc repro features@temporal']),
}

@pytest.mark.parametrize('case', CASES)
def test_bad_input_is_one_line(tmp_path, case):
    change, cmd, expect = CASES[case]
    d = scratch(tmp_path, text=change) if isinstance(change, str) else scratch(tmp_path, change)
    print(run_bad(cmd, d, expect))

def test_two_stream_model_needs_both_features(tmp_path):
    d = scratch(tmp_path); f = d / 'data/synth/features/spatial'; f.mkdir(parents=True); (f / 'v.npz').write_bytes(b'')
    run_bad('train --model videolstm --stream spatial', d, ['data/synth/features/temporal', 'dvc repro features@temporal'])

def test_memrec_debug_shows_the_traceback(tmp_path):
    r = memrec('prepare', scratch(tmp_path, setting(dataset='ucf-101')), MEMREC_DEBUG='1')
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'valid dataset names' in r.stderr, r.stderr[-3000:]

def test_repository_params_are_valid():
    from memrec.schema import validate_params
    p = copy.deepcopy(PARAMS)
    assert validate_params(p, root=ROOT) == PARAMS

# --- command-line flags and `memrec predict` arguments (issue 25 §1 flags, §5): checked before any work ---
def predict_inputs(d: Path):
    "What the predict cases need in the scratch folder `d`: a file that is no video, text files, and results/synth with dummy model.pt files."
    (d / 'clip.avi').write_bytes(b'not a video\n' * 50); (d / 'notes.txt').write_text('notes\n'); (d / 'empty.txt').write_text('\n')
    for m, streams in (('matdl', ('spatial', 'temporal')), ('convnet', ('spatial',))):
        for s in streams: (d / 'results/synth' / m / s).mkdir(parents=True); (d / 'results/synth' / m / s / 'model.pt').write_bytes(b'')

CLI_CASES = {   # id: (arguments of `memrec`, or `-m <module> ...` for python -m, what the line must contain)
    'predict_top_zero': ('predict clip.avi --top 0', ['predict: argument --top: must be an integer >= 1', "got '0'"]),
    'predict_top_negative': ('predict clip.avi --top -1', ['argument --top: must be an integer >= 1', "got '-1'"]),
    'predict_stream': ('predict clip.avi --stream rgb', ["argument --stream: invalid choice: 'rgb'", "'both', 'spatial', 'temporal'"]),
    'predict_video_folder': ('predict results', ['results: a folder, not a video file; give one video file']),
    'predict_video_missing': ('predict gone.avi', ['gone.avi: no such file; give the path of a video file']),
    'predict_not_a_video': ('predict clip.avi', ['clip.avi: not a video PyAV can decode', 'give a video file']),
    'predict_out_file': ('predict clip.avi --out notes.txt', ['--out notes.txt: an existing file, not a folder', 'name a folder']),
    'predict_out_under_file': ('predict clip.avi --out notes.txt/png', ['--out notes.txt/png:', 'is a file, so no folder can be made', 'name a folder']),
    'predict_results_missing': ('predict clip.avi --results nowhere', ['--results nowhere: no such folder', 'results/<dataset>']),
    'predict_results_file': ('predict clip.avi --results notes.txt', ['--results notes.txt: a file, not a folder', 'results/<dataset>']),
    'predict_model': ('predict clip.avi --model lstm', ["no results for model 'lstm'", 'trained models in', 'results/synth: convnet, matdl']),
    'predict_one_stream': ('predict clip.avi --model convnet', ['convnet was never trained on the temporal stream', '--stream spatial']),
    'predict_classes_missing': ('predict clip.avi --classes none.txt', ['--classes none.txt: no such file', 'classInd.txt-style']),
    'predict_classes_empty': ('predict clip.avi --classes empty.txt', ['--classes empty.txt: holds no class names', 'one name per line']),
    'predict_classes_folder': ('predict clip.avi --classes results', ['--classes results: a folder, not a file', 'classInd.txt-style']),
    'run_workers': ('run --model lstm --workers 0', ['run: argument --workers: must be an integer >= 1', "got '0'"]),
    'train_seed': ('train --model lstm --stream spatial --seed -1', ['train: argument --seed: must be an integer >= 0', "got '-1'"]),
    'fuse_split': ('fuse --model lstm --split two', ['fuse: argument --split: must be an integer >= 0', "got 'two'"]),
    'tune_seeds_twice': ('tune --model lstm --seeds 0 0', ['tune: argument --seeds: 0 given twice; give each once']),
    'tune_splits': ('tune --model lstm --splits -1', ['tune: argument --splits: must be an integer >= 0', "got '-1'"]),
    'tune_grid': ('tune --model lstm --grid [0.1]', ['tune: argument --grid: must be a mapping of dotted keys to lists', '{models.lstm.train.lr: [0.01, 0.1]}']),
    'tune_name': ('tune --model lstm --name ../lstm', ['tune: argument --name: must be a plain name of letters, digits', "got '../lstm'"]),
    'tune_dataset': ('tune --model lstm --dataset ucf', ["tune: argument --dataset: invalid choice: 'ucf'", "'synth', 'ucf101'"]),
    'tune_streams': ('tune --model lstm --streams rgb', ["tune: argument --streams: invalid choice: 'rgb'", "'spatial', 'temporal'"]),
    'tables_notebook': ('-m memrec.tables tabel2', ["tables: argument notebooks: 'tabel2': no notebook nbs/tabel2.ipynb", 'valid notebooks:', 'table2']),
    'tables_twice': ('-m memrec.tables table2 table2', ["tables: argument notebooks: 'table2' given twice; give each notebook once"]),
    'bench_name': ('-m memrec.bench matdll', ["bench: Unknown benchmark 'matdll'", 'valid benchmark names:', 'matdl']),
    'bench_count': ('-m memrec.bench matdl B=0', ['bench: matdl: B=0: must be an integer >= 1 (default 64)']),
    'bench_key': ('-m memrec.bench matdl batch=8', ["bench: matdl: bad argument 'batch=8': expected key=value with key in B, T"]),
    'bench_flag': ('-m memrec.bench finetune amp=maybe', ['bench: finetune: amp=maybe: must be true or false']),
}

def run_bad_python(cmd: str, d: Path, expect) -> str:
    "`run_bad` for `python <cmd>` (a module's own command line, e.g. `-m memrec.tables NAME`)."
    env = {**{k: v for k, v in os.environ.items() if k != 'MEMREC_DEBUG'}, 'MEMREC_QUIET': '1'}
    before = snapshot(d); r = subprocess.run([sys.executable, *cmd.split()], cwd=d, env=env, capture_output=True, text=True, timeout=120)
    after = snapshot(d); line = assert_one_line(r, expect)
    assert after == before, f'bad input changed the tree: {sorted(set(after) ^ set(before))}'
    return line

@pytest.mark.parametrize('case', CLI_CASES)
def test_cli_case(tmp_path, case):
    cmd, expect = CLI_CASES[case]
    d = scratch(tmp_path)
    if cmd.startswith('predict'): predict_inputs(d)
    print(run_bad_python(cmd, d, expect) if cmd.startswith('-m ') else run_bad(cmd, d, expect))


# --- memrec.errors: the project's own expected errors (downloads, checksums, extraction, weights, device, cluster,
# missing upstream results) are one line, exit 2, named key and fix, nothing written (nbs/00c_errors.ipynb) ---
import importlib.util, shutil as _shutil, zipfile

UNREACHABLE = 'http://127.0.0.1:9'          # a closed port on this machine: refused at once, never the internet
NO_NET = {'http_proxy': UNREACHABLE, 'https_proxy': UNREACHABLE, 'HTTP_PROXY': UNREACHABLE, 'HTTPS_PROXY': UNREACHABLE,
          'no_proxy': '', 'NO_PROXY': ''}   # anything that would download goes to that closed port
NO_PROXY = {'no_proxy': '*', 'NO_PROXY': '*', 'http_proxy': '', 'https_proxy': '', 'HTTP_PROXY': '', 'HTTPS_PROXY': ''}

def ucf(**kw):
    "An edit: `dataset: ucf101` with `datasets.ucf101` updated by `kw` (videos skipped unless given); '@D' = the scratch folder."
    def edit(p, d):
        p['dataset'] = 'ucf101'; u = p['datasets']['ucf101']; u['urls'] = {'videos': None}
        for k, v in kw.items():
            u[k] = {**(u.get(k) or {}), **{a: b.replace('@D', str(d)) if isinstance(b, str) else b for a, b in v.items()}} \
                   if isinstance(v, dict) else v
    return edit

def plain(**change):
    "An edit that ignores the scratch folder (`setting`)."
    e = setting(**change); return lambda p, d: e(p)

def files(*paths, text=''):
    "A setup writing these files (relative to the scratch folder) before the snapshot."
    def setup(d):
        for f in paths: (d / f).parent.mkdir(parents=True, exist_ok=True); (d / f).write_text(text)
    return setup

def fixtures(d):
    "fix/splits.zip (a tiny real ZIP), fix/not_an_archive.zip (text), fix/folder.zip/ (a folder)."
    (d / 'fix').mkdir(exist_ok=True); (d / 'fix' / 'folder.zip').mkdir(exist_ok=True)
    with zipfile.ZipFile(d / 'fix' / 'splits.zip', 'w') as z: z.writestr('ucfTrainTestlist/classInd.txt', '1 A\r\n')
    (d / 'fix' / 'not_an_archive.zip').write_text('this is not an archive\n')

def table_notebook(d, name='table1'):
    "A valid nbs/<name>.ipynb whose parameters cell reads `results` (as every table notebook's does)."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("dataset = 'synth'\nresults = 'results'", metadata={'tags': ['parameters']})],
                                  metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}})
    nbformat.write(nb, d / 'nbs' / f'{name}.ipynb')

def _have_cuda():
    import torch; return torch.cuda.is_available()

HAVE_EXTRACTOR = bool(_shutil.which('bsdtar') or _shutil.which('unar'))
HAVE_RAY = importlib.util.find_spec('ray') is not None
UNIT = 'results/synth/lstm/split1/seed0'
SPATIAL_FEATURES = files('data/synth/features/spatial/v_X_g01_c01.npz')
BOTH_MODELS = files(f'{UNIT}/spatial/model.pt', f'{UNIT}/temporal/model.pt')
PREPARED = files('data/synth/index.csv', text='video\n')
FRAMES = files('data/synth/index.csv', 'data/synth/frames/v_X_g01_c01/img_00001.jpg')

ERROR_CASES = {   # id: (edit(params, scratch folder), command, what the line must contain, setup(scratch folder) or None, env, skip reason or None)
    # downloads, checksums, extraction (`memrec prepare` of ucf101): local fixtures and a closed local port only
    'offline_url': (ucf(urls={'splits': f'{UNREACHABLE}/UCF101TrainTestSplits.zip'}), 'prepare',
                    ['127.0.0.1:9/UCF101TrainTestSplits.zip: cannot connect', 'is this machine offline',
                     'set `datasets.ucf101.urls.splits: /path/to/UCF101TrainTestSplits.zip`'], None, NO_PROXY, None),
    'missing_archive': (ucf(urls={'splits': '/nonexistent/splits.zip'}), 'prepare',
                        ['datasets.ucf101.urls.splits: archive /nonexistent/splits.zip does not exist',
                         'set datasets.ucf101.urls.splits to the path of the archive, or to its URL'], None, {}, None),
    'archive_is_a_folder': (ucf(urls={'splits': '@D/fix/folder.zip'}), 'prepare',
                            ['datasets.ucf101.urls.splits: archive', 'folder.zip does not exist (a folder)'], fixtures, {}, None),
    'wrong_sha256': (ucf(urls={'splits': '@D/fix/splits.zip'}, sha256={'splits': '0' * 64}), 'prepare',
                     ['sha256 mismatch for', 'fix/splits.zip', 'expected ' + '0' * 64 + ' from datasets.ucf101.sha256.splits',
                      'The file was not used', 'correct datasets.ucf101.sha256.splits'], fixtures, {}, None),
    'not_an_archive': (ucf(urls={'splits': '@D/fix/not_an_archive.zip'}), 'prepare',
                       ['datasets.ucf101.urls.splits: cannot extract', 'not_an_archive.zip',
                        'set datasets.ucf101.urls.splits to the path or URL of the ucf101 splits archive'], fixtures, {},
                       None if HAVE_EXTRACTOR else 'needs bsdtar or unar'),
    # an extractor this machine lacks: reported before the download (else the line would be the URL's `cannot connect`)
    'extractor_unar_missing': (ucf(urls={'splits': f'{UNREACHABLE}/x.zip'}, extractor='unar'), 'prepare',
                               ['datasets.ucf101.extractor: unar: no archive extractor found (looked for unar on PATH)',
                                'sudo apt-get install unar'], None, {'PATH': str(BIN), **NO_PROXY}, None),
    'no_extractor_at_all': (ucf(urls={'splits': f'{UNREACHABLE}/x.zip'}, extractor='auto'), 'prepare',
                            ['datasets.ucf101.extractor: auto: no archive extractor found (looked for bsdtar, unar on PATH)',
                             'apt-get install libarchive-tools'], None, {'PATH': str(BIN), **NO_PROXY}, None),
    # pre-trained weights
    'vgg16_offline': (plain(features__backbone='vgg16'), 'features --stream spatial',
                      ['features.weights: none given', 'VGG16_Weights.IMAGENET1K_V1 could not be obtained', 'needs internet access',
                       'set `features.weights: /path/to/vgg16-397923af.pth`'], FRAMES, NO_NET, None),
    'weights_file_missing': (plain(features__backbone='resnet101', features__weights='/nonexistent/resnet101.pth'), 'features --stream spatial',
                             ['features.weights: weights file /nonexistent/resnet101.pth does not exist',
                              'set features.weights to the resnet101 weights file', 'or to null'], FRAMES, NO_NET, None),
    # the device
    'device_unknown': (None, 'train --model lstm --stream spatial', ["MEMREC_DEVICE='tpu0': not a device memrec runs on",
                       'valid: cpu, cuda, cuda:<k>, mps', 'set MEMREC_DEVICE=cpu'], None, {'MEMREC_DEVICE': 'tpu0'}, None),
    'device_no_gpu': (None, 'train --model lstm --stream spatial', ["MEMREC_DEVICE='cuda'", 'sees no CUDA GPU on this machine',
                      'unset MEMREC_DEVICE', 'set MEMREC_DEVICE=cpu'], None, {'MEMREC_DEVICE': 'cuda'}, 'a GPU is present' if _have_cuda() else None),
    'device_index': (None, 'features --stream spatial', ["MEMREC_DEVICE='cuda:99'", 'set MEMREC_DEVICE=cpu'], None, {'MEMREC_DEVICE': 'cuda:99'}, None),
    # the Ray cluster
    'ray_not_running': (plain(runtime__executor='ray', runtime__address='127.0.0.1:1'), 'frames',
                        ['params.yaml: runtime.address: no Ray cluster answers at 127.0.0.1:1', 'ray start --head',
                         'runtime.address: null', 'runtime.executor: local'], None, {}, None if HAVE_RAY else 'Ray not installed'),
    'ray_bad_address': (plain(runtime__executor='ray', runtime__address='headnode'), 'flow',
                        ["params.yaml: runtime.address: 'headnode' is not HOST:PORT", 'auto or null'], None, {}, None if HAVE_RAY else 'Ray not installed'),
    # missing upstream results: the line names the stage (or command) to run
    'fuse_before_train': (None, 'fuse --model lstm', [f'{UNIT}/spatial/scores.npz is missing', 'memrec train --model lstm --stream spatial --split 1 --seed 0',
                          'memrec evaluate --model lstm --stream spatial', 'dvc repro model@lstm'], None, {}, None),
    'fuse_before_evaluate': (None, 'fuse --model lstm', [f'{UNIT}/spatial/scores.npz is missing', "fusion needs both streams' test scores",
                             'run `memrec evaluate --model lstm --stream spatial --split 1 --seed 0`', 'dvc repro model@lstm'], BOTH_MODELS, {}, None),
    'evaluate_before_train': (None, 'evaluate --model lstm --stream spatial', [f'{UNIT}/spatial/model.pt is missing',
                              'memrec train --model lstm --stream spatial --split 1 --seed 0', 'dvc repro model@lstm'], SPATIAL_FEATURES, {}, None),
    'tables_before_models': (plain(tables__notebooks=['table1']), 'tables', ['results/synth holds no evaluated model', 'nbs/table1.ipynb reads them',
                             'dvc repro model@convnet'], table_notebook, {}, None),
    'frames_before_prepare': (None, 'frames', ['data/synth/index.csv is missing', '`memrec frames` reads the video index', 'run `dvc repro prepare`'], None, {}, None),
    'flow_before_frames': (None, 'flow', ['data/synth/frames is missing or empty', 'run `dvc repro frames`'], PREPARED, {}, None),
    'features_before_flow': (None, 'features --stream temporal', ['data/synth/flow is missing or empty', 'run `dvc repro flow`'], FRAMES, {}, None),
    'finetune_before_frames': (plain(train__mode='finetune'), 'train --model lstm --stream spatial',
                               ['data/synth/frames is missing or empty', '`memrec train` reads the decoded frames', 'run `dvc repro frames`'], PREPARED, {}, None),
}

@pytest.mark.parametrize('case', ERROR_CASES)
def test_error_class_case(tmp_path, case):
    edit, cmd, expect, setup, env, skip = ERROR_CASES[case]
    if skip: pytest.skip(skip)
    d = scratch(tmp_path, (lambda p: edit(p, tmp_path)) if edit else None)
    if setup: setup(d)
    print(run_bad(cmd, d, expect, **env))

def test_tables_module_before_models(tmp_path):
    "`python -m memrec.tables NB` (the tables@NB stage's command) before the model stages: the same line, nothing written."
    d = scratch(tmp_path, setting(tables__notebooks=['table1'])); table_notebook(d)
    before = snapshot(d)
    r = subprocess.run([sys.executable, '-m', 'memrec.tables', 'table1'], cwd=d, capture_output=True, text=True, timeout=120,
                       env={**{k: v for k, v in os.environ.items() if k != 'MEMREC_DEBUG'}, 'MEMREC_QUIET': '1'})
    print(assert_one_line(r, ['results/synth holds no evaluated model', 'nbs/table1.ipynb reads them', 'dvc repro model@']))
    assert snapshot(d) == before

def test_error_classes_are_expected_and_layered():
    "Every class is a MemrecError (one line, exit 2), importable from where it lived; memrec.errors imports nothing of memrec."
    import ast, memrec.errors as E, memrec.download, memrec.tables, memrec.schema, memrec.cli
    for c in (E.DownloadError, E.ChecksumError, E.ExtractError, E.WeightsUnavailable, E.DeviceError, E.ClusterError, E.MissingResults, E.NotebookError):
        assert issubclass(c, E.MemrecError) and isinstance(c('x'), E.EXPECTED), c
    assert memrec.download.DownloadError is E.DownloadError and memrec.tables.MissingResults is E.MissingResults
    assert memrec.schema.ParamsError is E.ParamsError and memrec.cli.error_line is E.error_line
    tree = ast.parse(Path(E.__file__).read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or (n.module or '').startswith('memrec'))]


# --- schema (issue 25 §1-2): duplicate keys, model keywords, datasets, distinct replicates, rules linking two settings
PARAMS_TEXT = (ROOT / 'params.yaml').read_text()

def _text(old: str, new: str) -> str:
    "The repository's params.yaml text with `old` (which must occur once) replaced by `new`."
    assert PARAMS_TEXT.count(old) == 1, old
    return PARAMS_TEXT.replace(old, new)

SCHEMA_CASES = {   # id: (edit of params.yaml or its text, command, what the line must contain)
    'duplicate_section': (PARAMS_TEXT + '\ntrain:\n  lr: 0.1\n', 'prepare',
                          [f"params.yaml: line {len(PARAMS_TEXT.splitlines()) + 2}: duplicate key 'train' "
                           f"(first at line {[l.split('#')[0].strip() for l in PARAMS_TEXT.splitlines()].index('train:') + 1})", 'merge the two or delete one']),
    'duplicate_keyword': (_text('  lstm:\n    hidden: 256\n', '  lstm:\n    hidden: 256\n    hidden: 128\n'), 'train --model lstm --stream spatial',
                          ["duplicate key 'hidden' in models.lstm", 'merge the two or delete one']),
    'thr_one': (setting(models__matdl__thr=1.0), 'prepare', ['params.yaml: models.matdl.thr:', 'must be in (0, 1), got 1']),
    'thr_zero': (setting(models__matdl__thr=0), 'train --model matdl --stream spatial', ['params.yaml: models.matdl.thr:', 'must be in (0, 1), got 0']),
    'dropout': (setting(models__lstm__dropout=1.5), 'prepare', ['params.yaml: models.lstm.dropout:', 'must be in [0, 1), got 1.5']),
    'dropout_stream': (setting(models__rlstm__dropout={'spatial': 0.8, 'temporal': -0.1}), 'prepare',
                       ['params.yaml: models.rlstm.dropout.temporal:', 'must be in [0, 1), got -0.1']),
    'hidden_zero': (setting(models__lstm__hidden=0), 'prepare', ['params.yaml: models.lstm.hidden:', 'must be >= 1, got 0']),
    'size_float': (setting(models__matdl__mem_dim=2.5), 'prepare', ['params.yaml: models.matdl.mem_dim:', 'must be an integer, got 2.5']),
    'loss': (setting(models__lstm_001__loss='clip'), 'prepare', ['params.yaml: models.lstm_001.loss:', "'clip'", 'valid loss names: video, frame']),
    'top_stream': (setting(models__videolstm__top_stream={'spatial': 'rgb', 'temporal': 'optical'}), 'prepare',
                   ['params.yaml: models.videolstm.top_stream.temporal:', "'optical'", 'valid top_stream names: rgb, flow']),
    'branches': (setting(models__rlstm2b_local__branches='global'), 'prepare',
                 ['params.yaml: models.rlstm2b_local.branches:', "'global'", 'valid branches names: both, local, nonlocal']),
    'write': (setting(models__matdl_writeall__write='some'), 'prepare', ['params.yaml: models.matdl_writeall.write:', 'valid write names: learned, all']),
    'reset': (setting(models__matdl_noreset__reset='no'), 'prepare', ['params.yaml: models.matdl_noreset.reset:', 'must be true or false', "'no'"]),
    'kernel': (setting(models__convlstm__k=2), 'prepare', ['params.yaml: models.convlstm.k:', 'must be an odd number >= 1', 'got 2']),
    'synth_key': (setting(datasets__synth__clases=4), 'prepare',
                  ['params.yaml: datasets.synth.clases:', 'unknown key', 'valid keys: seed, classes, groups']),
    'synth_classes': (setting(datasets__synth__classes=1), 'prepare', ['params.yaml: datasets.synth.classes:', 'must be >= 2, got 1']),
    'synth_test_fraction': (setting(datasets__synth__test_fraction=1.0), 'prepare',
                            ['params.yaml: datasets.synth.test_fraction:', 'must be in (0, 1), got 1']),
    'sha256_string': (setting(datasets__ucf101__sha256='ab' * 32), 'prepare',
                      ['params.yaml: datasets.ucf101.sha256:', 'must be a mapping of source name to its sha256', '{videos: <64 hex digits>}']),
    'sha256_short': (setting(datasets__hmdb51__sha256={'videos': 'abc'}), 'prepare',
                     ['params.yaml: datasets.hmdb51.sha256.videos:', 'must be a sha256: 64 hex digits', "'abc'"]),
    'extractor': (setting(datasets__ucf101__extractor='7z'), 'prepare',
                  ['params.yaml: datasets.ucf101.extractor:', "'7z'", 'valid extractor names: auto, bsdtar, unar']),
    'verify_tls': (setting(datasets__charades__verify_tls='no'), 'prepare', ['params.yaml: datasets.charades.verify_tls:', 'must be true or false']),
    'url_key': (setting(datasets__charades__urls={'video': 'Charades_v1_480.zip'}), 'prepare',
                ['params.yaml: datasets.charades.urls.video:', "'video'", 'valid sources of charades: videos, annotations']),
    'duplicate_seed': (setting(replicates={'splits': [1], 'seeds': [0, 0]}), 'prepare',
                       ['params.yaml: replicates.seeds:', '0 is listed twice', 'list each value once']),
    'duplicate_model_split': (setting(models__rlstm2b_t6__replicates={'splits': [1, 1], 'seeds': [0]}), 'run --model rlstm2b_t6',
                              ['params.yaml: models.rlstm2b_t6.replicates.splits:', '1 is listed twice', 'list each value once']),
    'duplicate_tune_seed': (setting(tune__seeds=[0, 1, 1]), 'prepare', ['params.yaml: tune.seeds:', '1 is listed twice', 'list each value once']),
    'momentum': (setting(train__momentum=1.5), 'prepare', ['params.yaml: train.momentum:', 'must be in [0, 1), got 1.5']),
    'lr_steps_order': (setting(train__lr_steps=[0.8, 0.5]), 'prepare', ['params.yaml: train.lr_steps:', 'must increase strictly', '[0.8, 0.5]']),
    'lr_steps_range': (setting(train__lr_steps=[0.5, 1.2]), 'prepare', ['params.yaml: train.lr_steps[1]:', 'must be in (0, 1), got 1.2']),
    'image_size': (setting(features__image_size=224), 'features --stream spatial',
                   ['params.yaml: features.image_size:', 'frames.short_side 112', 'set features.image_size <= 112 or frames.short_side >= 224']),
    'finetune_image_size': (setting(finetune__image_size=160, train__mode='finetune'), 'prepare',
                            ['params.yaml: finetune.image_size:', 'frames.short_side 112', 'set finetune.image_size <= 112']),
    'snippet': (setting(models__alstm__train={**PARAMS['models']['alstm']['train'], 'snippet': 16}), 'train --model alstm --stream spatial',
                ['params.yaml: models.alstm.train.snippet:', 'features.num_frames 12', 'set it <= 12']),
    'recipe_snippet': (setting(models__lstm__train={'recipe': 'videolstm_paper'}), 'train --model lstm --stream temporal',
                       ['params.yaml: recipes.videolstm_paper.snippet:', 'snippet 30 > features.num_frames 12', 'set it <= 12']),
    'segments': (setting(models__rlstm__train={**PARAMS['models']['rlstm']['train'], 'segments': 16}), 'prepare',
                 ['params.yaml: models.rlstm.train.segments:', 'segments 16 > the 12 positions', 'set segments <= 12']),
    'test_snippets_split': (setting(models__tattn__train={**PARAMS['models']['tattn']['train'], 'snippet_split': True}), 'prepare',
                            ['params.yaml: models.tattn.train.test_snippets:', 'needs a snippet shorter than features.num_frames 12 (and no snippet_split)',
                             'set test_snippets 1']),
    'test_snippets_whole': (setting(train__test_snippets=4), 'prepare',
                            ['params.yaml: train.test_snippets:', 'needs a snippet shorter than features.num_frames 12', 'set test_snippets 1']),
    'tattn_last': (setting(models__tattn__last=7), 'evaluate --model tattn --stream spatial',
                   ['params.yaml: models.tattn.last:', 'last 7 > the 6 positions of a sample', 'set last <= 6']),
    'weighted_fusion': (setting(fusion__rule='weighted'), 'fuse --model lstm',
                        ['params.yaml: fusion.rule:', 'validation videos', 'val_fraction 0', 'set train.val_fraction (e.g. 0.2)']),
    'synth_num_frames': (setting(features__num_frames=60), 'prepare',
                         ['params.yaml: features.num_frames:', 'synth videos of 48 frames', 'set features.num_frames <= 48']),
    'synth_flow_length': (setting(features__flow_length=48), 'features --stream temporal', ['params.yaml: features.flow_length:', 'set features.flow_length <= 47']),
    'synth_finetune_flow_length': (setting(finetune__flow_length=60, train__mode='finetune'), 'prepare',
                                   ['params.yaml: finetune.flow_length:', 'set finetune.flow_length <= 47']),
}

@pytest.mark.parametrize('case', SCHEMA_CASES)
def test_schema_case(tmp_path, case):
    change, cmd, expect = SCHEMA_CASES[case]
    d = scratch(tmp_path, text=change) if isinstance(change, str) else scratch(tmp_path, change)
    print(run_bad(cmd, d, expect))

def test_schema_reads_the_repository_params_unchanged():
    "The duplicate-key reader gives the repository's params.yaml exactly as PyYAML did, and it validates with every rule."
    from memrec.core import load_params
    from memrec.schema import read_params, validate_params
    assert load_params(ROOT / 'params.yaml') == read_params(ROOT / 'params.yaml') == PARAMS
    assert validate_params(copy.deepcopy(PARAMS), root=ROOT) == PARAMS
