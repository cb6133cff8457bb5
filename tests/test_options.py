"""The one table of training options: every option is in fit's signature, in ``descend train --help``, in a
run's config.json, and is refused with the one template (library) and exit code 2 with one line (command line)
for a value it does not accept; a run repeated from its own config.json is the same run, bit for bit."""

from __future__ import annotations

import html
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import descend
from descend.cli._options import is_switch
from descend.cli.main import cli
from descend.errors import ConfigError
from descend.train import options
from descend.train.options import OPTIONS

#: options no word can give, and why: objects only Python has, or what the command line does its own way
PYTHON_ONLY = {"data": "the DATA argument", "callbacks": "callback objects", "progress": "the CLI prints its own"}
CANDIDATES = (-1, "", "nope", 1.5, 0, None)
WORDS = ("nope", "-1", "0", "1.5", "")


def _invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def bad_value(option: options.Option) -> Any:
    """The first of a few plain values the option does not accept."""
    return next(v for v in CANDIDATES if not option.accepts.ok(v))


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris

    path = tmp_path_factory.mktemp("options") / "iris.csv"
    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    frame.to_csv(path, index=False)
    return path


def test_the_table_is_fits_signature() -> None:
    params = inspect.signature(descend.fit).parameters
    assert list(params) == list(OPTIONS)  # the same names, in the same order
    for name, p in params.items():
        option = OPTIONS[name]
        assert option.group in options.GROUPS and option.help.endswith((".", ")")), name
        if option.positional:
            assert p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty, name
        else:
            assert p.kind is p.KEYWORD_ONLY and p.default == option.default, name
            assert option.accepts.ok(option.default), name  # a default is a value the option accepts


def test_choices_in_the_table_are_the_librarys() -> None:
    from descend import losses, models, schedules
    from descend.inspect.monitor import HealthMonitor, SharpnessMonitor
    from descend.train.setup import _optimizer_class

    assert all(_optimizer_class(name) for name in options.OPTIMIZERS)  # each name builds an optimizer
    assert options.SCHEDULES == schedules.NAMES
    assert set(options.LOSSES) == set(losses.LOSSES)
    assert tuple(models.ACTIVATIONS) == options.ACTIVATIONS and ("auto", *models.SCHEMES) == options.INITS
    assert ("auto", *losses.TASKS) == options.TASKS
    for monitor, name in ((HealthMonitor, "health_every"), (SharpnessMonitor, "sharpness_every")):
        assert inspect.signature(monitor).parameters["every"].default == OPTIONS[name].default


@pytest.mark.parametrize("name", list(OPTIONS))
def test_fit_refuses_a_bad_value_with_the_template(name: str) -> None:
    option = OPTIONS[name]
    value = bad_value(option)
    args: dict[str, Any] = {"data": (torch.zeros(4, 2), torch.zeros(4)), name: value}
    model = args.pop("model", "linear")
    data = args.pop("data")
    expected = f"{name}: invalid {name}={value!r}; expected {option.accepts.text}"
    with pytest.raises(ConfigError) as caught:
        descend.fit(model, data, **args)
    assert str(caught.value) == expected


def test_every_option_has_a_flag_in_train_help_except_the_python_only_ones() -> None:
    text = _invoke("train", "--help").output
    flags = {name: o.spelling for name, o in OPTIONS.items()}
    assert {n for n, f in flags.items() if f is None} == set(PYTHON_ONLY)
    for name, flag in flags.items():
        if flag is not None:
            assert flag in text, name
    for group in options.GROUPS:
        assert f"{group.capitalize()} options:" in text


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if o.spelling is not None])
def test_the_command_line_refuses_a_bad_word_with_one_line(name: str, iris: Path, tmp_path: Path) -> None:
    option = OPTIONS[name]
    assert option.spelling is not None
    if is_switch(option):  # a switch takes no word: giving it one is the mistake
        words = [f"{option.spelling}=maybe"]
    else:
        bad = next(w for w in WORDS if _refused(option, w))
        words = [option.spelling, bad]
    extra = ["--target", "species", "--epochs", "1", "--out", tmp_path / "run"]
    r = _invoke("train", iris, *extra, *words)  # the bad word last, so no flag before overrides it
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and r.stdout == "", (words, r.output)
    assert lines[0].startswith("descend train: error: ") and option.spelling in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def _refused(option: options.Option, word: str) -> bool:
    try:
        option.parse(word)
    except ConfigError:
        return True
    return False


