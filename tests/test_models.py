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
