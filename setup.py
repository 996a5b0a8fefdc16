"Install memrec from settings.ini (the nbdev 2 project file); dependencies are pinned in requirements.txt."
from configparser import ConfigParser
from setuptools import setup, find_packages

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
c = cfg['DEFAULT']
setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    author=c['author'], license=c['license'], python_requires='>=' + c['min_python'],
    packages=find_packages(include=['memrec', 'memrec.*']),
    package_data={'memrec': ['*.csv', '*.yaml']},
    include_package_data=True, zip_safe=False,
    # `pip install -e .[ray]`: runtime.executor ray (memrec.executor). Plain `ray` (tasks, `ray start`, ray.init) is all
    # it uses; `ray[default]` would add the dashboard and cluster launcher. Pinned: a Ray cluster needs the same Ray
    # (and Python) version on the driver and every node. Keep in step with the Makefile and memrec.executor.RAY_REQUIREMENT.
    extras_require={'ray': ['ray==2.60.0']},
    entry_points={'console_scripts': c['console_scripts'].split(), 'nbdev': [f"{c['lib_name']}={c['lib_name']}._modidx:d"]},
)
