"""Codes named by what they do: each categorical value's label and purity, generated purity
judged by the feature net on what G draws, what `package` stores and how the service's
engine resolves a label or a role to a code."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from infogan.data import class_names, load_idx_folder
from infogan.evaluate import generated_purity
from infogan.features import train_feature_net
from infogan.latent import LatentSpec
from infogan.metrics import contingency, hungarian_accuracy, value_labels
from infogan.package import CODE_NAMES_FILE, code_names

from .conftest import shared_dataset


def test_value_labels_name_each_value_and_its_purity():
    # 3 code values, 2 labels: value 0 is mostly label 1, value 1 mostly label 0, value 2 is
    # left over by the one-to-one match and takes its most common label.
    pred = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 0])
    _, mapping = hungarian_accuracy(pred, labels, 3, 2)
    assert mapping == {0: 1, 1: 0}
    out = value_labels(contingency(pred, labels, 3, 2), mapping, ["cat", "dog"])
    assert [(e["value"], e["label"], e["matched"], e["images"]) for e in out] == [
        (0, "dog", True, 4), (1, "cat", True, 3), (2, "dog", False, 3)]
    assert [e["purity"] for e in out] == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    # A value no image took has no purity to speak of.
    assert value_labels(np.array([[0, 0]]), {}, ["cat", "dog"])[0]["purity"] == 0.0


def test_class_names_spell_labels_for_people():
    assert class_names("mnist", 10)[7] == "7"
    assert class_names("fashion_mnist", 10)[7] == "Sneaker"
    assert class_names("image_folder", 3) == ["0", "1", "2"]


class RealDigitsBy(nn.Module):
    """A stand-in G with a known answer: value v of cat0 draws real test digits of class
    ``label_of[v]`` (the noise picks which one). It reads the one-hot code G is given."""

    def __init__(self, spec: LatentSpec, images: torch.Tensor, labels: torch.Tensor, label_of: list[int]):
        super().__init__()
        self.spec, self.images = spec, images.float() / 127.5 - 1
        self.pools = [torch.nonzero(labels == c).flatten() for c in label_of]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = self.spec.noise_dim
        values = x[:, start:start + self.spec.categorical[0]].argmax(1)
        pick = (x[:, 0].abs() * 1e4).long()
        return torch.stack([self.images[self.pools[v][pick[i] % len(self.pools[v])]]
                            for i, v in enumerate(values.tolist())])


def test_generated_purity_reads_what_g_draws_not_what_q_says():
    data = load_idx_folder(shared_dataset("mnist"), "mnist")
    data = {k: v.unsqueeze(1) if k.endswith("images") and v.dim() == 3 else v for k, v in data.items()}
    net = train_feature_net(data["train_images"][:6000], data["train_labels"][:6000], epochs=1)
    spec = LatentSpec(noise_dim=4, categorical=(10,), continuous=0)
    label_of = [(v + 3) % 10 for v in range(10)]
    g = RealDigitsBy(spec, data["test_images"], data["test_labels"], label_of)
    # What evaluation learned from Q: right for every value but 0, which it calls a 5.
    scores = [{"code": "cat0", "values": [{"value": v, "label_index": 5 if v == 0 else label_of[v]}
                                          for v in range(10)]}]
    out = generated_purity(g, spec, net, scores, per_value=100, seed=0, device="cpu", batch=250)
    assert out["generated_per_value"] == 100
    assert out["generated_purity"] == scores[0]["generated_accuracy"] > 0.85  # the net's own accuracy
    purities = [e["generated_purity"] for e in scores[0]["values"]]
    assert purities[0] < 0.05 and min(purities[1:]) > 0.7


def test_package_stores_labels_purities_roles_and_correlations():
    metrics = {"dataset": "mnist", "generated_purity": 0.9,
               "categorical": [{"code": "cat0", "values": [
                   {"value": 0, "label": "3", "label_index": 3, "matched": True, "images": 900, "purity": 0.97,
                    "generated_purity": 0.95}]}],
               "continuous_roles": {"roles": {"cont0": "slant"},
                                    "codes": {"cont0": {"attribute": "skew", "r": -0.96}}}}
    names = code_names(metrics)
    assert names["categorical"]["cat0"][0] == {"value": 0, "label": "3", "label_index": 3, "purity": 0.97,
                                               "generated_purity": 0.95, "images": 900, "matched": True}
    assert names["continuous"] == {"cont0": {"role": "slant", "attribute": "skew", "r": -0.96}}
    assert names["generated_purity"] == 0.9
    # Scored without labels: nothing to name, and nothing invented.
    bare = code_names({"dataset": "image_folder"})
    assert bare["categorical"] == {} and bare["continuous"] == {} and bare["generated_purity"] is None


@pytest.fixture(scope="module")
def engine_factory(packaged_model, tmp_path_factory):
    """The service's engine, in process, on a copy of the session's packaged model folder."""
    from service.engine import Engine

    source = next((packaged_model["home"] / "models" / "infogan-generator").glob("*/model.yaml")).parent

    def make(rewrite=None) -> Engine:
        folder = tmp_path_factory.mktemp("model")
        shutil.copytree(source, folder, dirs_exist_ok=True)
        if rewrite is not None:
            names = json.loads((folder / CODE_NAMES_FILE).read_text())
            (folder / CODE_NAMES_FILE).write_text(json.dumps(rewrite(names)))
        return Engine(folder)

    return make


def test_engine_resolves_labels_and_roles(engine_factory):
    from service.engine import RequestError

    def named(names):
        names["continuous"] = {"cont0": {"role": "slant", "attribute": "skew", "r": 0.95}}
        values = names["categorical"]["cat0"]
        for entry in values:
            entry["label_index"] = (entry["value"] + 3) % 10
            entry["label"] = str(entry["label_index"])
        values[4].update(label="0", label_index=0, purity=0.01)  # a second, less pure "0" (value 7 is the other)
        values[7]["purity"] = 0.5
        return names

    engine = engine_factory(named)
    assert list(engine.labels) == ["0", "1", "2", "3", "4", "5", "6", "8", "9"]  # no value draws a "7" now
    assert engine.check_fixed(None, "9") == {"cat0": 6}
    assert engine.check_label("5") == ("cat0", 2)
    assert engine.check_label("0") == ("cat0", 7)  # the purer of the two values labelled "0"
    assert engine.check_fixed({"slant": 0.5}, "5") == {"cont0": 0.5, "cat0": 2}
    assert engine.check_fixed({"cat0": 2}, "5") == {"cat0": 2}
    with pytest.raises(RequestError, match=r"label: '5' is cat0=2, but codes sets cat0=3"):
        engine.check_fixed({"cat0": 3}, "5")
    with pytest.raises(RequestError, match=r"unknown label 'seven'; this model's labels are 0, 1, 2, 3, 4, 5, 6, 8, 9$"):
        engine.check_fixed(None, "seven")
    with pytest.raises(RequestError, match=r"cont0 is given twice"):
        engine.check_fixed({"slant": 0.5, "cont0": 0.1})
    with pytest.raises(RequestError, match=r"unknown code 'width'.*or a role: slant"):
        engine.check_code_name("code", "width")
    described = engine.describe_names()
    assert described["roles"] == {"slant": {"code": "cont0", "attribute": "skew", "r": 0.95}}
    assert [e["label"] for e in described["labels"]] == list(engine.labels)
    assert described["labels"][0] == {"label": "0", "code": "cat0", "value": 7, "purity": 0.5,
                                      "generated_purity": described["labels"][0]["generated_purity"],
                                      "images": described["labels"][0]["images"]}


def test_engine_without_labels_asks_for_code_values(engine_factory):
    from service.engine import RequestError

    engine = engine_factory(lambda names: {"categorical": {}, "continuous": {}})
    assert engine.labels == {} and engine.roles == {}
    with pytest.raises(RequestError, match=r"this model has no labels.*cat0"):
        engine.check_fixed(None, "7")
    assert engine.check_fixed({"cat0": 3}) == {"cat0": 3}
