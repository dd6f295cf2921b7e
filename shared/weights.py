"""Model presets: which files each needs, where they come from, their checksums. No torch here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tqdm import tqdm

from shared.errors import InvalidRequest
from shared.records import Params

SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
HF = "https://huggingface.co"

# Overrides that shrink sam2.1 hiera-t to 0.69M parameters for tests; image_size stays 1024.
TINY_SAM_OVERRIDES = (
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.stages=[1,1,1,2]",
    "model.image_encoder.trunk.global_att_blocks=[4]",
    "model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "model.image_encoder.neck.d_model=32",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.memory_attention.d_model=32",
    "model.memory_attention.num_layers=1",
    "model.memory_attention.layer.d_model=32",
    "model.memory_attention.layer.dim_feedforward=64",
    "model.memory_attention.layer.self_attention.embedding_dim=32",
    "model.memory_attention.layer.cross_attention.embedding_dim=32",
    "model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=32",
    "model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "model.memory_encoder.fuser.layer.dim=32",
    "model.memory_encoder.fuser.num_layers=1",
)


@dataclass(frozen=True)
class FileSpec:
    """One downloadable file: where it goes under the model folder, its URL and checksum."""

    path: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Preset:
    """A SAM 2 checkpoint plus a Grounding DINO folder."""

    name: str
    sam_config: str  # a config inside the sam2 package
    sam_checkpoint: str  # relative to the model folder
    dino_dir: str  # relative to the model folder, Hugging Face format
    files: tuple[FileSpec, ...] = ()
    random: bool = False  # built locally with random weights; masks mean nothing
    sam_overrides: tuple[str, ...] = field(default=())
    dino_arch: str = "tiny"  # for random presets: "test" (0.45M params), "tiny" (Swin-T) or "base" (Swin-B)
    engine: str = "sam2"  # "sam2" (SAM 2 + Grounding DINO) or "sam3" (one SAM 3 folder: concept + tracker heads)
    sam3_dir: str = ""  # SAM 3 presets: the Hugging Face-format folder, relative to the model folder
    sam3_arch: str = "real"  # random SAM 3 presets: "test" (tiny, for tests) or "real" (the real architecture)


_SAM = {  # preset name: (config, file, sha256, size), pins from the official download script's files
    "tiny": ("sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt",
             "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 156008466),
    "small": ("sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt",
              "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 184416285),
    "base-plus": ("sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt",
                  "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 323606802),
    "large": ("sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt",
              "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 898083611),
}

_DINO_COMMON = {
    "preprocessor_config.json": ("8454179ba95e2ad22947835aad7b45862a601fc0055ab88bf1ee70892d3aea60", 457),
    "special_tokens_map.json": ("b6d346be366a7d1d48332dbc9fdf3bf8960b5d879522b7799ddba59e76237ee3", 125),
    "tokenizer.json": ("d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66", 711396),
    "tokenizer_config.json": ("d40ab645b68211910b9170d22433d43186a6ec8ee6fd10ba170524b25bf4fb56", 1237),
    "vocab.txt": ("07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508),
}
_DINO = {  # detector: (revision, {file: (sha256, size)})
    "tiny": ("a2bb814dd30d776dcf7e30523b00659f4f141c71", {
        "config.json": ("eec82c5ab66e16df12a9a212e68ac011779927c2536cf9078658e35d85f0c67a", 1644),
        "model.safetensors": ("1a2412ef99bd74bcd3c2a246fa1e48581f8889a1300c9051974741314fc042f3", 689359096),
        "added_tokens.json": ("909e96cb32d92ce728a01bc99850cbba26196d74115c17ebeb019275412588f2", 82),
        **_DINO_COMMON,
    }),
    "base": ("12bdfa3120f3e7ec7b434d90674b3396eccf88eb", {
        "config.json": ("eda416dae6f49419ff831b1c190ec430a060b19aae688dbaf2425a075b650608", 1737),
        "model.safetensors": ("5548f844c928c4b6f411fa8cbcc2bfa8dbbba437cb1d513975519f93c2a9ed21", 933400872),
        **_DINO_COMMON,
    }),
}

# SAM 3 (facebook/sam3, gated: a Hugging Face token of an account that accepted the SAM License). Its pins
# (revision, SHA-256 and size of each file) are recorded here from the first authorised download; until they are,
# `make models PRESET=sam3` refuses to fetch unverified weights and says so (SAM3_UNPINNED).
SAM3_REPO = "facebook/sam3"
SAM3_REVISION: str | None = None
_SAM3_FILES: dict[str, tuple[str, int]] = {}  # file: (sha256, size), once recorded
SAM3_UNPINNED = (
    "the sam3 preset's pins (revision, SHA-256 and size of each file of facebook/sam3) are not recorded in "
    "shared/weights.py yet: samq does not download unverified weights. Record them from an authorised download "
    "(HF_TOKEN of an account that accepted the SAM License at https://huggingface.co/facebook/sam3)"
)
SAM3_PRESETS = ("sam3", "tiny-random-sam3", "random-sam3")
PRESET_NAMES = (*_SAM, "tiny-random", *(f"random-{name}" for name in _SAM), *SAM3_PRESETS)
DETECTORS = tuple(_DINO)


def engine_of(name: str) -> str:
    """The engine a preset name runs ("sam2" or "sam3"), without building the preset (the gateway's view)."""
    return "sam3" if name in SAM3_PRESETS else "sam2"


def _sam3_preset(name: str) -> Preset:
    if name == "tiny-random-sam3":
        return Preset(name, "", "", "", random=True, engine="sam3", sam3_dir="tiny-random-sam3", sam3_arch="test")
    if name == "random-sam3":  # the real architecture (about 0.85B parameters), random weights: benchmarks
        return Preset(name, "", "", "", random=True, engine="sam3", sam3_dir="random-sam3", sam3_arch="real")
    repo = f"{HF}/{SAM3_REPO}/resolve/{SAM3_REVISION}"
    files = tuple(FileSpec(f"sam3/{f}", f"{repo}/{f}", sha, size) for f, (sha, size) in sorted(_SAM3_FILES.items()))
    return Preset(name, "", "", "", files, engine="sam3", sam3_dir="sam3")


def get_preset(name: str, detector: str = "tiny") -> Preset:
    """The preset for `SAMQ_MODELS` (and `SAMQ_DETECTOR`); ValueError names the choices."""
    if name in SAM3_PRESETS:
        return _sam3_preset(name)
    if name == "tiny-random":
        return Preset(
            name=name, sam_config="configs/sam2.1/sam2.1_hiera_t.yaml", sam_checkpoint="tiny-random/sam2.pt",
            dino_dir="tiny-random/grounding-dino", random=True, sam_overrides=TINY_SAM_OVERRIDES, dino_arch="test",
        )
    if name.startswith("random-") and name.removeprefix("random-") in _SAM and detector in _DINO:
        # The real architecture with random weights: the real model's compute, for benchmarks without weights.
        config = _SAM[name.removeprefix("random-")][0]
        return Preset(name, f"configs/sam2.1/{config}", f"{name}/sam2.pt", f"{name}/grounding-dino-{detector}",
                      random=True, dino_arch=detector)
    if name not in _SAM:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    if detector not in _DINO:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    config, ckpt, sha, size = _SAM[name]
    revision, dino_files = _DINO[detector]
    dino_dir = f"grounding-dino-{detector}"
    repo = f"{HF}/IDEA-Research/grounding-dino-{detector}/resolve/{revision}"
    files = [FileSpec(ckpt, f"{SAM_BASE_URL}/{ckpt}", sha, size)]
    files += [FileSpec(f"{dino_dir}/{f}", f"{repo}/{f}", s, n) for f, (s, n) in sorted(dino_files.items())]
    return Preset(name, f"configs/sam2.1/{config}", ckpt, dino_dir, tuple(files))


def missing_files(preset: Preset, model_dir: Path) -> list[Path]:
    """Files of a downloadable preset that are absent or have the wrong size."""
    if preset.engine == "sam3" and not preset.random and not preset.files:  # pins not recorded yet
        return [model_dir / preset.sam3_dir / "model.safetensors"]
    missing = []
    for spec in preset.files:
        path = model_dir / spec.path
        if not path.is_file() or path.stat().st_size != spec.size:
            missing.append(path)
    return missing


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(preset: Preset, model_dir: Path, timeout_s: float = 30.0, token: str | None = None) -> None:
    """Fetch every missing file of a preset, verify its checksum, then move it into place (`token`: Hugging Face's,
    for gated repositories such as SAM 3's)."""
    if preset.engine == "sam3" and not preset.random and not preset.files:
        raise ValueError(SAM3_UNPINNED)
    for spec in preset.files:
        target = model_dir / spec.path
        if not target.is_file() or target.stat().st_size != spec.size:
            _download_one(spec, target, timeout_s, token if spec.url.startswith(HF) else None)


def _download_one(spec: FileSpec, target: Path, timeout_s: float, token: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with requests.get(spec.url, stream=True, timeout=timeout_s, headers=headers) as resp:
        if resp.status_code in (401, 403) and spec.url.startswith(HF):
            raise ValueError(f"{spec.url}: HTTP {resp.status_code}: the repository is gated; set HF_TOKEN to the token "
                             "of a Hugging Face account that has accepted its licence"
                             + ("" if token else " (HF_TOKEN is not set)"))
        resp.raise_for_status()
        with partial.open("wb") as fh, tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.path) as bar:
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    if digest.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch for {spec.path}: got {digest.hexdigest()}, want {spec.sha256}")
    partial.replace(target)


def verify(preset: Preset, model_dir: Path) -> list[str]:
    """Full checksum check of a downloaded preset; returns one line per bad file."""
    if preset.engine == "sam3" and not preset.random and not preset.files:
        return [SAM3_UNPINNED]
    problems = []
    for spec in preset.files:
        path = model_dir / spec.path
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_of(path) != spec.sha256:
            problems.append(f"{path}: checksum mismatch (corrupt or partial download)")
    return problems


def check_prompts(params: Params, preset_name: str) -> None:
    """A job's prompt kinds against the engine of this deployment's preset (the gateway's check: no torch here)."""
    if engine_of(preset_name) == "sam2" and (params.exemplars or params.negative_exemplars):
        field = "exemplars" if params.exemplars else "negative_exemplars"
        raise InvalidRequest(f"'{field}' need a SAM 3 preset ({', '.join(SAM3_PRESETS)}); this service runs "
                             f"{preset_name!r} (SAM 2 + Grounding DINO)")
    if engine_of(preset_name) == "sam3" and params.everything is not None:
        sam2 = ", ".join(p for p in PRESET_NAMES if engine_of(p) == "sam2")
        raise InvalidRequest(f"'everything' needs a SAM 2 preset ({sam2}); this service runs {preset_name!r} (SAM 3)")
