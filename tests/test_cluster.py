"""Preprocessing on a cluster engine (`params.yaml: runtime.executor: ray`, `memrec.executor`).

On one local Ray instance with 2 CPUs (shared by the tests; the stages reuse a running instance): the frames, flow
(TV-L1) and features stages write byte-identical files with Ray and with the local executor, a corrupt video is
reported and skipped, a task whose worker process is killed is retried (and reported, not fatal, once its retries
are spent), and `memrec frames` in another process joins the running cluster through `runtime.address`."""
import copy, os, signal, subprocess, sys, warnings
from pathlib import Path
import pandas as pd, pytest, yaml

ray = pytest.importorskip('ray', reason="Ray is an optional extra: pip install -e '.[ray]'")
from memrec.core import atomic_dir
from memrec.data import prepare
from memrec.executor import run_pool
from memrec.frames import frames
from memrec.flow import flow
from memrec.backbones import features

pytestmark = pytest.mark.xdist_group('test_cluster')   # one worker runs this file's module fixture once (make test: -n 2 --dist loadgroup)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
P = {'dataset': 'synth', 'split': 1, 'seed': 0,
     'datasets': {'synth': dict(classes=2, groups=3, clips_per_group=1, frames=8, width=64, height=48)},
     'frames': {'short_side': 40, 'workers': 2}, 'flow': {'method': 'tvl1', 'bound': 20, 'workers': 2},
     'features': {'backbone': 'efficientnet_lite0', 'image_size': 32, 'num_frames': 4, 'flow_length': 2, 'batch_size': 8}}


@pytest.fixture(scope='module')
def local_ray():
    os.environ['MEMREC_QUIET'] = '1'
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this test module by name
    yield ray
    ray.shutdown()


def tree(d: Path) -> dict:
    "Every file under `d` (relative path -> bytes)."
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob('*')) if f.is_file()}


def run_stages(p: dict, root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                     # the skipped video's warning
        frames(p, root=root); flow(p, root=root); features('spatial', p, root=root); features('temporal', p, root=root)


def test_ray_writes_what_local_writes_and_skips_a_corrupt_video(tmp_path, local_ray):
    p = copy.deepcopy(P); prepare(p, root=tmp_path)
    d = tmp_path / 'data' / 'synth'
    videos = sorted((d / 'raw').rglob('*.avi')); bad = videos[1].stem
    videos[1].write_bytes(videos[1].read_bytes()[:300])    # truncated: cannot be decoded
    run_stages(p | {'runtime': {'executor': 'local'}}, tmp_path)
    local = {s: tree(d / s) for s in ('frames', 'flow', 'features')}
    for s in local: subprocess.run(['rm', '-rf', str(d / s)], check=True)
    ray_p = p | {'runtime': {'executor': 'ray'}}
    run_stages(ray_p, tmp_path)
    for s, want in local.items():
        got = tree(d / s)
        assert sorted(got) == sorted(want), s
        assert [f for f in want if got[f] != want[f]] == [], f'{s}: files differ between the local executor and Ray'
    n = len(videos) - 1
    assert len([f for f in local['frames'] if f.endswith('img_00001.jpg')]) == n
    assert len([f for f in local['flow'] if f.endswith('flow_x_00007.jpg')]) == n
    assert len([f for f in local['features'] if f.endswith('.npz')]) == 2 * n
    report = pd.read_csv(d / 'frames' / '_report.csv')
    assert report.video.tolist() == [bad] and 'cannot decode' in report.error[0], report
    assert not (d / 'frames' / bad).exists() and not (d / 'flow' / bad).exists()
    good = d / 'frames' / videos[0].stem; ino = good.stat().st_ino
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        frames(ray_p, root=tmp_path)                         # resumed: finished videos kept, the bad one reported again
    assert good.stat().st_ino == ino and pd.read_csv(d / 'frames' / '_report.csv').video.tolist() == [bad]


def crash(item):
    "Write the video's folder; at video v1 first kill this worker process, once (marker file) or every time."
    video, out, marker, every_time = item
    if video == 'v1' and (every_time or not os.path.exists(marker)):
        Path(marker).touch(); os.kill(os.getpid(), signal.SIGKILL)
    with atomic_dir(Path(out) / video) as tmp: (tmp / 'done').write_text(video)


@pytest.mark.parametrize('every_time', [False, True])
def test_killed_worker_is_retried_then_reported(tmp_path, local_ray, every_time):
    out, marker = tmp_path / 'out', tmp_path / 'killed'
    items = [(f'v{i}', str(out), str(marker), every_time) for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        report = run_pool(crash, items, out, 'crash', runtime={'executor': 'ray', 'retries': 1})
    assert marker.exists()                                   # the worker was killed at least once
    done = sorted(v.name for v in out.iterdir() if v.is_dir())
    if every_time:                                           # retries spent: reported and skipped, the others done
        assert report.video.tolist() == ['v1'] and 'WorkerCrashedError after 1 retries' in report.error[0], report
        assert done == ['v0', 'v2', 'v3']
    else:
        assert len(report) == 0 and done == ['v0', 'v1', 'v2', 'v3']
    assert pd.read_csv(out / '_report.csv').video.tolist() == report.video.tolist()


def test_cli_joins_a_running_cluster_by_address(tmp_path, local_ray):
    "`memrec frames` in its own process, with `runtime.address` naming this test's Ray instance."
    p = yaml.safe_load((ROOT / 'params.yaml').read_text())
    p.update(copy.deepcopy(P)); p['runtime'] = {'executor': 'ray', 'address': ray.get_runtime_context().gcs_address}
    p['pipeline']['models'] = ['convnet', 'lstm']          # models whose settings fit num_frames 4 (schema.check_rules)
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    (tmp_path / 'nbs').mkdir()
    for nb in p['tables']['notebooks']: (tmp_path / 'nbs' / f'{nb}.ipynb').write_text('{}')
    prepare(p, root=tmp_path)
    env = {**os.environ, 'PATH': f'{BIN}:{os.environ["PATH"]}', 'MEMREC_QUIET': '1'}
    r = subprocess.run(['memrec', 'frames'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'frames: 6 videos decoded, 0 skipped' in r.stdout, r.stdout
    assert len(list((tmp_path / 'data' / 'synth' / 'frames').glob('v_*/img_00008.jpg'))) == 6
