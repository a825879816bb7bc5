"""Sources on small data built here: ImageFolder dirs/tars (reader, cache, errors), sklearn
digits, tfds through ``tfds.testing.mock_data`` (no TensorFlow), and the unprepared-dataset
errors (the ImageNet-100 loader: ``tests/test_data_imagenet.py``)."""

import importlib.util
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from ul_jax import data
from ul_jax.data import _cache, image_folder, tfds_source
from ul_jax.data.dataset import ArrayDataset, select_classes


# --------------------------------------------------------------------------- toy ImageFolder
def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _toy_files(seed=0, size=(6, 5)):
    """{relpath: (bytes, array or None)}: train has 3 classes, test lacks 'emu'."""
    rng = np.random.default_rng(seed)
    files = {}
    layout = {"train": {"cat": 3, "dog": 2, "emu": 2}, "test": {"cat": 1, "dog": 2}}
    for split, classes in layout.items():
        for cls, n in classes.items():
            for i in range(n):
                arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                files[f"{split}/{cls}/{i:03d}.png"] = (_png(arr), arr)
    files["README.txt"] = (b"not an image", None)
    files["train/cat/notes.txt"] = (b"ignored: not an image extension", None)
    files["train/cat/._000.png"] = (b"AppleDouble junk", None)
    return files


def _write_dir(root, files):
    for rel, (blob, _) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob)
    return root


def _write_tar(path, files, prefix="toy/"):
    with tarfile.open(path, "w:gz") as tar:
        for rel, (blob, _) in files.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(_cache.ENV_CACHE_DIR, str(d))
    return d


@pytest.fixture
def toy(tmp_path):
    files = _toy_files()
    return files, _write_tar(tmp_path / "toy.tar.gz", files), _write_dir(tmp_path / "toydir", files)


def _expected(files, split):
    rows = sorted(
        (rel.split("/")[1], rel, arr)
        for rel, (_, arr) in files.items()
        if arr is not None and rel.startswith(split + "/")
    )
    names = ("cat", "dog", "emu")
    return np.stack([r[2] for r in rows]), np.array([names.index(r[0]) for r in rows], np.int32)


