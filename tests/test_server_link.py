"""The "Open in a PlantUML server" link: it carries the diagram's source in PlantUML's text encoding, to the
server the setting names; a bad setting is one line, not a broken page."""

import string
import zlib

import pytest

from core.errors import UserError
from core.studio import ui

# The documented alphabet (plantuml.com/text-encoding): 6 bits a character, 0-9 A-Z a-z - _
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase + "-_"
DIAGRAM = "@startuml\nclass Order\nclass Item\nOrder *-- Item : « lines » ü\n@enduml"


def decoded(text: str) -> str:
    """The documented decoding: the alphabet back to bytes (3 a group of 4), then raw deflate."""
    bits = "".join(f"{ALPHABET.index(c):06b}" for c in text)
    raw = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8))
    return zlib.decompressobj(wbits=-15).decompress(raw).decode("utf-8")


def test_the_link_opens_the_source_on_the_default_server_and_decodes_back_to_it(monkeypatch):
    monkeypatch.delenv(ui.SERVER_ENV, raising=False)
    link = ui.server_link(DIAGRAM)
    prefix = "https://www.plantuml.com/plantuml/uml/"
    assert link.startswith(prefix)
    text = link[len(prefix) :]
    assert set(text) <= set(ALPHABET) and len(text) % 4 == 0  # no base64 '=' or '+/' left in the link
    assert decoded(text) == DIAGRAM


def test_the_link_matches_published_encodings():
    # two encoders written elsewhere, in other languages, published with these outputs
    assert ui.server_link("@startuml\nPUML -> RUST\n@enduml").endswith("/SoWkIImgAStDuGe8zVLHqBLJ20eD3k5oICrB0Ge20000")
    assert ui.server_link("Alice -> Bob: Authentication Request\nBob --> Alice: Authentication Response").endswith(
        "/Syp9J4vLqBLJSCfFib9mB2t9ICqhoKnEBCdCprC8IYqiJIqkuGBAAUW2rJY256DHLLoGdrUS2W00"
    )


def test_the_server_is_a_setting_and_a_bad_one_is_one_line(monkeypatch):
    monkeypatch.setenv(ui.SERVER_ENV, "http://127.0.0.1:8080/plantuml/")
    assert ui.server_link(DIAGRAM).startswith("http://127.0.0.1:8080/plantuml/uml/")
    for bad in ("plantuml.example.org", "file:///etc/passwd", "javascript:alert(1)", "http://a b"):
        monkeypatch.setenv(ui.SERVER_ENV, bad)
        with pytest.raises(UserError) as caught:
            ui.server_link(DIAGRAM)
        assert "\n" not in str(caught.value) and ui.SERVER_ENV in str(caught.value)
