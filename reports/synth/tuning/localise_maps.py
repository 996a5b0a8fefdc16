"Validation top-1 and localisation (recall / mAP at IoU 0.1-0.5) of one attention model, one seed, split 1 (issue #14)."
import sys, json, time, copy
from pathlib import Path
import numpy as np, pandas as pd, torch
from memrec.core import load_params
from memrec.recipes import model_arch, model_config
from memrec.featdata import FeatureSource, load_split
from memrec.train import MODES, fit, validation_videos
from memrec.evaluate import predict
from memrec.paths import features_dir
from memrec.localise import localise_videos, localisation_metrics
import memrec.tune as tune

root, model, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stream = 'spatial'
params = load_params(Path(root) / 'params.yaml'); params['split'], params['seed'] = 1, seed
torch.set_num_threads(int((params.get('runtime') or {}).get('threads') or 1))
vf = float(params['tune']['val_fraction'])
kw, recipe = model_config(params, model, stream, 'features'); arch = model_arch(params, model)
recipe['val_fraction'] = vf
val = validation_videos(params, recipe, root)
ctx = dict(params=params, model=model, arch=arch, kw=kw, stream=stream, recipe=recipe, root=root, val=val)
source, net, info = MODES['features']['setup'](ctx)
t0, c0 = time.perf_counter(), time.process_time()
with tune._quiet(): fit(net, source, recipe, seed, f'h5 {model}', dataset=params['dataset'])
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
part = load_split(params, stream, info['inputs'], root, val_videos=val, parts=())['val']
va = FeatureSource.from_recipe(part, info['inputs'], recipe)
o = predict(net, va); prob = torch.from_numpy(o['logits']).softmax(-1).numpy(); y = va.y.numpy()
fd = features_dir(params['dataset'], stream, root)
frames = np.stack([np.load(fd / f'{v}.npz')['frames'] for v in va.videos])
lp = params['localise']
L = localise_videos(params['dataset'], va.videos, o['attn'], frames, y, prob, root=root, size=int(params['features']['image_size']),
                    sigma=lp['sigma'], theta=lp['theta'], window=lp['window'])
np.savez(out.replace('.json', '.npz'), videos=np.array(va.videos), attn=o['attn'], frames=frames, labels=y, prob=prob)
rows = pd.concat([localisation_metrics(L[k], L['gt'], y, prob, tuple(lp['ious']), lp['irrelevant']).assign(smoothed=k == 'smoothed', sigma=lp['sigma'])
                  for k in ('linked', 'smoothed')], ignore_index=True)
for sg in (4.0, 12.0):
    L2 = localise_videos(params['dataset'], va.videos, o['attn'], frames, y, prob, root=root, size=int(params['features']['image_size']),
                         sigma=sg, theta=lp['theta'], window=lp['window'])
    rows = pd.concat([rows] + [localisation_metrics(L2[k], L2['gt'], y, prob, tuple(lp['ious']), lp['irrelevant']).assign(smoothed=k == 'smoothed', sigma=sg)
                               for k in ('linked', 'smoothed')], ignore_index=True)
# diagnostic: where the attention peak falls (is it inside the actor's box?)
g = ~np.isnan(L['gt'][..., 0]); a = o['attn']; n, m = a.shape[-2:]
pk = a.reshape(*a.shape[:2], -1).argmax(-1); py, px = (pk // m + .5) * 112 / n, (pk % m + .5) * 112 / m
c = L['geometry'].to_original(np.stack([px, py, px, py], -1))[..., :2]
inside = (c[..., 0] >= L['gt'][..., 0]) & (c[..., 0] <= L['gt'][..., 2]) & (c[..., 1] >= L['gt'][..., 1]) & (c[..., 1] <= L['gt'][..., 3])
res = dict(model=model, seed=seed, root=root, map_shape=list(a.shape[-2:]), val_top1=float((prob.argmax(-1) == y).mean()), n_val=len(y),
           n_train=len(source), train_cpu_s=cpu, train_wall_s=wall, peak_in_gt=float(inside[g].mean()),
           attn_max_mean=float(a.reshape(*a.shape[:2], -1).max(-1).mean()), peak_row_mean=float((pk // m)[g].mean() / (n - 1)),
           gt_cy_mean=float(L['geometry'].to_crop(L['gt'])[..., [1, 3]].mean(-1)[g].mean() / 112),
           loc=rows.to_dict('records'))
Path(out).write_text(json.dumps(res))
print(json.dumps({k: v for k, v in res.items() if k != 'loc'}))
print(rows[(rows.level == 'video') & (rows.sigma == lp['sigma'])].round(3).to_string())