@pytest.mark.parametrize("which", ["tar", "dir"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_image_folder_reads_exact_pixels(toy, cache_env, which, split):
    files, tar, folder = toy
    images, labels, names = data.load_image_folder(tar if which == "tar" else folder, split)
    assert names == ("cat", "dog", "emu")  # union over splits: test keeps emu's label id
    exp_images, exp_labels = _expected(files, split)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(images, exp_images)
    np.testing.assert_array_equal(labels, exp_labels)


def test_image_folder_uncompressed_tar_and_grayscale(tmp_path, cache_env):
    files = {
        "train/a/0.png": (_png(np.full((4, 4), 9, np.uint8)), None),
        "train/b/0.png": (_png(np.full((4, 4, 3), 200, np.uint8)), None),
    }
    path = _write_tar(tmp_path / "g.tar", files, prefix="")
    images, labels, names = data.load_image_folder(path, "train", cache=False)
    assert images.shape == (2, 4, 4, 3) and np.all(images[0] == 9) and np.all(images[1] == 200)
    np.testing.assert_array_equal(labels, [0, 1])


def test_image_folder_second_load_hits_cache(toy, cache_env, monkeypatch):
    _, tar, _ = toy
    first = data.load_image_folder(tar, "train")
    entries = list((cache_env / "image_folder").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    assert sorted(p.name for p in entries[0].iterdir()) == ["images.npy", "labels.npy", "meta.json"]

    def boom(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(image_folder, "_decode_folder", boom)
    second = data.load_image_folder(tar, "train")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_image_folder(tar, "test")  # a different split is a different entry


def test_cache_keyed_by_content(tmp_path, cache_env):
    a = _write_tar(tmp_path / "a.tar.gz", _toy_files(seed=0))
    first = data.load_image_folder(a, "train")
    _write_tar(tmp_path / "a.tar.gz", _toy_files(seed=1))  # same path, new content
    second = data.load_image_folder(a, "train")
    assert not np.array_equal(first[0], second[0])
    np.testing.assert_array_equal(second[0], _expected(_toy_files(seed=1), "train")[0])


def test_corrupt_cache_is_rebuilt(toy, cache_env, caplog):
    _, tar, _ = toy
    ref = data.load_image_folder(tar, "train")
    entry = next((cache_env / "image_folder").iterdir())
    blob = (entry / "images.npy").read_bytes()
    (entry / "images.npy").write_bytes(blob[: len(blob) // 2])  # truncated file
    with caplog.at_level("WARNING"):
        again = data.load_image_folder(tar, "train")
    assert "invalid cache entry" in caplog.text
    np.testing.assert_array_equal(again[0], ref[0])
    assert _cache.load_arrays(entry) is not None  # rewritten and valid


def test_killed_cache_write_leaves_no_entry(toy, cache_env, monkeypatch):
    _, tar, _ = toy
    real_save = np.save
    calls = []

    def dying_save(f, arr, **kw):
        calls.append(1)
        if len(calls) == 2:  # die while writing the second array
            raise KeyboardInterrupt
        return real_save(f, arr, **kw)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        data.load_image_folder(tar, "train")
    monkeypatch.setattr(np, "save", real_save)
    entry = next((cache_env / "image_folder").iterdir())
    assert not (entry / "meta.json").exists()
    assert not [p for p in entry.iterdir() if p.name.endswith(".tmp")]
    assert _cache.load_arrays(entry) is None
    images, _, _ = data.load_image_folder(tar, "train")
    assert images.shape[0] == 7 and (entry / "meta.json").exists()


def test_undecodable_image_is_named(tmp_path, cache_env):
    files = _toy_files()
    files["train/dog/broken.png"] = (b"\x89PNG\r\n\x1a\n garbage", None)
    tar = _write_tar(tmp_path / "bad.tar.gz", files)
    with pytest.raises(
        ValueError,
        match=r"cannot decode image 'toy/train/dog/broken\.png' in archive .*bad\.tar\.gz",
    ):
        data.load_image_folder(tar, "train")
    data.load_image_folder(tar, "test")  # the broken file is not in the test split
    folder = _write_dir(tmp_path / "baddir", files)
    with pytest.raises(ValueError, match=r"train/dog/broken\.png"):
        data.load_image_folder(folder, "train", cache=False)


def test_missing_path_and_split_errors(tmp_path, toy, cache_env):
    missing = tmp_path / "nope.tar.gz"
    with pytest.raises(FileNotFoundError, match=r"nope\.tar\.gz.*UL_JAX_DATA_DIR"):
        data.load_image_folder(missing, "train")
    _, tar, _ = toy
    with pytest.raises(ValueError, match=r"split 'val' not found.*\['test', 'train'\]"):
        data.load_image_folder(tar, "val")
    not_tar = tmp_path / "x.bin"
    not_tar.write_bytes(b"123")
    with pytest.raises(ValueError, match="neither a directory nor a tar archive"):
        data.load_image_folder(not_tar, "train")


def test_mixed_sizes_need_image_size(tmp_path, cache_env):
    files = _toy_files()
    files["train/dog/big.png"] = (_png(np.zeros((9, 9, 3), np.uint8)), None)
    tar = _write_tar(tmp_path / "mixed.tar.gz", files)
    with pytest.raises(ValueError, match=r"has shape \(9, 9, 3\).*image_size"):
        data.load_image_folder(tar, "train")
    images, _, _ = data.load_image_folder(tar, "train", image_size=4)
    assert images.shape == (8, 4, 4, 3)


def test_load_dataset_image_folder_resolution(tmp_path, cache_env, monkeypatch):
    _write_tar(tmp_path / "toy.tar.gz", _toy_files())
    monkeypatch.setenv(_cache.ENV_DATA_DIR, str(tmp_path))
    ds = data.load_dataset("toy", "train", source="image_folder")
    assert (
        isinstance(ds, ArrayDataset) and len(ds) == 7 and ds.num_classes == 3 and ds.name == "toy"
    )
    assert data.resolve_image_folder("toy") == tmp_path / "toy.tar.gz"
    with pytest.raises(
        FileNotFoundError,
        match=r"no image folder for dataset 'cifar100'.*cifar100\.tar\.gz.*source='tfds'",
    ):
        data.load_dataset("cifar100", "train", source="image_folder")
    lt = data.load_dataset(
        "toy", "train", source="image_folder", imbalance_ratio=2, imbalance_kind="step"
    )
    np.testing.assert_array_equal(lt.class_counts(), [2, 1, 1])  # n_max = smallest class = 2
    test = data.load_dataset("toy", "test", source="image_folder", imbalance_ratio=2)
    assert len(test) == 3  # the test split stays as it is
    with pytest.raises(ValueError, match="source must be one of"):
        data.load_dataset("toy", "train", source="hub")


def test_array_dataset_label_errors_and_select_classes():
    imgs = np.zeros((4, 2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"out of range \[0, 2\).*flat index \[2\]"):
        ArrayDataset("x", "train", imgs, np.array([0, 1, 5, 1]), ("a", "b"))
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset("x", "train", imgs.astype(np.float32), np.zeros(4, np.int32), ("a", "b"))
    ds = ArrayDataset("x", "train", imgs, np.array([0, 1, 2, 1]), ("a", "b", "c"))
    sub = select_classes(ds, [2, 1], name="y")
    np.testing.assert_array_equal(sub.labels, [1, 0, 1])
    assert sub.class_names == ("c", "b") and sub.name == "y"


# --------------------------------------------------------------------------- digits
def test_digits_split_and_images():
    tr = data.load_dataset("digits", "train", source="digits")
    te = data.load_dataset("digits", "test", source="digits")
    assert (len(tr), len(te)) == (1347, 450)
    assert tr.images.shape[1:] == (16, 16, 3) and tr.images.dtype == np.uint8
    assert np.all(tr.images[..., 0] == tr.images[..., 2])  # gray replicated to RGB
    assert tr.images.max() == 255 and tr.images.min() == 0
    counts = te.class_counts()
    assert counts.min() >= 44 and counts.max() <= 46  # stratified 25 %
    from ul_jax.data.digits import digits_arrays, digits_split_indices

    _, labels = digits_arrays(8)
    a, b = (
        digits_split_indices(labels, "train", seed=0),
        digits_split_indices(labels, "test", seed=0),
    )
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 1797
    np.testing.assert_array_equal(a, digits_split_indices(labels, "train", seed=0))
    assert not np.array_equal(a, digits_split_indices(labels, "train", seed=1))
    from sklearn.datasets import load_digits as sk

    raw = sk()
    np.testing.assert_array_equal(
        digits_arrays(8)[0][..., 0], np.rint(raw.images * 255 / 16).astype(np.uint8)
    )


def test_digits_far_ood():
    ood = data.load_dataset("digits_far_ood", "test", source="digits")
    assert ood.name == "digits_far_ood" and "svhn" not in ood.name.lower()
    assert ood.images.shape == (1797, 32, 32, 3)
    with pytest.raises(ValueError, match="need source='digits'"):
        data.load_dataset("digits", "train", source="tfds")
    with pytest.raises(ValueError, match="evaluation set"):
        data.load_dataset("digits_far_ood", "train", source="digits")


# --------------------------------------------------------------------------- tfds (mocked)
tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize(
    "name, num_classes", [("cifar10", 10), ("cifar100", 100), ("svhn_cropped", 10)]
)
def test_tfds_data_source_mock(name, num_classes, cache_env):
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load_tfds(name, "train", cache=False)
    assert ds.images.shape == (12, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and ds.num_classes == num_classes
    assert ds.labels.min() >= 0 and ds.labels.max() < num_classes
    if importlib.util.find_spec("tensorflow") is None:
        import sys

        assert "tensorflow" not in sys.modules  # the data_source path really ran without TF


def test_tfds_cache_and_load_dataset(cache_env, monkeypatch):
    with tfds.testing.mock_data(num_examples=6):
        a = data.load_dataset("cifar10", "test", source="tfds")

        def boom(*args, **kw):
            raise AssertionError("read tfds again instead of the cache")

        monkeypatch.setattr(tfds_source, "_read_source", boom)
        b = data.load_dataset("cifar10", "test", source="tfds")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (cache_env / "tfds").is_dir()


def test_tfds_not_prepared_error(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"tfds dataset 'cifar100' \(split 'train'\) is not prepared in .*tfds build cifar100",
    ):
        data.load_tfds("cifar100", "train", data_dir=tmp_path / "tfds")
    with pytest.raises(ValueError, match="does not fit in memory"):
        data.load_tfds("imagenet2012", "train")
    with pytest.raises(
        FileNotFoundError,
        match=r"'imagenet2012' \(split 'validation'\) is not prepared.*downloads/manual",
    ):
        data.make_imagenet100_loader("validation", train=False, data_dir=tmp_path / "tfds")


def _imagenet_info(root, file_format):
    """A ``dataset_info.json`` for imagenet2012 prepared as ``file_format`` with a 3-record
    train split whose shard file is present but empty (a copy cut short)."""
    import tensorflow_datasets as tfds

    b = tfds.builder("imagenet2012", data_dir=root)
    vdir = root / "imagenet2012" / str(b.version)
    vdir.mkdir(parents=True)
    info = json.loads(b.info.as_json)
    info["fileFormat"] = file_format
    tmpl = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    info["splits"] = [
        {"name": "train", "numBytes": "100", "shardLengths": ["3"], "filepathTemplate": tmpl}
    ]
    (vdir / "dataset_info.json").write_text(json.dumps(info))
    (vdir / f"imagenet2012-train.{file_format}-00000-of-00001").write_bytes(b"")
    return vdir


@pytest.mark.parametrize("state", ["no dir", "empty dir", "half-built", "TFRecord only"])
def test_imagenet_missing_data_states_are_one_named_error(tmp_path, state):
    """The states a fresh machine has (issue 25): each an error naming the directory and the
    command that prepares the data — a ul_jax error or a FileNotFoundError, which the CLIs
    print as one line — never tfds's KeyError / NotImplementedError."""
    from ul_jax.train import cli

    root = tmp_path / "tfds"
    if state == "empty dir":
        root.mkdir()
    elif state == "half-built":  # a version folder with nothing in it (a build that stopped)
        (root / "imagenet2012" / "5.1.0").mkdir(parents=True)
    elif state == "TFRecord only":
        _imagenet_info(root, "tfrecord")
    with pytest.raises((FileNotFoundError, data.DatasetFormatError)) as e:
        data.make_imagenet100_loader("train", train=True, data_dir=root)
    msg = cli.error_message(e.value)
    assert cli.is_expected_error(e.value) and "\n" not in msg
    assert str(root / "imagenet2012") in msg
    assert "tfds build imagenet2012" in msg and "--file_format=array_record" in msg