def test_config_json_describes_every_option(iris: Path, tmp_path: Path) -> None:
    descend.fit("mlp:8", str(iris), target="species", epochs=1, run_dir=tmp_path / "run", progress=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert list(config["arguments"]) == list(OPTIONS)
    assert config["arguments"]["model"] == "mlp:8" and config["arguments"]["data"] == str(iris)
    assert config["resolved"]["model"]["hidden"] == [8] and config["resolved"]["batch_size"] == 32


def test_a_run_repeated_from_its_config_json_is_bit_identical(iris: Path, tmp_path: Path) -> None:
    first = ["train", iris, "--target", "species", "--model", "mlp:16,dropout=0.1", "--optimizer", "momentum",
             "--lr", "0.05", "--optimizer-option", "momentum=0.8", "--schedule", "step", "--step-size", "20",
             "--gamma", "0.5", "--l2", "1e-3", "--clip-norm", "5", "--epochs", "4", "--seed", "7",
             "--monitor", "val_accuracy", "--patience", "3", "-q"]  # fmt: skip
    assert _invoke(*first, "--out", tmp_path / "a").exit_code == 0
    r = _invoke("train", "--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b", "-q")
    assert r.exit_code == 0, r.output
    a, b = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a flag overrides the file, and changes the run
    r = _invoke("train", "--config", tmp_path / "a" / "config.json", "--out", tmp_path / "c", "--seed", "8", "-q")
    c = load_file(tmp_path / "c" / "model" / "model.safetensors")
    assert r.exit_code == 0 and not all(torch.equal(a[k], c[k]) for k in a)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["arguments"]["seed"] == 8


def test_a_toml_config_gives_options_and_flags_override_it(iris: Path, tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(f'data = "{iris}"\ntarget = "species"\nmodel = "mlp:8"\nepochs = 2\noptimizer = "sgd"\n'
                    'lr = 0.1\nschedule = "step"\ngamma = 0.5\n[optimizer_options]\nmomentum = 0.9\n')  # fmt: skip
    r = _invoke("train", "--config", toml, "--out", tmp_path / "run", "--epochs", "3", "-q")
    assert r.exit_code == 0, r.output
    args = json.loads((tmp_path / "run" / "config.json").read_text())["arguments"]
    assert (args["epochs"], args["optimizer"], args["gamma"], args["optimizer_options"]) == (3, "sgd", 0.5,
                                                                                              {"momentum": 0.9})
    for text, fragment in (('epochz = 3\n', "unknown option 'epochz'"), ('epochs = 0\n', "epochs=0; expected"),
                           ('epochs = \n', "is not valid TOML")):  # fmt: skip
        toml.write_text(f'target = "species"\n{text}')
        r = _invoke("train", iris, "--config", toml, "--out", tmp_path / "bad")
        assert r.exit_code == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output


def test_second_order_optimizers_take_the_whole_batch_by_default() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g)
    y = (X @ torch.tensor([1.0, -1.0, 0.5]) > 0).long()
    result = descend.fit("logistic", (X, y), optimizer="lbfgs", epochs=5, validation=0, diagnostics=False)
    assert result.steps == 5  # one step an epoch: the whole training set
    with pytest.raises(ConfigError, match="batch_size: LBFGS steps on the whole training set"):
        descend.fit("logistic", (X, y), optimizer="lbfgs", batch_size=32, epochs=1)


def test_early_stopping_follows_the_monitor_and_min_delta() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 4, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(300, generator=g) > 0).long()
    result = descend.fit("mlp:16", (X, y), epochs=40, monitor="val_loss", patience=3, min_delta=10.0,
                         diagnostics=False)  # fmt: skip
    # no epoch can lower the loss by more than 10 after the first: stopped after patience epochs
    assert result.stop_reason == "early_stopping" and result.epochs == 4 and result.best_epoch == 1
    result = descend.fit("mlp:16", (X, y), epochs=40, monitor="val_accuracy", patience=3, diagnostics=False)
    assert result.best_epoch is not None  # the weights kept are those of an epoch with the best accuracy
    assert result.final["val_accuracy"] == max(r["val_accuracy"] for r in result.history)
    with pytest.raises(ConfigError, match="monitor: invalid monitor='val_r2'; expected auto or a recorded metric"):
        descend.fit("mlp:16", (X, y), epochs=1, monitor="val_r2")
    with pytest.raises(ConfigError, match="patience: patience=3 is a setting of fit's own early stopping"):
        descend.fit("mlp:16", (X, y), epochs=1, patience=3, early_stopping=descend.train.EarlyStopping())


