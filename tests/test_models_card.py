"""Model card parsing, validation and discovery."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmark.core.errors import CardError, CheckpointError
from benchmark.models.card import InputSpec, ModelCard, find_card, load_card, parse_card

VALID = {
    "name": "my-densenet",
    "format": "torchscript",
    "classes": ["negative", "typical", "indeterminate", "atypical"],
    "output": "logits",
    "input": {"size": [224, 224], "channels": 1, "mean": [0.5], "std": [0.25]},
}


def card(**changes: object) -> dict:
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is _DROP:
            del node[leaf]
        else:
            node[leaf] = value
    return data


_DROP = object()


def test_valid_card_parses_and_round_trips_unknown_fields():
    data = card(trained_on="synth", notes={"epochs": 3}, input__resample="bilinear",
                architecture="timm:densenet121")
    parsed = parse_card(data, where="card.json")
    assert parsed.name == "my-densenet" and parsed.format == "torchscript"
    assert parsed.input == InputSpec((224, 224), 1, (0.5,), (0.25,), True, parsed.input.extra)
    assert parsed.class_index == (0, 1, 2, 3)
    assert parsed.extra["notes"] == {"epochs": 3}
    out = parsed.to_json()
    assert out["trained_on"] == "synth" and out["notes"] == {"epochs": 3}
    assert out["input"]["resample"] == "bilinear"
    assert parse_card(json.loads(json.dumps(out)), where="x").to_json() == out
    out["notes"]["epochs"] = 99  # to_json hands out a copy
    assert parsed.extra["notes"] == {"epochs": 3}


def test_defaults_fill_optional_input_fields():
    parsed = parse_card(card(input={"size": [64, 32]}), where="card.json")
    assert parsed.input.size == (64, 32)
    assert (parsed.input.channels, parsed.input.mean, parsed.input.std) == (1, (0.5,), (0.25,))
    assert parsed.input.keep_aspect is True


def test_kaggle_aliases_map_to_canonical_indices():
    parsed = parse_card(card(classes=["Atypical Appearance", "Negative for Pneumonia",
                                      "Indeterminate Appearance", "Typical Appearance"]), where="c")
    assert parsed.class_index == (3, 0, 2, 1)


def test_model_card_built_in_code_derives_class_index():
    built = ModelCard("m", "onnx", ["typical", "negative"], "logits", InputSpec((8, 8)))
    assert built.classes == ("typical", "negative") and built.class_index == (1, 0)


@pytest.mark.parametrize("field", ["name", "format", "classes", "output", "input", "input.size"])
def test_missing_required_field_is_named(field):
    data = card(**{field.replace(".", "__"): _DROP})
    with pytest.raises(CardError) as err:
        parse_card(data, where="model.card.json")
    assert str(err.value) == f"model.card.json: field '{field}' is missing"


@pytest.mark.parametrize("changes, expected", [
    ({"name": 5}, "field 'name' must be a non-empty string"),
    ({"classes": "negative"}, "field 'classes' must be a list of class names"),
    ({"classes": [0, 1, 2, 3]}, "field 'classes' must be a list of class names"),
    ({"output": "logit"}, "field 'output' must be one of 'logits', 'probabilities'"),
    ({"input": [224, 224]}, "field 'input' must be an object"),
    ({"input__size": [224]}, "field 'input.size' must be [height, width]"),
    ({"input__size": "224x224"}, "field 'input.size' must be [height, width]"),
    ({"input__size": [0, 224]}, "field 'input.size' must be a positive integer"),
    ({"input__size": [224.5, 224]}, "field 'input.size' must be a positive integer"),
    ({"input__channels": 0}, "field 'input.channels' must be a positive integer"),
    ({"input__channels": True}, "field 'input.channels' must be a positive integer"),
    ({"input__mean": [0.5, 0.5]}, "field 'input.mean' has 2 values; expected 1 or input.channels = 1"),
    ({"input__mean": "0.5"}, "field 'input.mean' must be a number or a list of numbers"),
    ({"input__std": [0.0]}, "field 'input.std' must be > 0"),
    ({"input__std": [-1]}, "field 'input.std' must be > 0"),
    ({"input__keep_aspect": "yes"}, "field 'input.keep_aspect' must be true or false"),
    ({"architecture": "resnet18"}, "field 'architecture' must look like 'builder:name'"),
])
def test_wrong_types_are_named(changes, expected):
    with pytest.raises(CardError, match="^card.json: ") as err:
        parse_card(card(**changes), where="card.json")
    assert expected in str(err.value)


def test_card_must_be_an_object():
    with pytest.raises(CardError, match="must be a JSON object, got list"):
        parse_card([VALID], where="card.json")


def test_per_channel_mean_and_std_are_accepted():
    parsed = parse_card(card(input__channels=3, input__mean=[0.485, 0.456, 0.406],
                             input__std=[0.229, 0.224, 0.225]), where="c")
    assert parsed.input.channels == 3 and len(parsed.input.std) == 3


def test_unknown_format_lists_known_ones():
    with pytest.raises(CardError) as err:
        parse_card(card(format="tflite"), where="card.json")
    message = str(err.value)
    assert "field 'format'" in message and "'tflite'" in message
    for known in ("export", "torchscript", "safetensors", "onnx", "pickle"):
        assert repr(known) in message


def test_unmappable_class_is_named():
    with pytest.raises(CardError, match=r"field 'classes'\[1\] = 'covid'"):
        parse_card(card(classes=["negative", "covid", "atypical"]), where="card.json")


@pytest.mark.parametrize("classes", [
    ["negative", "typical", "typical"],
    ["negative", "Negative for Pneumonia", "typical"],
])
def test_duplicate_classes_are_refused(classes):
    with pytest.raises(CardError, match="names 'negative' twice|names 'typical' twice"):
        parse_card(card(classes=classes), where="card.json")


def test_safetensors_requires_architecture():
    with pytest.raises(CardError, match="field 'architecture' is missing"):
        parse_card(card(format="safetensors"), where="card.json")
    parsed = parse_card(card(format="safetensors", architecture="timm:resnet18"), where="c")
    assert parsed.architecture == "timm:resnet18"


# ---------------------------------------------------------------- files


def test_malformed_json_names_line_and_column(tmp_path: Path):
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"x")
    (tmp_path / "m.card.json").write_text('{\n  "name": "m",\n  "format": torchscript\n}')
    with pytest.raises(CardError) as err:
        load_card(weights)
    assert "m.card.json" in str(err.value) and "line 3, column 13" in str(err.value)


def test_card_beside_a_file(tmp_path: Path):
    weights = tmp_path / "model.v2.pt"
    weights.write_bytes(b"x")
    (tmp_path / "model.v2.card.json").write_text(json.dumps(VALID))
    assert find_card(weights) == tmp_path / "model.v2.card.json"
    parsed, found = load_card(weights)
    assert parsed.name == "my-densenet" and found == weights
    # The card path itself also names the checkpoint.
    assert load_card(tmp_path / "model.v2.card.json")[1] == weights


def test_missing_card_is_a_card_error(tmp_path: Path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"x")
    with pytest.raises(CardError, match="expected model.card.json"):
        load_card(weights)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_card(tmp_path / "absent.pt")


def test_checkpoint_folder(tmp_path: Path):
    (tmp_path / "card.json").write_text(json.dumps(VALID))
    (tmp_path / "README.md").write_text("notes")
    with pytest.raises(CheckpointError, match="no weights file"):
        load_card(tmp_path)
    (tmp_path / "weights.pt").write_bytes(b"x")
    parsed, weights = load_card(tmp_path)
    assert weights == tmp_path / "weights.pt" and parsed.format == "torchscript"
    (tmp_path / "other.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="more than one weights file"):
        load_card(tmp_path)
