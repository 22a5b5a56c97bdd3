"""One Settings object: `tracetap proxy` offers every field as an option, the addon every
recording field as a `tracetap_<name>` mitmproxy option, and both check values alike."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons
from typer.main import get_command
from typer.testing import CliRunner

from tracetap.cli import app
from tracetap.proxy.capture import Capture
from tracetap.settings import Settings


def test_every_setting_is_a_proxy_option() -> None:
    command = get_command(app).commands["proxy"]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params}
    for f, setting in Settings.described():
        assert f.name in options
        assert options[f.name].envvar == setting.env


def test_every_recording_setting_is_an_addon_option() -> None:
    capture = Capture()
    with taddons.context(capture) as tctx:
        for f, setting in Settings.described():
            if setting.addon:
                assert getattr(tctx.options, Settings.addon_option(f.name)) == f.default
        tctx.configure(capture, tracetap_content="none", tracetap_max_body=4096)
        assert capture.settings.content == "none"
        assert capture.settings.max_body == 4096
        with pytest.raises(exceptions.OptionsError, match="at least 1024"):
            tctx.configure(capture, tracetap_max_body=10)


def test_proxy_refuses_a_bad_value_in_one_line() -> None:
    result = CliRunner().invoke(app, ["proxy", "--content", "partial"])
    assert result.exit_code == 2
    assert "unknown content level 'partial'" in result.output