@pytest.mark.parametrize(("tie_break", "best_epoch"), [("auto", 3), (None, 2)])
def test_ties_of_the_accuracy_break_on_the_validation_loss(tie_break: Any, best_epoch: int) -> None:
    from types import SimpleNamespace

    stopping = descend.train.EarlyStopping("val_accuracy", patience=2, tie_break=tie_break)
    state = SimpleNamespace(model=torch.nn.Linear(1, 1), stop=None, step=0, epochs=9, log_event=lambda *a, **k: None)
    for epoch, (accuracy, loss) in enumerate([(0.5, 1.0), (0.6, 0.9), (0.6, 0.8), (0.6, 0.85), (0.6, 0.81)], 1):
        state.row = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}
        stopping.on_epoch_end(state)  # type: ignore[arg-type]
    # a tie that lowers the loss is the better epoch (3); without a tie-break the first to reach 0.6 is (2)
    assert stopping.best_epoch == best_epoch
    assert state.stop == "early_stopping" and stopping.wait == 5 - best_epoch
    assert descend.train.EarlyStopping("val_loss").tie_break is None
    assert descend.train.EarlyStopping("accuracy").tie_break == "loss"


def test_schedule_settings_shape_the_named_schedule(tmp_path: Path) -> None:
    X = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    y = X.sum(1)
    descend.fit("linear", (X, y), optimizer="sgd", lr=0.1, schedule="step", step_size=4, gamma=0.5, batch_size=16,
                epochs=3, validation=0, run_dir=tmp_path / "run", progress=False)  # fmt: skip
    rates = pd.read_csv(tmp_path / "run" / "schedule.csv")["lr"].tolist()
    assert rates == [0.1 * 0.5 ** (t // 4) for t in range(12)]
    with pytest.raises(ConfigError, match=r"gamma: invalid gamma=0.5; expected None with schedule .cosine."):
        descend.fit("linear", (X, y), schedule="cosine", gamma=0.5, epochs=1)
    with pytest.raises(ConfigError, match="warmup_steps: warmup_steps=3 sets a named schedule's shape"):
        descend.fit("linear", (X, y), warmup_steps=3, epochs=1)


def test_model_settings_reach_the_model_built_from_its_name() -> None:
    X = torch.randn(64, 3, generator=torch.Generator().manual_seed(3))
    y = (X[:, 0] > 0).long()
    result = descend.fit("mlp:8", (X, y), activation="tanh", dropout=0.25, init="normal", epochs=1,
                         diagnostics=False)  # fmt: skip
    config = result.model.config()
    assert (config["activation"], config["dropout"], config["init"], config["hidden"]) == ("tanh", 0.25, "normal", [8])
    with pytest.raises(ConfigError, match=r"dropout: dropout=0.1 and the model spec.s dropout=0.2 differ"):
        descend.fit("mlp:8,dropout=0.2", (X, y), dropout=0.1, epochs=1)
    with pytest.raises(ConfigError, match=r"dropout: dropout=0.1 applies to a model fit builds from its name"):
        descend.fit(torch.nn.Linear(3, 1), (X, y.float()), dropout=0.1, epochs=1)


def test_data_options_reach_prepare_and_are_refused_for_prepared_data(iris: Path) -> None:
    result = descend.fit("softmax", str(iris), target="species", scale="minmax", epochs=1, diagnostics=False)
    X = result.data.X_train
    assert math.isclose(float(X.min()), 0.0, abs_tol=1e-6) and math.isclose(float(X.max()), 1.0, abs_tol=1e-6)
    with pytest.raises(ConfigError, match="scale: scale='minmax' applies to data fit reads itself"):
        descend.fit("softmax", result.data, scale="minmax", epochs=1)


@pytest.fixture(scope="module")
def messy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.messy import messy_table

    path = tmp_path_factory.mktemp("messy") / "messy.csv"
    frame = messy_table(300, 0, task="binary")
    frame["grade"] = np.arange(300) % 3 + 1  # integer codes
    frame.to_csv(path, index=False)
    return path


def _decisions(folder: Path) -> tuple[int, int, str]:
    data = json.loads((folder / "config.json").read_text())["data"]
    return data["n_train"], data["n_features"], "\n".join(data["decisions"])


# Each data flag of train changes what the table becomes (the run's config.json records how it was read), or
# refuses it with one line: (flags, what the decisions or the size must show, or the refusal's fragment).
DATA_FLAGS = [
    ([], lambda n, f, d: n == 240 and f == 17 and "training median, plus a 0/1 column" in d and "pooled into" in d
     and "not seen in training go to '(infrequent)'" in d, None),
    (["--impute", "mean"], lambda n, f, d: "training mean, plus a 0/1 column" in d, None),
    (["--impute", "drop"], lambda n, f, d: n < 240 and "gaps filled" not in d.split("date:")[0], None),
    (["--impute", "error"], None, "column 'age', line 3: value is missing"),
    (["--min-frequency", "1"], lambda n, f, d: "pooled into" not in d, None),
    (["--unseen", "ignore"], lambda n, f, d: "not seen in training are all zeros" in d, None),
    (["--drop", "age"], lambda n, f, d: "age" not in d.split("left out")[0], None),
    (["--keep", "PassengerId"], lambda n, f, d: "numeric: PassengerId" in d, None),
    (["--dates", "name"], None, "column 'name' is named in dates= but no date format reads its values"),
    (["--categorical", "grade"], lambda n, f, d: "grade (3 columns)" in d and f == 19, None),
    (["--strict"], None, "column 'PassengerId' looks like an identifier"),
]


@pytest.mark.parametrize(("flags", "shows", "refused"), DATA_FLAGS, ids=[" ".join(f[0]) or "defaults" for f in DATA_FLAGS])
def test_data_flags_reach_the_table(flags: list[str], shows: Any, refused: str | None, messy_csv: Path,
                                    tmp_path: Path) -> None:  # fmt: skip
    r = _invoke("train", messy_csv, "--target", "y", "--epochs", "1", "--no-diagnostics", "--out", tmp_path / "run",
                *flags, "-q")  # fmt: skip
    if refused is not None:
        assert r.exit_code == 2 and refused in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "run").exists()
        return
    assert r.exit_code == 0, r.output
    n, f, d = _decisions(tmp_path / "run")
    assert shows(n, f, d), (flags, n, f, d)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "How the table was read" in page and all(html.escape(line) in page for line in d.splitlines())


def test_unseen_error_makes_a_model_that_refuses_new_categories(messy_csv: Path, tmp_path: Path) -> None:
    new = pd.read_csv(messy_csv).head(5)
    new.loc[0, "port"] = "Nowhere"
    new.to_csv(tmp_path / "new.csv", index=False)
    for flags, refused in (([], False), (["--unseen", "error"], True)):
        run = tmp_path / ("strict" if refused else "default")
        assert _invoke("train", messy_csv, "--target", "y", "--epochs", "1", "--no-diagnostics", "--out", run,
                       *flags, "-q").exit_code == 0  # fmt: skip
        r = _invoke("predict", run, tmp_path / "new.csv", "--json")
        if refused:
            assert r.exit_code == 2 and "category 'Nowhere' was not seen in training" in r.stderr, r.output
        else:
            assert r.exit_code == 0 and len(json.loads(r.stdout)["predictions"]) == 5, r.output
