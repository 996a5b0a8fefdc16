"""`memrec predict` (nbs/12_predict.ipynb, nbs/11_cli.ipynb) without a trained pipeline: MATDL is trained for a few
steps on fake cached features (1280-d, as EfficientNet-Lite0 gives) in a scratch repository by `memrec.train.train`,
so each `model.pt` is exactly what the train stage writes (preprocessing included). Then: one real clip end to end
through the console command, every bad input as one line with exit status 2 and no timeline, and an interrupted
timeline write leaving nothing behind."""
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, yaml
from memrec.cli import main

pytestmark = pytest.mark.xdist_group('test_predict')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / 'refdata' / 'clips'
CLASSES = ['Push', 'Pull', 'Wave']
PARAMS = {'seed': 0, 'dataset': 'synth', 'split': 1,
          'frames': {'short_side': 112}, 'flow': {'method': 'farneback', 'bound': 20, 'raft_iters': 12},
          'features': {'backbone': 'efficientnet_lite0', 'weights': None, 'image_size': 112, 'num_frames': 12, 'flow_length': 5},
          'train': {'optimizer': 'sgd', 'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0, 'batch_size': 6, 'epochs': 2,
                    'lr_steps': [], 'clip_grad': 20},
          'models': {'matdl': {'hidden': 16, 'mem_dim': 16}}}

@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    "A scratch repository: params.yaml, fake features of 3 classes x 3 groups, MATDL trained on both streams."
    from memrec.train import train
    d = tmp_path_factory.mktemp('repo'); (d / 'params.yaml').write_text(yaml.safe_dump(PARAMS))
    rng = np.random.default_rng(0); rows = []
    for s in ('spatial', 'temporal'): (d / 'data/synth/features' / s).mkdir(parents=True)
    for c, name in enumerate(CLASSES):
        for g in range(1, 4):
            v = f'v_{name}_g{g:02d}_c01'
            for s in ('spatial', 'temporal'):
                np.savez(d / 'data/synth/features' / s / f'{v}.npz', vec=rng.normal(c, 1, (12, 1280)).astype(np.float16), frames=np.arange(12) * 4)
            rows.append({'video': v, 'path': f'{name}/{v}.avi', 'class': name, 'label': c,
                         **{f'split{k}': 'test' if g == k else 'train' for k in (1, 2, 3)}})
    pd.DataFrame(rows).to_csv(d / 'data/synth/index.csv', index=False)
    for s in ('spatial', 'temporal'): train('matdl', s, PARAMS, root=d)
    return d

def results(repo): return repo / 'results/synth'

def run(argv, capsys, cwd):
    "`memrec <argv>` in-process in folder `cwd`: (exit status, stdout, stderr)."
    old = os.getcwd(); os.chdir(cwd)
    try:
        try: main(argv); rc = 0
        except SystemExit as e: rc = e.code
    finally: os.chdir(old)
    out = capsys.readouterr(); return rc, out.out, out.err

