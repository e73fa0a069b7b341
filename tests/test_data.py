"""The DataModule: Keras' split, batches gathered from tensors, the order a function of seed and epoch,
DDP shards, MNIST files checked and downloaded, picture folders walked safely."""

import io
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.mnist import N_TEST, N_TRAIN, write_idx
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image

from mnist_lightning.data import MNISTDataModule, read_digits
from mnist_lightning.errors import UserError
from mnist_lightning.pictures import find_files


def fitted(data_dir, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(data_dir), **kwargs)
    dm.setup("fit")
    return dm


def test_split_is_keras_validation_split(synthetic_mnist):
    data_dir, arrays = synthetic_mnist
    dm = fitted(data_dir)
    n_val = N_TRAIN // 10
    assert len(dm.train_set) == N_TRAIN - n_val and len(dm.val_set) == n_val
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"])
    # Keras takes the *last* 10% for validation, in file order.
    assert torch.equal(dm.train_set.images[:, 0], images[:-n_val])
    assert torch.equal(dm.val_set.images[:, 0], images[-n_val:])


def test_test_set_is_only_the_official_test_file(synthetic_mnist):
    data_dir, arrays = synthetic_mnist
    dm = MNISTDataModule(data_dir=str(data_dir))
    dm.setup("test")
    assert dm.train_set is None
    assert torch.equal(dm.test_set.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert len(dm.test_set) == N_TEST


def test_train_batches_cover_every_sample_once_per_epoch(synthetic_mnist):
    dm = fitted(synthetic_mnist[0], batch_size=32)
    batches = list(dm.train_dataloader())
    assert [len(y) for _, y in batches[:-1]] == [32] * (len(batches) - 1)
    seen = torch.cat([x for x, _ in batches]).flatten(1)
    assert seen.shape[0] == len(dm.train_set)
    assert torch.equal(seen.sum(0), dm.train_set.images.flatten(1).sum(0))  # same multiset of images


def test_a_batch_gathers_the_same_pairs_as_single_items(synthetic_mnist):
    dataset = fitted(synthetic_mnist[0]).train_set
    indices = [17, 3, 3, 250, 0]
    images, labels = dataset.__getitems__(indices)
    assert images.dtype == torch.uint8 and images.shape == (5, 1, 28, 28)
    for row, index in enumerate(indices):
        image, label = dataset[index]
        assert torch.equal(images[row], image) and labels[row] == label


def train_order(dm: MNISTDataModule, epoch: int) -> torch.Tensor:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return torch.cat([y for _, y in loader])


def test_reshuffles_every_epoch_and_is_a_function_of_seed_and_epoch(synthetic_mnist, monkeypatch):
    dm = fitted(synthetic_mnist[0], batch_size=50)
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    first, second, first_again = train_order(dm, 0), train_order(dm, 1), train_order(dm, 0)
    assert not torch.equal(first, second)
    assert torch.equal(first, first_again)
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert not torch.equal(first, train_order(dm, 0))


def test_the_order_follows_set_epoch_called_after_the_iterator_is_made(synthetic_mnist):
    dm = fitted(synthetic_mnist[0], batch_size=50)
    loader = dm.train_dataloader()
    early = iter(loader)  # Lightning makes the iterator first, then calls set_epoch
    loader.sampler.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in early]), train_order(dm, 1))
    assert not torch.equal(train_order(dm, 1), train_order(dm, 0))


def test_ranks_get_disjoint_shards_that_cover_the_set(synthetic_mnist):
    dm = fitted(synthetic_mnist[0], batch_size=16)
    shards = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        shards.append(list(dm.train_dataloader().sampler))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(len(dm.train_set)))


@pytest.mark.parametrize("standardize", [False, True])
def test_normalization_happens_after_transfer(synthetic_mnist, standardize):
    dm = fitted(synthetic_mnist[0], standardize=standardize)
    raw_images, labels = next(iter(dm.val_dataloader()))
    assert raw_images.dtype == torch.uint8 and raw_images.shape[1:] == (1, 28, 28)
    images, same_labels = dm.on_after_batch_transfer((raw_images, labels), 0)
    assert images.dtype == torch.float32 and same_labels is labels
    if standardize:
        expected = (raw_images.float() / 255 - 0.1307) / 0.3081
    else:
        expected = raw_images.float() / 255
        assert images.min() >= 0 and images.max() <= 1 and images.max() == 1
    torch.testing.assert_close(images, expected)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"val_split": 0.0}, {"val_split": 1.0}, {"eval_batch_size": -1}])
def test_impossible_settings_are_refused(kwargs):
    with pytest.raises(UserError):
        MNISTDataModule(**kwargs)


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(UserError, match=r"MNIST/raw.*train-images-idx3-ubyte"):
        dm.prepare_data()


def test_downloads_through_torchvision_when_files_are_missing(tmp_path, mnist_server):
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"))
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()
    expected = torch.from_numpy(mnist_server.arrays["train-labels-idx1-ubyte"]).long()
    assert torch.equal(torch.cat([dm.train_set.labels, dm.val_set.labels]), expected)


def test_failed_download_gives_one_clear_message(tmp_path, mnist_server):
    (mnist_server.served / "t10k-images-idx3-ubyte.gz").unlink()  # the mirror lacks one file
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"))
    with pytest.raises(UserError, match=r"could not be downloaded .*Put the four files"):
        dm.prepare_data()


def test_a_download_that_fails_at_once_leaves_no_empty_folders(tmp_path, mnist_server):
    for name in mnist_server.arrays:
        (mnist_server.served / f"{name}.gz").unlink()  # the mirror serves nothing
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"))
    with pytest.raises(UserError, match="could not be downloaded"):
        dm.prepare_data()
    assert list(tmp_path.iterdir()) == [mnist_server.served]  # no data/MNIST/raw left behind


