"""params.yaml validation and the command line's handling of bad configuration."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from aahr.cli import COMMANDS, build_parser, main
from aahr.config import ConfigError, load_params, validate_params

from conftest import ROOT, tiny_params_dict


def test_the_shipped_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params["datasets"] == ["synth"]


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda p: p["synth"]["splits"].update(test=-5), "synth.splits.test"),
        (lambda p: p["synth"].update(colour_jitter="lots"), "synth.colour_jitter"),
        (lambda p: p["synth"].update(sizes=3), "'sizes'"),
        (lambda p: p.update(epochs=3), "'epochs'"),
        (lambda p: p["synth"]["detail"].pop("relation"), "'relation' is a required property"),
        (lambda p: p.update(datasets=["imagenet"]), "datasets.0"),
        (lambda p: p["synth"].update(objects_min=5, objects_max=2), "synth.objects_min"),
    ],
)
def test_a_bad_value_is_refused_with_its_key_named(edit, named):
    params = tiny_params_dict()
    edit(params)
    with pytest.raises(ConfigError) as err:
        validate_params(params, source="my.yaml")
    assert named in str(err.value) and "my.yaml" in str(err.value)


def test_cli_reports_a_bad_params_file_without_traceback_and_writes_nothing(tmp_path):
    params = tiny_params_dict()
    params["synth"]["splits"]["train"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "aahr", "generate", "--params", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "synth.splits.train" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_missing_params_file_is_named(tmp_path, capsys):
    assert main(["generate", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: params file not found" in capsys.readouterr().err


def test_help_explains_every_command_in_one_line():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text
    proc = subprocess.run([sys.executable, "-m", "aahr", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "generate" in proc.stdout
    for name in COMMANDS:
        sub = subprocess.run([sys.executable, "-m", "aahr", name, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and f"usage: aahr {name}" in sub.stdout


def test_generate_command_prints_where_outputs_went(tmp_path, capsys):
    params = tiny_params_dict()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    assert main(["generate", "--params", str(path), "--out", str(tmp_path / "raw"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "raw") in out and "truth-oracle rsum" in out
    assert (tmp_path / "raw" / "test_positives.npz").is_file()


def test_the_tiny_test_config_is_valid_and_has_every_key_of_params():
    tiny = load_params(ROOT / "tests/configs/tiny.yaml")
    full = load_params(ROOT / "params.yaml")

    def keys(d, prefix=""):
        return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict)
                                          for x in keys(v, prefix + k + ".")}

    def settings(d):  # Table 5's rows and a variant's own settings are experiments, not settings
        return {k for k in keys(d) if not k.startswith("sensitivity.") and ".set." not in k}
    assert settings(tiny) == settings(full)
    assert set(tiny["sensitivity"]) <= set(full["sensitivity"])