def test_real_clip_end_to_end(repo, tmp_path):
    "The console command on a real 1080p H.264 clip: top-5 per stream and fused, and the timeline PNG."
    env = {**os.environ, 'MEMREC_QUIET': '1', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    clip = CLIPS / 'mmaction2_demo_demo_skeleton.mp4'
    p = subprocess.run([sys.executable, '-c', 'from memrec.cli import main; main()', 'predict', str(clip), '--out', str(tmp_path)],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0].startswith('mmaction2_demo_demo_skeleton.mp4: 1920x1080 h264, 72 frames')
    assert 'settings from model.pt' in lines[1] and str(results(repo)) in lines[1]
    assert lines[2].split() == ['spatial', 'temporal', 'fused'] and [l.split()[0] for l in lines[3:6]] == ['1', '2', '3']
    for l in lines[3:6]: assert sum(w in CLASSES for w in l.split()) == 3       # 3 classes: the table has 3 rows
    png = tmp_path / 'mmaction2_demo_demo_skeleton_matdl_timeline.png'
    assert f'timeline: {png}' in p.stdout and png.stat().st_size > 20_000
    assert [f.name for f in tmp_path.iterdir()] == [png.name]

def one_line_error(repo, capsys, argv, expect, out):
    rc, stdout, err = run(['predict', *argv, '--out', str(out)], capsys, repo)
    assert rc == 2 and err.count('\n') == 1 and err.startswith('memrec: error: '), (rc, err)
    assert expect in err, err
    assert not out.exists() or not any(out.iterdir())                    # no timeline, no temporary file
    return err.strip()

def test_bad_inputs(repo, tmp_path, capsys):
    from memrec.synth import write_video
    from memrec.frames import read_video
    out, res = tmp_path / 'out', results(repo)
    clip = CLIPS / 'mmaction2_tests_data_test.avi'
    (tmp_path / 'notes.avi').write_text('this is not a video\n' * 50)
    (tmp_path / 'cut.avi').write_bytes(clip.read_bytes()[:4000])
    write_video(tmp_path / 'short.avi', read_video(clip, 112)[:14], 25)
    (tmp_path / 'ucf.txt').write_text('1 Push\n2 Pull\n3 Wave\n4 Jump\n')
    (tmp_path / 'order.txt').write_text('Pull\nPush\nWave\n')
    mixed = tmp_path / 'mixed'; shutil.copytree(res, mixed)                  # the temporal model of another label order
    ck = torch.load(mixed / 'matdl/split1/seed0/temporal/model.pt', weights_only=False); ck['classes'] = CLASSES[::-1]
    torch.save(ck, mixed / 'matdl/split1/seed0/temporal/model.pt')
    half = tmp_path / 'half'; shutil.copytree(res, half); shutil.rmtree(half / 'matdl/split1/seed0/temporal')
    lines = [
        one_line_error(repo, capsys, [str(tmp_path / 'nothing.avi')], 'nothing.avi: no such file', out),
        one_line_error(repo, capsys, [str(tmp_path / 'notes.avi')], 'notes.avi: not a video PyAV can decode (Invalid data found when processing input)', out),
        one_line_error(repo, capsys, [str(tmp_path / 'cut.avi')], 'cut.avi: not a video PyAV can decode', out),
        one_line_error(repo, capsys, [str(tmp_path / 'short.avi')], 'short.avi: 14 frames, but matdl needs at least 17', out),
        one_line_error(repo, capsys, [str(clip), '--results', str(mixed)], 'the temporal model was trained on other classes than the spatial model', out),
        one_line_error(repo, capsys, [str(clip), '--classes', str(tmp_path / 'ucf.txt')], 'ucf.txt: 4 classes there, 3 in the models; the models were trained on 3 classes: Push, Pull, Wave', out),
        one_line_error(repo, capsys, [str(clip), '--classes', str(tmp_path / 'order.txt')], "order.txt: class 0 is 'Pull' there but 'Push' in the models", out),
        one_line_error(repo, capsys, [str(clip), '--results', str(half)], 'was never trained on the temporal stream', out),
        one_line_error(repo, capsys, [str(clip), '--model', 'lstm'], "no results for model 'lstm'; trained models in", out),
        one_line_error(repo, capsys, [str(clip), '--results', str(tmp_path / 'nowhere')], 'no such folder', out),
    ]
    # the 14-frame clip is long enough for the spatial stream alone (12 positions), and a model trained on one stream only runs alone
    rc, stdout, _ = run(['predict', str(tmp_path / 'short.avi'), '--stream', 'spatial', '--results', str(half), '--out', str(out)], capsys, repo)
    assert rc == 0 and stdout.splitlines()[2].split() == ['spatial', 'fused']
    print('\n'.join(lines))

def test_no_half_written_timeline(repo, tmp_path, monkeypatch):
    "A failure while the PNG is being written leaves no file at all (atomic write)."
    from matplotlib.figure import Figure
    from memrec.predict import predict_video
    def broken(self, fname, **kw):
        Path(fname).write_bytes(b'\x89PNG half'); raise OSError('disk full')
    monkeypatch.setattr(Figure, 'savefig', broken)
    with pytest.raises(OSError, match='disk full'):
        predict_video(CLIPS / 'mmaction2_demo_demo_skeleton.mp4', 'matdl', results(repo), out=tmp_path, log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []

def test_arguments_checked_before_any_work(repo, tmp_path, capsys, monkeypatch):
    "Each bad argument fails before a model is loaded or a frame decoded, as one line, and creates nothing (no --out folder)."
    import memrec.predict as P, memrec.train as T
    monkeypatch.setattr(T, 'load_trained', lambda *a, **k: pytest.fail('a model was loaded before the arguments were checked'))
    monkeypatch.setattr(P, 'decode', lambda *a, **k: pytest.fail('the video was decoded before the arguments were checked'))
    clip, out = CLIPS / 'mmaction2_tests_data_test.avi', tmp_path / 'new' / 'out'
    (tmp_path / 'taken.png').write_bytes(b'')
    (tmp_path / 'empty.txt').write_text('')
    cases = [([str(clip), '--top', '0'], 'argument --top: must be an integer >= 1'),
             ([str(clip), '--top', '-1'], 'argument --top: must be an integer >= 1'),
             ([str(CLIPS)], f'{CLIPS}: a folder, not a video file'),
             ([str(clip), '--out', str(tmp_path / 'taken.png')], 'taken.png: an existing file, not a folder'),
             ([str(clip), '--classes', str(tmp_path / 'empty.txt')], 'empty.txt: holds no class names'),
             ([str(clip), '--model', 'lstm'], "no results for model 'lstm'; trained models in"),
             ([str(tmp_path / 'empty.txt')], 'empty.txt: not a video PyAV can decode')]
    for argv, expect in cases:
        if '--out' not in argv: argv = [*argv, '--out', str(out)]
        rc, stdout, err = run(['predict', *argv], capsys, repo)
        assert rc == 2 and err.count('\n') == 1 and err.startswith('memrec: error: ') and expect in err, (argv, rc, err)
        assert not (tmp_path / 'new').exists() and stdout == ''
    with pytest.raises(Exception, match='--top 0: must be an integer >= 1'):          # the Python API checks too
        P.predict_video(clip, 'matdl', results(repo), out=out, top=0, log=lambda *a: None)
