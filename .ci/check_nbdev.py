"""Steps 1-2 of the test command: notebooks are clean and memrec/ is what nbdev_export makes of nbs/.

Runs the real tools in place and compares file hashes before/after, so it works in a dirty working tree
too (git diff would also flag the developer's unrelated edits). A failure names the files and the fix."""
import hashlib, subprocess, sys
from pathlib import Path

def snapshot(pattern, root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).glob(pattern))
            if '.ipynb_checkpoints' not in p.parts}

def check(label, cmd, pattern, root, fix):
    before = snapshot(pattern, root)
    subprocess.run(cmd, check=True)
    after = snapshot(pattern, root)
    changed = sorted(str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        print(f'FAIL {label}: {cmd[0]} changed {len(changed)} file(s):', *changed, sep='\n  ')
        print(f'  fix: {fix} (it has now been run: review and commit the result)')
        return False
    print(f'ok   {label}')
    return True

ok = check('notebooks are clean', ['nbdev_clean'], '**/*.ipynb', 'nbs', 'run nbdev_clean')
ok &= check('memrec/ in sync with nbs/', ['nbdev_export'], '**/*.py', 'memrec', 'edit the notebook, never memrec/*.py, then run nbdev_export')
sys.exit(0 if ok else 1)
