"""The fast tier is chosen from the source: a test that spawns, exports, compiles, trains,
starts a server or cluster or drives a browser, itself or through a helper or fixture of its
module, is marked ``slow`` without anyone remembering to."""

from __future__ import annotations

import ast
import textwrap

import conftest

SAMPLE = textwrap.dedent('''
    import subprocess

    def _spawn(*args):
        return subprocess.run(args)

    def _cli(*args):  # heavy through _spawn
        return _spawn("srrun", *args)

    def pure(x):
        return x + 1

    def exported(tmp_path):  # a fixture that exports
        return export_onnx(tmp_path)
''')


def test_helpers_that_reach_heavy_work_are_heavy_at_any_depth() -> None:
    tree = ast.parse(SAMPLE)
    conftest._SOURCES[id(tree)] = SAMPLE
    assert conftest._heavy_names(tree) == {"_spawn", "_cli", "exported"}


def test_the_marker_patterns_cover_the_kinds_of_heavy_work() -> None:
    for text in ("subprocess.run(", "ray.init(", "export_onnx(", "torch.compile(",
                 "webdriver.Chrome(", "Trainer(cfg)", "make_server(", "sys.executable"):
        assert conftest.HEAVY.search(text), text
    for text in ("np.zeros(", "Upscaler('default', tile=0)", "describe(path)"):
        assert not conftest.HEAVY.search(text), text
