"""Install VLA-World: `make install` (pinned, CPU torch) or `pip install -c requirements/constraints.txt -e .`.

Ranges are the ones measured to install together with torch 2.13.0 (CPU wheel) on Python 3.11;
`requirements/constraints.txt` holds the pins that keep torch and numpy from moving.
"""

from setuptools import find_packages, setup

CORE = [
    "torch>=2.4,<2.14",
    "numpy>=1.24,<2",  # nuscenes-devkit 1.2 pins numpy<2
    "nuscenes-devkit>=1.1.11,<1.3",
    "shapely>=2.0,<2.1",
    "scipy>=1.11",
    "pyquaternion>=0.9.9",
    "matplotlib>=3.7",
    "pillow>=10",
    "opencv-python-headless>=4.8,<4.12",  # cv2.fillPoly: the reference rasterisers' scan conversion
    "tqdm>=4.66",
    "pyyaml>=6",
    "safetensors>=0.4",
    "tokenizers>=0.21",
    "transformers>=5.0,<6",
    "accelerate>=1.10,<2",
    "peft>=0.17,<1",
    "diffusers>=0.30,<0.43",  # VQModel: the frame tokenizer of the world model (perception/frame_tokenizer)
    "pycocoevalcap>=1.2",
]

setup(
    name="vla-world",
    version="0.1.0",
    description="World-model Vision-Language-Action planner for nuScenes: data, BEV perception, LLM stages, exact planning metrics.",
    packages=find_packages(include=["vla_world", "vla_world.*", "perception", "perception.*", "planning", "planning.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6", "ruff>=0.5", "import-linter>=2.1,<3"],  # .importlinter: the layer contract
        # ZeRO-2 through `accelerate launch` (docs/distributed.md); install with DS_BUILD_OPS=0 (no compiled ops).
        # Only 0.19.8 measured (torch 2.13 CPU); vla_world/training/distributed.py reads ZeRO-1/2 fragment mappings.
        "deepspeed": ["deepspeed>=0.19,<0.20"],
    },
)
