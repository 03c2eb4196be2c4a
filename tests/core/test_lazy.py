"""Optional dependencies are imported through one helper that says what to install."""

from __future__ import annotations

import pytest

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.lazy import optional


def test_a_missing_extra_is_one_line_naming_it_and_the_install() -> None:
    with pytest.raises(UserError) as err:
        optional("no_such_module_xyz", "pip install 'srgan-toolkit[xyz]'", "model.onnx")
    assert str(err.value) == ("model.onnx: no_such_module_xyz is not installed: pip install "
                              "'srgan-toolkit[xyz]'")


def test_an_installed_one_is_returned() -> None:
    assert optional("json", "stdlib").dumps([1]) == "[1]"
