"""Models by name: the built-in EfficientNet-Lite0 and torchvision models (no downloads)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from quant.errors import ModelError
from quant.images import builtin_photos
from quant.models import DEFAULT_MODEL, available_models, load_model
from quant.models.efficientnet_lite import _same_padding, efficientnet_lite0, weights_path


def test_state_dict_loads_strictly_with_the_shipped_keys():
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = efficientnet_lite0(pretrained=False)
    assert set(model.state_dict()) == set(state)
    assert len(state) == 296
    for k, v in model.state_dict().items():
        assert v.shape == state[k].shape, k


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [(224, 3, 2, (0, 1)), (112, 3, 1, (1, 1)), (56, 5, 2, (1, 2)), (14, 5, 1, (2, 2)), (7, 1, 1, (0, 0))],
)
def test_tf_same_padding(size, kernel, stride, expected):
    # TF "SAME": output ceil(size/stride); the odd pixel of padding goes to the bottom/right
    assert _same_padding(size, kernel, stride) == expected


def test_default_model_classifies_the_sample_photos():
    lm = load_model()
    assert lm.name == DEFAULT_MODEL
    photos = builtin_photos()
    x = torch.stack([lm.preprocessing(Image.fromarray(photos[n])) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top = lm.model(x).argmax(1).tolist()
    assert 281 <= top[0] <= 285  # a cat class (tabby, tiger cat, Persian, Siamese, Egyptian cat)
    assert top[1] in (967, 968)  # espresso or cup


def test_unknown_model_lists_available_models():
    with pytest.raises(ModelError) as info:
        load_model("no-such-net")
    msg = str(info.value)
    assert "no-such-net" in msg and "efficientnet-lite0" in msg and "resnet18" in msg
    assert "resnet50" in available_models()


def test_torchvision_without_weights_explains_how_to_supply_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelError) as info:
        load_model("resnet18")
    msg = str(info.value)
    assert "--weights" in msg and "--random-init" in msg and "checkpoints" in msg


def test_torchvision_weights_from_file_and_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    src = load_model("resnet18", random_init=True)
    assert src.weights == "random-init"
    torch.manual_seed(1)
    with torch.no_grad():
        for p in src.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "r18.pth"
    torch.save(src.model.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = src.model(x)
        from_file = load_model("resnet18", weights=path)
        assert torch.equal(from_file.model(x), ref)
    # the same file under its standard torchvision name in the hub cache is found without --weights
    from quant.models.torchvision_models import hub_checkpoint

    _, entry = hub_checkpoint("resnet18")
    (tmp_path / "checkpoints").mkdir()
    cached = tmp_path / "checkpoints" / entry.url.rsplit("/", 1)[1]
    cached.write_bytes(path.read_bytes())
    lm = load_model("resnet18")
    assert lm.weights == str(cached)
    with torch.no_grad():
        assert torch.equal(lm.model(x), ref)
    assert lm.preprocessing.size == 224 and lm.categories and len(lm.categories) == 1000


def test_bad_weights_file_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pth"):
        load_model("resnet18", weights=bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(ModelError, match="does not match"):
        load_model("resnet18", weights=wrong)
    with pytest.raises(ModelError, match="not an EfficientNet-Lite0"):
        load_model("efficientnet-lite0", weights=wrong)


# ------------------------------------------------------------------------------ MODULE:FUNCTION models
_MODEL_FILE = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.dw(x))
        return self.fc(x.mean((2, 3)))


class Branchy(Small):
    """Data-dependent control flow: torch.fx cannot trace forward()."""

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        if float(x.mean()) > -1.0:
            x = torch.relu(self.dw(x))
        return self.fc(x.mean((2, 3)))


def _init(m):
    torch.manual_seed(0)
    for p in m.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


def traceable():
    return _init(Small()), {"input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                            "crop_fraction": 1.0, "interpolation": "bicubic"}


def untraceable():
    return _init(Branchy()), {"input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def module_only():
    return _init(Small())


def not_a_module():
    return 42
'''


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "mynets.py"
    path.write_text(_MODEL_FILE)
    return path


def test_model_from_a_file_with_preprocessing(model_file):
    lm = load_model(f"{model_file}:traceable")
    assert lm.name == f"{model_file}:traceable" and not lm.model.training
    p = lm.preprocessing
    assert (p.size, p.crop_fraction, p.interpolation) == (32, 1.0, "bicubic")
    assert p.mean == (127.5, 127.5, 127.5) and p.std == (63.75, 63.75, 63.75)  # 0..1 scale read as 0..255
    plain = load_model(f"{model_file}:module_only")  # no preprocessing: torchvision's ImageNet one
    assert plain.preprocessing.size == 224 and plain.preprocessing.mean[0] == pytest.approx(0.485 * 255)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(lm.model(x), plain.model(x))  # same function from the same file


def test_model_from_a_dotted_module(model_file, monkeypatch):
    monkeypatch.syspath_prepend(str(model_file.parent))
    lm = load_model("mynets:traceable")
    assert lm.preprocessing.size == 32
    from quant.models import check_model_name

    check_model_name("mynets:traceable")


@pytest.mark.parametrize("spec,message", [
    ("{file}:not_a_module", "not a torch.nn.Module"),
    ("{file}:missing", "has no function 'missing'"),
    ("{dir}/nothere.py:build", "not found"),
    ("{file}:", "MODULE:FUNCTION"),
    ("no_such_pkg_qq:build", "no module named"),
])
def test_bad_model_specs(model_file, spec, message):
    from quant.models import check_model_name

    spec = spec.format(file=model_file, dir=model_file.parent)
    with pytest.raises(ModelError, match=message):
        check_model_name(spec)
        load_model(spec)


@pytest.mark.parametrize("function,traced", [("traceable", True), ("untraceable", False)])
def test_model_spec_through_the_pipeline(model_file, function, traced):
    from quant.evaluation import evaluate_model
    from quant.images import builtin_images
    from quant.config import QuantConfig

    lm = load_model(f"{model_file}:{function}")
    images = builtin_images(lm.preprocessing, 18, split="evaluation")
    calib = builtin_images(lm.preprocessing, 36, split="calibration")
    hi = evaluate_model(lm, QuantConfig(wbits=16, abits=16, first_layer_wbits="same", classifier_bits="same"),
                        images=images, calibration_images=calib, batch_size=18)
    lo = evaluate_model(lm, QuantConfig(wbits=2, abits=2, first_layer_wbits="same", classifier_bits="same"),
                        images=images, calibration_images=calib, batch_size=18)
    assert hi.num_images == 18 and [r.name for r in hi.per_layer] == ["conv", "dw", "fc"]
    assert hi.logit_sqnr_db > 40 and hi.logit_sqnr_db > lo.logit_sqnr_db + 20
    from quant.capture import ActivationSite
    from quant.graph import instrument

    assert instrument(lm.model, ActivationSite).traced is traced