def copy_mnist(synthetic_mnist, tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(synthetic_mnist[0], target)
    return target


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:5000]), "is truncated or damaged"),
        (lambda f: f.write_bytes(f.read_bytes()[:10]), "too short even for an IDX header"),
        (lambda f: f.write_bytes(b"\x00\x00\x08\x01" + f.read_bytes()[4:]), "not an MNIST images file"),
        (lambda f: write_idx(f, torch.zeros(5, 20, 20, dtype=torch.uint8).numpy()), "20x20 images"),
    ],
)
def test_damaged_idx_files_are_named(synthetic_mnist, tmp_path, damage, message):
    data_dir = copy_mnist(synthetic_mnist, tmp_path)
    images = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(images)
    with pytest.raises(UserError, match=message) as err:
        MNISTDataModule(data_dir=str(data_dir), download=False).setup("fit")
    assert str(images) in str(err.value)


def test_image_and_label_counts_must_agree(synthetic_mnist, tmp_path):
    data_dir = copy_mnist(synthetic_mnist, tmp_path)
    write_idx(data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8).numpy())
    with pytest.raises(UserError, match="holds 100 images but .* holds 7 labels"):
        MNISTDataModule(data_dir=str(data_dir)).setup("test")


def test_checksum_mismatch_on_download_is_reported(tmp_path, mnist_server, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "resources", [(name, "0" * 32) for name, _ in MNIST.resources])
    with pytest.raises(UserError, match="could not be downloaded .*corrupted"):
        MNISTDataModule(data_dir=str(tmp_path / "data")).prepare_data()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_evaluation_rows_of_every_rank_return_to_the_dataset_order(world_size, monkeypatch):
    """Each rank computes rows for the share Lightning's UnrepeatedDistributedSampler gives it;
    gathered, they must stand in the dataset's order (7 items: the shares differ in length)."""
    dataset = list(range(7))
    shares = [
        torch.tensor(list(UnrepeatedDistributedSampler(dataset, world_size, rank, shuffle=False)))
        for rank in range(world_size)
    ]

    def all_gather_object(parts, local):
        parts[:] = [share * 10 for share in shares]  # each rank's rows: 10 x its items

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    data = MNISTDataModule()
    data.trainer = SimpleNamespace(world_size=world_size, global_rank=0)
    assert data.in_dataset_order(shares[0] * 10).tolist() == [10 * i for i in range(7)]


def test_unreadable_folder_is_named_and_skipped(tmp_path, monkeypatch, capsys):
    # As root (CI), permissions do not stop reading, so the failing listing is simulated.
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.png").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert find_files(str(tmp_path)) == [tmp_path / "ok" / "a.png"]
    assert f"skipped the folder {tmp_path / 'locked'}: Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_predict_path_that_is_neither_file_nor_folder_is_named(kind, tmp_path):
    path = tmp_path / "p.png"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    with pytest.raises(UserError, match="is not a picture file or a folder"):
        find_files(str(path))


# Formats Pillow writes, each saved from one digit and then damaged: whatever a decoder raises,
# the picture is skipped with a warning naming it, and the others are read.
FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "gif": "GIF",
    "bmp": "BMP",
    "tif": "TIFF",
    "webp": "WEBP",
    "ico": "ICO",
    "pcx": "PCX",
    "tga": "TGA",
    "ppm": "PPM",
    "sgi": "SGI",
    "dds": "DDS",
    "j2k": "JPEG2000",
    "psd_like.spi": "SPIDER",
    "qoi": "QOI",
}


def _damaged_copies(folder: Path, seed: int) -> int:
    """Each format's file cut short, with bytes flipped, and with its header scrambled; returns how many files."""
    rng = np.random.default_rng(seed)
    digit = Image.fromarray(np.kron(np.eye(10, dtype=np.uint8) * 255, np.ones((4, 4), np.uint8)))
    count = 0
    for suffix, fmt in FORMATS.items():
        buffer = io.BytesIO()
        try:
            (digit.convert("F") if fmt == "SPIDER" else digit).save(buffer, fmt)
        except (OSError, KeyError, ValueError):  # a codec this Pillow was built without
            continue
        data = buffer.getvalue()
        for damage in range(6):
            broken = bytearray(data)
            if damage < 2:
                broken = broken[: int(len(broken) * rng.uniform(0.05, 0.9))]
            else:
                where = rng.integers(0, min(len(broken), 64 if damage < 4 else len(broken)), 8)
                for i in where:
                    broken[i] = int(rng.integers(0, 256))
            (folder / f"{damage}.{suffix}").write_bytes(bytes(broken))
            count += 1
    return count


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own word on a damaged TIFF
def test_pictures_that_break_any_decoder_are_skipped_and_named(tmp_path, capsys):
    count = _damaged_copies(tmp_path, seed=0)
    Image.fromarray(np.kron(np.eye(10, dtype=np.uint8) * 255, np.ones((4, 4), np.uint8))).save(tmp_path / "good.png")
    dataset, kept = read_digits(str(tmp_path))
    assert (tmp_path / "good.png") in kept and len(dataset) == len(kept)
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(kept) + len(skipped) == count + 1  # each file read or named
    assert count > 60


def test_the_first_frame_of_an_animation_is_read_and_said(tmp_path, capsys):
    frames = [
        Image.fromarray(np.kron(np.eye(7, dtype=np.uint8) * (255 - 40 * i), np.ones((4, 4), np.uint8)))
        for i in range(3)
    ]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    _, kept = read_digits(str(tmp_path))
    assert kept == [tmp_path / "a.gif"]
    assert "a.gif: read the first of its 3 frames" in capsys.readouterr().err
