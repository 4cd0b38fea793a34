"""eval and predict through Lightning's Trainer: device mapping, predict_step, the shared data location, the
datamodule's normalisation; in-process and small (tests/test_inference.py runs the commands on a real run)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from fmnist.core.constants import CLASS_NAMES
from fmnist.core.errors import ConfigError
from fmnist.core.metric_keys import class_metric_key
from fmnist.data.batches import BatchTransform
from fmnist.inference.predictor import image_loader, inference_trainer, resolve_tta, trainer_devices
from fmnist.inference.reports import per_class_rows
from fmnist.inference.testset import official_test_batches
from fmnist.training.module import ClassifierModule
from tests.helpers import compose


def _module(tta_flip: bool) -> ClassifierModule:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    return ClassifierModule(net, optimizer=torch.optim.Adam, tta_flip=tta_flip)


def test_device_maps_to_the_trainers_accelerator() -> None:
    assert trainer_devices("auto") == ("auto", 1) and trainer_devices("cpu") == ("cpu", 1)
    for bad in ("tpu", "meta", "cuda:x"):
        with pytest.raises(ConfigError, match=r"^device: '.*' is not a device\. Fix: use auto, cpu, cuda"):
            trainer_devices(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA was asked for, but PyTorch sees no GPU"):
            trainer_devices("cuda:1")
    else:
        assert trainer_devices("cuda:0") == ("cuda", [0])


def test_predict_step_is_the_test_stages_logits_with_flip_tta() -> None:
    x = torch.randn(4, 1, 28, 28)
    flipped, plain = _module(True), _module(False)
    with torch.no_grad():  # the mean over each image and its mirror image; a symmetric image gives its own logits
        assert torch.allclose(flipped.predict_step(x, 0), (flipped.net(x) + flipped.net(x.flip(-1))) / 2, atol=1e-6)
        symmetric = x + x.flip(-1)
        assert torch.allclose(flipped.predict_step(symmetric, 0), flipped.net(symmetric), atol=1e-6)
    assert torch.equal(flipped.predict_step((x, torch.zeros(4)), 0), flipped.predict_step(x, 0))
    assert torch.equal(plain.predict_step(x, 0), plain.net(x))
    assert not torch.allclose(flipped.predict_step(x, 0), plain.net(x))
    assert resolve_tta("auto", OmegaConf.create({"model": {"tta_flip": True}})) == "flip"
    assert resolve_tta("auto", OmegaConf.create({"model": {"name": "x"}})) == "none"


def test_trainer_predict_over_user_images_keeps_their_order() -> None:
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    transform = BatchTransform(0.25, 0.5, "image")
    module = _module(False)
    outputs = inference_trainer("cpu").predict(module, dataloaders=image_loader(images, transform, 3))
    with torch.inference_mode():  # batch by batch, as predict sees them: a matmul's last bits depend on the batch
        expected = torch.cat([module.net(transform(images[start:start + 3], False, None)) for start in (0, 3, 6)])
    assert len(outputs) == 3 and torch.equal(torch.cat(outputs), expected)


def test_eval_predict_and_export_share_one_data_location() -> None:
    for command in ("eval", "predict", "export"):
        data = compose(command, "data.system_dir=/elsewhere").data
        assert data.system_dir == "/elsewhere" and data.verify_checksums and data.download, command
        assert set(data) == {"data_dir", "system_dir", "download", "verify_checksums", "eval_batch_size"}, command
    assert compose("eval").data.eval_batch_size == 1024
    assert compose("predict", "batch_size=7").data.eval_batch_size == 7


def test_user_images_get_the_datamodules_normalisation(fashion) -> None:
    config = OmegaConf.create({"model": {"input": "image"}, "data": {
        "_target_": "fmnist.data.datamodule.FashionMnistDataModule", "input_kind": "image"}})
    location = compose("predict", "data.download=false").data
    transform = official_test_batches(config, location).transform
    pixels = fashion.train_images.float().div_(255.0)
    assert (transform.mean, transform.std) == (float(pixels.mean()), float(pixels.std()))


def test_per_class_rows_read_the_test_stages_logged_figures() -> None:
    confusion = torch.eye(10, dtype=torch.long) * 90 + 1  # per class: 91 right, one image taken for each other class
    metrics = {class_metric_key("test", metric, name): 0.5 for metric in ("acc", "precision", "f1")
               for name in CLASS_NAMES}
    metrics[class_metric_key("test", "f1", "Bag")] = 0.123456
    rows = per_class_rows(metrics, confusion, CLASS_NAMES)
    assert [row["name"] for row in rows] == list(CLASS_NAMES) and rows[8]["f1"] == 0.1235
    assert rows[0]["support"] == 100 and rows[0]["correct"] == 91 and rows[0]["acc"] == 0.5


def test_predict_normalises_user_images_from_the_checkpoint_without_the_data(tiny_run, tmp_path) -> None:
    """The checkpoint carries the datamodule's normalisation (its state_dict), so predicting a folder of images needs
    no copy of the train set, and gives the very rows the official test set gets for the same images."""
    from PIL import Image

    from fmnist.data.sources import load_fashion_mnist
    from tests.helpers import DATA_DIR, run_in_process

    images = load_fashion_mnist(DATA_DIR, download=False).test_images[:6]
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image.numpy()).save(folder / f"{index}.png")
    nowhere = ["data.data_dir=/nonexistent", "data.system_dir=/nonexistent", "data.download=false"]
    run_in_process("predict", f"ckpt_path={tiny_run.ckpt}", f"input={folder}", f"output={tmp_path}/folder.csv",
                   *nowhere, run_dir=tmp_path / "folder")
    run_in_process("predict", f"ckpt_path={tiny_run.ckpt}", "input=test", f"output={tmp_path}/test.csv",
                   run_dir=tmp_path / "test")
    folder_rows = (tmp_path / "folder.csv").read_text().splitlines()[1:]
    test_rows = (tmp_path / "test.csv").read_text().splitlines()[1:7]
    assert [row.split(",", 1)[1] for row in folder_rows] == [row.split(",", 1)[1] for row in test_rows]


@pytest.mark.parametrize("state", [{"mean": float("nan"), "std": 0.35}, {"mean": 0.28, "std": 0.0},
                                   {"mean": "0.28", "std": 0.35}, {"std": 0.35}])
def test_a_bad_stored_normalisation_is_refused(tiny_run, tmp_path, state) -> None:
    from fmnist.core.checkpoints import DATAMODULE_STATE_KEY, CheckpointError
    from fmnist.inference.checkpoint import load_model

    checkpoint = torch.load(tiny_run.ckpt, map_location="cpu", weights_only=True)
    checkpoint[DATAMODULE_STATE_KEY] = state
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=r"bad.ckpt: its stored normalisation .* is not a finite mean and a "
                                              r"positive std\. Fix: pass ckpt_path="):
        load_model(tmp_path / "bad.ckpt")
    checkpoint[DATAMODULE_STATE_KEY] = [0.28, 0.35]
    torch.save(checkpoint, tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match=r"its 'FashionMnistDataModule' is a list, not dict"):
        load_model(tmp_path / "list.ckpt")
