"""Model presets: names, files, checksum verification (no downloads)."""

import hashlib

import pytest

from shared.weights import PRESET_NAMES, FileSpec, Preset, get_preset, missing_files, verify


def test_every_real_preset_pins_its_files():
    for name in PRESET_NAMES:
        preset = get_preset(name)
        if preset.random:
            assert not preset.files  # built locally, nothing to download
            assert bool(preset.sam_overrides) == (name == "tiny-random")  # random-<size> keeps the real shape
            continue
        if preset.engine == "sam3":  # one Hugging Face folder (tests/unit/test_sam3_presets.py)
            continue
        assert preset.sam_checkpoint in {f.path for f in preset.files}
        assert f"{preset.dino_dir}/model.safetensors" in {f.path for f in preset.files}
        for spec in preset.files:
            assert len(spec.sha256) == 64 and spec.size > 0 and spec.url.startswith("https://")
    assert get_preset("large", "base").dino_dir == "grounding-dino-base"


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match="tiny-random"):
        get_preset("huge")
    with pytest.raises(ValueError, match="detector"):
        get_preset("large", "giant")


def test_missing_and_corrupt_files_are_named(tmp_path):
    content = b"weights" * 10
    spec = FileSpec("a/w.pt", "https://x/w.pt", hashlib.sha256(content).hexdigest(), len(content))
    preset = Preset("t", "cfg", "a/w.pt", "d", (spec,))
    assert missing_files(preset, tmp_path) == [tmp_path / "a/w.pt"]
    assert verify(preset, tmp_path) == [f"{tmp_path / 'a/w.pt'}: missing"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a/w.pt").write_bytes(content)
    assert missing_files(preset, tmp_path) == [] and verify(preset, tmp_path) == []
    (tmp_path / "a/w.pt").write_bytes(content[:-1] + b"X")
    assert "checksum mismatch" in verify(preset, tmp_path)[0]
