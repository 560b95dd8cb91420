"""Every test gets its own runs root (UMLSTUDIO_HOME), so no test sees another's runs or store.

Models: `tiny_model` is a tiny random Llama built from a config, with the real SmolLM2 tokenizer and
chat template read from the embedded GGUF's metadata (no download, and the 135M weights are never
dequantised); `real_model` gives a test the embedded SmolLM2-135M, prepared once per session and
linked into the test's runs root: a test that asks for it is marked `slow`.

Tiers (markers in pyproject.toml): `slow` (the real 135M model), `browser` (a real Chromium), `ddp`
(several training processes), `e2e` (real worker processes end to end). `make test-fast` leaves those
four out; `make test` runs everything.
"""

import pytest

from core.training import models


@pytest.fixture(autouse=True)
def umlstudio_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("UMLSTUDIO_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def real_model_only_when_slow(request, monkeypatch):
    """Outside the slow tier, preparing the real model (dequantising the GGUF, ~15 s and 500 MB) fails the test."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(force: bool = False):
        raise AssertionError(f"{request.node.name} prepares the real 135M model: mark it slow or use tiny_model")

    monkeypatch.setattr(models, "prepare_embedded", refuse)


@pytest.fixture(scope="session")
def prepared_home(tmp_path_factory):
    """A runs root holding the embedded model prepared once (the GGUF is dequantised once per session)."""
    home = tmp_path_factory.mktemp("prepared-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(home))
        models.prepare_embedded()
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A folder holding LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=2, ...)) with random
    weights and the SmolLM2 tokenizer. Built in a runs root of its own that holds no prepared model, so
    make_tiny_model reads the tokenizer alone from the GGUF and never prepares the real model."""
    home = tmp_path_factory.mktemp("tiny-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(home))
        path = models.make_tiny_model(home / "tiny-llama")
    assert not models._is_model_dir(home / "models" / models.EMBEDDED), "the tiny model prepared the real one"
    return path


@pytest.fixture
def real_model(request, prepared_home, umlstudio_home):
    """model.base for the embedded model inside this test's runs root (only for tests marked slow)."""
    assert request.node.get_closest_marker("slow"), f"{request.node.name} uses the real model: mark it slow"
    umlstudio_home.mkdir(parents=True, exist_ok=True)
    (umlstudio_home / "models").symlink_to(prepared_home / "models", target_is_directory=True)
    return models.EMBEDDED


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): the test
    machine's 2 cores are shared, and one thread is several times faster there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
