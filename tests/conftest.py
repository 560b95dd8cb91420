"""Every test gets its own runs root (UMLSTUDIO_HOME), so no test sees another's runs or store.

Models: `tiny_model` is a tiny random Llama with the real SmolLM2 tokenizer (no download);
`real_model` gives a test the embedded SmolLM2-135M, prepared once per session and linked into
the test's runs root.
"""

import pytest

from core.training import models


@pytest.fixture(autouse=True)
def umlstudio_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("UMLSTUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def prepared_home(tmp_path_factory):
    """A runs root holding the embedded model prepared once (the GGUF is dequantised once per session)."""
    home = tmp_path_factory.mktemp("prepared-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(home))
        models.prepare_embedded()
    return home


@pytest.fixture(scope="session")
def tiny_model(prepared_home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(prepared_home))
        return models.make_tiny_model(prepared_home / "tiny-llama")


@pytest.fixture
def real_model(prepared_home, umlstudio_home):
    """model.base for the embedded model inside this test's runs root."""
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
